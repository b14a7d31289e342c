"""Requests that miss the store while a transfer of the same content records it, or just after: they join that
transfer (one upstream copy), get the whole file, and their commits get it linked (#16 item 3).

The windows are held open by fault injection around the real catalog: the daemon's ``Commits.mark_stored`` waits
for the test before it records, and a request's ``Commits.stored_blob`` before it answers.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mreg.daemon.state import Mirror
from mreg.registry.maintenance import remove
from mreg.registry.repo import RepoRef

from tests.backends import Backend
from tests.daemons import Daemon, running_daemon, wait_for
from tests.testhub import TestHub
from tests.testhub.repos import HubRepo

pytestmark = pytest.mark.timeout(120)

REPO = "org/joins"
FILE = "model.bin"


@pytest.fixture
def daemon(test_hub: TestHub, tmp_path: Path, backend: Backend) -> Iterator[Daemon]:
    yield from running_daemon(test_hub, tmp_path, backend=backend)


@pytest.fixture
def local_daemon(test_hub: TestHub, tmp_path: Path, local_backend: Backend) -> Iterator[Daemon]:
    """On the embedded backend alone: ``mreg rm`` removes blobs of a local store only."""
    yield from running_daemon(test_hub, tmp_path, backend=local_backend)


class Getter(threading.Thread):
    """A GET of ``path`` from the daemon in a thread of its own: its status and body once joined."""

    def __init__(self, daemon: Daemon, path: str) -> None:
        super().__init__()
        self._daemon, self._path = daemon, path
        self.answer: tuple[int, Any, bytes] | None = None
        self.start()

    def run(self) -> None:
        self.answer = self._daemon.get(self._path)

    def body(self) -> bytes:
        self.join(60)
        assert self.answer is not None and self.answer[0] == 200, self.answer
        return self.answer[2]


def hold_records(daemon: Daemon) -> tuple[threading.Event, Callable[[], None]]:
    """Make the daemon wait before it records ``FILE`` stored in any commit: an event set once it waits, and
    the function that lets it go on."""
    waiting = threading.Event()

    async def install(mirror: Mirror) -> asyncio.Event:
        go, record = asyncio.Event(), mirror.commits.mark_stored

        async def held(meta: Any, path: str, sha256: str) -> None:
            if path == FILE:
                waiting.set()
                await go.wait()
            await record(meta, path, sha256)

        mirror.commits.mark_stored = held  # type: ignore[method-assign]
        return go

    go: asyncio.Event = daemon.call(install)

    async def release(_: Mirror) -> None:
        go.set()

    return waiting, lambda: daemon.call(release)


def hold_lookup(daemon: Daemon, commit: str) -> tuple[threading.Event, Callable[[], None]]:
    """Make the daemon's next look in the store for ``FILE`` of ``commit`` wait before it answers what it
    found: an event set once it waits, and the function that lets it answer."""
    waiting = threading.Event()

    async def install(mirror: Mirror) -> asyncio.Event:
        go, commits, look = asyncio.Event(), mirror.commits, mirror.commits.stored_blob

        async def slow(meta: Any, path: str) -> str | None:
            found = await look(meta, path)
            if meta.commit == commit and path == FILE:
                commits.stored_blob = look  # type: ignore[method-assign]
                waiting.set()
                await go.wait()
            return found

        commits.stored_blob = slow  # type: ignore[method-assign]
        return go

    go: asyncio.Event = daemon.call(install)

    async def release(_: Mirror) -> None:
        go.set()

    return waiting, lambda: daemon.call(release)


def stored_in(daemon: Daemon, commit: str) -> bool:
    """Whether the catalog records ``FILE`` of ``commit`` complete."""

    async def look(mirror: Mirror) -> bool:
        files = await mirror.catalog.revision_files(RepoRef.parse(REPO), commit)
        return any(f.path == FILE and f.state == "complete" for f in files)

    return bool(daemon.call(look))


def test_requests_joining_while_a_transfer_records_or_just_after_share_its_one_upstream_copy(
        daemon: Daemon, test_hub: TestHub) -> None:
    content = bytes(range(256)) * 12_000  # 3 MB, in LFS
    repo = test_hub.add_repo(HubRepo(REPO))
    first = repo.commit({FILE: content})
    second = repo.commit({"README.md": "second\n"})  # the same content at FILE in each commit
    third = repo.commit({"README.md": "third\n"})

    def upstream_copies() -> float:
        return test_hub.stats.bytes_by_sha256[repo.head.files[FILE].blob.sha256] / len(content)

    recording, record = hold_records(daemon)

    early = Getter(daemon, f"/{REPO}/resolve/{first}/{FILE}")
    assert recording.wait(60), "the transfer did not reach its record"
    while_recording = Getter(daemon, f"/{REPO}/resolve/{second}/{FILE}")  # misses the store: not recorded yet
    wait_for(lambda: daemon.metrics()["mreg_cache_misses_total"] == 2, 30, "the second request to miss the store")
    looking, answer = hold_lookup(daemon, third)
    late = Getter(daemon, f"/{REPO}/resolve/{third}/{FILE}")  # looks in the store before the record...
    assert looking.wait(60), "the third request did not look in the store"
    record()
    assert early.body() == content and while_recording.body() == content
    assert upstream_copies() == 1 and stored_in(daemon, first) and stored_in(daemon, second)
    answer()  # ... and joins after it
    assert late.body() == content
    assert daemon.metrics()["mreg_cache_misses_total"] == 3 and upstream_copies() == 1
    wait_for(lambda: stored_in(daemon, third), 30, f"{FILE} recorded in the third commit")


def test_a_removal_from_the_store_ends_the_lingering_of_the_transfers_that_finished(
        local_daemon: Daemon, test_hub: TestHub) -> None:
    daemon, content = local_daemon, bytes(range(256)) * 4_000
    repo = test_hub.add_repo(HubRepo(REPO))
    path = f"/{REPO}/resolve/{repo.commit({FILE: content})}/{FILE}"
    assert daemon.get(path)[::2] == (200, content)
    daemon.call(lambda mirror: remove(mirror.store, mirror.catalog, RepoRef.parse(REPO)))  # `mreg rm`: blob gone
    assert daemon.get(path)[::2] == (200, content)  # from a new transfer, not the one that lingers
    assert test_hub.stats.bytes_by_sha256[repo.head.files[FILE].blob.sha256] == 2 * len(content)
