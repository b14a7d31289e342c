"""Which bytes each connection of a file's download fetches next: parts, sources and rates, no I/O.

The contract (sans-I/O, in the spirit of h11): the caller owns the connections, the sockets and the
clock; it tells the scheduler what happened and asks what to do, passing ``now`` (seconds, monotonic)
with every question that depends on time.

    step = scheduler.next(source, now, waited)   # a connection without a part: CLAIM, WAIT or STOP
    claim = scheduler.claim(source, now)         # (holding a slot of the source) claim.fetch: bytes [start, end)
                                                 # of a part; claim.stop: a fetch left with nothing; or None
    scheduler.wrote(fetch, n)                    # n bytes were written at fetch.start
    scheduler.observe(source, nbytes, seconds)   # one response of the source ended normally
    scheduler.release(fetch)                     # the connection is done with it (complete or not)
    scheduler.fail(source)                       # the source is out: it gets no more parts
    scheduler.prefer(pos)                        # a reader waits for byte pos: fetch it next

Every source's connections take parts from one queue, so a faster source takes more of them: shares
follow speed. When the queue is empty, a connection that has waited (``WAIT``: until another fetch is
released, or ``RECHECK`` seconds) may take the untouched end of the part another source is fetching,
sized so that both end together; when that is all that was left, the other fetch is told to stop (it
may be stalled). A part released incomplete goes back to the front of the queue. With one source
nothing is split, unless a reader of the partial file waits for a byte further on (``prefer``): the part
holding it is cut there and its end goes to the front of the queue.
"""

from __future__ import annotations

import enum
from bisect import bisect_right
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from mreg.registry.download.state import Part

RECHECK = 0.25
"""Seconds a connection without a part waits before looking again for a part to split."""
LIVE_RATE_AFTER = 1.0
"""Seconds of a running fetch before its own speed is trusted over its source's average."""


class Next(enum.Enum):
    """What a connection without a part does next."""

    CLAIM = "claim"
    """There is work: take a slot of the source, then ``claim``."""
    WAIT = "wait"
    """Nothing for it yet: wait until a fetch is released or ``RECHECK`` seconds pass, then ask again."""
    STOP = "stop"
    """Nothing left for this source: the connection ends."""


@dataclass(eq=False)
class Fetch:
    """A part being fetched by one connection of ``source``: bytes ``[start, end)`` are still wanted.

    ``end`` moves down when another source takes the part's end; the connection stops reading there."""

    source: str
    part: Part
    started: float
    done_at_start: int

    @property
    def start(self) -> int:
        return self.part.offset + self.part.done

    @property
    def end(self) -> int:
        return self.part.offset + self.part.size

    @property
    def remaining(self) -> int:
        return max(self.end - self.start, 0)


@dataclass(frozen=True)
class Claim:
    """A decision: fetch ``fetch``; ``stop``, if any, is another source's fetch whose whole remainder
    ``fetch`` took over (its connection should stop: nothing is left for it)."""

    fetch: Fetch
    stop: Fetch | None = None


class Scheduler:
    """The parts of one file and the connections fetching them, over one or more sources."""

    def __init__(self, parts: list[Part], sources: Iterable[str], min_split: int) -> None:
        """``parts`` tile the file in order (a ``TransferState``'s list: split tails are inserted into it);
        ``min_split`` is the smallest end of another source's part worth a request of its own."""
        self.parts = parts
        self.min_split = min_split
        self.rates = dict.fromkeys(sources, 0.0)
        """Bytes per second of one connection of each source (moving average of its responses; 0 = unknown)."""
        self._failed: set[str] = set()
        self._queue = deque(p for p in parts if not p.complete)
        self._fetches: list[Fetch] = []

    @property
    def queued(self) -> int:
        """How many parts wait for a connection."""
        return len(self._queue)

    @property
    def finished(self) -> bool:
        """Nothing waits and nothing is being fetched (every part is complete, or every source failed)."""
        return not self._queue and not self._fetches

    def next(self, source: str, now: float, waited: bool) -> Next:
        """What a connection of ``source`` without a part does; ``waited``: it has just waited (only then
        does it look for another source's part to split, so one finishing fetch does not cut at once)."""
        if self.finished or source in self._failed:
            return Next.STOP
        if self._queue or (waited and self._best_split(source, now) is not None):
            return Next.CLAIM
        return Next.WAIT

    def claim(self, source: str, now: float) -> Claim | None:
        """The next part for a connection of ``source``: from the queue, else the end of another
        source's part; None when there is none worth a request."""
        if source in self._failed:
            return None
        stop = None
        if self._queue:
            part = self._queue.popleft()
        else:
            found = self._split(source, now)
            if found is None:
                return None
            part, stop = found
        fetch = Fetch(source, part, now, part.done)
        self._fetches.append(fetch)
        return Claim(fetch, stop)

    def wrote(self, fetch: Fetch, nbytes: int) -> None:
        """``nbytes`` of ``fetch`` were written at ``fetch.start`` (the caller writes at most ``fetch.remaining``)."""
        fetch.part.done += nbytes

    def observe(self, source: str, nbytes: int, seconds: float) -> None:
        """One response of ``source`` brought ``nbytes`` in ``seconds``."""
        if nbytes > 0 and seconds > 0:
            sample, rate = nbytes / seconds, self.rates[source]
            self.rates[source] = sample if not rate else 0.7 * rate + 0.3 * sample

    def release(self, fetch: Fetch) -> None:
        """The connection is done with ``fetch``; what it did not fetch goes back to the front of the queue."""
        self._fetches.remove(fetch)
        if not fetch.part.complete:
            self._queue.appendleft(fetch.part)

    def fail(self, source: str) -> None:
        """``source`` is out of this file: it gets no more parts (its fetches are still released)."""
        self._failed.add(source)

    def prefer(self, pos: int) -> bool:
        """Have byte ``pos`` fetched next: the part holding it goes to the front of the queue, cut at ``pos``
        when that leaves at least ``min_split`` unwritten bytes before it (a part being fetched is cut
        the same way: its connection stops at the cut). A file of one part is never cut: a server that
        ignores Range (ModelScope's own files) answers only a request for the file's tail, and a file of
        several parts already needs one that honours it. True when a part went to the front (not already
        there)."""
        index = bisect_right(self.parts, pos, key=lambda p: p.offset) - 1
        if index < 0 or pos >= self.parts[index].offset + self.parts[index].size:
            return False
        part = self.parts[index]
        unwritten = part.offset + part.done
        if pos < unwritten or not self._queue and not self._fetches:
            return False
        if pos - unwritten >= self.min_split and len(self.parts) > 1:
            tail = Part(pos, part.offset + part.size - pos)
            part.size = pos - part.offset
            self.parts.insert(index + 1, tail)
            self._queue.appendleft(tail)
            return True
        if part in self._queue and self._queue[0] is not part:
            self._queue.remove(part)
            self._queue.appendleft(part)
            return True
        return False

    def speed(self, fetch: Fetch, now: float) -> float | None:
        """Bytes per second ``fetch`` is making (its source's average early on; None if unknown)."""
        elapsed = now - fetch.started
        if elapsed < LIVE_RATE_AFTER:
            return self.rates[fetch.source] or None
        return (fetch.part.done - fetch.done_at_start) / elapsed

    def _best_split(self, source: str, now: float) -> tuple[Fetch, int] | None:
        """The other source's fetch that would end last, and how many of its bytes ``source`` should take
        so both end together; None when no such share is worth a request."""
        best, best_end = None, 0.0
        for fetch in self._fetches:
            if fetch.source == source:
                continue
            remaining = fetch.part.size - fetch.part.done
            theirs = self.speed(fetch, now)
            mine = self.rates[source] or theirs or 1.0
            theirs = mine if theirs is None else theirs
            take = remaining if theirs <= 0 else int(remaining * mine / (mine + theirs))
            if take < self.min_split and not (theirs <= 0 < take):
                continue
            ends = remaining / theirs if theirs > 0 else float("inf")
            if best is None or ends > best_end:
                best, best_end = (fetch, take), ends
        return best

    def _split(self, source: str, now: float) -> tuple[Part, Fetch | None] | None:
        """Cut the end off the part that would end last and return it as a new part (inserted in
        ``parts``), with the fetch that has nothing left when the cut took all of it."""
        found = self._best_split(source, now)
        if found is None:
            return None
        victim, take = found
        part = victim.part
        cut = part.offset + part.size - take
        tail = Part(cut, take)
        part.size = cut - part.offset
        index = next(i for i, p in enumerate(self.parts) if p is part)
        self.parts.insert(index + 1, tail)
        return tail, victim if part.complete else None
