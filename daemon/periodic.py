"""A background task that runs one async step every ``every`` seconds: the first one interval after start (or
at once, ``at_start``), each next one an interval after the previous ends (steps never overlap, however long
one takes). A step that fails is logged and the schedule goes on. The scrub, the size budget's rounds and
the S3 janitor run this way."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("mreg.daemon")


class Periodic:
    """Runs ``step`` on a schedule between ``start`` and ``close``; ``what`` names it in the log."""

    def __init__(self, step: Callable[[], Awaitable[object]], every: float, what: str, at_start: bool = False) -> None:
        self._step, self._every, self._what, self._at_start = step, every, what, at_start
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Stop the schedule (a running step is cancelled where it awaits)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        if not self._at_start:
            await asyncio.sleep(self._every)  # the schedule itself, not a wait for a condition
        while True:
            try:
                await self._step()
            except Exception as exc:  # noqa: BLE001 (a failed step is logged; the next one runs on schedule)
                log.error("%s failed: %s: %s", self._what, type(exc).__name__, exc)
            await asyncio.sleep(self._every)
