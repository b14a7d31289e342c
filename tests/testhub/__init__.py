"""The project's test Hub: a real HTTP server speaking the Hugging Face Hub download protocol.

    with TestHub(tokens={"hf_alice": "alice"}) as hub:
        hub.add_repo(minilm_repo())
        hub.faults.cut_body(1_000_000)          # next CDN body breaks after 1 MB
        ...  # point a client at hub.endpoint
        assert hub.stats.cdn_authorization_seen == []
"""

from .content import Blob, generated_file, lfs_pointer
from .faults import Faults, Record, Stats
from .repos import (
    Commit,
    Entry,
    HubRepo,
    dataset_repo,
    is_lfs,
    minilm_repo,
    repo_from_dir,
    small_repo,
    smollm_repo,
)
from .modelscope import TestModelScope
from .server import TestHub

__all__ = [
    "Blob",
    "Commit",
    "Entry",
    "Faults",
    "HubRepo",
    "Record",
    "Stats",
    "TestHub",
    "TestModelScope",
    "dataset_repo",
    "generated_file",
    "is_lfs",
    "lfs_pointer",
    "minilm_repo",
    "repo_from_dir",
    "small_repo",
    "smollm_repo",
]
