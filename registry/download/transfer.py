"""Downloading one file over many Range connections into the store, resumably and verified.

The partial file is pre-sized and written at part offsets; its progress (``state.TransferState``) is
saved beside it, so a killed process resumes where it stopped. A per-file lock (``flock``) keeps two
processes from writing the same partial. The bytes may come from several sources holding the same
content (``job.FileJob``). The contiguous prefix is hashed while the rest arrives; the blob is
published (renamed into the store) only when its size and hash match what upstream announced.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import IntegrityError, UsageError
from ..hub.client import HubClient
from ..store import Store
from .hasher import PrefixHasher
from .job import Advance, FileJob, FileSpec, Locate, Source, Tuning, io
from .state import TransferState

__all__ = ["Advance", "Downloaded", "FileSpec", "Locate", "Source", "Tuning", "download_file", "download_from"]

LOCK_POLL = 0.2
UPSTREAM = "upstream"
"""The name of the one source of ``download_file``."""


@dataclass(frozen=True)
class Downloaded:
    sha256: str
    fetched: int
    by_source: Mapping[str, int] = field(default_factory=dict)
    """Bytes fetched from each source, by source name."""
    dropped: Mapping[str, str] = field(default_factory=dict)
    """Sources that failed mid-file (the others finished it), with why."""


async def download_file(client: HubClient, spec: FileSpec, locate: Locate, store: Store,
                        slots: asyncio.Semaphore, tuning: Tuning = Tuning(),
                        advance: Advance = lambda n: None, on_prefix: Advance = lambda n: None) -> Downloaded:
    """Fetch, verify and publish one file from one source; see ``download_from``."""
    return await download_from([Source(UPSTREAM, client, locate, slots)], spec, store, tuning, advance, on_prefix)


async def download_from(sources: Sequence[Source], spec: FileSpec, store: Store, tuning: Tuning = Tuning(),
                        advance: Advance = lambda n: None, on_prefix: Advance = lambda n: None) -> Downloaded:
    """Fetch, verify and publish one file into the store; return its sha256 and the bytes fetched.

    Every source must hold the same bytes (the same sha256); their connections fetch parts at once,
    and a source that fails is dropped while the others finish. Each source's ``slots`` bounds its
    connections across every file of a pull; ``advance`` is told about every byte that lands
    (including bytes a resumed download already had). ``on_prefix`` is told the length of the partial
    file's contiguous written prefix whenever it grows: a reader may stream those bytes from the
    partial file (``Store.partial_paths(spec.key)[0]``, the same inode as the published blob), but
    they are verified only once this function returns.
    """
    if not sources or len({s.name for s in sources}) != len(sources):
        raise UsageError(f"{spec.path}: a download needs sources with distinct names")
    if spec.sha256 and store.has_blob(spec.sha256, spec.size):
        return Downloaded(spec.sha256, 0)
    data_path, state_path = store.partial_paths(spec.key)
    async with _locked(data_path) as fd:
        if spec.sha256 and store.has_blob(spec.sha256, spec.size):
            return Downloaded(spec.sha256, 0)
        state = TransferState.load(state_path, spec.size, spec.key)
        if state is None or os.fstat(fd).st_size != spec.size:
            state = TransferState.plan(spec.size, spec.key, tuning.part_size(spec.size))
            io(spec, os.ftruncate, fd, 0)
            io(spec, os.ftruncate, fd, spec.size)
        advance(state.completed)
        job = FileJob(sources, spec, fd, state, state_path, tuning, advance, on_prefix)
        await job.run()
        by_source = job.fetched_by_source()
        sha256 = _verify(spec, job.hasher, data_path, state_path, by_source)
        store.publish_blob(data_path, sha256)
        state_path.unlink(missing_ok=True)
        return Downloaded(sha256, job.fetched, by_source, job.dropped_sources())


def _verify(spec: FileSpec, hasher: PrefixHasher, data_path: Path, state_path: Path,
            by_source: Mapping[str, int]) -> str:
    """Compare the hashes with what upstream announced; on a mismatch discard the bytes and raise."""
    if spec.sha256 is not None:
        expected, got, kind = spec.sha256, hasher.sha256, "sha256"
    else:
        expected, got, kind = spec.git_oid, hasher.git_sha1, "git sha1"
    if got != expected:
        data_path.unlink(missing_ok=True)
        state_path.unlink(missing_ok=True)
        served = [f"{name} {n:,}" for name, n in by_source.items() if n]
        origin = f"; bytes fetched from {', '.join(served)}" if len(served) > 1 else ""
        raise IntegrityError(f"{spec.path}: {kind} mismatch (expected {expected}, got {got}); "
                             f"the bad bytes were discarded{origin}")
    return hasher.sha256


@contextlib.asynccontextmanager
async def _locked(path: Path) -> AsyncIterator[int]:
    """Open ``path`` read-write under an exclusive flock, making sure the lock is on the live file."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(LOCK_POLL)
            try:
                live = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                live = False
        except BaseException:
            os.close(fd)
            raise
        if live:
            break
        os.close(fd)  # another process published and removed it: open the new one
    try:
        yield fd
    finally:
        os.close(fd)
