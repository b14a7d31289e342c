"""The store a command runs on (``MREG_STORE`` / ``mreg serve --store``), and ``ObjectStore``: a ``Store``
whose blobs are objects in a store that replicas share (S3).

With an object store, snapshots and refs are the catalog's rows (its revisions, refs and complete files),
which every replica reads; nothing of them is written below ``home``, so the local views are no-ops. What
stays in ``home`` belongs to this process alone: transfers' partial downloads (removed once published),
the Hub answers kept for offline answers (JSON), lock and marker files. Whatever needs blobs or snapshots
as files on this machine (exports, conversions, gc by snapshot links) refuses, one line, naming the store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Set
from contextlib import asynccontextmanager
from pathlib import Path
from typing import NoReturn

from mreg.registry.blobs import BlobStore
from mreg.registry.blobs.s3location import parse_s3_url
from mreg.registry.config import Settings
from mreg.registry.errors import StoreUnsupportedError
from mreg.registry.exports import Placed
from mreg.registry.paths import safe_relpath
from mreg.registry.repo import RepoRef
from mreg.registry.store import GcResult, Store

FILL_CHUNK = 8 * 1024 * 1024
"""How many bytes a daemon's fill of the bucket commits at a time: another replica streaming the fill gets them
a chunk at a time, and each is at least S3's smallest part, so the publish copies them server-side."""


class ObjectStore(Store):
    """Blobs in ``blobs`` (named ``where`` in messages); per-process files below ``home``."""

    shared_blobs = True

    def __init__(self, home: Path, blobs: BlobStore, where: str) -> None:
        super().__init__(home)
        self.blobs = blobs  # type: ignore[assignment]  # the local one's dirs stay, for partial downloads
        self.where = where

    def needs_local_files(self, what: str) -> NoReturn:
        raise StoreUnsupportedError(f"{what} needs blobs as files on this machine: "
                                    f"not supported with the store {self.where} yet")

    # -- views: the catalog's rows are the snapshots and refs ------------------------------------------

    def open_snapshot(self, repo: RepoRef, commit: str) -> None:
        self.snapshot_dir(repo, commit)  # validates the commit; nothing to make

    def link_file(self, repo: RepoRef, commit: str, relpath: str, sha256: str) -> Path:
        """Nothing to link (the caller records the file in the catalog); the path a local snapshot would have."""
        return self.snapshot_dir(repo, commit) / safe_relpath(relpath)

    def write_ref(self, repo: RepoRef, ref: str, commit: str) -> None:
        safe_relpath(ref)
        self.snapshot_dir(repo, commit)  # validates the commit; the caller records the ref in the catalog

    def read_ref(self, repo: RepoRef, ref: str) -> str | None:
        return None  # the catalog answers

    def snapshot_files(self, repo: RepoRef, commit: str) -> dict[str, str]:
        """Nothing is linked on this machine: the catalog's complete files are the snapshot."""
        self.snapshot_dir(repo, commit)
        return {}

    # -- what needs local files -----------------------------------------------------------------------

    def blob_path(self, sha256: str) -> Path:
        self.needs_local_files(f"a local path for blob {sha256}")

    def has_blob(self, sha256: str, size: int | None = None) -> bool:
        self.needs_local_files("a synchronous blob check")

    def publish_blob(self, tmp: Path, sha256: str) -> Path:
        self.needs_local_files("a synchronous publish")

    def link_derived(self, repo: RepoRef, commit: str, name: str, sha256: str) -> Path:
        self.needs_local_files("converting to GGUF")

    def export_file(self, sha256: str, dest: Path, *, copy: bool = False) -> Placed:
        self.needs_local_files(f"exporting {dest}")

    def referenced_blobs(self) -> set[str]:
        self.needs_local_files("collecting garbage")

    async def gc(self, keep: Set[str] = frozenset(), partial_older_than: float | None = None,
                 min_blob_age: float = 0.0, unowned_partials: bool = False) -> GcResult:
        self.needs_local_files("collecting garbage")


@asynccontextmanager
async def opened_store(settings: Settings) -> AsyncIterator[Store]:
    """The store ``settings`` name, open for the block: the local one in ``home``, or an ``ObjectStore`` on
    ``s3://BUCKET[/PREFIX]`` (its bucket and credentials checked first: a StoreError saying what is wrong)."""
    if settings.store is None:
        yield Store(settings.home)
        return
    location = parse_s3_url(settings.store)
    from mreg.registry.blobs.s3 import S3BlobStore  # aiobotocore is imported only by those who use S3

    async with S3BlobStore(location, chunk_size=FILL_CHUNK) as blobs:
        yield ObjectStore(settings.home, blobs, str(location))
