"""`mreg rm` and `mreg gc` next to running mirrors on the same store (#14.6, #14.8): the real CLI, real
daemons and the real huggingface_hub client."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from huggingface_hub import hf_hub_download, snapshot_download

from mreg.registry.fills.shared import not_resumable
from mreg.registry.download import FileSpec, download_file
from mreg.registry.errors import MregError, UpstreamUnavailableError
from mreg.registry.repo import RepoRef
from mreg.registry.store import Store
from mreg.registry.upstream.hub import HubClient
from tests.daemons import Daemon, running_daemon, start_daemon_process, wait_for
from tests.mreg_cli import mreg
from tests.pulling import FAST_RETRY, FAST_TUNING
from tests.testhub import TestHub, small_repo

pytestmark = pytest.mark.timeout(120)
pytest_plugins = ("tests.mreg_env",)

REPO = "testorg/tiny-model"
CACHE = "models--testorg--tiny-model"


@pytest.fixture
def daemon(test_hub: TestHub, tmp_path: Path, mreg_env: dict[str, str]) -> Iterator[Daemon]:
    """The mirror in this process, on the same MREG_HOME as `mreg` (tests.mreg_cli)."""
    yield from running_daemon(test_hub, tmp_path)


def listed() -> list[tuple[str, bool]]:
    """`mreg ls`: (repo, complete) of every repo."""
    code, out, err = mreg("ls", "--json")
    assert code == 0, err
    return [(r["repo"], r["complete"]) for r in json.loads(out)]


def on_disk(home: Path) -> dict[str, bytes]:
    """Every file linked into a snapshot of REPO, read through its link (relpath below snapshots/ → bytes)."""
    snapshots = home / "hub" / CACHE / "snapshots"
    return {p.relative_to(snapshots).as_posix(): p.read_bytes() for p in sorted(snapshots.rglob("*"))
            if p.is_symlink()} if snapshots.is_dir() else {}


def verified(repo: str, revision: str = "main") -> None:
    code, out, err = mreg("verify", repo, "--revision", revision)
    assert code == 0, out + err


def test_rm_then_the_daemon_fetches_stores_and_catalogs_the_repo_again(daemon: Daemon, test_hub: TestHub,
                                                                       tmp_path: Path) -> None:
    test_hub.add_repo(small_repo(REPO))
    first = Path(snapshot_download(REPO, cache_dir=tmp_path / "c1", endpoint=daemon.url, token=False))
    assert listed() == [(REPO, True)]
    weights = test_hub.repo(REPO).head.files["weights.bin"].blob
    assert test_hub.stats.cdn_bytes == weights.size
    code, _, err = mreg("rm", REPO)
    assert code == 0, err
    assert listed() == [] and on_disk(daemon.home) == {}

    again = Path(snapshot_download(REPO, cache_dir=tmp_path / "c2", endpoint=daemon.url, token=False))
    assert {p.name: p.read_bytes() for p in again.rglob("*") if p.is_file()} == \
        {p.name: p.read_bytes() for p in first.rglob("*") if p.is_file()}
    assert test_hub.stats.cdn_bytes == 2 * weights.size  # fetched through again, not trusted from memory
    assert listed() == [(REPO, True)]
    verified(REPO)
    commit = test_hub.repo(REPO).head.sha
    assert sorted(on_disk(daemon.home)) == sorted(f"{commit}/{p}" for p in test_hub.repo(REPO).head.files)
    assert (daemon.home / "hub" / CACHE / "refs" / "main").read_text() == commit
    snapshot_download(REPO, cache_dir=tmp_path / "c3", endpoint=daemon.url, token=False)
    assert test_hub.stats.cdn_bytes == 2 * weights.size  # stored again: the next client is served from the store
    assert '"ERROR"' not in daemon.log.read_text()


def test_rm_and_gc_while_the_daemon_fetches_the_repo(daemon: Daemon, test_hub: TestHub, tmp_path: Path) -> None:
    """rm while a transfer runs: the transfer's partial survives `mreg gc`; the file that lands records the
    revision again, so `mreg ls` agrees with the snapshot on disk."""
    data = os.urandom(24 * 2**20)
    sha = hashlib.sha256(data).hexdigest()
    test_hub.add_repo(small_repo(REPO, {"big.bin": data}))
    test_hub.faults.throttle = 2 * 2**20  # per connection: the transfer runs for a few seconds
    got: list[str] = []
    client = threading.Thread(target=lambda: got.append(
        hf_hub_download(REPO, "big.bin", cache_dir=tmp_path / "c1", endpoint=daemon.url, token=False)))
    client.start()
    state = daemon.home / "partial" / f"{sha}.state.json"
    wait_for(state.exists, 30, "the daemon's transfer to start")
    assert mreg("rm", REPO)[0] == 0
    code, out, err = mreg("gc", "--json")
    assert code == 0 and json.loads(out)["removed_partials"] == 0, err
    assert (daemon.home / "partial" / sha).exists()  # the daemon is writing it
    test_hub.faults.throttle = None
    client.join(60)
    assert got and Path(got[0]).read_bytes() == data
    wait_for(lambda: listed() == [(REPO, True)], 10, "the file to be recorded")
    commit = test_hub.repo(REPO).head.sha
    assert on_disk(daemon.home) == {f"{commit}/big.bin": data}
    verified(REPO, commit)  # (no ref: rm removed it, and no client has asked for main since)
    assert test_hub.stats.cdn_bytes == len(data)  # one transfer, never restarted


def test_two_daemons_on_one_store_serve_a_repo_rm_removed(daemon: Daemon, test_hub: TestHub, tmp_path: Path) -> None:
    """The mirror in this process and a `mreg serve` process on the same store: rm reaches both."""
    test_hub.add_repo(small_repo(REPO))
    other = start_daemon_process(daemon.home, test_hub.endpoint)
    try:
        for n, mirror in enumerate((daemon, other)):
            snapshot_download(REPO, cache_dir=tmp_path / f"a{n}", endpoint=mirror.url, token=False)
        assert listed() == [(REPO, True)]
        assert mreg("rm", REPO)[0] == 0
        for n, mirror in enumerate((other, daemon)):
            folder = Path(snapshot_download(REPO, cache_dir=tmp_path / f"b{n}", endpoint=mirror.url, token=False))
            assert (folder / "weights.bin").read_bytes() == bytes(range(256)) * 64
            assert listed() == [(REPO, True)]
        verified(REPO)
    finally:
        assert other.stop() == 0
    assert '"ERROR"' not in daemon.log.read_text() + other.log.read_text()


@pytest.mark.parametrize(("status", "kept"), [(503, True), (404, False)])
async def test_a_failed_transfer_keeps_its_partial_only_when_upstream_was_unreachable(
        test_hub: TestHub, tmp_path: Path, status: int, kept: bool) -> None:
    """#14.8: the daemon's downloads (``not_resumable``) keep a partial only for a failure the next miss may resume."""
    data = os.urandom(3 * 2**20)
    test_hub.add_repo(small_repo(REPO, {"big.bin": data}))
    head = test_hub.repo(REPO).head
    entry = head.files["big.bin"]
    store = Store(tmp_path / "home")
    spec = FileSpec(path="big.bin", size=len(data), git_oid=entry.oid, sha256=entry.blob.sha256)
    test_hub.faults.fail(status, count=1000, route="cdn")
    async with aiohttp.ClientSession() as session:
        client = HubClient(session, test_hub.endpoint, None, FAST_RETRY)
        with pytest.raises(MregError) as failed:
            await download_file(client, spec, lambda: client.locate(RepoRef.parse(REPO), head.sha, "big.bin"), store,
                                asyncio.Semaphore(4), FAST_TUNING, discard=not_resumable)
    assert isinstance(failed.value, UpstreamUnavailableError) is kept
    assert store.partial_paths(spec.key)[0].exists() is kept
