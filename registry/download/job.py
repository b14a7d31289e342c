"""The I/O shell of one file's download: workers, ranged GETs, ``pwrite``, throttling, state saves.

Which bytes each worker fetches is decided by ``scheduler.Scheduler`` (parts, splits, rates); this
module asks it and does the fetching. Each source has its own workers (bounded by its own semaphore).
A source that keeps failing is dropped from the file and its parts go back to the queue; the file fails
only when every source has failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import aiohttp

from mreg.registry.errors import (
    IntegrityError,
    LocationExpiredError,
    MregError,
    StoreError,
    UpstreamError,
    UpstreamUnavailableError,
    first_error,
)
from mreg.registry.upstream.client import FileLocation
from mreg.registry.download.body import body_chunks
from mreg.registry.download.hasher import Hashed, PrefixHasher
from mreg.registry.download.readers import Readers
from mreg.registry.download.scheduler import RECHECK, Fetch, Next, Scheduler
from mreg.registry.download.state import TransferState
from mreg.registry.waiting import within

MiB = 1024 * 1024
READ_SIZE = MiB // 2
"""The most a body read takes from the socket at once (asyncio reads 256 KiB): half the receive loop's turns
for the same bytes, each of them Python (aiohttp's protocol, the loop, a ``pwrite``). 1 MiB cost no less CPU
and took peak RSS of a 16-connection pull from ~118 MB to ~152 MB (bench/pull_bench.py, 1.5 GB)."""


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
    min_split: int = 256 * 1024
    """Smallest end of another source's part an idle worker takes over (one more request)."""
    throttle: Callable[[int], Awaitable[None]] | None = None
    """Awaited with each chunk's size as it is received (a shared bandwidth cap); None: full speed."""

    def part_size(self, size: int, sources: int = 1) -> int:
        """About two parts per connection of every source, within [min_part / sources, max_part]."""
        return min(max(size // (2 * self.connections * sources), self.min_part // sources), self.max_part)


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


class RangeClient(Protocol):
    """What a source's client does: open bytes ``[start, end)`` of a located file (every upstream client's contract)."""

    async def open_range(self, location: FileLocation, start: int, end: int,
                         timeout: aiohttp.ClientTimeout) -> aiohttp.ClientResponse: ...


Locate = Callable[[], Awaitable[FileLocation]]
Advance = Callable[[int], None]


@dataclass(frozen=True)
class Source:
    """One upstream holding the file's bytes: ``locate`` says where, ``client`` fetches ranges there,
    ``slots`` bounds the connections to it (shared by every file of a pull)."""

    name: str
    client: RangeClient
    locate: Locate
    slots: asyncio.Semaphore


def store_error(spec: FileSpec, exc: OSError) -> StoreError:
    what = "disk full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
    return StoreError(f"{spec.path}: cannot write the partial download ({what})")


def file_op(spec: FileSpec, fn: Callable[..., object], *args: object) -> None:
    """Run a file operation, translating OSError into a one-line StoreError."""
    try:
        fn(*args)
    except OSError as exc:
        raise store_error(spec, exc) from exc


def _read_large(resp: aiohttp.ClientResponse) -> None:
    """Have the response's connection read up to ``READ_SIZE`` per call (asyncio's socket transports; others
    are left as they are). The connection keeps it when it goes back to the pool: it serves ranged GETs."""
    transport = resp.connection.transport if resp.connection is not None else None
    if transport is not None and hasattr(transport, "max_size"):
        transport.max_size = READ_SIZE


class _Truncated(Exception):
    pass


@dataclass(eq=False)
class _Run:
    """A source while it serves this file."""

    source: Source
    fetched: int = 0
    error: MregError | None = None
    location: FileLocation | None = None
    locate_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class FileJob:
    """The workers and the hasher of one file's download from one or more sources."""

    def __init__(self, sources: Sequence[Source], spec: FileSpec, fd: int, state: TransferState,
                 state_path: Path, tuning: Tuning, advance: Advance, on_prefix: Advance,
                 readers: Readers | None = None, hashed: Hashed | None = None) -> None:
        self.spec, self.fd, self.state, self.state_path = spec, fd, state, state_path
        self.tuning, self.advance, self._on_prefix = tuning, advance, on_prefix
        self.runs = [_Run(source) for source in sources]
        self.hasher = PrefixHasher(fd, spec.size, git_sha1=spec.sha256 is None, from_=hashed)
        self.scheduler = Scheduler(state.parts, (source.name for source in sources), tuning.min_split)
        self._fetching: dict[Fetch, asyncio.Task[object]] = {}
        """The worker task fetching each fetch (to stop it when another source took all it had left)."""
        self._changed = asyncio.Condition()
        self._progress = asyncio.Event()
        self._workers_done = False
        self._last_save = time.monotonic()
        self._group: asyncio.TaskGroup | None = None
        self.readers = readers or Readers()
        self.readers.bind(state.parts, self._want)

    @property
    def fetched(self) -> int:
        return sum(run.fetched for run in self.runs)

    def fetched_by_source(self) -> dict[str, int]:
        return {run.source.name: run.fetched for run in self.runs}

    def dropped_sources(self) -> dict[str, str]:
        """The sources that failed and were left out, with why."""
        return {run.source.name: str(run.error) for run in self.runs if run.error is not None}

    async def run(self) -> None:
        """Fetch every missing part; raise when a part cannot be had from any source."""
        hasher = asyncio.create_task(self._hash_loop())
        try:
            workers = min(self.tuning.connections, self.scheduler.queued)
            try:
                async with asyncio.TaskGroup() as group:
                    self._group = group
                    for run in self.runs:
                        run.tasks = [group.create_task(self._worker(run)) for _ in range(workers)]
            except BaseExceptionGroup as failed:
                raise first_error(failed) from None
        finally:
            self._group = None
            self._workers_done = True
            self._progress.set()
            try:
                self._save()
            finally:  # the hasher must be done before the caller closes the descriptor it reads
                hashed = await asyncio.gather(hasher, return_exceptions=True)
        if isinstance(hashed[0], BaseException):
            raise hashed[0]
        if any(not part.complete for part in self.state.parts):
            raise self._failure()

    def _failure(self) -> MregError:
        errors = [run.error for run in self.runs if run.error is not None]
        if len(errors) == 1:
            return errors[0]
        detail = "; ".join(f"{run.source.name}: {run.error}" for run in self.runs)
        return UpstreamUnavailableError(f"{self.spec.path}: every source failed ({detail})")

    async def _hash_loop(self) -> None:
        while self.hasher.hashed < self.spec.size:
            self._progress.clear()
            prefix = self.state.contiguous_prefix()
            if prefix > self.hasher.hashed:
                await self.hasher.advance(prefix)
                self._on_prefix(prefix)  # hashed: nothing of the download reads those bytes any more
            elif self._workers_done:
                return
            else:
                await self._progress.wait()

    # -- workers ---------------------------------------------------------------------------

    async def _worker(self, run: _Run) -> None:
        """One connection of ``run``: ask the scheduler, fetch what it hands out, until it says stop."""
        worker = asyncio.current_task()
        assert worker is not None, "workers run as tasks"
        name, waited = run.source.name, False
        while (step := self.scheduler.next(name, time.monotonic(), waited)) is not Next.STOP:
            waited = step is Next.WAIT
            if waited:
                await self._wait_for_change()
                continue
            async with run.source.slots:
                claim = self.scheduler.claim(name, time.monotonic())
                if claim is None:
                    continue
                if claim.stop is not None:  # it took all that was left of a fetch that may be stalled
                    self._fetching[claim.stop].cancel()
                fetch = claim.fetch
                self._fetching[fetch] = worker
                try:
                    await self._fetch(run, fetch)
                except (UpstreamError, IntegrityError) as exc:
                    self._drop(run, exc)
                    return
                finally:
                    await self._release(fetch)

    def _want(self, pos: int) -> None:
        """A reader waits for byte ``pos``: its part goes first and, while the workers run, a source below its
        connections gets a worker more to fetch it."""
        if not self.scheduler.prefer(pos) or self._group is None:
            return
        for run in self.runs:
            if run.error is None and sum(not task.done() for task in run.tasks) < self.tuning.connections:
                worker = self._worker(run)
                try:
                    run.tasks.append(self._group.create_task(worker))
                except RuntimeError:  # the group is shutting down: the download is failing
                    worker.close()  # never started: closed, so no "coroutine was never awaited"
                    return

    async def _wait_for_change(self) -> None:
        async with self._changed:
            try:
                await within(self._changed.wait(), RECHECK)
            except TimeoutError:
                pass

    async def _release(self, fetch: Fetch) -> None:
        del self._fetching[fetch]
        self.scheduler.release(fetch)
        async with self._changed:
            self._changed.notify_all()

    def _drop(self, run: _Run, exc: MregError) -> None:
        """Stop using ``run`` for this file; its other workers give their parts back to the queue."""
        run.error = exc
        self.scheduler.fail(run.source.name)
        current = asyncio.current_task()
        for task in run.tasks:
            if task is not current:
                task.cancel()

    async def _location(self, run: _Run) -> FileLocation:
        async with run.locate_lock:
            if run.location is None:
                run.location = await run.source.locate()
            return run.location

    async def _fetch(self, run: _Run, fetch: Fetch) -> None:
        """Fetch the rest of ``fetch``'s part from ``run``, retrying cut or stalled responses."""
        failures, reason = 0, ""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.tuning.stall_timeout,
                                        sock_read=self.tuning.stall_timeout)
        while fetch.remaining:
            before, started = fetch.start, time.monotonic()
            try:
                location = await self._location(run)
                end = fetch.end
                resp = await run.source.client.open_range(location, fetch.start, end, timeout)
                try:
                    await self._receive(resp, run, fetch, end)
                finally:
                    resp.release()
                self.scheduler.observe(run.source.name, fetch.start - before, time.monotonic() - started)
                if fetch.remaining:
                    raise _Truncated()
            except LocationExpiredError:
                reason = "the signed URL expired"
                async with run.locate_lock:
                    if run.location is location:
                        run.location = None
            except (TimeoutError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, _Truncated) as exc:
                reason = "stalled" if isinstance(exc, asyncio.TimeoutError) else "connection cut mid-body"
            else:
                return
            failures = 0 if fetch.start > before else failures + 1
            if failures >= self.tuning.attempts_without_progress:
                raise UpstreamUnavailableError(f"{self.spec.path}: download failed {failures} times in a row ({reason})")
            if failures:
                await asyncio.sleep(min(self.tuning.backoff * 2 ** (failures - 1), 20.0))

    async def _receive(self, resp: aiohttp.ClientResponse, run: _Run, fetch: Fetch, asked_end: int) -> None:
        """Write the body at the fetch's position; stop early when another source took the part's end."""
        _read_large(resp)
        async with contextlib.aclosing(body_chunks(resp)) as chunks:
            async for chunk in chunks:
                if len(chunk) > asked_end - fetch.start:
                    raise UpstreamError(f"{self.spec.path}: upstream sent more bytes than the range asked for")
                view = memoryview(chunk)[: fetch.remaining]
                wanted = len(view)
                while view:
                    try:
                        written = os.pwrite(self.fd, view, fetch.start)
                    except OSError as exc:
                        raise store_error(self.spec, exc) from exc
                    self.scheduler.wrote(fetch, written)
                    view = view[written:]
                run.fetched += len(chunk)
                self.advance(wanted)
                if self.tuning.throttle is not None:
                    await self.tuning.throttle(len(chunk))
                self._progress.set()
                self.readers.changed()
                if time.monotonic() - self._last_save >= self.tuning.state_interval:
                    self._save()
                if not fetch.remaining:
                    return

    def _save(self) -> None:
        if self.state.completed < self.state.size:
            file_op(self.spec, self.state.save, self.state_path)
        self._last_save = time.monotonic()

