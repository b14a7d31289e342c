"""Which upstreams are down, and who may say so: the one outage policy of pulls and of the daemon.

`Health` remembers an upstream as down for ``down_for`` seconds, with the reason: in a small JSON file
in the store for pulls (an upstream down for one pull is tried last by the next), in memory for the
daemon. A pull choosing among upstreams marks one down when its own pull of it failed
(``registry.upstream.fallback``). A server's requests are not evidence enough: one caller's request
can fail at the connection level for reasons of its own (upstream dropping a malformed request), so
`Outages` answers a request's failure with the server's own health check of the upstream, and only
that check marks it down (or up again).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import aiohttp

from mreg.registry.errors import UpstreamUnavailableError
from mreg.registry.upstream.configured import Upstream
from mreg.registry.upstream.http import UpstreamHTTP

HEALTH_FILE = "upstream-health.json"
DOWN_FOR = 300.0
"""Seconds an upstream a pull could not use stays at the back of the queue."""
CHECK_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=30)

Entries = dict[str, dict[str, object]]


class Health:
    """Which upstreams failed recently: ``{name: {"down_until": time, "reason": text}}``, kept in a JSON
    file (``path``) or, with no path, in memory."""

    def __init__(self, path: Path | None, clock: Callable[[], float] = time.time, down_for: float = DOWN_FOR) -> None:
        self.path, self._clock, self._down_for = path, clock, down_for
        self._memory: Entries = {}

    def _read(self) -> Entries:
        if self.path is None:
            return dict(self._memory)
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}

    def _write(self, data: Entries) -> None:
        if self.path is None:
            self._memory = data
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            tmp.replace(self.path)
        except OSError:
            pass  # health memory is a hint: a read-only store just forgets

    def down(self, name: str) -> str | None:
        """Why ``name`` is remembered as down, or None if it is not (or no longer)."""
        entry = self._read().get(name, {})
        until = entry.get("down_until")
        if isinstance(until, (int, float)) and until > self._clock():
            return str(entry.get("reason", "failed"))
        return None

    def mark_down(self, name: str, reason: str) -> None:
        data = self._read()
        data[name] = {"down_until": self._clock() + self._down_for, "reason": reason}
        self._write(data)

    def mark_up(self, name: str) -> None:
        data = self._read()
        if data.pop(name, None) is not None:
            self._write(data)

    def order(self, upstreams: Sequence[Upstream]) -> list[Upstream]:
        """The upstreams, the ones remembered as down moved to the back (order kept otherwise)."""
        return sorted(upstreams, key=lambda u: self.down(u.name) is not None)


async def check(http: UpstreamHTTP) -> str | None:
    """The health check of ``http``'s endpoint: None when it answers at all (any status), else why not."""
    try:
        resp = await http.send("HEAD", f"{http.endpoint}/", timeout=CHECK_TIMEOUT)
    except UpstreamUnavailableError as exc:
        return str(exc)
    resp.release()
    return None


class Outages:
    """A server's view of its one upstream: down only when the server's own health check says so.

    A request that could not reach upstream calls `request_failed`, which runs the check (one at a
    time: concurrent failures share it) and waits for its verdict.
    """

    def __init__(self, health: Health, name: str, check: Callable[[], Awaitable[str | None]]) -> None:
        self._health, self._name, self._check = health, name, check
        self._checking: asyncio.Future[None] | None = None

    def down(self) -> str | None:
        """Why the upstream counts as down, or None."""
        return self._health.down(self._name)

    async def request_failed(self) -> None:
        """A request could not reach upstream: check it, and mark it down (or up) by the check's verdict."""
        if self._checking is None:
            self._checking = asyncio.ensure_future(self._run_check())
        await asyncio.shield(self._checking)

    async def _run_check(self) -> None:
        try:
            reason = await self._check()
            if reason is None:
                self._health.mark_up(self._name)
            else:
                self._health.mark_down(self._name, reason)
        finally:
            self._checking = None
