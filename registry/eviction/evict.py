"""One eviction round over a store and its catalog: measure, plan (``policy``), remove, collect.

Each evicted revision is removed from the store first (its refs, then its snapshot and derived folders,
each renamed away in one step), then from the catalog; blobs are deleted last, by the garbage
collection, and only those no snapshot and no catalog row still holds. So a crash (kill -9) at any point
leaves no snapshot pointing at a missing blob, and the next round finishes what this one started.
Each eviction is logged on the ``mreg.eviction`` logger with its fields (one JSON line in the daemon's log).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol

from mreg.registry.catalog import Catalog
from mreg.registry.eviction.policy import Budget, Busy, Plan, plan
from mreg.registry.maintenance import collect_garbage
from mreg.registry.removals import note_removal
from mreg.registry.store import Store

log = logging.getLogger("mreg.eviction")


@dataclass(frozen=True)
class Evicted:
    """One revision evicted: which, how many bytes that freed, why."""

    repo: str
    repo_type: str
    revision: str
    bytes: int
    why: str


@dataclass(frozen=True)
class EvictionReport:
    """What a round found and did. ``short`` > 0: the budget could not be met without evicting
    revisions that must stay (``kept_bytes`` of them: pinned, mirrored or in use)."""

    stored_before: int
    stored_after: int
    free_after: int | None
    needed: int
    evicted: tuple[Evicted, ...]
    kept_bytes: int
    short: int
    removed_blobs: int
    dry_run: bool = False


class Collector(Protocol):
    """How a round measures the store and deletes the blobs no revision holds: ``LocalCollector`` on the local
    store; ``shared.SharedCollector`` on one replicas share."""

    async def stored(self) -> int:
        """The bytes the budget counts."""

    def free(self) -> int | None:
        """Free bytes on the store's disk (None: not known, or not a disk)."""

    async def collect(self) -> int:
        """Delete what nothing holds; how many blobs went."""


class LocalCollector:
    """The local store: its blobs listed and measured, its disk's free space, ``collect_garbage``."""

    def __init__(self, store: Store, catalog: Catalog) -> None:
        self._store, self._catalog = store, catalog

    async def stored(self) -> int:
        return await stored_bytes(self._store)

    def free(self) -> int | None:
        return free_bytes(self._store)

    async def collect(self) -> int:
        return (await collect_garbage(self._store, self._catalog)).removed_blobs


async def stored_bytes(store: Store) -> int:
    """The bytes of every blob in the store."""
    return sum([blob.size async for blob in store.blobs.list()])


def free_bytes(store: Store) -> int | None:
    """Free bytes on the store's disk (None if it cannot be read)."""
    try:
        return shutil.disk_usage(store.home).free
    except OSError:
        return None


async def evict(store: Store, catalog: Catalog, budget: Budget, busy: Busy = frozenset(),
                now: datetime | None = None, dry_run: bool = False, collector: Collector | None = None,
                removing: Callable[[], Awaitable[None]] | None = None) -> EvictionReport:
    """Run one round: free what the budget asks for (see ``policy``); with ``dry_run``, only say what would go.
    ``collector`` measures and collects (default: the local store's); ``removing()`` runs before each revision
    is removed (and may stop the round by raising)."""
    collector = collector or LocalCollector(store, catalog)
    first = 0 if dry_run else await collector.collect()
    stored, free = await collector.stored(), collector.free()
    needed = budget.bytes_to_free(stored, free)
    chosen = Plan((), needed, 0)
    if budget.active:  # planned even when nothing must go: the bytes that must stay are reported
        chosen = plan(await catalog.revision_uses(), needed, budget, now or datetime.now(timezone.utc), busy)
    evicted = []
    for eviction in chosen.evictions:
        revision = eviction.revision
        done = Evicted(revision.repo.repo_id, revision.repo.repo_type, revision.commit, eviction.freed, eviction.why)
        if not dry_run:
            if removing is not None:
                await removing()
            store.remove_revision(revision.repo, revision.commit)
            await catalog.remove_revision(revision.repo, revision.commit)
            log.info("evicted %s@%s (%d bytes, %s)", done.repo, done.revision[:12], done.bytes, done.why,
                     extra={"fields": {"event": "evicted", **dataclasses.asdict(done)}})
        evicted.append(done)
    if evicted and not dry_run:
        note_removal(store.home)  # running daemons forget what they cached of the evicted revisions
    last = 0 if dry_run or not evicted else await collector.collect()
    if chosen.short:
        log.warning("over budget: %d more bytes would have to go, but pinned, mirrored or in-use revisions hold %d",
                    chosen.short, chosen.kept_bytes,
                    extra={"fields": {"event": "over_budget", "short": chosen.short, "kept_bytes": chosen.kept_bytes,
                                      "max_size": budget.max_size, "min_free": budget.min_free}})
    after = stored - chosen.freed if dry_run else await collector.stored()
    return EvictionReport(stored_before=stored, stored_after=after, free_after=collector.free(), needed=needed,
                          evicted=tuple(evicted), kept_bytes=chosen.kept_bytes, short=chosen.short,
                          removed_blobs=first + last, dry_run=dry_run)
