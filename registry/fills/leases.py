"""``CatalogInFlight``: blob fill leases of replicas sharing one catalog and one blob store (#13), for the daemon's
transfers (its ``InFlight``) and mirror jobs' pulls alike.

A blob's lease is a row of the catalog (``registry.catalog.fill_leases``): the first replica to miss the blob
holds it and fills the shared store, the others follow (``Lease.shared``), streaming what it has committed there.
The holder renews its lease with a heartbeat every ``beat`` seconds, sending the bytes it noted as committed (at
once when they grow); a heartbeat refused (the fence moved on: another replica took the lease after it ran out)
marks the lease lost, and the holder stops. A lease runs out ``lease`` seconds after its last heartbeat, so a
killed holder's fill is taken over that long after its death. Followers look at the row again whenever the
catalog notifies a change of it (PostgreSQL's ``LISTEN``/``NOTIFY``, on a connection of this replica's own), and
every ``poll`` seconds anyway (the only wake-up on SQLite).

Content without a sha256 (``git-<oid>``: small files), content a live lease fills for another repo (a repo
gets content through its own upstream first, #14.4), and content whose lease the catalog cannot give (it is
unreachable) is filled by the caller alone (``shared`` False), as a lone daemon does.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mreg.registry.catalog.records import FillRecord
from mreg.registry.errors import CatalogError, MregError
from mreg.registry.waiting import wait_until_set

if TYPE_CHECKING:
    from mreg.registry.catalog import Catalog

log = logging.getLogger("mreg.fills")
POLL, NOTIFIED_POLL = 0.25, 1.0
"""Seconds between a follower's looks at the lease it follows: without notifications, and with them (the
looks then only notice a lease that ran out)."""
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Lease:
    """A claim on a content key: ``leader`` if this caller fills it; ``token`` fences older leaders."""

    key: str
    token: int
    leader: bool
    shared: bool = False
    """The leader fills the store every replica reads, so a follower streams the bytes it has committed there;
    False: the caller fills the content itself, as a lone daemon does (a follower then fetches it too)."""


@dataclass
class FillCounts:
    """A replica's fills of the shared store since it started (the daemon's ``mreg_fill*`` counters)."""

    led: int = 0
    """Fills it fetched from upstream as the lease's holder, taken over ones included."""
    followed: int = 0
    """Fills another replica held the lease of when this one asked."""
    taken_over: int = 0
    """Followed fills whose leader's lease ran out, which this replica then led."""
    leases_lost: int = 0
    """Fills it stopped because another replica took its lease over."""


@dataclass
class _Held:
    """A lease this replica holds: its fence, the committed bytes to send, whether it was lost."""

    fence: int
    committed: int
    lost: bool = False
    woken: asyncio.Event = field(default_factory=asyncio.Event)
    on_lost: list[Callable[[], None]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


class CatalogInFlight:
    """Fill leases in ``catalog``, held as ``replica``; see the module docstring."""

    def __init__(self, catalog: Catalog, replica: str, counts: FillCounts, lease: float = 5.0,
                 beat: float | None = None) -> None:
        self._catalog, self.replica, self.counts = catalog, replica, counts
        self._lease, self._beat = lease, beat if beat is not None else lease / 5
        self._held: dict[str, _Held] = {}
        self._waiting: dict[str, asyncio.Event] = {}
        self._listening = AsyncExitStack()
        self.poll = POLL
        """Seconds between two looks at a followed lease (longer when notifications wake the followers)."""

    async def open(self) -> None:
        """Listen for the leases' changes where the catalog sends them (PostgreSQL); else followers look at them
        every ``POLL`` seconds. A listener that cannot be set up is one warning: the followers look then too."""
        try:
            if await self._listening.enter_async_context(self._catalog.fill_wakeups(self._wake)):
                self.poll = NOTIFIED_POLL
        except MregError as exc:
            log.warning("cannot listen for fill lease changes (followers look every %s s): %s", POLL, exc)

    async def changed(self, key: str) -> None:
        """Wait until the lease of ``key`` may have changed: its notification, or ``poll`` seconds."""
        await wait_until_set(self._waiting.setdefault(key, asyncio.Event()), self.poll)

    async def claim(self, key: str, owner: str = "", size: int = 0) -> Lease:
        if not _SHA256.match(key):
            return Lease(key, 0, leader=True)
        try:
            found = await self._catalog.claim_fill(key, owner, self.replica, size, self._lease)
        except CatalogError as exc:
            log.warning("cannot claim the fill lease of %s (this replica fetches it alone): %s", key, exc)
            return Lease(key, 0, leader=True)
        if found.leader:
            held = _Held(found.fence, found.committed)
            held.task = asyncio.create_task(self._heartbeat(key, held))
            self._held[key] = held
            return Lease(key, found.fence, leader=True, shared=True)
        if found.owner != owner:
            return Lease(key, 0, leader=True)
        return Lease(key, found.fence, leader=False, shared=True)

    def note(self, lease: Lease, written: int) -> None:
        """The leader committed ``written`` leading bytes to the shared store (sent at once)."""
        held = self._holding(lease)
        if held is not None and written > held.committed:
            held.committed = written
            held.woken.set()

    async def written(self, key: str) -> int | None:
        found = await self._catalog.fill_lease(key)
        return found.committed if found is not None and found.state == "filling" else None

    async def release(self, lease: Lease) -> None:
        """Give the lease back unfinished (this replica stops): another replica takes it over at once."""
        held = self._drop(lease)
        if held is not None and not held.lost:
            await self._catalog.give_back_fill(lease.key, held.fence)

    async def finish(self, lease: Lease, error: str | None = None) -> None:
        """End the fill: done (the blob is published) or failed with ``error``, for the followers to see."""
        held = self._drop(lease)
        if held is not None and not held.lost:
            await self._catalog.finish_fill(lease.key, held.fence, error)

    def holds(self, lease: Lease) -> bool:
        """Whether ``lease`` is still this replica's (no heartbeat was refused)."""
        held = self._holding(lease)
        return held is not None and not held.lost

    def on_lost(self, lease: Lease, callback: Callable[[], None]) -> None:
        """Call ``callback`` if a heartbeat of ``lease`` is refused."""
        held = self._holding(lease)
        if held is not None:
            held.on_lost.append(callback)

    async def look(self, key: str) -> FillRecord | None:
        """The lease of ``key`` as the catalog has it."""
        return await self._catalog.fill_lease(key)

    async def close(self) -> None:
        """Stop the heartbeats (the leases run out, for other replicas to take over) and the listening."""
        tasks = [held.task for held in self._held.values() if held.task is not None]
        self._held.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._listening.aclose()

    # -- inside ------------------------------------------------------------------------------------------

    def _wake(self, key: str) -> None:
        waiting = self._waiting.pop(key, None)
        if waiting is not None:
            waiting.set()

    def _holding(self, lease: Lease) -> _Held | None:
        held = self._held.get(lease.key)
        return held if lease.shared and lease.leader and held is not None and held.fence == lease.token else None

    def _drop(self, lease: Lease) -> _Held | None:
        held = self._holding(lease)
        if held is not None:
            del self._held[lease.key]
            if held.task is not None:
                held.task.cancel()
        return held

    async def _heartbeat(self, key: str, held: _Held) -> None:
        while True:
            await wait_until_set(held.woken, self._beat)
            held.woken.clear()
            try:
                kept = await self._catalog.advance_fill(key, held.fence, held.committed, self._lease)
            except MregError as exc:
                log.warning("cannot renew the fill lease of %s: %s", key, exc)
                continue
            if not kept:
                held.lost = True
                self.counts.leases_lost += 1
                log.warning("the fill lease of %s was taken over by another replica: this one stops its fill", key)
                for callback in held.on_lost:
                    callback()
                return
