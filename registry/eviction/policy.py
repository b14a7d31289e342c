"""Choosing what to evict: pure, no I/O.

The unit is a revision (its snapshot, with the GGUFs converted from it): it goes whole or not at all.
Evicting it frees the blobs no other revision holds; a blob shared with a kept revision stays.
Pinned revisions, revisions of mirrored repos and revisions holding a blob in use never go.

Orders: ``lru`` (least recently used first, the default), ``size`` (most bytes freed first) and
``age`` (every revision unused for ``evict_after`` seconds, oldest first, whether or not the store is
over its budget; nothing else).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence, Set
from dataclasses import dataclass
from datetime import datetime, timedelta

from mreg.registry.catalog.records import RevisionUse
from mreg.registry.errors import UsageError
from mreg.registry.repo import RepoRef
from mreg.registry.units import parse_interval, parse_size

ORDERS = ("lru", "size", "age")
DEFAULT_HIGH = 0.95
DEFAULT_LOW = 0.85
DEFAULT_EVICT_AFTER = 30 * 86400.0


@dataclass(frozen=True)
class Budget:
    """How big the store may grow and how eviction frees space.

    Past ``high × max_size`` bytes, eviction frees down to ``low × max_size``. With ``min_free``,
    a disk with less free space than that evicts too, until that much is free.
    """

    max_size: int | None = None
    high: float = DEFAULT_HIGH
    low: float = DEFAULT_LOW
    min_free: int | None = None
    order: str = "lru"
    evict_after: float = DEFAULT_EVICT_AFTER

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise UsageError(f"unknown eviction order {self.order!r}: use one of {', '.join(ORDERS)}")
        if not 0 < self.low <= self.high <= 1:
            raise UsageError(f"watermarks must satisfy 0 < low ≤ high ≤ 1 (got low {self.low:g}, high {self.high:g})")
        if self.evict_after <= 0:
            raise UsageError("--evict-after must be positive")

    @classmethod
    def parse(cls, max_size: str | None = None, high: float = DEFAULT_HIGH * 100, low: float = DEFAULT_LOW * 100,
              min_free: str | None = None, order: str = "lru", evict_after: str = "30d") -> "Budget":
        """A budget from options as people write them: sizes like ``500G``, watermarks in percent, ``30d``."""
        return cls(max_size=parse_size(max_size) if max_size else None, high=high / 100, low=low / 100,
                   min_free=parse_size(min_free) if min_free else None, order=order,
                   evict_after=parse_interval(evict_after))

    @property
    def active(self) -> bool:
        """Whether this budget can evict anything at all."""
        return self.max_size is not None or self.min_free is not None or self.order == "age"

    def bytes_to_free(self, stored: int, free: int | None) -> int:
        """How many bytes a round must free, given the store's bytes and the disk's free bytes."""
        need = 0
        if self.max_size is not None and stored > self.high * self.max_size:
            need = stored - int(self.low * self.max_size)
        if self.min_free is not None and free is not None and free < self.min_free:
            need = max(need, self.min_free - free)
        return need


@dataclass(frozen=True)
class Eviction:
    """One revision to evict, the bytes that frees (given the evictions before it) and why."""

    revision: RevisionUse
    freed: int
    why: str


@dataclass(frozen=True)
class Plan:
    """A round's evictions, what it set out to free, and the bytes nothing may evict."""

    evictions: tuple[Eviction, ...]
    needed: int
    kept_bytes: int
    """Bytes held only by revisions that must stay (pinned, mirrored or in use)."""

    @property
    def freed(self) -> int:
        return sum(e.freed for e in self.evictions)

    @property
    def short(self) -> int:
        """Bytes still to free after this plan (> 0: the budget cannot be met without evicting what must stay)."""
        return max(0, self.needed - self.freed)


Busy = Set[tuple[RepoRef, str]]
"""Revisions (repo, commit) being read or filled at this moment."""


def must_stay(revision: RevisionUse, busy: Busy) -> bool:
    """Whether ``revision`` is pinned, mirrored or in use (``busy``): never evicted."""
    return revision.pinned or revision.mirrored or (revision.repo, revision.commit) in busy


def plan(revisions: Sequence[RevisionUse], needed: int, budget: Budget, now: datetime,
         busy: Busy = frozenset()) -> Plan:
    """The revisions to evict to free ``needed`` bytes (with ``age``: every stale one), in order."""
    holders: Counter[str] = Counter(sha for r in revisions for sha in r.blobs)
    sizes = {sha: size for r in revisions for sha, size in r.blobs.items()}
    staying = [must_stay(r, busy) for r in revisions]
    candidates = [r for r, stays in zip(revisions, staying) if not stays]
    kept = {sha for r, stays in zip(revisions, staying) if stays for sha in r.blobs}
    kept_bytes = sum(sizes[sha] for sha in kept)

    def exclusive(r: RevisionUse) -> int:
        return sum(size for sha, size in r.blobs.items() if holders[sha] == 1)

    if budget.order == "age":
        stale_before = now - timedelta(seconds=budget.evict_after)
        chosen = sorted((r for r in candidates if r.last_used < stale_before), key=lambda r: r.last_used)
        why = f"unused for {budget.evict_after / 86400:g} days"
    else:
        if budget.order == "size":
            chosen = sorted(candidates, key=lambda r: (-exclusive(r), r.last_used))
        else:
            chosen = sorted(candidates, key=lambda r: r.last_used)
        why = "least recently used" if budget.order == "lru" else "largest"
    evictions: list[Eviction] = []
    freed = 0
    for revision in chosen:
        if budget.order != "age" and freed >= needed:
            break
        gained = 0
        for sha in revision.blobs:
            holders[sha] -= 1
            if holders[sha] == 0:
                gained += sizes[sha]
        evictions.append(Eviction(revision, gained, why))
        freed += gained
    return Plan(tuple(evictions), needed, kept_bytes)
