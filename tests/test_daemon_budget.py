"""`mreg serve --max-size`: a stream of requests for ~1 GB of repos through a mirror with a 300 MB budget,
pins and mirror jobs kept, an evicted repo fetched again, a client reading while rounds run."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import hf_hub_download

from mreg.daemon import visibility
from mreg.daemon.state import Mirror
from mreg.registry.removals import note_removal
from mreg.registry.repo import RepoRef
from mreg.registry.store import Store
from tests.daemons import Daemon, DaemonThread, connection, sha256_of_download, start_daemon, wait_for
from tests.testhub import HubRepo, TestHub
from tests.testhub.content import Blob

MB = 1_000_000
REPOS = 14
SIZE = 70 * MB
"""14 repos of 70 MB: ~1 GB through a 300 MB budget."""


def _random_file(path: Path, size: int) -> Path:
    with path.open("wb") as out:
        for _ in range(size // MB):
            out.write(os.urandom(MB))
    return path


@pytest.fixture
def hub(test_hub: TestHub, tmp_path: Path) -> TestHub:
    for i in range(REPOS):
        weights = Blob.from_file(_random_file(tmp_path / f"weights-{i}.bin", SIZE))
        test_hub.add_repo(HubRepo(f"org/r{i}")).commit({"config.json": json.dumps({"n": i}), "model.bin": weights})
    return test_hub


@pytest.fixture
def daemon(hub: TestHub, tmp_path: Path) -> Iterator[Daemon]:
    running = start_daemon(tmp_path / "home", hub.endpoint, "--max-size", "300MB", "--evict-every", "0.1")
    try:
        yield running
    finally:
        assert running.stop() == 0, running.log.read_text()


def _post(daemon: Daemon, path: str, body: dict) -> int:
    conn = connection(daemon.url)
    try:
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _rounds(daemon: Daemon) -> float:
    return daemon.metrics()["mreg_eviction_rounds_total"]


def _after_a_round(daemon: Daemon) -> dict[str, float]:
    """The metrics once a whole budget round ran after this call."""
    seen = _rounds(daemon)
    wait_for(lambda: _rounds(daemon) >= seen + 2, 60, "an eviction round")
    return daemon.metrics()


def _repos(daemon: Daemon) -> dict[str, dict]:
    return {r["repo"]: r for r in json.loads(daemon.get("/v1/repos")[2])}


def test_a_stream_of_repos_stays_within_the_budget_keeping_pinned_and_mirrored_ones(
        daemon: Daemon, hub: TestHub, tmp_path: Path) -> None:
    expected = {f"org/r{i}": hashlib.sha256((tmp_path / f"weights-{i}.bin").read_bytes()).hexdigest()
                for i in range(REPOS)}
    assert _post(daemon, "/v1/pins", {"repo": "org/r0"}) == 201
    assert _post(daemon, "/v1/jobs", {"repo": "org/r1"}) == 201  # mirrored: `mreg mirror add` means keep it
    wait_for(lambda: _repos(daemon).get("org/r1", {}).get("complete", False), 120, "the mirror job's sync")
    for i in (0, *range(2, REPOS)):
        assert sha256_of_download(daemon, f"/org/r{i}/resolve/main/model.bin") == expected[f"org/r{i}"]
        metrics = _after_a_round(daemon)
        assert metrics["mreg_store_bytes"] <= 0.95 * 300 * MB, metrics  # within budget after every round
    repos = _repos(daemon)
    assert repos["org/r0"]["pinned"] and repos["org/r1"]["mirrored"]
    kept = sorted(repos, key=lambda name: int(name.removeprefix("org/r")))
    # 140 MB pinned and mirrored; of the rest, only the two most recently used fit under the high mark (285 MB)
    assert kept == ["org/r0", "org/r1", f"org/r{REPOS - 2}", f"org/r{REPOS - 1}"], kept
    metrics = daemon.metrics()
    assert metrics["mreg_evictions_total"] == REPOS - 4 and metrics["mreg_store_budget_bytes"] == 300 * MB
    assert metrics["mreg_evicted_bytes_total"] >= (REPOS - 4) * SIZE
    evictions = [json.loads(line) for line in daemon.log.read_text().splitlines() if '"evicted"' in line]
    assert [(e["repo"], e["why"]) for e in evictions] == [(f"org/r{i}", "least recently used")
                                                         for i in range(2, REPOS - 2)]
    assert all(e["bytes"] == SIZE for e in evictions)  # the weights each client fetched

    # an evicted repo is a cache miss again, for the real client too
    got = hf_hub_download("org/r2", "model.bin", cache_dir=tmp_path / "hf", endpoint=daemon.url)
    assert hashlib.sha256(Path(got).read_bytes()).hexdigest() == expected["org/r2"]
    assert "org/r2" in _repos(daemon)


def test_a_client_reading_while_rounds_run_gets_every_byte_and_the_revision_goes_after(
        test_hub: TestHub, tmp_path: Path) -> None:
    weights = _random_file(tmp_path / "weights.bin", SIZE)
    expected = hashlib.sha256(weights.read_bytes()).hexdigest()
    test_hub.add_repo(HubRepo("org/big")).commit({"model.bin": Blob.from_file(weights)})
    daemon = start_daemon(tmp_path / "home", test_hub.endpoint, "--max-size", "1MB", "--evict-every", "0.1")
    try:
        # every round evicts whatever is not in use; while this client reads, its revision is in use
        def stored_and_kept_while_read() -> None:
            wait_for(lambda: daemon.metrics()["mreg_store_bytes"] == SIZE, 60, "the fill stored and counted")
            metrics = _after_a_round(daemon)
            assert metrics["mreg_store_kept_bytes"] == SIZE and metrics["mreg_evictions_total"] == 0
            assert metrics["mreg_store_over_budget_bytes"] == SIZE - int(0.85 * MB)

        assert sha256_of_download(daemon, "/org/big/resolve/main/model.bin",
                                   after_first_chunk=stored_and_kept_while_read) == expected
        wait_for(lambda: "org/big" not in _repos(daemon), 60, "the revision evicted once nobody reads it")
        assert daemon.metrics()["mreg_store_bytes"] == 0
        assert sha256_of_download(daemon, "/org/big/resolve/main/model.bin") == expected  # a miss again
    finally:
        assert daemon.stop() == 0, daemon.log.read_text()


def test_a_listing_racing_an_eviction_brings_nothing_back(test_hub: TestHub, tmp_path: Path) -> None:
    """A listing reads the catalog, then checks who may see each revision. An eviction in between (store,
    then catalog) must not have that check record the revision again (CI once saw it stay listed)."""
    test_hub.add_repo(HubRepo("org/gone")).commit({"model.bin": b"x" * 1000})
    daemon = start_daemon(tmp_path / "home", test_hub.endpoint)
    assert isinstance(daemon, DaemonThread)
    try:
        assert sha256_of_download(daemon, "/org/gone/resolve/main/model.bin")
        repo, commit = RepoRef.parse("org/gone"), _repos(daemon)["org/gone"]["commit"]

        async def evict_then_check(mirror: Mirror) -> object:
            assert mirror.store.remove_revision(repo, commit) and await mirror.catalog.remove_revision(repo, commit)
            note_removal(mirror.store.home)
            return await visibility.refusal(mirror, repo, commit, None)

        assert daemon.call(evict_then_check) is None  # a public repo: visible to anyone
        assert "org/gone" not in _repos(daemon)
        assert not Store(daemon.home).snapshot_dir(repo, commit).exists()
    finally:
        assert daemon.stop() == 0, daemon.log.read_text()


def test_the_catalog_page_shows_the_budget_as_a_bar(test_hub: TestHub, tmp_path: Path) -> None:
    weights = _random_file(tmp_path / "weights.bin", 5 * MB)
    test_hub.add_repo(HubRepo("org/small")).commit({"model.bin": Blob.from_file(weights)})
    daemon = start_daemon(tmp_path / "home", test_hub.endpoint, "--max-size", "20MB", "--evict-every", "0.1")
    try:
        assert sha256_of_download(daemon, "/org/small/resolve/main/model.bin")
        assert _post(daemon, "/v1/pins", {"repo": "org/small"}) == 201
        wait_for(lambda: daemon.metrics()["mreg_store_kept_bytes"] == 5 * MB, 60, "a round counting the pin")
        page = daemon.get("/")[2].decode()
        assert "Size budget: 5.0 MB of 20.0 MB used, 5.0 MB of it" in page
        assert '<rect class="kept" x="0" width="25.0%"' in page and 'class="free" x="25.0%" width="75.0%"' in page
    finally:
        assert daemon.stop() == 0, daemon.log.read_text()
