"""`mreg convert`: pull a repo's safetensors and tokenizer into the store, convert them to a GGUF, and
keep the GGUF as a derived artifact (a blob linked under ``derived/<commit>/``, recorded in the
catalog with its source repo, commit, quant and the mreg version that made it).

A conversion already recorded for the same commit and quant is reused. config.json is pulled first:
an architecture mreg does not convert is refused before any weights are downloaded.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path

from mreg.registry import __version__
from mreg.registry.catalog import Catalog, DerivedRecord
from mreg.registry.upstream.hub import HubClient
from mreg.registry.pull import NullProgress, PullOptions, PullProgress, pull
from mreg.registry.repo import RepoRef
from mreg.registry.store import Store
from mreg.registry.convert.architectures import architecture_of
from mreg.registry.convert.convert import convert_folder
from mreg.registry.convert.mixes import Mix
from mreg.registry.convert.source import read_json
from mreg.registry.convert.writing import ConvertProgress, NullConvertProgress
from mreg.registry.errors import FormatError

CONVERT_FILES = (
    "*.safetensors", "model.safetensors.index.json", "config.json", "generation_config.json", "tokenizer.json",
    "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
)
"""What a conversion pulls: the weights, the config and the tokenizer files."""


@dataclass(frozen=True)
class Converted:
    """A GGUF converted from ``repo`` at ``commit``: where it is and whether it was made just now."""

    repo: RepoRef
    commit: str
    quant: str
    path: Path
    sha256: str
    size: int
    reused: bool
    fetched: int
    """Bytes the pull of the safetensors downloaded."""
    source: str
    """Where the safetensors came from: "upstream", or "local" (offline, or upstream unreachable)."""


def gguf_name(repo: RepoRef, mix: Mix) -> str:
    """The converted file's name: `<repo name>-<QUANT>.gguf`."""
    return f"{repo.repo_id.rpartition('/')[2]}-{mix.label}.gguf"


async def convert_repo(repo: RepoRef, mix: Mix, *, revision: str, client: HubClient, store: Store,
                       catalog: Catalog, offline: bool = False, out: Path | None = None,
                       out_copy: bool = False, pull_progress: PullProgress = NullProgress(),
                       progress: ConvertProgress = NullConvertProgress()) -> Converted:
    """Convert ``repo`` at ``revision`` to ``mix`` (pulling what is missing); with ``out``, also put the
    GGUF there as a plain file (``Store.export_file``; a copy of its own with ``out_copy``). An architecture
    mreg does not convert is refused (FormatError) once config.json is pulled, before any weights are."""
    store.needs_local_files("converting to GGUF")
    head = await pull(repo, PullOptions(revision=revision, paths=frozenset({"config.json"}), offline=offline),
                      client=client, store=store, catalog=catalog)
    if not (head.path / "config.json").is_file():
        raise FormatError(f"{repo}@{head.commit[:12]} has no config.json: cannot convert it")
    architecture_of(read_json(head.path / "config.json"))
    pulled = await pull(repo, PullOptions(revision=revision, include=CONVERT_FILES, offline=offline),
                        client=client, store=store, catalog=catalog, progress=pull_progress)
    name = gguf_name(repo, mix)
    known = await catalog.find_derived(repo, pulled.commit, mix.label)
    stored = None if known is None else await store.blobs.stat(known.sha256)
    if known is not None and stored is not None and stored.size == known.size:
        sha256, size, reused = known.sha256, known.size, True
        async with store.pulling_async(), store.linking():
            path = store.link_derived(repo, pulled.commit, known.name, sha256)
    else:
        sha256, size, path = await _convert(repo, pulled.commit, pulled.path, mix, name, store, progress,
                                             f"{client.endpoint.rstrip('/')}/{repo.repo_id}")
        await catalog.record_derived(DerivedRecord(repo, pulled.commit, mix.label, name, sha256, size, __version__))
        reused = False
    if out is not None:
        store.export_file(sha256, out, copy=out_copy)
        path = out
    return Converted(repo, pulled.commit, mix.label, path, sha256, size, reused, head.fetched + pulled.fetched,
                     pulled.source)


async def _convert(repo: RepoRef, commit: str, folder: Path, mix: Mix, name: str, store: Store,
                   progress: ConvertProgress, repo_url: str) -> tuple[str, int, Path]:
    """Convert into the store's tmp folder, then publish the blob and link it: (sha256, size, link)."""
    tmp = store.tmp_dir / f"convert-{secrets.token_hex(8)}.gguf"
    try:
        await asyncio.to_thread(convert_folder, folder, mix, tmp, name=repo.repo_id.rpartition("/")[2],
                                repo_url=repo_url, progress=progress)
        sha256 = await asyncio.to_thread(_sha256, tmp)
        size = tmp.stat().st_size
        async with store.pulling_async():
            await store.blobs.publish(sha256, tmp)
            async with store.linking():
                path = store.link_derived(repo, commit, name, sha256)
    finally:
        tmp.unlink(missing_ok=True)
    return sha256, size, path


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
