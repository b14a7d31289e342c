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
import dataclasses
import fcntl
import functools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mreg.registry.errors import IntegrityError, UsageError
from mreg.registry.store import Store
from mreg.registry.download.job import Advance, FileJob, FileSpec, Locate, RangeClient, Source, Tuning, file_op
from mreg.registry.download.hasher import Hashed
from mreg.registry.download.holes import data_end
from mreg.registry.download.readers import Readers
from mreg.registry.download.state import TransferState

__all__ = ["Advance", "Discard", "Downloaded", "FileSpec", "Hashed", "Locate", "Readers", "Source", "Tuning",
           "download_file", "download_from"]

LOCK_POLL = 0.2
UPSTREAM = "upstream"
"""The name of the one source of ``download_file``."""
Discard = Callable[[Exception], bool]
"""Whether a download that failed with this error removes its partial file (else it is kept to resume)."""
Verified = Callable[[str], None]
"""Told the sha256 once the partial file's bytes are verified, before they are published (the file is still there)."""
Publish = Callable[[str, Path], Awaitable[object]]
"""Publishes the verified partial file (its sha256, its path) and removes it: ``BlobStore.publish`` unless told."""


@dataclass(frozen=True)
class Downloaded:
    sha256: str
    fetched: int
    by_source: Mapping[str, int] = field(default_factory=dict)
    """Bytes fetched from each source, by source name."""
    dropped: Mapping[str, str] = field(default_factory=dict)
    """Sources left out of this file, with why: they failed mid-way (the others finished it), or their
    bytes failed verification together with the first source's (which then served it alone)."""
    refetched: bool = False
    """The first fetch failed verification and the file was fetched again, whole."""


async def download_file(client: RangeClient, spec: FileSpec, locate: Locate, store: Store,
                        slots: asyncio.Semaphore, tuning: Tuning = Tuning(),
                        advance: Advance = lambda n: None, on_prefix: Advance = lambda n: None,
                        discard: Discard | None = None, readers: Readers | None = None,
                        on_verified: Verified | None = None, publish: Publish | None = None,
                        hashed: Hashed | None = None) -> Downloaded:
    """Fetch, verify and publish one file from one source; see ``download_from``."""
    return await download_from([Source(UPSTREAM, client, locate, slots)], spec, store, tuning, advance, on_prefix,
                               discard=discard, readers=readers, on_verified=on_verified, publish=publish,
                               hashed=hashed)


async def download_from(sources: Sequence[Source], spec: FileSpec, store: Store, tuning: Tuning = Tuning(),
                        advance: Advance = lambda n: None, on_prefix: Advance = lambda n: None,
                        refetch_once: bool = False,
                        discard: Discard | None = None, readers: Readers | None = None,
                        on_verified: Verified | None = None, publish: Publish | None = None,
                        hashed: Hashed | None = None) -> Downloaded:
    """Fetch, verify and publish one file into the store; return its sha256 and the bytes fetched.

    Every source must hold the same bytes (the same sha256); their connections fetch parts at once,
    and a source that fails is dropped while the others finish. When bytes from several sources fail
    verification, the file is fetched again from the first source alone (the reference), and the
    others are reported as dropped. Each source's ``slots`` bounds its connections across every file
    of a pull; ``advance`` is told about every byte that lands (including bytes a resumed download
    already had). ``on_prefix`` is told the length of the partial file's contiguous written prefix
    whenever it grows, once it is hashed (nothing of the download reads those bytes again): a reader may
    stream those bytes from the partial file
    (``Store.partial_paths(spec.key)[0]``, the same inode as the published blob), but they are
    verified only once this function returns; ``readers`` (``readers.Readers``) see every written byte, not
    only the prefix, and may have bytes further on fetched first. With ``refetch_once``, bytes from one source that fail
    verification are fetched once more from scratch before the file fails (a transfer corrupted on the
    way rarely is twice); callers that stream the partial file to readers leave it off, since a refetch
    would start the same partial over under them. The bytes are fetched and verified even when the store
    holds that content already: callers link what the catalog records as stored for the file's own repo
    first, so content stored only for other repos must come through this repo's upstream (#14.4). A failure ``discard``
    says yes to (never a cancellation) removes the partial file instead of keeping it to resume: the
    daemon's next miss starts cleanly, and a full disk gets its space back. ``on_verified`` hears the sha256
    as soon as the bytes are verified, while the partial file still exists (publishing may take a while:
    an object store uploads it). ``publish`` replaces the store's publish of the verified file (a fill of the
    shared store that has the bytes already publishes from there). ``hashed``: the sha256 of the resumed partial
    file's first bytes, hashed elsewhere (they need not be on disk); ignored unless the partial file's saved state
    has them all written.
    """
    fetch = functools.partial(_download, discard=discard, readers=readers, on_verified=on_verified, publish=publish,
                              hashed=hashed)
    if not sources or len({s.name for s in sources}) != len(sources):
        raise UsageError(f"{spec.path}: a download needs sources with distinct names")
    try:
        return await fetch(sources, spec, store, tuning, advance, on_prefix)
    except _Mismatch as mismatch:
        first, suspects = sources[0].name, [s.name for s in sources[1:] if mismatch.by_source.get(s.name)]
        if not suspects:
            if not refetch_once:
                raise
            try:
                again = await fetch(sources, spec, store, tuning, advance, on_prefix)
            except _Mismatch as twice:
                raise IntegrityError(f"{twice} (fetched twice)") from None
            return dataclasses.replace(again, fetched=mismatch.fetched + again.fetched, refetched=True,
                                       by_source=_added(mismatch.by_source, again.by_source))
        try:
            again = await fetch(sources[:1], spec, store, tuning, advance, on_prefix)
        except _Mismatch as alone:
            raise IntegrityError(f"{alone}, from {first} alone as well as from several sources") from None
        why = f"its bytes and {first}'s failed verification together; fetched again from {first} alone"
        return Downloaded(again.sha256, mismatch.fetched + again.fetched, _added(mismatch.by_source, again.by_source),
                          {**mismatch.dropped, **dict.fromkeys(suspects, why)})


def _added(first: Mapping[str, int], second: Mapping[str, int]) -> dict[str, int]:
    return {name: first.get(name, 0) + second.get(name, 0) for name in {*first, *second}}


class _Mismatch(IntegrityError):
    """The bytes did not match the announced hash; what each source had sent."""

    def __init__(self, message: str, job: FileJob) -> None:
        super().__init__(message)
        self.by_source = job.fetched_by_source()
        self.fetched = job.fetched
        self.dropped = job.dropped_sources()


async def _download(sources: Sequence[Source], spec: FileSpec, store: Store, tuning: Tuning,
                    advance: Advance, on_prefix: Advance,
                    discard: Discard | None = None, readers: Readers | None = None,
                    on_verified: Verified | None = None, publish: Publish | None = None,
                    hashed: Hashed | None = None) -> Downloaded:
    data_path, state_path = store.partial_paths(spec.key)
    async with locked(data_path) as fd:
        try:
            state = TransferState.load(state_path, spec.size, spec.key)
            if state is None or os.fstat(fd).st_size != spec.size:
                state = TransferState.plan(spec.size, spec.key, tuning.part_size(spec.size, len(sources)))
                file_op(spec, os.ftruncate, fd, 0)
                file_op(spec, os.ftruncate, fd, spec.size)
                hashed = None  # started over: every byte is fetched, and hashed, here
            else:
                if hashed is not None and state.contiguous_prefix() < hashed.upto:
                    hashed = None
                state.trim_to_data(functools.partial(data_end, fd), hashed.upto if hashed is not None else 0)
            advance(state.completed)
            job = FileJob(sources, spec, fd, state, state_path, tuning, advance, on_prefix, readers, hashed)
            await job.run()
            sha256 = _verify(spec, job, data_path, state_path)
        except Exception as exc:
            if discard is not None and discard(exc):  # still under the lock: nobody else writes it
                state_path.unlink(missing_ok=True)
                data_path.unlink(missing_ok=True)
            raise
        if on_verified is not None:
            on_verified(sha256)
        await (publish or store.blobs.publish)(sha256, data_path)
        state_path.unlink(missing_ok=True)
        return Downloaded(sha256, job.fetched, job.fetched_by_source(), job.dropped_sources())


def _verify(spec: FileSpec, job: FileJob, data_path: Path, state_path: Path) -> str:
    """Compare the hashes with what upstream announced; on a mismatch discard the bytes and raise."""
    hasher = job.hasher
    if spec.sha256 is not None:
        expected, got, kind = spec.sha256, hasher.sha256, "sha256"
    else:
        expected, got, kind = spec.git_oid, hasher.git_sha1, "git sha1"
    if got != expected:
        data_path.unlink(missing_ok=True)
        state_path.unlink(missing_ok=True)
        served = [f"{name} {n:,}" for name, n in job.fetched_by_source().items() if n]
        origin = f"; bytes fetched from {', '.join(served)}" if len(served) > 1 else ""
        raise _Mismatch(f"{spec.path}: {kind} mismatch (expected {expected}, got {got}); "
                        f"the bad bytes were discarded{origin}", job)
    return hasher.sha256


@contextlib.asynccontextmanager
async def locked(path: Path) -> AsyncIterator[int]:
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
