"""FileJob's I/O loop played on a virtual clock: connections over capped links, for ``Scheduler`` tests.

Each link is shared by its source's connections (as the test hub's ``faults.bandwidth`` is); every
step of ``STEP`` seconds, each active connection receives its share and tells the scheduler. A
connection without a part asks ``next`` and waits as ``FileJob`` does (until a release or ``RECHECK``);
a fetch told to stop ends its connection, as ``FileJob`` cancels its worker; a link that dies fails
its source, whose connections give their parts back. Deterministic: no sockets, no sleeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from mreg.registry.download.scheduler import RECHECK, Claim, Fetch, Next, Scheduler

STEP = 0.005


@dataclass(frozen=True)
class Link:
    name: str
    bandwidth: float
    """Bytes per second across the source's connections (0: it accepts requests and sends nothing)."""
    connections: int = 8
    dies_after: int | None = None
    """Its source fails once it has sent this many bytes."""


@dataclass(eq=False)
class _Connection:
    link: Link
    fetch: Fetch | None = None
    response_started: float = 0.0
    response_bytes: int = 0
    wait_until: float | None = None
    waited: bool = False
    ended: bool = False


@dataclass
class Outcome:
    seconds: float
    sent: dict[str, int]
    """Bytes each source delivered."""
    claims: list[Claim] = field(default_factory=list)


def simulate(scheduler: Scheduler, links: Sequence[Link], limit: float = 120.0) -> Outcome:
    """Run the download to its end (every connection stopped); fail if it takes more than ``limit`` virtual seconds."""
    workers = scheduler.queued
    connections = [_Connection(link) for link in links for _ in range(min(link.connections, workers))]
    outcome = Outcome(0.0, {link.name: 0 for link in links})
    now, released = 0.0, False
    while not all(c.ended for c in connections):
        assert now < limit, f"not finished after {limit} virtual seconds"
        for connection in connections:
            if connection.fetch is None and not connection.ended:
                _ask(scheduler, connection, connections, outcome, now, released)
        released = False
        for link in links:
            active = [c for c in connections if c.link is link and c.fetch is not None]
            for connection in active:
                if connection.fetch is None:  # its source died during this step
                    continue
                released |= _receive(scheduler, connection, connections, outcome,
                                     int(link.bandwidth * STEP / len(active)), now + STEP)
        now += STEP
    outcome.seconds = now
    return outcome


def _ask(scheduler: Scheduler, connection: _Connection, connections: list[_Connection], outcome: Outcome,
         now: float, released: bool) -> None:
    """A connection without a part: wait on, stop, or claim (as ``FileJob._worker``)."""
    if connection.wait_until is not None and now < connection.wait_until and not released:
        return
    connection.wait_until = None
    step = scheduler.next(connection.link.name, now, connection.waited)
    connection.waited = step is Next.WAIT
    if step is Next.STOP:
        connection.ended = True
    elif step is Next.WAIT:
        connection.wait_until = now + RECHECK
    elif (claim := scheduler.claim(connection.link.name, now)) is not None:
        held = [c.fetch.part for c in connections if c.fetch is not None]
        assert all(part is not claim.fetch.part for part in held), "a part handed out twice"
        outcome.claims.append(claim)
        connection.fetch, connection.response_started, connection.response_bytes = claim.fetch, now, 0
        if claim.stop is not None:
            victim = next(c for c in connections if c.fetch is claim.stop)
            scheduler.release(claim.stop)
            victim.fetch, victim.ended = None, True


def _receive(scheduler: Scheduler, connection: _Connection, connections: list[_Connection], outcome: Outcome,
             share: int, now: float) -> bool:
    """One step of bytes for a fetching connection; whether a fetch was released. A connection notices
    that its fetch has nothing left only when bytes arrive (a stalled one never does)."""
    fetch, link = connection.fetch, connection.link
    assert fetch is not None
    if share == 0:
        return False
    n = min(share, fetch.remaining)
    if link.dies_after is not None and outcome.sent[link.name] + n > link.dies_after:
        scheduler.fail(link.name)
        for other in connections:
            if other.link is link and other.fetch is not None:
                scheduler.release(other.fetch)
            if other.link is link:
                other.fetch, other.ended = None, True
        return True
    scheduler.wrote(fetch, n)
    outcome.sent[link.name] += n
    connection.response_bytes += n
    if fetch.remaining:
        return False
    scheduler.observe(link.name, connection.response_bytes, now - connection.response_started)
    scheduler.release(fetch)
    connection.fetch = None
    return True
