"""Where the daemon keeps upstream's access verdicts: a small interface, so that several daemons can
share one cache (#13 backs it with a table), and its in-memory implementation.

A verdict is keyed by (token hash, repo type, repo id) and dated by the wall clock, so that every
daemon reading it agrees on its age; the caller decides whether it is fresh enough.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from mreg.daemon.serving.upstream import Answer

MAX_VERDICTS = 10_000

VerdictKey = tuple[str, str, str]
"""(sha256 of the caller's token or "anonymous", repo type, repo id)."""


@dataclass(frozen=True)
class Verdict:
    """Upstream's answer to a caller about a repo: its refusal, or None when it let them read."""

    refusal: Answer | None
    at: float
    """When upstream gave it (epoch seconds)."""


class Verdicts(Protocol):
    """The shared verdict cache."""

    async def get(self, key: VerdictKey) -> Verdict | None:
        """The newest verdict for ``key``, however old, or None."""
        ...

    async def put(self, key: VerdictKey, verdict: Verdict) -> None:
        """Remember ``verdict`` for ``key``, replacing the one before."""
        ...


class MemoryVerdicts:
    """Verdicts in this process's memory: at most ``limit``; when full, those older than ``ttl`` go."""

    def __init__(self, ttl: float, limit: int = MAX_VERDICTS) -> None:
        self._ttl, self._limit = ttl, limit
        self._verdicts: dict[VerdictKey, Verdict] = {}

    async def get(self, key: VerdictKey) -> Verdict | None:
        return self._verdicts.get(key)

    async def put(self, key: VerdictKey, verdict: Verdict) -> None:
        if len(self._verdicts) >= self._limit and key not in self._verdicts:
            cutoff = time.time() - self._ttl
            self._verdicts = {k: v for k, v in self._verdicts.items() if v.at >= cutoff}
        self._verdicts[key] = verdict
