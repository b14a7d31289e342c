"""The Hub answers the mirror keeps in the store, to answer them again while upstream is away.

    home/hub/<cache_name>/mirror/<commit>/info.json   repo info at the commit (blobs=true, no xetHash)
    home/hub/<cache_name>/mirror/<commit>/tree.json   the commit's full recursive tree listing
    home/hub/<cache_name>/mirror/refs.json            the last refs answer (refs-prs.json with PRs)

They live in the repo's folder, so ``mreg rm`` removes them with it; huggingface_hub's cache scan
ignores the folder. Writes go through a temp name and ``os.replace``.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from mreg.registry.errors import StoreError
from mreg.registry.repo import RepoRef
from mreg.registry.store import Store

FOLDER = "mirror"


def commit_file(store: Store, repo: RepoRef, commit: str, name: str) -> Path:
    """Where ``name`` (info.json, tree.json) of ``repo`` at ``commit`` is kept."""
    store.snapshot_dir(repo, commit)  # validates the commit
    return store.repo_dir(repo) / FOLDER / commit / name


def repo_file(store: Store, repo: RepoRef, name: str) -> Path:
    """Where a repo-wide answer (refs.json) of ``repo`` is kept."""
    return store.repo_dir(repo) / FOLDER / name


def save(path: Path, data: Any) -> None:
    """Write ``data`` as JSON at ``path`` atomically."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, separators=(",", ":")))
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot keep {path.name} in {path.parent}: {exc.strerror or exc}") from exc


def load(path: Path) -> Any | None:
    """The JSON kept at ``path``, or None when there is none (or it is unreadable)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
