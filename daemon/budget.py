"""The daemon's side of the size budget (``mreg serve --max-size``): which revisions are in use, their last
use (noted in memory on every file request, written to the catalog at most every few minutes), and a
background round every ``every`` seconds that evicts what the budget asks for (``registry.eviction``).

A revision is in use while a request reads or fills one of its files: no round evicts it then. On the local
store a client already reading a blob that a round deletes keeps reading it (the open file outlives its name).
On a store replicas share (S3), every round of every replica writes what it serves to the catalog as marks
that expire, and tells its caches when another replica evicted; the round itself runs on one replica at a
time, the holder of the catalog's eviction lease, and deletes blobs only after a grace
(``registry.eviction.shared`` says why both).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterator

from mreg.registry.catalog import Catalog
from mreg.registry.eviction.evict import EvictionReport, evict, stored_bytes
from mreg.registry.eviction.policy import Budget
from mreg.registry.eviction.shared import SharedCollector
from mreg.registry.errors import StoreError
from mreg.registry.eviction.usage import UseRecorder
from mreg.registry.removals import note_removal
from mreg.registry.repo import RepoRef
from mreg.registry.store import Store

from mreg.daemon.metrics import Metrics
from mreg.daemon.periodic import Periodic

MARK_ROUNDS = 3
"""Rounds an in-use mark stays valid without being written again."""
LEASE_ROUNDS = 5
"""Rounds the eviction lease lasts without being renewed (at least ``MIN_LEASE`` seconds)."""
MIN_LEASE = 2.0


class StoreBudget:
    """Notes uses, knows what is in use, and runs the eviction rounds (each round that evicts tells the daemon's
    caches through the store's removal marker, ``registry.removals``)."""

    def __init__(self, store: Store, catalog: Catalog, budget: Budget, every: float, flush_every: float,
                 metrics: Metrics, grace: float = 600.0) -> None:
        self.budget, self._store, self._catalog, self._metrics = budget, store, catalog, metrics
        self.uses = UseRecorder(flush_every)
        self._busy: Counter[tuple[RepoRef, str, str | None]] = Counter()
        self._every, self._grace = every, grace
        self._seen_eviction: int | None = None
        self._round_lock = asyncio.Lock()
        self._schedule = Periodic(self.run_round, every, "eviction round")
        metrics.budget_bytes = budget.max_size or 0

    @contextlib.contextmanager
    def using(self, repo: RepoRef, commit: str, blob: str | None = None) -> Iterator[None]:
        """Mark ``repo`` at ``commit`` (reading ``blob``, when known) in use, and used now, for the block."""
        key = (repo, commit, blob)
        self.uses.note(repo, commit)
        self._busy[key] += 1
        try:
            yield
        finally:
            self._busy[key] -= 1
            if not self._busy[key]:
                del self._busy[key]

    def start(self) -> None:
        self._schedule.start()

    async def close(self) -> None:
        """Stop the rounds and write the uses noted since the last flush."""
        await self._schedule.close()
        await self.uses.flush(self._catalog)

    async def run_round(self) -> EvictionReport | None:
        """Write the noted uses, then evict what the budget asks for (None when no budget is set, or when
        another replica holds the eviction lease)."""
        async with self._round_lock:
            await self.uses.flush(self._catalog)
            if self._store.shared_blobs:
                return await self._shared_round()
            if not self.budget.active:
                self._metrics.store_bytes = await stored_bytes(self._store)
                return None
            return self._count(await evict(self._store, self._catalog, self.budget,
                                           busy=frozenset((r, c) for r, c, _ in self._busy)))

    async def _shared_round(self) -> EvictionReport | None:
        """Share this replica's marks, forget cached revisions another replica evicted, and run the round if
        this replica gets the eviction lease."""
        await self._catalog.write_marks(self._metrics.replica, list(self._busy), MARK_ROUNDS * self._every)
        newest = await self._catalog.last_eviction()
        if self._seen_eviction is not None and newest != self._seen_eviction:
            note_removal(self._store.home)
        self._seen_eviction = newest
        lease = max(MIN_LEASE, LEASE_ROUNDS * self._every)
        taken = None
        if self.budget.active:
            taken = await self._catalog.take_eviction_lease(self._metrics.replica, lease)
            if taken is None:
                self._metrics.eviction_rounds_skipped += 1
        if taken is None:  # the bytes the budget counts: the catalog's, not a listing of the whole bucket
            self._metrics.store_bytes = await self._catalog.held_bytes()
            return None
        fence, round_id = taken
        busy = {(r, c) for r, c, _ in self._busy} | {(r, c) for r, c, _ in await self._catalog.live_marks()}
        report = None
        try:
            report = await evict(self._store, self._catalog, self.budget, busy=frozenset(busy),
                                 collector=SharedCollector(self._store, self._catalog, fence, self._grace, lease),
                                 removing=lambda: self._renew(round_id, fence, lease))
        finally:
            await self._catalog.end_eviction_round(round_id, fence, sum(e.bytes for e in report.evicted) if report else 0)
        self._seen_eviction = await self._catalog.last_eviction()
        self._metrics.doomed_bytes = await self._catalog.doomed_bytes()
        return self._count(report)

    async def _renew(self, round_id: int, fence: int, lease: float) -> None:
        """Before a revision goes: hold the lease on, or stop the round (another replica took over)."""
        if not await self._catalog.evicting(round_id, fence, lease):
            raise StoreError("eviction round stopped: its lease ran out and another replica may hold it")

    def _count(self, report: EvictionReport) -> EvictionReport:
        """Show a round's report in the metrics."""
        self._metrics.store_bytes = report.stored_after
        self._metrics.kept_bytes = report.kept_bytes
        self._metrics.budget_short_bytes = report.short
        self._metrics.evictions += len(report.evicted)
        self._metrics.evicted_bytes += sum(e.bytes for e in report.evicted)
        self._metrics.eviction_rounds += 1
        return report
