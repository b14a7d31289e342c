"""The daemon's side of the size budget (``mreg serve --max-size``): which revisions are in use, their last
use (noted in memory on every file request, written to the catalog at most every few minutes), and a
background round every ``every`` seconds that evicts what the budget asks for (``registry.eviction``).

A revision is in use while a request reads or fills one of its files: no round evicts it then. A client
already reading a blob that a round deletes keeps reading it (the open file outlives its name).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterator

from mreg.registry.catalog import Catalog
from mreg.registry.eviction.evict import EvictionReport, evict, stored_bytes
from mreg.registry.eviction.policy import Budget
from mreg.registry.eviction.usage import UseRecorder
from mreg.registry.repo import RepoRef
from mreg.registry.store import Store

from mreg.daemon.metrics import Metrics
from mreg.daemon.periodic import Periodic


class StoreBudget:
    """Notes uses, knows what is in use, and runs the eviction rounds (each round that evicts tells the daemon's
    caches through the store's removal marker, ``registry.removals``)."""

    def __init__(self, store: Store, catalog: Catalog, budget: Budget, every: float, flush_every: float,
                 metrics: Metrics) -> None:
        self.budget, self._store, self._catalog, self._metrics = budget, store, catalog, metrics
        self.uses = UseRecorder(flush_every)
        self._busy: Counter[tuple[RepoRef, str]] = Counter()
        self._round_lock = asyncio.Lock()
        self._schedule = Periodic(self.run_round, every, "eviction round")
        metrics.budget_bytes = budget.max_size or 0

    @contextlib.contextmanager
    def using(self, repo: RepoRef, commit: str) -> Iterator[None]:
        """Mark ``repo`` at ``commit`` in use (and used now) for the block."""
        key = (repo, commit)
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
        """Write the noted uses, then evict what the budget asks for (None when no budget is set)."""
        async with self._round_lock:
            await self.uses.flush(self._catalog)
            if not self.budget.active:
                self._metrics.store_bytes = await stored_bytes(self._store)
                return None
            report = await evict(self._store, self._catalog, self.budget, busy=frozenset(self._busy))
            self._metrics.store_bytes = report.stored_after
            self._metrics.kept_bytes = report.kept_bytes
            self._metrics.budget_short_bytes = report.short
            self._metrics.evictions += len(report.evicted)
            self._metrics.evicted_bytes += sum(e.bytes for e in report.evicted)
            self._metrics.eviction_rounds += 1
            return report
