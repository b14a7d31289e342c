"""The workers of one file's download: every source's connections take parts from one shared queue.

Each source has its own workers (bounded by its own semaphore), so a faster source takes more parts:
shares follow speed. When the queue is empty, an idle worker may split the part another source is
still fetching and take its untouched end, sized so that both finish together (the tail is not held
by the slower source). A source that keeps failing is dropped from the file and its parts go back to
the queue; the file fails only when every source has failed. With one source there is no splitting.
"""

from __future__ import annotations

import asyncio
import errno
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import aiohttp

from mreg.registry.errors import (
    IntegrityError,
    MregError,
    StoreError,
    UpstreamError,
    UpstreamUnavailableError,
    first_error,
)
from mreg.registry.upstream.client import FileLocation
from mreg.registry.upstream.http import LocationExpiredError
from mreg.registry.download.hasher import PrefixHasher
from mreg.registry.download.state import Part, TransferState

MiB = 1024 * 1024
RECHECK = 0.25
"""Seconds an idle worker waits before looking again for a part to split."""
LIVE_RATE_AFTER = 1.0
"""Seconds of a running fetch before its own speed is trusted over its source's average."""


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


class _Truncated(Exception):
    pass


@dataclass(eq=False)
class _Run:
    """A source while it serves this file."""

    source: Source
    fetched: int = 0
    rate: float = 0.0
    """Bytes per second of one connection (moving average of finished fetches; 0 = not known yet)."""
    error: MregError | None = None
    location: FileLocation | None = None
    locate_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def observe(self, nbytes: int, seconds: float) -> None:
        if nbytes > 0 and seconds > 0:
            sample = nbytes / seconds
            self.rate = sample if not self.rate else 0.7 * self.rate + 0.3 * sample


@dataclass(eq=False)
class _Claim:
    """A part being fetched by one worker of ``run``."""

    part: Part
    run: _Run
    worker: asyncio.Task[None] | None
    started: float
    done_at_start: int

    def speed(self, now: float) -> float | None:
        """Bytes per second this fetch is making (its source's average early on; None if unknown)."""
        elapsed = now - self.started
        if elapsed < LIVE_RATE_AFTER:
            return self.run.rate or None
        return (self.part.done - self.done_at_start) / elapsed


class FileJob:
    """The workers and the hasher of one file's download from one or more sources."""

    def __init__(self, sources: Sequence[Source], spec: FileSpec, fd: int, state: TransferState,
                 state_path: Path, tuning: Tuning, advance: Advance, on_prefix: Advance) -> None:
        self.spec, self.fd, self.state, self.state_path = spec, fd, state, state_path
        self.tuning, self.advance, self._on_prefix = tuning, advance, on_prefix
        self.runs = [_Run(source) for source in sources]
        self.hasher = PrefixHasher(fd, spec.size, git_sha1=spec.sha256 is None)
        self._pending = deque(p for p in state.parts if not p.complete)
        self._claims: list[_Claim] = []
        self._changed = asyncio.Condition()
        self._reported_prefix = 0
        self._progress = asyncio.Event()
        self._workers_done = False
        self._last_save = time.monotonic()

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
            workers = min(self.tuning.connections, len(self._pending))
            try:
                async with asyncio.TaskGroup() as group:
                    for run in self.runs:
                        run.tasks = [group.create_task(self._worker(run)) for _ in range(workers)]
            except BaseExceptionGroup as failed:
                raise first_error(failed) from None
        finally:
            self._workers_done = True
            self._progress.set()
            self._save()
            await hasher
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
            if prefix > self._reported_prefix:
                self._reported_prefix = prefix
                self._on_prefix(prefix)
            if prefix > self.hasher.hashed:
                await self.hasher.advance(prefix)
            elif self._workers_done:
                return
            else:
                await self._progress.wait()

    # -- workers ---------------------------------------------------------------------------

    async def _worker(self, run: _Run) -> None:
        while self._pending or self._claims:
            if not self._pending:
                await self._wait_for_change()
                if not self._pending and not self._splittable(run):
                    continue
            async with run.source.slots:
                claim = self._claim(run)
                if claim is None:
                    continue
                try:
                    await self._fetch_part(claim)
                except (UpstreamError, IntegrityError) as exc:
                    self._drop(run, exc)
                    return
                finally:
                    await self._release(claim)

    async def _wait_for_change(self) -> None:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait(), RECHECK)
            except TimeoutError:
                pass

    def _claim(self, run: _Run) -> _Claim | None:
        """The next part for a worker of ``run``: from the queue, else the end of another source's part."""
        if self._pending:
            part: Part | None = self._pending.popleft()
        else:
            part = self._split(run)
        if part is None:
            return None
        claim = _Claim(part, run, asyncio.current_task(), time.monotonic(), part.done)
        self._claims.append(claim)
        return claim

    async def _release(self, claim: _Claim) -> None:
        self._claims.remove(claim)
        if not claim.part.complete:
            self._pending.appendleft(claim.part)
        async with self._changed:
            self._changed.notify_all()

    def _drop(self, run: _Run, exc: MregError) -> None:
        """Stop using ``run`` for this file; its other workers give their parts back to the queue."""
        run.error = exc
        current = asyncio.current_task()
        for task in run.tasks:
            if task is not current:
                task.cancel()

    def _splittable(self, run: _Run) -> bool:
        return self._best_split(run) is not None

    def _best_split(self, run: _Run) -> tuple[_Claim, int] | None:
        """The other source's claim that would end last, and how many of its bytes ``run`` should take
        so both end together; None when no such share is worth a request."""
        now, best, best_end = time.monotonic(), None, 0.0
        for claim in self._claims:
            if claim.run is run:
                continue
            remaining = claim.part.size - claim.part.done
            theirs = claim.speed(now)
            mine = run.rate or theirs or 1.0
            theirs = mine if theirs is None else theirs
            take = remaining if theirs <= 0 else int(remaining * mine / (mine + theirs))
            if take < self.tuning.min_split and not (theirs <= 0 < take):
                continue
            ends = remaining / theirs if theirs > 0 else float("inf")
            if best is None or ends > best_end:
                best, best_end = (claim, take), ends
        return best

    def _split(self, run: _Run) -> Part | None:
        """Cut the end off the part that would end last and return it as a new part (saved in the state).

        Taking all that is left of a stalled fetch also stops its worker, which may be waiting out
        its source's retries (the part is complete: nothing goes back to the queue)."""
        found = self._best_split(run)
        if found is None:
            return None
        claim, take = found
        part = claim.part
        cut = part.offset + part.size - take
        tail = Part(cut, take)
        part.size = cut - part.offset
        index = next(i for i, p in enumerate(self.state.parts) if p is part)
        self.state.parts.insert(index + 1, tail)
        if part.complete and claim.worker is not None:
            claim.worker.cancel()
        return tail

    async def _location(self, run: _Run) -> FileLocation:
        async with run.locate_lock:
            if run.location is None:
                run.location = await run.source.locate()
            return run.location

    async def _fetch_part(self, claim: _Claim) -> None:
        part, run = claim.part, claim.run
        failures, reason = 0, ""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.tuning.stall_timeout,
                                        sock_read=self.tuning.stall_timeout)
        while not part.complete:
            before, started = part.done, time.monotonic()
            try:
                location = await self._location(run)
                end = part.offset + part.size
                resp = await run.source.client.open_range(location, part.offset + part.done, end, timeout)
                try:
                    await self._receive(resp, run, part, end)
                finally:
                    resp.release()
                run.observe(part.done - before, time.monotonic() - started)
                if not part.complete:
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
            failures = 0 if part.done > before else failures + 1
            if failures >= self.tuning.attempts_without_progress:
                raise UpstreamUnavailableError(f"{self.spec.path}: download failed {failures} times in a row ({reason})")
            if failures:
                await asyncio.sleep(min(self.tuning.backoff * 2 ** (failures - 1), 20.0))

    async def _receive(self, resp: aiohttp.ClientResponse, run: _Run, part: Part, asked_end: int) -> None:
        """Write the body at the part's offset; stop early when another source took the part's end."""
        async for chunk in resp.content.iter_any():
            position = part.offset + part.done
            if len(chunk) > asked_end - position:
                raise UpstreamError(f"{self.spec.path}: upstream sent more bytes than the range asked for")
            view = memoryview(chunk)[: part.size - part.done]
            wanted = len(view)
            while view:
                try:
                    written = os.pwrite(self.fd, view, part.offset + part.done)
                except OSError as exc:
                    raise store_error(self.spec, exc) from exc
                part.done += written
                view = view[written:]
            run.fetched += len(chunk)
            self.advance(wanted)
            if self.tuning.throttle is not None:
                await self.tuning.throttle(len(chunk))
            self._progress.set()
            if time.monotonic() - self._last_save >= self.tuning.state_interval:
                self._save()
            if part.complete:
                return

    def _save(self) -> None:
        if self.state.completed < self.state.size:
            file_op(self.spec, self.state.save, self.state_path)
        self._last_save = time.monotonic()

