"""In-flight transfers as every mirror may see them: who is filling content X, and how far it has got.

``InFlight`` is the shared bookkeeping behind ``Transfers``; ``MemoryInFlight`` keeps it in this process (one
daemon, or a local store). ``claim`` makes the caller the leader of a key (a fresh, larger fencing token each
time) unless a live lease is held elsewhere; the leader notes the bytes it has written and releases the key
when done. ``registry.fills.leases.CatalogInFlight`` keeps the leases in the catalog for replicas sharing a blob store
(#13): its leases are ``shared`` (a follower streams what the leader has committed to the shared store), its
leader sends the noted bytes with its heartbeat, and a lease whose holder died expires there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from mreg.registry.fills.leases import Lease


class InFlight(Protocol):
    """Who fills which content, and how many of its leading bytes are written."""

    async def claim(self, key: str, owner: str = "", size: int = 0) -> Lease:
        """Lead ``key`` (``size`` bytes, fetched for the repo ``owner``) if no live lease holds it (a new token),
        else follow the current leader's."""
        ...

    def note(self, lease: Lease, written: int) -> None:
        """Record that the leader has written ``written`` leading bytes (ignored from a follower or a
        fenced leader)."""
        ...

    async def written(self, key: str) -> int | None:
        """How many leading bytes the current leader of ``key`` has written; None if nobody fills it."""
        ...

    async def release(self, lease: Lease) -> None:
        """End ``lease`` (a follower's or a fenced one changes nothing)."""
        ...


@dataclass
class _Held:
    token: int
    written: int


class MemoryInFlight:
    """``InFlight`` in this process's memory: the default, for one daemon."""

    def __init__(self) -> None:
        self._held: dict[str, _Held] = {}
        self._tokens = 0

    async def claim(self, key: str, owner: str = "", size: int = 0) -> Lease:
        held = self._held.get(key)
        if held is not None:
            return Lease(key, held.token, leader=False)
        self._tokens += 1
        self._held[key] = _Held(self._tokens, 0)
        return Lease(key, self._tokens, leader=True)

    def note(self, lease: Lease, written: int) -> None:
        held = self._held.get(lease.key)
        if lease.leader and held is not None and held.token == lease.token:
            held.written = max(held.written, written)

    async def written(self, key: str) -> int | None:
        held = self._held.get(key)
        return None if held is None else held.written

    async def release(self, lease: Lease) -> None:
        held = self._held.get(lease.key)
        if lease.leader and held is not None and held.token == lease.token:
            del self._held[lease.key]
