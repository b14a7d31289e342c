"""Downloading one file over many Range connections into the store, resumably and verified.

The partial file is pre-sized and written at part offsets; its progress (``state.TransferState``) is
saved beside it, so a killed process resumes where it stopped. A per-file lock (``flock``) keeps two
processes from writing the same partial. The contiguous prefix is hashed while the rest arrives; the
blob is published (renamed into the store) only when its size and hash match what upstream announced.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from ..errors import IntegrityError, StoreError, UpstreamError, UpstreamUnavailableError
from ..hub.client import FileLocation, HubClient, LocationExpiredError
from ..store import Store
from .hasher import PrefixHasher
from .state import Part, TransferState

MiB = 1024 * 1024
LOCK_POLL = 0.2


@dataclass(frozen=True)
class Tuning:
    """Knobs of the downloader; the defaults come from bench/ and tests shrink the timeouts."""

    connections: int = 32
    min_part: int = 8 * MiB
    max_part: int = 16 * MiB
    stall_timeout: float = 30.0
    state_interval: float = 0.1
    attempts_without_progress: int = 6
    backoff: float = 0.5
    throttle: Callable[[int], Awaitable[None]] | None = None
    """Awaited with each chunk's size as it is received (a shared bandwidth cap); None: full speed."""

    def part_size(self, size: int) -> int:
        return min(max(size // (2 * self.connections), self.min_part), self.max_part)


@dataclass(frozen=True)
class FileSpec:
    """What upstream announced for a file: the bytes must match this to be published."""

    path: str
    size: int
    git_oid: str
    sha256: str | None = None

    @property
    def key(self) -> str:
        """Names the partial download: the same content resumes whichever repo asks for it."""
        return self.sha256 or f"git-{self.git_oid}"


@dataclass(frozen=True)
class Downloaded:
    sha256: str
    fetched: int


Locate = Callable[[], Awaitable[FileLocation]]
Advance = Callable[[int], None]


async def download_file(client: HubClient, spec: FileSpec, locate: Locate, store: Store,
                        slots: asyncio.Semaphore, tuning: Tuning = Tuning(),
                        advance: Advance = lambda n: None, on_prefix: Advance = lambda n: None) -> Downloaded:
    """Fetch, verify and publish one file into the store; return its sha256 and the bytes fetched.

    ``slots`` bounds the connections in use across every file of a pull; ``advance`` is told about
    every byte that lands (including bytes a resumed download already had). ``on_prefix`` is told the
    length of the partial file's contiguous written prefix whenever it grows: a reader may stream
    those bytes from the partial file (``Store.partial_paths(spec.key)[0]``, the same inode as the
    published blob), but they are verified only once this function returns.
    """
    if spec.sha256 and store.has_blob(spec.sha256, spec.size):
        return Downloaded(spec.sha256, 0)
    data_path, state_path = store.partial_paths(spec.key)
    async with _locked(data_path) as fd:
        if spec.sha256 and store.has_blob(spec.sha256, spec.size):
            return Downloaded(spec.sha256, 0)
        state = TransferState.load(state_path, spec.size, spec.key)
        if state is None or os.fstat(fd).st_size != spec.size:
            state = TransferState.plan(spec.size, spec.key, tuning.part_size(spec.size))
            _io(spec, os.ftruncate, fd, 0)
            _io(spec, os.ftruncate, fd, spec.size)
        advance(state.completed)
        job = _FileJob(client, spec, locate, fd, state, state_path, tuning, advance, on_prefix)
        await job.run(slots)
        sha256 = _verify(spec, job.hasher, data_path, state_path)
        store.publish_blob(data_path, sha256)
        state_path.unlink(missing_ok=True)
        return Downloaded(sha256, job.fetched)


def _verify(spec: FileSpec, hasher: PrefixHasher, data_path: Path, state_path: Path) -> str:
    """Compare the hashes with what upstream announced; on a mismatch discard the bytes and raise."""
    if spec.sha256 is not None:
        expected, got, kind = spec.sha256, hasher.sha256, "sha256"
    else:
        expected, got, kind = spec.git_oid, hasher.git_sha1, "git sha1"
    if got != expected:
        data_path.unlink(missing_ok=True)
        state_path.unlink(missing_ok=True)
        raise IntegrityError(f"{spec.path}: {kind} mismatch (expected {expected}, got {got}); "
                             f"the bad bytes were discarded")
    return hasher.sha256


def _store_error(spec: FileSpec, exc: OSError) -> StoreError:
    what = "disk full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
    return StoreError(f"{spec.path}: cannot write the partial download ({what})")


def _io(spec: FileSpec, fn: Callable[..., object], *args: object) -> None:
    """Run a file operation, translating OSError into a one-line StoreError."""
    try:
        fn(*args)
    except OSError as exc:
        raise _store_error(spec, exc) from exc


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


class _Truncated(Exception):
    pass


class _FileJob:
    """The workers and the hasher of one file's download."""

    def __init__(self, client: HubClient, spec: FileSpec, locate: Locate, fd: int, state: TransferState,
                 state_path: Path, tuning: Tuning, advance: Advance, on_prefix: Advance) -> None:
        self.client, self.spec, self._locate, self.fd = client, spec, locate, fd
        self.state, self.state_path, self.tuning, self.advance = state, state_path, tuning, advance
        self._on_prefix = on_prefix
        self._reported_prefix = 0
        self.hasher = PrefixHasher(fd, spec.size, git_sha1=spec.sha256 is None)
        self.fetched = 0
        self._location: FileLocation | None = None
        self._locate_lock = asyncio.Lock()
        self._progress = asyncio.Event()
        self._workers_done = False
        self._last_save = time.monotonic()

    async def run(self, slots: asyncio.Semaphore) -> None:
        pending = deque(p for p in self.state.parts if not p.complete)
        hasher = asyncio.create_task(self._hash_loop())
        try:
            workers = [self._worker(pending, slots) for _ in range(min(self.tuning.connections, len(pending)))]
            await asyncio.gather(*workers)
        finally:
            self._workers_done = True
            self._progress.set()
            self._save()
            await hasher

    async def _hash_loop(self) -> None:
        while self.hasher.hashed < self.spec.size:
            self._progress.clear()
            prefix = self.state.contiguous_prefix()
            if prefix > self._reported_prefix:
                self._reported_prefix = prefix
                self._on_prefix(prefix)
            if prefix > self.hasher.hashed:
                await self.hasher.advance(prefix)
            elif self._workers_done:
                return
            else:
                await self._progress.wait()

    async def _worker(self, pending: deque[Part], slots: asyncio.Semaphore) -> None:
        while pending:
            part = pending.popleft()
            async with slots:
                await self._fetch_part(part)

    async def _current_location(self) -> FileLocation:
        async with self._locate_lock:
            if self._location is None:
                self._location = await self._locate()
            return self._location

    async def _fetch_part(self, part: Part) -> None:
        failures, reason = 0, ""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.tuning.stall_timeout,
                                        sock_read=self.tuning.stall_timeout)
        while not part.complete:
            before = part.done
            try:
                location = await self._current_location()
                resp = await self.client.open_range(location, part.offset + part.done, part.offset + part.size, timeout)
                try:
                    await self._receive(resp, part)
                finally:
                    resp.release()
                if not part.complete:
                    raise _Truncated()
            except LocationExpiredError:
                reason = "the signed URL expired"
                async with self._locate_lock:
                    if self._location is location:
                        self._location = None
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, asyncio.TimeoutError,
                    _Truncated) as exc:
                reason = "stalled" if isinstance(exc, asyncio.TimeoutError) else "connection cut mid-body"
            else:
                return
            failures = 0 if part.done > before else failures + 1
            if failures >= self.tuning.attempts_without_progress:
                raise UpstreamUnavailableError(f"{self.spec.path}: download failed {failures} times in a row ({reason})")
            if failures:
                await asyncio.sleep(min(self.tuning.backoff * 2 ** (failures - 1), 20.0))

    async def _receive(self, resp: aiohttp.ClientResponse, part: Part) -> None:
        async for chunk in resp.content.iter_any():
            if len(chunk) > part.size - part.done:
                raise UpstreamError(f"{self.spec.path}: upstream sent more bytes than the range asked for")
            view = memoryview(chunk)
            while view:
                try:
                    written = os.pwrite(self.fd, view, part.offset + part.done)
                except OSError as exc:
                    raise _store_error(self.spec, exc) from exc
                part.done += written
                view = view[written:]
            self.fetched += len(chunk)
            self.advance(len(chunk))
            if self.tuning.throttle is not None:
                await self.tuning.throttle(len(chunk))
            self._progress.set()
            if time.monotonic() - self._last_save >= self.tuning.state_interval:
                self._save()

    def _save(self) -> None:
        if self.state.completed < self.state.size:
            _io(self.spec, self.state.save, self.state_path)
        self._last_save = time.monotonic()
