"""`ServerThread`: aiohttp apps on pre-bound sockets, served from a background thread's own loop."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Sequence

from aiohttp import web

SHUTDOWN_TIMEOUT = 0.5
"""Seconds `stop()` lets in-flight responses finish before cancelling them."""


def bind(addresses: Sequence[tuple[str, int]]) -> list[socket.socket]:
    """Listening-ready sockets bound to each (host, port); none left open on failure."""
    sockets: list[socket.socket] = []
    try:
        for host, port in addresses:
            sockets.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sockets[-1].setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sockets[-1].bind((host, port))
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class ServerThread:
    """Serves (app, socket) pairs on a new event loop in a daemon thread until `stop()`."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runners: list[web.AppRunner] = []

    @property
    def running(self) -> bool:
        """Whether the thread serves."""
        return self._thread is not None

    def start(self, sites: Sequence[tuple[web.Application, socket.socket]]) -> None:
        """Start serving every app on its socket; raise (after cleaning up) if one fails."""
        if self._thread is not None:
            raise RuntimeError(f"{self._name} already started")
        self._loop = asyncio.new_event_loop()
        started = asyncio.run_coroutine_threadsafe(self._open(sites), self._loop)
        self._thread = threading.Thread(target=self._loop.run_forever, name=self._name, daemon=True)
        self._thread.start()
        try:
            started.result(timeout=30)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Close every server (cancelling responses still running after SHUTDOWN_TIMEOUT)."""
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
        self._loop, self._thread = None, None

    async def _open(self, sites: Sequence[tuple[web.Application, socket.socket]]) -> None:
        for app, sock in sites:
            runner = web.AppRunner(
                app, access_log=None, handler_cancellation=True, shutdown_timeout=SHUTDOWN_TIMEOUT
            )
            await runner.setup()
            await web.SockSite(runner, sock).start()
            self._runners.append(runner)

    async def _close(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
