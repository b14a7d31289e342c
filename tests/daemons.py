"""Running the mirror for tests: in this process (`start_daemon`: the app `mreg serve` builds, from the
same options, on a real socket served by a background thread's event loop) or as a real `mreg serve`
process (`start_daemon_process`, for what only a process shows: SIGTERM, kill -9, its own log)."""

from __future__ import annotations

import abc
import asyncio
import hashlib
import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mreg.cli.serve_command import serve_command, serve_config
from mreg.daemon.app import build_app, listening
from mreg.daemon.logs import JsonLines
from mreg.daemon.state import MIRROR, Mirror
from mreg.registry.config import Settings

from tests.backends import Backend
from tests.testhub import TestHub
from tests.testhub.fixtures import TOKENS

ROOT = Path(__file__).resolve().parent.parent
START_DEADLINE = 30.0
LOGGERS = ("mreg", "aiohttp")
"""What `mreg serve` logs at INFO (daemon.logs.setup_logging), here into each in-process daemon's log file."""


def connection(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    assert parts.hostname is not None
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)


def raw(method: str, url: str, headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request, redirects not followed: (status, headers, body)."""
    parts = urlsplit(url)
    conn = connection(url)
    try:
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def wait_for(condition: Callable[[], bool], deadline: float, what: str | Callable[[], str]) -> None:
    """Poll ``condition`` until it holds; fail after ``deadline`` seconds, saying ``what`` (called then, if a
    function: it may tell what was last seen)."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        time.sleep(0.02)


def sha256_of_download(daemon: "Daemon", path: str, after_first_chunk: Callable[[], None] | None = None) -> str:
    """Stream ``path`` from the daemon and hash it; ``after_first_chunk()`` runs once the first MB arrived."""
    conn = connection(daemon.url)
    try:
        conn.request("GET", urlsplit(daemon.url).path + path)
        response = conn.getresponse()
        assert response.status == 200, response.read()[:300]
        digest = hashlib.sha256(response.read(1_000_000))
        if after_first_chunk is not None:
            after_first_chunk()
        while chunk := response.read(1_000_000):
            digest.update(chunk)
        return digest.hexdigest()
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def daemon_env(home: Path, upstream: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a test daemon sees: this one without HF_*/MREG_* settings, plus its home, upstream,
    a config folder of its own (next to its home) and ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGING_FACE", "MREG_", "MODELSCOPE_"))}
    env.update(MREG_HOME=str(home), HF_ENDPOINT=upstream, XDG_CONFIG_HOME=str(home.parent / "xdg-config"),
               **(extra or {}))
    home.mkdir(parents=True, exist_ok=True)
    return env


class Daemon(abc.ABC):
    """A running mirror: its URL, home (store and catalog) and log (JSON lines)."""

    def __init__(self, url: str, home: Path, log: Path) -> None:
        self.url, self.home, self.log = url, home, log

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
        return raw("GET", self.url + path, headers)

    def head(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
        return raw("HEAD", self.url + path, headers)

    def health(self) -> dict[str, Any]:
        return json.loads(self.get("/healthz")[2])

    def metrics(self) -> dict[str, float]:
        text = self.get("/metrics")[2].decode()
        return {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if not line.startswith("#")}

    @property
    @abc.abstractmethod
    def running(self) -> bool:
        """Whether it still serves."""

    @abc.abstractmethod
    def stop(self) -> int:
        """Shut down gracefully; the exit code (0: clean)."""


class DaemonThread(Daemon):
    """The mirror served in this process by a background thread's event loop, stopped like SIGTERM stops
    `mreg serve` (daemon.app.listening's exit). Its log holds what every daemon running meanwhile logged."""

    def __init__(self, home: Path, upstream: str, *args: str, env: dict[str, str] | None = None) -> None:
        environment = daemon_env(home, upstream, env)
        options = serve_command.make_context("serve", ["--port", "0", *args]).params
        settings = (Settings.from_env(environment).with_database_url(options.pop("database_url"))
                    .with_store(options.pop("store")))
        self._config = serve_config(settings, **options, env=environment)
        self._app = build_app(self._config, settings)
        self._started = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self._handler = logging.FileHandler(home.parent / f"daemon-{id(self)}.log", encoding="utf-8")
        self._handler.setFormatter(JsonLines())
        self._levels = {name: logging.getLogger(name).level for name in LOGGERS}
        for name in LOGGERS:
            logging.getLogger(name).addHandler(self._handler)
            logging.getLogger(name).setLevel(logging.INFO)
        super().__init__("", home, Path(self._handler.baseFilename))
        # a daemon thread: one whose loop hangs fails its test (``stop``) without keeping pytest from exiting
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), name=f"mreg-serve-{id(self)}",
                                        daemon=True)
        self._thread.start()
        if not self._started.wait(START_DEADLINE) or self._error is not None:
            self.stop()
            raise AssertionError(f"the in-process daemon did not start: {self.log.read_text()}")

    async def _serve(self) -> None:
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        try:
            async with listening(self._app, self._config) as addresses:
                self.url = f"http://127.0.0.1:{addresses[0][1]}"
                self._started.set()
                await self._stopping.wait()
        except BaseException as exc:
            self._error = exc
            logging.getLogger("mreg.daemon").error("the daemon failed: %s", "".join(traceback.format_exception(exc)))
        finally:
            self._started.set()

    def call(self, step: Callable[[Mirror], Awaitable[Any]], deadline: float = 60) -> Any:
        """Run ``step(mirror)`` on the daemon's event loop (for a test to interleave with its own work)."""
        assert self._loop is not None

        async def run() -> Any:
            return await step(self._app[MIRROR])

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(deadline)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> int:
        if self._loop is not None and self._stopping is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(START_DEADLINE)
        for name, level in self._levels.items():
            logging.getLogger(name).removeHandler(self._handler)
            logging.getLogger(name).setLevel(level)
        self._handler.close()
        assert not self._thread.is_alive(), "the in-process daemon did not stop"
        return 0 if self._error is None else 1


class DaemonProcess(Daemon):
    """A real `mreg serve` process."""

    def __init__(self, home: Path, upstream: str, *args: str, env: dict[str, str] | None = None) -> None:
        port = free_port()
        env = daemon_env(home, upstream, env)
        log = home.parent / f"daemon-{port}.log"
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mreg.cli.main", "serve", "--port", str(port), *args],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        super().__init__(f"http://127.0.0.1:{port}", home, log)

        def up() -> bool:
            assert self.process.poll() is None, log.read_text()
            try:
                return self.get("/healthz")[0] == 200
            except OSError:
                return False

        wait_for(up, START_DEADLINE, "the daemon's /healthz")

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> int:
        """SIGTERM, then the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


def start_daemon(home: Path, upstream: str, *args: str, env: dict[str, str] | None = None) -> Daemon:
    """The mirror in this process with MREG_HOME=home, `mreg serve` options ARGS and the variables ``env``;
    returns once it listens."""
    return DaemonThread(home, upstream, *args, env=env)


def start_daemon_process(home: Path, upstream: str, *args: str, env: dict[str, str] | None = None) -> DaemonProcess:
    """`python -m mreg.cli.main serve ARGS` on a free port with MREG_HOME=home and the variables ``env``;
    returns once /healthz answers."""
    return DaemonProcess(home, upstream, *args, env=env)


def running_daemon(test_hub: TestHub, tmp_path: Path, start: Callable[..., Daemon] = start_daemon,
                   database_url: str | None = None, backend: Backend | None = None) -> Iterator[Daemon]:
    """The body of the `daemon` fixtures: the mirror in front of `test_hub` (its catalog at ``database_url``
    if given, else in its home; on ``backend``'s catalog and store if given), which must stop cleanly; tokens
    never reach its log or its store."""
    args = ("--database-url", database_url) if database_url else ()
    args += backend.args if backend else ()
    running = start(tmp_path / "home", test_hub.endpoint, *args)
    try:
        yield running
    finally:
        code = running.stop()
        written = running.log.read_bytes() + b"".join(p.read_bytes() for p in running.home.rglob("*")
                                                     if p.is_file() and not p.is_symlink())
        assert code == 0, running.log.read_text()
        assert not any(token.encode() in written for token in TOKENS)
