"""A full disk is a one-line error and never publishes anything (a real tmpfs, so root only)."""

from __future__ import annotations

import asyncio
import errno
import gc
import hashlib
import http.client
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from mreg.registry.download import FileSpec, download_file
from mreg.registry.download.state import TransferState
from mreg.registry.errors import StoreError
from mreg.registry.upstream.hub import HubClient
from mreg.registry.repo import RepoRef
from mreg.registry.store import Store
from tests.daemons import ROOT, daemon_env, start_daemon, wait_for
from tests.pulling import FAST_RETRY, FAST_TUNING, pull_repo
from tests.testhub import TestHub, small_repo

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
SMOLLM = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


CATALOG_SLACK = 256 * 1024
"""What the catalog on the same disk may grow by meanwhile (it records the failed transfer: a page or two)."""


def take_space(disk: Path, leave: int) -> Path:
    """A file taking all of ``disk``'s free space but ``leave`` bytes, measured again if a download running
    meanwhile took some between the measure and the allocation."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        taken = 0
        while (free := shutil.disk_usage(disk).free) > leave:
            try:
                os.posix_fallocate(fd, taken, free - leave)
                taken += free - leave
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(fd)
    return filler


async def test_pull_refuses_early_when_it_cannot_fit(test_hub: TestHub, small_disk: Path) -> None:
    with pytest.raises(StoreError, match="not enough disk space"):
        await pull_repo(test_hub.endpoint, small_disk, SMOLLM)
    assert not [p for p in (small_disk / "blobs").rglob("*") if p.is_file()]


async def test_disk_filling_up_mid_download_is_a_store_error(test_hub: TestHub, small_disk: Path) -> None:
    repo = RepoRef.parse(SMOLLM)
    head = test_hub.repo(SMOLLM).head
    name = next(p for p in head.files if p.endswith(".gguf"))
    entry = head.files[name]
    store = Store(small_disk)
    spec = FileSpec(path=name, size=entry.blob.size, git_oid=entry.oid, sha256=entry.blob.sha256)
    async with aiohttp.ClientSession() as session:
        client = HubClient(session, test_hub.endpoint, None, FAST_RETRY)
        with pytest.raises(StoreError, match=f"{name}: cannot write the partial download \\(disk full\\)"):
            await download_file(client, spec, lambda: client.locate(repo, head.sha, name), store,
                                asyncio.Semaphore(4), FAST_TUNING)
    assert not store.has_blob(entry.blob.sha256)


async def test_a_full_disk_leaves_no_traceback_and_no_half_written_state(test_hub: TestHub, small_disk: Path) -> None:
    """#14.8: the hasher is done before the partial file's descriptor closes (no 'Task exception was never
    retrieved … Bad file descriptor'), and a state file the full disk cut short is removed."""
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: unhandled.append(context))
    try:
        await test_disk_filling_up_mid_download_is_a_store_error(test_hub, small_disk)
        gc.collect()  # an exception never retrieved is reported when its task is collected
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert unhandled == []
    assert not [p for p in (small_disk / "partial").iterdir() if p.name.endswith(".tmp")]


def test_mreg_pull_on_a_disk_filling_up_exits_5_with_one_line_and_no_traceback(test_hub: TestHub,
                                                                              small_disk: Path) -> None:
    """#14.8, the real `mreg pull` process: a disk that fills up mid-download (room when the pull checked) ends
    the pull with exit 5 and one line naming the file, nothing after it (no traceback, no 'Task exception was
    never retrieved'), and no state file cut short. The catalog is on the full disk too: failing to record
    the failed download must not hide why it failed."""
    data = os.urandom(24 * 2**20)
    test_hub.add_repo(small_repo("testorg/filling", {"big.bin": data}))
    sha = hashlib.sha256(data).hexdigest()
    test_hub.faults.throttle = 2 * 2**20  # per connection: the pull is still running when the disk fills
    home = small_disk / "home"
    env = daemon_env(home, test_hub.endpoint)
    pull = subprocess.Popen([sys.executable, "-m", "mreg.cli.main", "pull", "testorg/filling"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        state = home / "partial" / f"{sha}.state.json"
        wait_for(lambda: state.exists() and TransferState.load(state, len(data), sha).completed > 2**20, 60,
                 "the pull's first saved progress")
        take_space(small_disk, leave=2**20)  # the rest of the file cannot fit
        _, err = pull.communicate(timeout=120)
    finally:
        if pull.poll() is None:
            pull.kill()
    lines = err.decode().strip().splitlines()
    assert pull.returncode == 5, err.decode()
    assert lines[0].startswith("pulling testorg/filling@") and len(lines) == 2, lines  # the plan, then the error
    assert lines[1] == "mreg: error: big.bin: cannot write the partial download (disk full)", lines
    assert not [p for p in (home / "partial").iterdir() if p.name.endswith(".tmp")]


async def test_resuming_needs_room_only_for_the_missing_bytes(test_hub: TestHub, small_disk: Path,
                                                             tmp_path: Path) -> None:
    """#14.8: an interrupted pull holding most of a file resumes on a disk with room for the rest only."""
    data = os.urandom(24 * 2**20)
    test_hub.add_repo(small_repo("testorg/resume", {"big.bin": data}))
    sha = hashlib.sha256(data).hexdigest()
    test_hub.faults.throttle = 4 * 2**20  # per connection: the pull is still running when it is interrupted
    pulling = asyncio.ensure_future(pull_repo(test_hub.endpoint, small_disk, "testorg/resume"))
    state = small_disk / "partial" / f"{sha}.state.json"
    for _ in range(2000):  # until the download has saved some progress
        if state.exists() and TransferState.load(state, len(data), sha).completed > 8 * 2**20:
            break
        await asyncio.sleep(0.01)
    pulling.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pulling
    held = TransferState.load(state, len(data), sha).completed
    assert 8 * 2**20 < held < len(data)
    test_hub.faults.throttle = None
    free = shutil.disk_usage(small_disk).free
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (free - (len(data) - held) - 2 * 2**20))  # room for the rest, not the whole file
    assert shutil.disk_usage(small_disk).free < len(data)
    result = await pull_repo(test_hub.endpoint, small_disk, "testorg/resume")
    assert (result.path / "big.bin").read_bytes() == data


def test_the_daemon_frees_the_partial_of_a_transfer_the_full_disk_failed(test_hub: TestHub, small_disk: Path) -> None:
    """#14.8: a mirror's transfer cut by a full disk removes its partial at once (the space comes back, the next
    miss starts cleanly), and the same request succeeds once there is room."""
    data = os.urandom(24 * 2**20)
    sha = hashlib.sha256(data).hexdigest()
    test_hub.add_repo(small_repo("testorg/full", {"big.bin": data}))
    home = small_disk / "home"
    unhandled = Records()  # what the daemon's event loop reports (its log holds mreg's and aiohttp's loggers)
    logging.getLogger("asyncio").addHandler(unhandled)
    daemon = start_daemon(home, test_hub.endpoint)
    try:
        url = "/testorg/full/resolve/main/big.bin"
        assert daemon.head(url)[0] == 200  # the metadata is in the store and catalog before the disk fills
        filler = take_space(small_disk, leave=8 * 2**20)  # a third of the file fits
        before = shutil.disk_usage(small_disk).free
        with pytest.raises(http.client.IncompleteRead):
            daemon.get(url)
        assert not (home / "partial" / sha).exists() and not (home / "partial" / f"{sha}.state.json").exists()
        assert shutil.disk_usage(small_disk).free >= before - CATALOG_SLACK  # the partial's megabytes came back
        filler.unlink()
        status, _, body = daemon.get(url)
        assert status == 200 and body == data
    finally:
        assert daemon.stop() == 0
        gc.collect()  # an exception never retrieved is reported when its task is collected
        logging.getLogger("asyncio").removeHandler(unhandled)
    assert "Traceback" not in daemon.log.read_text() and unhandled.messages == []


class Records(logging.Handler):
    """Keeps the messages logged to it."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
