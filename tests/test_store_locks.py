"""A pull waiting for a gc's store locks keeps its event loop running: a daemon runs pulls (mirror jobs,
conversions) and its own gc rounds on one loop, so a blocking wait there could never end (CI once saw a
daemon hang so). Here another thread holds the lock, as the gc would, until the loop has ticked a few
times after the pull recorded its revision (just before it takes the locks); a loop blocked in the wait
would not tick, and the lock would go only at the deadline."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mreg.registry.store import LINKS_LOCK, Store
from tests.pulling import pull_repo
from tests.testhub import TestHub, small_repo

TICKS = 5
DEADLINE = 20.0


class Ticker:
    """Counts event loop turns once ``ready()`` is true (it only measures: nothing waits on it)."""

    def __init__(self, ready: Callable[[], bool]) -> None:
        self.ready = ready
        self.ticks = 0
        self.reached = threading.Event()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            if self.ticks or self.ready():
                self.ticks += 1
            if self.ticks >= TICKS:
                self.reached.set()


def recorded(home: Path, repo_id: str, before: int = 0) -> Callable[[], bool]:
    """Whether the catalog under ``home`` has more than ``before`` revisions of ``repo_id`` yet."""
    def check() -> bool:
        if not (home / "catalog.db").exists():
            return False
        with sqlite3.connect(home / "catalog.db") as db:
            try:
                return db.execute("SELECT count(*) FROM revisions JOIN repos ON revisions.repo = repos.id "
                                  "WHERE repos.repo_id = ?", (repo_id,)).fetchone()[0] > before
            except sqlite3.OperationalError:  # not migrated yet
                return False

    return check


@contextmanager
def held_by_a_thread(take: Callable[[], Iterator[object]], ticker: Ticker) -> Iterator[list[bool]]:
    """A thread takes a lock with ``take`` (a generator that yields once it holds it) and lets it go once
    ``ticker`` reached ``TICKS`` (or at ``DEADLINE``); the list holds whether the ticks released it."""
    holding, released_by_ticks = threading.Event(), []

    def hold() -> None:
        steps = take()
        next(steps)
        holding.set()
        released_by_ticks.append(ticker.reached.wait(DEADLINE))
        next(steps, None)

    thread = threading.Thread(target=hold)
    thread.start()
    assert holding.wait(DEADLINE)
    try:
        yield released_by_ticks
    finally:
        thread.join(DEADLINE)


async def _pull_while_held(endpoint: str, home: Path, repo_id: str, take: Callable[[], Iterator[object]],
                           before: int = 0) -> bool:
    ticker = Ticker(recorded(home, repo_id, before))
    with held_by_a_thread(take, ticker) as released_by_ticks:
        ticking = asyncio.create_task(ticker.run())
        try:
            await pull_repo(endpoint, home, repo_id)
        finally:
            ticking.cancel()
    return released_by_ticks == [True]


async def test_a_pull_waits_for_a_running_gc_without_blocking_its_event_loop(test_hub: TestHub, tmp_path: Path) -> None:
    test_hub.add_repo(small_repo("org/a"))
    home = tmp_path / "home"

    def gc_quiet() -> Iterator[object]:  # the gc's hold on the pulls lock (collect_garbage)
        with Store(home).quiet() as no_pulls:
            assert no_pulls
            yield

    assert await _pull_while_held(test_hub.endpoint, home, "org/a", gc_quiet)
    assert (Store(home).snapshot_dir(*_head(test_hub, "org/a")) / "weights.bin").is_file()


async def test_linking_waits_for_a_gc_scan_without_blocking_its_event_loop(test_hub: TestHub, tmp_path: Path) -> None:
    repo = test_hub.add_repo(small_repo("org/a"))
    home = tmp_path / "home"
    await pull_repo(test_hub.endpoint, home, "org/a")
    repo.commit({"config.json": '{"model_type": "tiny", "hidden_size": 16}\n'})  # its other files: only linked

    def gc_scan() -> Iterator[object]:  # the gc's hold on the links lock while it scans and deletes (Store.gc)
        fd = os.open(home / LINKS_LOCK, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    assert await _pull_while_held(test_hub.endpoint, home, "org/a", gc_scan, before=1)
    assert test_hub.stats.cdn_bytes == len(bytes(range(256)) * 64)  # the new revision's weights were linked, not fetched
    assert (Store(home).snapshot_dir(*_head(test_hub, "org/a")) / "weights.bin").is_file()


def _head(test_hub: TestHub, repo_id: str) -> tuple[object, str]:
    from mreg.registry.repo import RepoRef

    return RepoRef.parse(repo_id), test_hub.repo(repo_id).head.sha
