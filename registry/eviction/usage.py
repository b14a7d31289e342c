"""Recording last use without slowing reads: uses are noted in memory (a dict write) and written to the
catalog in one transaction at most every ``every`` seconds."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from mreg.registry.catalog import Catalog
from mreg.registry.repo import RepoRef

FLUSH_EVERY = 300.0
"""Default seconds between writes of the noted uses to the catalog."""


class UseRecorder:
    """Notes which revisions were used, and when; ``flush`` writes them to the catalog."""

    def __init__(self, every: float = FLUSH_EVERY) -> None:
        self.every = every
        self._noted: dict[tuple[RepoRef, str], datetime] = {}
        self._flushed = time.monotonic()

    def note(self, repo: RepoRef, commit: str) -> None:
        """Remember that ``repo`` at ``commit`` was used now."""
        self._noted[(repo, commit)] = datetime.now(timezone.utc)

    @property
    def due(self) -> bool:
        """Whether uses are waiting and ``every`` seconds passed since the last flush."""
        return bool(self._noted) and time.monotonic() - self._flushed >= self.every

    async def flush(self, catalog: Catalog) -> None:
        """Write the noted uses to the catalog (kept for the next flush if that fails)."""
        noted, self._noted = self._noted, {}
        self._flushed = time.monotonic()
        try:
            await catalog.record_use(noted)
        except BaseException:
            for key, when in noted.items():
                self._noted.setdefault(key, when)
            raise
