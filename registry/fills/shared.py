"""One upstream transfer per blob across replicas (#13): the leader's fill of the shared store, and followers
streaming it (or only waiting for it: a mirror job's pull has no reader).

The leader downloads as a lone daemon does (connections into its partial file, its own clients streaming it; but
fewer and smaller parts, ``leader_tuning``), and a ``Feeder`` appends the file's contiguous prefix to the blob's fill in the shared store
(``BlobStore.open_fill``: chunk objects in S3) as it grows, having the download fetch the next bytes first; the
lease notes each commit. The verified file is published from the fill (a server-side copy of its chunks), so
no blob is ever visible before its bytes are verified. A leader taking over a fill first ``seed``s its partial
file: its state says the committed bytes are written (they stay in the store, hashed from there) and the download
fetches only the rest.

A follower (``follow``) copies the committed bytes into its own partial file as they grow, so its clients stream
them as they stream a local transfer; the last bytes come from the blob once the leader has published it, and
the copy is hashed as it goes: its clients get their last byte only once all of it matches the sha256. When
the leader's lease runs out (it died, or stalled), the follower claims the lease and leads from there. A
follower without readers copies nothing: it waits for the blob, or takes the lease over and leads from the
committed bytes like any other taker (``seed``).

Leaders and followers alike free from their partial file the bytes the store holds (``holes.LocalBytes``, told
by the ``Feeder``'s commits and the follower's copy); their readers read those from the store (``shared_bytes``).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from mreg.registry.blobs import BlobStore, PartialFill
from mreg.registry.download import Downloaded, FileSpec, Hashed, Readers, Tuning
from mreg.registry.download.state import Part, TransferState
from mreg.registry.download.transfer import locked
from mreg.registry.errors import StoreError, TransferFailedError, UpstreamUnavailableError
from mreg.registry.fills.leases import CatalogInFlight, Lease

MiB = 1024 * 1024
READ = MiB
LEADER_CONNECTIONS, LEADER_PART = 8, MiB
"""A leader fetches with at most 8 connections, 1 MiB parts taken in file order: it holds at most about 8 MiB
beyond the contiguous prefix of its partial file."""
BACKLOG = 16 * MiB
"""How far that prefix may run ahead of what the fill has committed before the download waits for the store.
What a killed leader fetched beyond its last commit (the next leader fetches it again) stays within about
``BACKLOG`` plus the parts in flight."""


def leader_tuning(tuning: Tuning, room: Callable[[int], Awaitable[None]] | None = None) -> Tuning:
    """``tuning`` for a leader's download (see ``LEADER_CONNECTIONS``), its received bytes also held back by
    ``room`` (``Feeder.room``)."""
    throttle = tuning.throttle

    async def held_back(n: int) -> None:
        if throttle is not None:
            await throttle(n)
        if room is not None:
            await room(n)

    return replace(tuning, connections=min(tuning.connections, LEADER_CONNECTIONS), min_part=LEADER_PART,
                   max_part=LEADER_PART, throttle=held_back if room is not None else throttle)


def not_resumable(error: Exception) -> bool:
    """Whether a failed download's partial file (and a shared fill's chunks) are dropped: yes, unless upstream was
    only unreachable (the next try resumes them then)."""
    return not isinstance(error, UpstreamUnavailableError)


def lost(spec: FileSpec) -> TransferFailedError:
    """The error of a leader whose lease another replica took over."""
    return TransferFailedError(f"{spec.path}: another replica took over its fill (this one's lease ran out)")


class Feeder:
    """Appends the leader's partial file ``path`` to ``fill`` as its contiguous prefix grows (``prefix``, the
    download's ``on_prefix``), then publishes the blob from the fill (``publish``, the download's ``publish``)."""

    def __init__(self, fill: PartialFill, path: Path, inflight: CatalogInFlight, lease: Lease, spec: FileSpec,
                 readers: Readers) -> None:
        self._fill, self._path, self._inflight, self._lease, self._spec = fill, path, inflight, lease, spec
        self._readers = readers
        self._appended = fill.committed
        self._prefix = 0
        self._grew = asyncio.Event()
        self._drained = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._job: asyncio.Future[Downloaded] | None = None
        inflight.on_lost(lease, self._grew.set)

    def prefix(self, written: int) -> None:
        """The partial file's first ``written`` bytes are written (the feeding starts with the first call)."""
        self._prefix = max(self._prefix, written)
        self._grew.set()
        if self._task is None:
            self._task = asyncio.create_task(self._feed())
            self._task.add_done_callback(self._stop_download)

    async def room(self, _: int) -> None:
        """Wait while the partial file's prefix is more than ``BACKLOG`` ahead of the fill's commits (the
        download's throttle: the store sets the pace)."""
        while self._prefix - self._fill.committed > BACKLOG and self._task is not None and not self._task.done():
            self._drained.clear()
            await self._drained.wait()

    async def publish(self, sha256: str, path: Path) -> bool:
        """Append the rest, then publish the blob from the fill (it checks size and sha256 first); remove ``path``."""
        self.prefix(self._fill.size)
        assert self._task is not None
        await self._task
        if not self._inflight.holds(self._lease):
            raise lost(self._spec)
        created = await self._fill.publish()
        path.unlink(missing_ok=True)
        return created

    async def around(self, download: Awaitable[Downloaded]) -> Downloaded:
        """Run ``download`` (which calls ``prefix`` and ``publish``); a fill that fails first (the store refuses,
        the lease is lost) stops it, with the fill's error."""
        self._job = job = asyncio.ensure_future(download)
        try:
            return await job
        except asyncio.CancelledError:
            failed = self._task is not None and self._task.done() and not self._task.cancelled()
            current = asyncio.current_task()
            if failed and (current is None or not current.cancelling()) and self._task is not None:
                error = self._task.exception()
                if error is not None:
                    raise error from None
            raise
        finally:
            for task in (job, self._task):
                if task is not None and not task.done():
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)

    def _stop_download(self, feeding: asyncio.Task[None]) -> None:
        if not feeding.cancelled() and feeding.exception() is not None and self._job is not None:
            self._job.cancel()

    async def _feed(self) -> None:
        fd = os.open(self._path, os.O_RDONLY)
        try:
            while self._appended < self._fill.size:
                if not self._inflight.holds(self._lease):
                    raise lost(self._spec)
                if self._prefix <= self._appended:
                    self._readers.want(self._appended)  # the download fetches the fill's next bytes first
                    self._grew.clear()
                    await self._grew.wait()
                    continue
                data = await asyncio.to_thread(os.pread, fd, min(self._prefix - self._appended, READ), self._appended)
                if not data:
                    raise StoreError(f"{self._spec.path}: the partial file ended at byte {self._appended}")
                committed = self._fill.committed
                await self._fill.append(data)
                self._appended += len(data)
                if self._fill.committed != committed:
                    self._inflight.note(self._lease, self._fill.committed)
                    self._drained.set()
                    self._readers.local.safe(self._fill.committed)  # hashed (the download's prefix), in the bucket
        finally:
            os.close(fd)
            self._drained.set()


def mark_written(state: TransferState, upto: int) -> None:
    """Mark the first ``upto`` bytes of the partial file written in ``state``."""
    for part in state.parts:
        if upto > part.offset:
            part.done = max(part.done, min(part.size, upto - part.offset))


async def seed(blobs: BlobStore, spec: FileSpec, paths: tuple[Path, Path], committed: int,
               part_size: int) -> Hashed | None:
    """Have the partial file's saved state say its fill's ``committed`` leading bytes are written, without writing
    them (they stay in the shared store; the file is sparse there): the download then fetches only the rest,
    hashing on from the sha256 of those bytes, which this returns (read from the shared store). None when
    nothing is committed."""
    data_path, state_path = paths
    assert spec.sha256 is not None
    if committed == 0:
        return None
    digest, pos = hashlib.sha256(), 0
    async for data in _bounded(blobs.read_fill(spec.sha256, spec.size), committed):
        await asyncio.to_thread(digest.update, data)
        pos += len(data)
    if pos < committed:
        raise StoreError(f"{spec.path}: the shared fill lost its committed bytes from {pos} (start it again)")
    async with locked(data_path) as fd:
        state = TransferState.load(state_path, spec.size, spec.key) if os.fstat(fd).st_size == spec.size else None
        if state is None:
            state = TransferState.plan(spec.size, spec.key, part_size)
            os.ftruncate(fd, spec.size)
        mark_written(state, committed)
        state.save(state_path)
    return Hashed(committed, digest)


async def shared_bytes(blobs: BlobStore, spec: FileSpec, start: int, end: int) -> AsyncIterator[bytes]:
    """Bytes [start, end) of ``spec``'s content, committed to its fill in the shared store: from the fill's chunks
    while they are there, then from the blob once it is published (StoreError if it is not)."""
    assert spec.sha256 is not None
    async for data in _bounded(blobs.read_fill(spec.sha256, spec.size, start), end - start):
        start += len(data)
        yield data
    if start < end:
        async for data in blobs.read(spec.sha256, start, end):
            yield data


async def _bounded(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """At most ``limit`` bytes of ``chunks``."""
    async for data in chunks:
        if limit <= 0:
            return
        yield data[:limit]
        limit -= len(data)


class _Copy:
    """A follower's copy of the committed bytes in its partial file (descriptor ``fd``), hashed as it grows."""

    def __init__(self, fd: int, part: Part, readers: Readers) -> None:
        self.fd, self.part, self.readers = fd, part, readers
        self.digest = hashlib.sha256()

    async def take(self, chunks: AsyncIterator[bytes]) -> None:
        async for data in chunks:
            await asyncio.to_thread(os.pwrite, self.fd, data, self.part.done)
            self.digest.update(data)
            self.part.done += len(data)
            self.readers.local.safe(self.part.done)  # hashed, and committed to the bucket
            self.readers.changed()


async def follow(blobs: BlobStore, inflight: CatalogInFlight, spec: FileSpec, owner: str,
                 paths: tuple[Path, Path], readers: Readers | None, part_size: int) -> Lease | None:
    """Copy the leader's committed bytes into the partial file ``paths`` as they grow, ``readers`` following
    them; None once all of them are there and match the sha256 (the blob is published). If the leader's lease
    runs out first, this replica's lease once it took the fill over (the partial file's state saved). Without
    ``readers`` nothing is copied: None once the blob is published, or the lease taken over.

    Raises TransferFailedError when the leader's fill failed, or the bytes do not verify."""
    assert spec.sha256 is not None
    if readers is None:
        return await _until_published(blobs, inflight, spec, owner, None)
    data_path, state_path = paths
    part = Part(0, spec.size)
    readers.bind([part], lambda pos: None)
    async with locked(data_path) as fd:
        state_path.unlink(missing_ok=True)
        os.ftruncate(fd, spec.size)
        lease = await _until_published(blobs, inflight, spec, owner, _Copy(fd, part, readers))
        if lease is not None:
            state = TransferState.plan(spec.size, spec.key, part_size)
            mark_written(state, part.done)
            state.save(state_path)
        return lease


async def _until_published(blobs: BlobStore, inflight: CatalogInFlight, spec: FileSpec, owner: str,
                           copy: _Copy | None) -> Lease | None:
    """Follow the lease of ``spec``'s content (``copy``: copying what its leader commits) until the blob is
    published (None) or this replica took the lease over (its lease)."""
    assert spec.sha256 is not None
    while True:
        found = await inflight.look(spec.key)
        if found is None or found.state == "failed":
            raise TransferFailedError(f"{spec.path}: the replica filling it failed"
                                      + (f": {found.error}" if found is not None and found.error else ""))
        if found.state == "done":
            if copy is not None:
                await copy.take(blobs.read(spec.sha256, copy.part.done))
                if copy.part.done != spec.size or copy.digest.hexdigest() != spec.sha256:
                    raise TransferFailedError(f"{spec.path}: the bytes streamed from the shared store did not "
                                              f"verify ({copy.part.done} of {spec.size})")
            return None
        if copy is not None and found.committed > copy.part.done:
            await copy.take(_bounded(blobs.read_fill(spec.sha256, spec.size, copy.part.done),
                                     found.committed - copy.part.done))
            continue
        if found.until <= datetime.now(timezone.utc):
            lease = await inflight.claim(spec.key, owner, spec.size)
            if lease.leader:
                return lease
            continue
        await inflight.changed(spec.key)  # the leader's next commit, or its lease running out
