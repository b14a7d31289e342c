"""The size budget on the S3 store with several replicas on one PostgreSQL catalog and one SeaweedFS bucket: a
stream of requests through three replicas stays within budget round after round (least recently used gone,
pinned and mirrored kept, an evicted repo fetched again); one replica evicts at a time (the recorded rounds
never overlap); a client streaming through one replica while another evicts gets every byte; and kill -9 of
the evicting replica mid-round leaves no catalog row pointing at a missing object, another replica finishing."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import signal
from collections.abc import Callable, Coroutine, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner
from huggingface_hub import hf_hub_download

from mreg.cli.main import main
from mreg.registry.catalog import Catalog
from mreg.registry.catalog.models import utcnow
from tests.daemons import Daemon, sha256_of_download, start_daemon, start_daemon_process, wait_for
from tests.seaweed import BUCKET, SeaweedServer
from tests.test_mirror import call, wait_job
from tests.testhub import HubRepo, TestHub

pytestmark = pytest.mark.timeout(300)
T = TypeVar("T")
MB = 1_000_000
ROUNDS = ("--evict-every", "0.2", "--evict-grace", "1s")


class Look:
    """The test's own view of the shared catalog (one connection pool, on this thread's own event loop)."""

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self.catalog = self.run(Catalog.open(url))

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(work)

    def __call__(self, method: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        return self.run(method(*args))

    def close(self) -> None:
        self.run(self.catalog.close())
        self._loop.close()


@pytest.fixture
def look(pg_url: str) -> Iterator[Look]:
    view = Look(pg_url)
    try:
        yield view
    finally:
        view.close()


def bucket_blobs(seaweed: SeaweedServer, s3_url: str) -> dict[str, int]:
    """sha256 → size of the blobs in the store's bucket."""
    prefix = s3_url.split("/", 3)[3] + "/blobs/"
    found: dict[str, int] = {}
    for page in seaweed.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        found.update({o["Key"].rsplit("/", 1)[1]: o["Size"] for o in page.get("Contents", [])})
    return found


def no_row_points_at_a_missing_blob(look: Look, seaweed: SeaweedServer, s3_url: str) -> None:
    """The S3 store's `mreg verify`: every blob a catalog row records is in the bucket."""
    missing = look(look.catalog.referenced_blobs) - set(bucket_blobs(seaweed, s3_url))
    assert not missing, missing


def assert_rounds_never_overlap(look: Look) -> list[tuple[str, int, datetime, datetime | None]]:
    rounds = look(look.catalog.eviction_rounds)
    for (_, _, _, ended), (replica, fence, started, _) in zip(rounds, rounds[1:]):
        assert ended is not None and ended <= started, (replica, fence, rounds)
    return rounds


def repos(daemon: Daemon) -> dict[str, dict]:
    return {r["repo"]: r for r in json.loads(daemon.get("/v1/repos")[2])}


def add_repos(hub: TestHub, count: int, size: int, seed: int) -> dict[str, str]:
    """``org/r0`` … with a ``model.bin`` of ``size`` random bytes each; repo → its sha256."""
    rng, expected = random.Random(seed), {}
    for i in range(count):
        weights = rng.randbytes(size)
        hub.add_repo(HubRepo(f"org/r{i}")).commit({"config.json": json.dumps({"n": i}), "model.bin": weights})
        expected[f"org/r{i}"] = hashlib.sha256(weights).hexdigest()
    return expected


def replicas(hub: TestHub, tmp_path: Path, s3_url: str, pg_url: str, names: str, *args: str) -> list[Daemon]:
    return [start_daemon(tmp_path / name / "home", hub.endpoint, "--store", s3_url, "--database-url", pg_url, *args)
            for name in names]


def stop_all(daemons: list[Daemon]) -> None:
    for daemon in daemons:
        assert daemon.stop() == 0, daemon.log.read_text()


def a_round_ended_after(look: Look, when: datetime) -> bool:
    return any(ended is not None and started > when for _, _, started, ended in look(look.catalog.eviction_rounds))


def test_a_stream_through_three_replicas_stays_within_budget_one_evictor_at_a_time(
        test_hub: TestHub, tmp_path: Path, s3_url: str, pg_url: str, seaweed: SeaweedServer, look: Look) -> None:
    size, count = 20 * MB, 12  # 240 MB through a 100 MB budget
    expected = add_repos(test_hub, count, size, seed=15)
    daemons = replicas(test_hub, tmp_path, s3_url, pg_url, "abc", "--max-size", "100MB", *ROUNDS)
    try:
        a, b, c = daemons
        assert call(a, "POST", "/v1/pins", {"repo": "org/r0"})[0] == 201
        assert call(b, "POST", "/v1/jobs", {"repo": "org/r1"})[0] == 201  # mirrored: kept
        wait_job(b, "org/r1", 120, status="done")
        for i in range(count):
            through = daemons[i % 3]
            assert sha256_of_download(through, f"/org/r{i}/resolve/main/model.bin") == expected[f"org/r{i}"]
            done = utcnow()
            wait_for(lambda: a_round_ended_after(look, done), 60, "a whole eviction round after the request")
            assert look(look.catalog.held_bytes) <= 0.95 * 100 * MB  # within budget after every round
        listed = repos(c)
        kept = sorted(listed, key=lambda name: int(name.removeprefix("org/r")))
        # 40 MB pinned and mirrored; of the rest, the two most recently used fit under the high mark (95 MB)
        assert kept == ["org/r0", "org/r1", f"org/r{count - 2}", f"org/r{count - 1}"], kept
        assert listed["org/r0"]["pinned"] and listed["org/r1"]["mirrored"]

        # the evicted revisions' blobs leave the bucket once their grace is over; the kept ones stay
        held = look(look.catalog.referenced_blobs)
        wait_for(lambda: set(bucket_blobs(seaweed, s3_url)) == held, 60, "the evicted blobs deleted from the bucket")
        assert sum(bucket_blobs(seaweed, s3_url).values()) <= 0.95 * 100 * MB
        no_row_points_at_a_missing_blob(look, seaweed, s3_url)

        metrics = [d.metrics() for d in daemons]
        assert sum(m["mreg_evictions_total"] for m in metrics) == count - 4
        assert sum(m["mreg_evicted_bytes_total"] for m in metrics) >= (count - 4) * size
        assert sum(m["mreg_eviction_rounds_skipped_total"] for m in metrics) >= 1  # the lease was held elsewhere
        assert all(m["mreg_store_budget_bytes"] == 100 * MB for m in metrics)
        rounds = assert_rounds_never_overlap(look)
        assert len({replica for replica, *_ in rounds}) >= 2, rounds  # the rounds moved between replicas
        evictions = [json.loads(line) for line in a.log.read_text().splitlines() if '"evicted"' in line]
        assert [e["repo"] for e in evictions] == [f"org/r{i}" for i in range(2, count - 2)]

        ls = CliRunner().invoke(main, ["ls", "--json"], env={"MREG_HOME": str(tmp_path / "cli"), "MREG_STORE": s3_url,
                                                              "MREG_DATABASE_URL": pg_url})
        assert ls.exit_code == 0, ls.output
        assert {r["repo"]: r["size"] for r in json.loads(ls.output)} == {
            name: size + len(json.dumps({"n": int(name.removeprefix("org/r"))})) for name in kept}
        page = a.get("/")[2].decode()  # the budget bar, with the S3 store
        assert "Size budget: 80.0 MB of 100.0 MB used, 40.0 MB of it" in page, page[:2000]

        # an evicted repo is a cache miss again, through any replica, for the real client too
        got = hf_hub_download("org/r2", "model.bin", cache_dir=tmp_path / "hf", endpoint=c.url, token=False)
        assert hashlib.sha256(Path(got).read_bytes()).hexdigest() == expected["org/r2"]
        assert "org/r2" in repos(a)
        no_row_points_at_a_missing_blob(look, seaweed, s3_url)
    finally:
        stop_all(daemons)


def test_a_client_streaming_through_one_replica_while_another_evicts_gets_every_byte(
        test_hub: TestHub, tmp_path: Path, s3_url: str, pg_url: str, seaweed: SeaweedServer, look: Look) -> None:
    expected = add_repos(test_hub, 1, 30 * MB, seed=16)["org/r0"]
    # the reader's replica has no budget: the rounds that would evict what it serves run on the other one
    reader = replicas(test_hub, tmp_path, s3_url, pg_url, "a", "--evict-every", "0.2")[0]
    evictor = replicas(test_hub, tmp_path, s3_url, pg_url, "b", "--max-size", "1MB", *ROUNDS)[0]
    try:
        assert sha256_of_download(reader, "/org/r0/resolve/main/model.bin") == expected  # stored, then evicted
        wait_for(lambda: "org/r0" not in repos(evictor) and not bucket_blobs(seaweed, s3_url), 60,
                 "the revision evicted and its blob deleted once nobody reads it")
        assert sha256_of_download(reader, "/org/r0/resolve/main/model.bin") == expected  # a miss again

        def kept_while_read() -> None:
            wait_for(lambda: expected in {sha for _, _, sha in look(look.catalog.live_marks)}, 30,
                     "the reader's in-use mark in the catalog")
            seen = len(look(look.catalog.eviction_rounds))
            wait_for(lambda: len(look(look.catalog.eviction_rounds)) >= seen + 10, 60, "rounds on the other replica")
            assert "org/r0" in repos(evictor) and expected in bucket_blobs(seaweed, s3_url)
            assert evictor.metrics()["mreg_store_kept_bytes"] == 30 * MB

        assert sha256_of_download(reader, "/org/r0/resolve/main/model.bin", after_first_chunk=kept_while_read) == expected
        wait_for(lambda: "org/r0" not in repos(evictor) and not bucket_blobs(seaweed, s3_url), 60,
                 "the revision evicted once nobody reads it")
        assert evictor.metrics()["mreg_evictions_total"] == 2
    finally:
        stop_all([reader, evictor])


def test_kill_9_of_the_evicting_replica_leaves_no_row_without_its_blob_and_another_finishes(
        test_hub: TestHub, tmp_path: Path, s3_url: str, pg_url: str, seaweed: SeaweedServer, look: Look,
        s3_env: dict[str, str]) -> None:
    count = 40
    expected = add_repos(test_hub, count, 200_000, seed=17)
    store = ("--store", s3_url, "--database-url", pg_url)
    filler = start_daemon_process(tmp_path / "filler" / "home", test_hub.endpoint, *store, env=s3_env)
    try:
        for repo, sha in expected.items():
            assert sha256_of_download(filler, f"/{repo}/resolve/main/model.bin") == sha
    finally:
        assert filler.stop() == 0, filler.log.read_text()
    assert len(bucket_blobs(seaweed, s3_url)) == count

    evicting = start_daemon_process(tmp_path / "a" / "home", test_hub.endpoint, *store, "--max-size", "1", *ROUNDS,
                                    env=s3_env)
    try:
        wait_for(lambda: len(look(look.catalog.revision_uses)) < count, 60, "the round evicting")
        evicting.process.send_signal(signal.SIGKILL)
        evicting.process.wait(timeout=30)
    finally:
        if evicting.running:
            evicting.process.kill()
    left = look(look.catalog.revision_uses)
    assert bucket_blobs(seaweed, s3_url)  # blobs were still waiting out their grace (or revisions to go)
    no_row_points_at_a_missing_blob(look, seaweed, s3_url)

    other = start_daemon_process(tmp_path / "b" / "home", test_hub.endpoint, *store, "--max-size", "1", *ROUNDS,
                                 env=s3_env)
    try:
        wait_for(lambda: not look(look.catalog.revision_uses) and not bucket_blobs(seaweed, s3_url), 60,
                 "the other replica finishing the eviction")
        no_row_points_at_a_missing_blob(look, seaweed, s3_url)
        rounds = assert_rounds_never_overlap(look)
        replicas_seen = [replica for replica, *_ in rounds]
        assert replicas_seen[0] != replicas_seen[-1]  # the killed one's, then the other's
        assert other.metrics()["mreg_evictions_total"] == len(left)
        assert sha256_of_download(other, "/org/r3/resolve/main/model.bin") == expected["org/r3"]  # served again
    finally:
        assert other.stop() == 0, other.log.read_text()
