"""Showing a pull's progress: rich bars on a terminal, a few plain lines otherwise.

rich is imported only where its bars may be shown: importing it costs a pull to a pipe ~0.05 s of CPU
(issue #16)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from mreg.registry.repo import RepoRef
from mreg.registry.units import human_size

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import TaskID


def pull_progress(quiet: bool = False) -> RichProgress | PlainProgress:
    """Bars on stderr when rich's ``Console`` takes it for a terminal (and not ``quiet``), else plain lines."""
    if not quiet and _may_be_terminal(sys.stderr):
        from rich.console import Console

        console = Console(stderr=True)
        if console.is_terminal:
            return RichProgress(console)
    return PlainProgress()


def _may_be_terminal(stream: TextIO) -> bool:
    """False only where rich's ``Console.is_terminal`` is False too: not a tty, and neither of the variables
    that make rich treat any stream as a terminal (``TTY_COMPATIBLE``, ``FORCE_COLOR``) is set."""
    if "TTY_COMPATIBLE" in os.environ or "FORCE_COLOR" in os.environ:
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream (rich says False to both)
        return False


class RichProgress:
    """A total bar plus one bar per file in flight (bytes, speed, ETA)."""

    def __init__(self, console: Console) -> None:
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)

        self._progress = Progress(
            TextColumn("{task.description}", justify="left"), BarColumn(), DownloadColumn(),
            TransferSpeedColumn(), TimeRemainingColumn(), console=console, transient=False)
        self._sizes: dict[str, int] = {}
        self._tasks: dict[str, TaskID] = {}
        self._total: TaskID | None = None

    def __enter__(self) -> "RichProgress":
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def start(self, repo: RepoRef, commit: str, files: Sequence[tuple[str, int]]) -> None:
        self._sizes = dict(files)
        self._total = self._progress.add_task(f"{repo}@{commit[:10]}", total=sum(self._sizes.values()))

    def advance(self, path: str, nbytes: int) -> None:
        if path not in self._tasks:
            label = path if len(path) <= 40 else "…" + path[-39:]
            self._tasks[path] = self._progress.add_task(f"  {label}", total=self._sizes.get(path, 0))
        self._progress.advance(self._tasks[path], nbytes)
        if self._total is not None:
            self._progress.advance(self._total, nbytes)

    def file_done(self, path: str, fetched: int) -> None:
        task = self._tasks.pop(path, None)
        if task is not None:
            self._progress.remove_task(task)


class PlainProgress:
    """Quiet logging for pipes and CI: one line per downloaded file and a summary every so often."""

    INTERVAL = 10.0

    def __init__(self, stream=sys.stderr) -> None:
        self._stream = stream
        self._total = 0
        self._done = 0
        self._started = time.monotonic()
        self._last = self._started

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def _say(self, line: str) -> None:
        print(line, file=self._stream, flush=True)

    def start(self, repo: RepoRef, commit: str, files: Sequence[tuple[str, int]]) -> None:
        self._total = sum(size for _, size in files)
        self._say(f"pulling {repo}@{commit}: {len(files)} files, {human_size(self._total)}")

    def advance(self, path: str, nbytes: int) -> None:
        self._done += nbytes
        now = time.monotonic()
        if now - self._last >= self.INTERVAL:
            self._last = now
            rate = self._done / max(now - self._started, 1e-9)
            self._say(f"  {human_size(self._done)} / {human_size(self._total)} ({human_size(rate)}/s)")

    def file_done(self, path: str, fetched: int) -> None:
        if fetched:
            self._say(f"  fetched {path} ({human_size(fetched)})")
