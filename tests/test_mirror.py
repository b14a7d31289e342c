"""Mirror jobs: the scheduler in the daemon in front of the test hub (in this process; a real `mreg serve`
process for kill -9 and SIGTERM), its HTTP endpoints and admin token, `mreg mirror`, and the pure pieces
(intervals, rates, the token bucket). The tests that read the catalog run with it on SQLite and on
PostgreSQL (the `catalog_url` fixture)."""

from __future__ import annotations

import json
import signal
import struct
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from huggingface_hub import snapshot_download

from mreg.cli.main import main
from mreg.daemon.admin import Verdict, is_loopback, policy
from mreg.daemon.mirror_jobs import sleep_for
from mreg.registry.catalog import MirrorJob
from mreg.registry.errors import UsageError
from mreg.registry.units import parse_interval, parse_rate
from mreg.registry.repo import RepoRef
from mreg.registry.store import Store
from mreg.registry.download.throttle import BURST_SECONDS, TokenBucket
from tests.daemons import Daemon, connection, free_port, start_daemon, start_daemon_process, wait_for
from tests.postgres import rows_of
from tests.testhub import TestHub, dataset_repo, generated_file, small_repo

pytestmark = pytest.mark.timeout(120)
MB = 1_000_000


def call(daemon: Daemon, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    """One JSON request to the daemon: (status, decoded body)."""
    conn = connection(daemon.url)
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def jobs(daemon: Daemon, token: str | None = None) -> dict[str, dict[str, Any]]:
    status, listed = call(daemon, "GET", "/v1/jobs", token=token)
    assert status == 200, listed
    return {job["repo"]: job for job in listed}


def wait_job(daemon: Daemon, repo: str, deadline: float, token: str | None = None, **expected: Any) -> dict[str, Any]:
    """Wait until `repo`'s job, as a caller with ``token`` sees it, has every field of `expected`; return it."""
    found: dict[str, Any] = {}

    def matches() -> bool:
        found.update(jobs(daemon, token).get(repo, {}))
        return all(found.get(k) == v for k, v in expected.items())

    wait_for(matches, deadline, lambda: f"{repo}'s job to reach {expected} (last seen: {found})")
    return found


def safetensors(values: int) -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [values], "data_offsets": [0, 4 * values]}}).encode()
    return struct.pack("<Q", len(header)) + header + bytes(4 * values)


def stop(daemon: Daemon) -> None:
    if daemon.running:
        assert daemon.stop() == 0, daemon.log.read_text()


# -- the pure pieces ---------------------------------------------------------------------------------

def test_intervals_and_rates_as_people_write_them() -> None:
    assert [parse_interval(t) for t in ("90", "45s", "30m", "6h", "1d", "1.5h", " 2W ")] == [
        90, 45, 1800, 21600, 86400, 5400, 14 * 86400]
    assert [parse_rate(t) for t in ("50M", "1.5G", "800k", "64Mi", "1000000", "10MB/s")] == [
        50e6, 1.5e9, 800e3, 64 * 2**20, 1e6, 10e6]
    for bad in ("", "0", "-5m", "6 hours", "h", "1e3"):
        with pytest.raises(UsageError):
            parse_interval(bad)
    for bad in ("", "0", "fast", "5X", "-1M"):
        with pytest.raises(UsageError):
            parse_rate(bad)


def test_the_scheduler_sleeps_until_a_sync_or_a_lease_end() -> None:
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def job(status: str, next_sync: datetime | None, lease_until: datetime | None = None) -> MirrorJob:
        return MirrorJob(1, RepoRef.parse("a/b"), "main", (), (), 60.0, status, 0, 0, None, None, next_sync, None,
                         lease_until)

    waiting = [job("done", now - timedelta(hours=1)), job("queued", None)]  # due, all workers busy
    assert sleep_for(waiting, now, poll=60) == 60  # no busy loop: a finishing worker wakes the scheduler
    assert sleep_for([*waiting, job("done", now + timedelta(seconds=5))], now, poll=60) == 5
    assert sleep_for([job("failed", now + timedelta(hours=2))], now, poll=60) == 60
    assert sleep_for([job("running", None, now + timedelta(seconds=2))], now, poll=60) == 2  # another replica's lease


def test_token_bucket_keeps_the_rate_after_a_burst() -> None:
    clock = [0.0]
    bucket = TokenBucket(1000, clock=lambda: clock[0])
    assert bucket.reserve(250) == 0  # the burst: a quarter second's worth
    assert bucket.reserve(500) == pytest.approx(0.5)  # in debt: wait it off
    clock[0] = 0.5
    assert bucket.reserve(100) == pytest.approx(0.1)
    clock[0] = 10.0  # idle for long: no more than the burst comes back
    assert bucket.reserve(250) == 0 and bucket.reserve(1) > 0
    with pytest.raises(ValueError):
        TokenBucket(0)


def test_admin_policy() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.5", "mirror.example.com"))
    assert policy("127.0.0.1", None, mutation=True) is Verdict.ALLOW
    assert policy("127.0.0.1", "t", mutation=False) is Verdict.ALLOW
    assert policy("127.0.0.1", "t", mutation=True) is Verdict.NEEDS_TOKEN
    assert policy("0.0.0.0", "t", mutation=False) is Verdict.NEEDS_TOKEN
    assert policy("0.0.0.0", None, mutation=False) is Verdict.CLOSED


# -- the daemon ----------------------------------------------------------------------------------------

def test_kill_9_mid_job_then_restart_completes_without_refetching(test_hub: TestHub, tmp_path: Path) -> None:
    size = 64 * 2**20
    big = generated_file(tmp_path / "data" / "big.bin", size, seed=11)
    repo = test_hub.add_repo(small_repo("testorg/big", {"big.bin": big, "config.json": '{"model_type": "x"}'}))
    sha = repo.head.files["big.bin"].blob.sha256
    test_hub.faults.throttle = 1_500_000  # per connection: the download takes several seconds
    home = tmp_path / "home"
    daemon = start_daemon_process(home, test_hub.endpoint)  # leases of 30 s
    try:
        status, job = call(daemon, "POST", "/v1/jobs", {"repo": "testorg/big"})
        assert status == 201 and job["status"] == "queued", job
        wait_for(lambda: jobs(daemon)["testorg/big"]["bytes_done"] > size // 4, 60, "a quarter of the file")
        assert f"-{daemon.process.pid}-" in jobs(daemon)["testorg/big"]["replica"]  # who runs it: HOST-PID-RANDOM
        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait(timeout=10)
    finally:
        stop(daemon)
    assert 0 < test_hub.stats.bytes_by_sha256[sha] < size
    test_hub.faults.throttle = None
    # the killed daemon's lease (30 s) ends at once: it ran on this host, under a process that is gone
    daemon = start_daemon(home, test_hub.endpoint)
    try:
        done = wait_job(daemon, "testorg/big", 20, status="done")
        assert done["commit"] == repo.head.sha and done["bytes_done"] == done["bytes_total"] > size
        assert done["error"] is None and done["last_sync"] is not None and done["next_sync"] is None
        assert done["replica"] is None
    finally:
        stop(daemon)
    assert test_hub.stats.bytes_by_sha256[sha] <= 1.2 * size  # upstream bytes for the file, both runs
    store = Store(home)
    ref = RepoRef.parse("testorg/big")
    assert store.read_ref(ref, "main") == repo.head.sha
    assert store.snapshot_files(ref, repo.head.sha)["big.bin"] == sha


def test_a_mirrored_repo_is_served_by_an_offline_daemon(test_hub: TestHub, tmp_path: Path, catalog_url: str) -> None:
    repo = test_hub.add_repo(small_repo("testorg/kept", {"model.safetensors": safetensors(1000),
                                                         "config.json": '{"model_type": "x"}'}))
    home = tmp_path / "home"
    daemon = start_daemon(home, test_hub.endpoint, "--database-url", catalog_url)
    try:
        assert call(daemon, "POST", "/v1/jobs", {"repo": "testorg/kept"})[0] == 201
        wait_job(daemon, "testorg/kept", 60, status="done")
    finally:
        stop(daemon)
    test_hub.stats.reset()
    offline = start_daemon(home, test_hub.endpoint, "--offline", "--database-url", catalog_url)
    try:
        folder = Path(snapshot_download("testorg/kept", cache_dir=tmp_path / "hf", endpoint=offline.url, token=False))
        status, listed = call(offline, "GET", "/v1/repos")
    finally:
        stop(offline)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == {
        path: entry.blob.read(0, entry.blob.size) for path, entry in repo.head.files.items()}
    assert status == 200 and [r["repo"] for r in listed] == ["testorg/kept"]
    assert test_hub.stats.requests.total() == 0


def test_a_job_whose_transfer_is_corrupted_once_fetches_that_file_again(test_hub: TestHub, tmp_path: Path) -> None:
    """#14.9 for mirror jobs: one corrupt transfer costs one more fetch of that file (logged), not the job; a
    file corrupt on every fetch fails it as before."""
    repo = test_hub.add_repo(small_repo("testorg/flaky-job"))
    weights = repo.head.files["weights.bin"].blob
    test_hub.faults.corrupt(weights.sha256, count=1)
    daemon = start_daemon(tmp_path / "home", test_hub.endpoint)
    try:
        assert call(daemon, "POST", "/v1/jobs", {"repo": "testorg/flaky-job"})[0] == 201
        wait_job(daemon, "testorg/flaky-job", 60, status="done")
        assert test_hub.stats.bytes_by_sha256[weights.sha256] == 2 * weights.size
        assert Store(daemon.home).blob_path(weights.sha256).read_bytes() == weights.read()
        assert "mirror job testorg/flaky-job: weights.bin failed verification and was fetched again" in \
            daemon.log.read_text()
        test_hub.add_repo(small_repo("testorg/rotten"))
        test_hub.faults.corrupt("config.json")
        assert call(daemon, "POST", "/v1/jobs", {"repo": "testorg/rotten"})[0] == 201
        failed = wait_job(daemon, "testorg/rotten", 60, status="failed")
        assert "mismatch" in failed["error"] and "fetched twice" in failed["error"], failed
    finally:
        stop(daemon)


def test_removing_a_job_cancels_its_sync_and_sigterm_queues_it_again(test_hub: TestHub, tmp_path: Path,
                                                                     catalog_url: str) -> None:
    big = generated_file(tmp_path / "data" / "slow.bin", 8 * MB, seed=5)
    test_hub.add_repo(small_repo("testorg/slow", {"slow.bin": big}))
    test_hub.faults.throttle = 1 * MB
    daemon = start_daemon_process(tmp_path / "home", test_hub.endpoint, "--database-url", catalog_url)

    def downloads() -> list[tuple[str, str | None]]:
        return rows_of(catalog_url, "SELECT status, error FROM downloads")

    try:
        assert call(daemon, "POST", "/v1/jobs", {"repo": "testorg/slow"})[0] == 201
        wait_job(daemon, "testorg/slow", 30, status="running")
        wait_for(lambda: jobs(daemon)["testorg/slow"]["bytes_done"] > 0, 30, "the first bytes")
        status, answer = call(daemon, "DELETE", "/v1/jobs/testorg/slow")
        assert status == 200 and answer == {"removed": "testorg/slow"}
        assert jobs(daemon) == {} and call(daemon, "DELETE", "/v1/jobs/testorg/slow")[0] == 404
        wait_for(lambda: downloads() == [("failed", "interrupted (CancelledError)")], 10, "the sync to stop")
        assert call(daemon, "POST", "/v1/jobs", {"repo": "testorg/slow"})[0] == 201
        wait_job(daemon, "testorg/slow", 30, status="running")
    finally:
        stop(daemon)  # SIGTERM mid-sync
    assert rows_of(catalog_url, "SELECT status FROM mirror_jobs") == [("queued",)]


def test_a_scheduled_job_fetches_only_what_changed_and_keeps_the_old_snapshot(test_hub: TestHub, tmp_path: Path,
                                                                              catalog_url: str) -> None:
    files: dict[str, Any] = {
        "config.json": '{"model_type": "llama"}\n', "notes.txt": "unchanged\n",
        "model.safetensors": safetensors(1000),
        "same.bin": generated_file(tmp_path / "data" / "same.bin", 2 * MB, seed=1),
        "changed.bin": generated_file(tmp_path / "data" / "old.bin", 1 * MB, seed=2),
    }
    repo = test_hub.add_repo(small_repo("testorg/sched", files))
    first = repo.head
    daemon = start_daemon(tmp_path / "home", test_hub.endpoint, "--min-every", "1s",  # a schedule of 1 s
                          "--database-url", catalog_url)
    store, ref = Store(daemon.home), RepoRef.parse("testorg/sched")
    try:
        assert call(daemon, "POST", "/v1/jobs", {"repo": "testorg/sched", "every": 1})[0] == 201
        wait_job(daemon, "testorg/sched", 30, status="done", commit=first.sha)
        assert rows_of(catalog_url, "SELECT tensor_count, parameters FROM file_headers") == [(1, 1000)]  # indexed
        test_hub.stats.reset()
        test_hub.faults.throttle = 400_000
        second_sha = repo.commit({
            "changed.bin": generated_file(tmp_path / "data" / "new.bin", 1 * MB, seed=3),
            "added.bin": generated_file(tmp_path / "data" / "added.bin", 1 * MB, seed=4),
            "notes.txt": "changed\n", "extra.safetensors": safetensors(10),
        })
        second = repo.commits[second_sha]
        new_shas = {second.files[p].blob.sha256 for p in ("changed.bin", "added.bin", "notes.txt", "extra.safetensors")}

        def indexed(path: str) -> list[tuple[int, int]]:
            return rows_of(catalog_url, "SELECT h.tensor_count, h.parameters FROM file_headers h"
                           " JOIN files f ON h.file = f.id WHERE f.path = :path", path=path)

        def syncing_second() -> bool:
            job = jobs(daemon)["testorg/sched"]
            return (job["status"] == "running" and 0 < job["bytes_done"] < job["bytes_total"]
                    and any(test_hub.stats.bytes_by_sha256[s] for s in new_shas))

        wait_for(syncing_second, 30, "the sync of the new commit")
        wait_for(lambda: indexed("extra.safetensors") == [(1, 10)], 30, "the new weights file indexed")
        assert jobs(daemon)["testorg/sched"]["status"] == "running"  # indexed as it landed, mid-sync
        assert store.read_ref(ref, "main") == first.sha  # readers still see the old commit, complete
        assert store.snapshot_files(ref, first.sha) == {p: e.blob.sha256 for p, e in first.files.items()}
        snapshot = store.snapshot_dir(ref, first.sha)
        assert all((snapshot / p).stat().st_size == e.blob.size for p, e in first.files.items())
        test_hub.faults.throttle = None
        done = wait_job(daemon, "testorg/sched", 30, status="done", commit=second_sha)
        assert done["every"] == 1 and done["next_sync"] is not None
        assert store.read_ref(ref, "main") == second_sha
        fetched = {sha for sha, n in test_hub.stats.bytes_by_sha256.items() if n}
        assert fetched == new_shas  # nothing unchanged moved again
        for sha in new_shas:
            size = next(e.blob.size for e in second.files.values() if e.blob.sha256 == sha)
            assert test_hub.stats.bytes_by_sha256[sha] == size
    finally:
        stop(daemon)


def test_worker_pool_and_bandwidth_cap(test_hub: TestHub, tmp_path: Path) -> None:
    rate, size, names = 4 * MB, 4 * MB, ("testorg/w0", "testorg/w1", "testorg/w2")
    for i, name in enumerate(names):
        test_hub.add_repo(small_repo(name, {"weights.bin": generated_file(tmp_path / f"w{i}.bin", size, seed=20 + i)}))
    daemon = start_daemon(tmp_path / "home", test_hub.endpoint, "--mirror-workers", "2", "--max-bandwidth", "4M")
    try:
        for name in names:
            assert call(daemon, "POST", "/v1/jobs", {"repo": name})[0] == 201
        samples: list[tuple[float, int, int]] = []  # (time, bytes the hub sent, bytes the jobs received)
        most_running = 0
        end = time.monotonic() + 60
        while True:
            listed = jobs(daemon)
            samples.append((time.monotonic(), test_hub.stats.cdn_bytes, sum(j["bytes_done"] for j in listed.values())))
            most_running = max(most_running, sum(j["status"] == "running" for j in listed.values()))
            if all(j["status"] == "done" for j in listed.values()):
                break
            assert time.monotonic() < end, listed
            time.sleep(0.05)
    finally:
        stop(daemon)
    assert most_running == 2  # the pool was full, never more
    assert test_hub.stats.cdn_bytes == 3 * size  # each file fetched once
    # The cap applies where bytes are received. The hub's own count runs ahead of it by what the
    # kernel's loopback socket buffers hold (megabytes), so the rate is judged on the receiving side:
    # the jobs' progress, which the daemon writes every half second. Uncapped, all 12 MB land in
    # a fraction of a second.
    start = next(t for t, sent, _ in samples if sent > 0)
    took = samples[-1][0] - start
    ideal = (3 * size - rate * BURST_SECONDS) / rate
    assert 0.8 * ideal <= took <= 4 * ideal + 5  # 12 MB at 4 MB/s: about 3 s
    for t, _, received in samples:  # a chunk (≤ ~1.5 MB) per connection lands before it is paid for
        assert received <= rate * (max(t - start, 0) + 0.5) + 3 * MB


def test_admin_token_and_the_mirror_cli(test_hub: TestHub, tmp_path: Path, catalog_url: str) -> None:
    test_hub.add_repo(small_repo("testorg/tiny"))
    test_hub.add_repo(dataset_repo("testorg/rows"))
    exposed = start_daemon(tmp_path / "open", test_hub.endpoint, "--host", "0.0.0.0")
    try:  # beyond loopback without a token: the job endpoints stay shut, the mirror serves
        assert call(exposed, "GET", "/v1/jobs")[0] == 403
        assert call(exposed, "POST", "/v1/jobs", {"repo": "testorg/tiny"})[0] == 403
        assert exposed.health()["status"] == "ok"
    finally:
        stop(exposed)
    token = "admin-secret-3f9c"
    daemon = start_daemon(tmp_path / "home", test_hub.endpoint, "--admin-token", token, "--database-url", catalog_url)
    try:
        assert call(daemon, "POST", "/v1/jobs", {"repo": "testorg/tiny"})[0] == 401
        assert call(daemon, "POST", "/v1/jobs", {"repo": "testorg/tiny"}, token="wrong")[0] == 401
        assert call(daemon, "POST", "/v1/jobs", {"repo": "../x"}, token=token)[0] == 400
        assert call(daemon, "POST", "/v1/jobs", {"repo": "testorg/tiny", "every": "soon"}, token=token)[0] == 400
        assert call(daemon, "POST", "/v1/jobs", ["testorg/tiny"], token=token)[0] == 400
        assert call(daemon, "GET", "/v1/jobs")[0] == 200  # reading on loopback needs no token

        runner = CliRunner()
        env = {"MREG_SERVER": daemon.url, "MREG_ADMIN_TOKEN": token}
        added = runner.invoke(main, ["mirror", "add", "testorg/tiny", "--every", "1h", "--exclude", "*.txt",
                                     "--json"], env=env)
        assert added.exit_code == 0, added.output
        assert json.loads(added.output)["every"] == 3600 and json.loads(added.output)["exclude"] == ["*.txt"]
        wait_job(daemon, "testorg/tiny", 30, status="done")
        listed = runner.invoke(main, ["mirror", "ls", "--json"], env=env)
        [job] = json.loads(listed.output)
        assert job["repo"] == "testorg/tiny" and job["bytes_done"] == job["bytes_total"] > 0
        assert job["next_sync"] > job["last_sync"]
        assert not (Store(daemon.home).snapshot_dir(RepoRef.parse("testorg/tiny"), job["commit"])
                    / "nested" / "dir" / "notes.txt").exists()
        plain = runner.invoke(main, ["mirror", "ls"], env=env)
        assert plain.exit_code == 0 and plain.output.startswith("testorg/tiny\tdone\t")
        synced = runner.invoke(main, ["mirror", "sync", "testorg/tiny", "--json"], env=env)
        assert synced.exit_code == 0 and json.loads(synced.output)["status"] in ("queued", "running", "done")
        assert json.loads(runner.invoke(main, ["mirror", "sync", "--json"], env=env).output) == {"queued": 1}
        assert runner.invoke(main, ["mirror", "sync"], env={"MREG_SERVER": daemon.url}).exit_code == 2  # no token
        assert runner.invoke(main, ["mirror", "rm", "testorg/tiny"], env=env).exit_code == 0
        gone = runner.invoke(main, ["mirror", "rm", "testorg/tiny"], env=env)
        assert gone.exit_code == 2 and "no mirror job" in gone.output
        assert json.loads(runner.invoke(main, ["mirror", "ls", "--json"], env=env).output) == []
        dataset = ["testorg/rows", "--repo-type", "dataset"]
        assert runner.invoke(main, ["mirror", "add", *dataset], env=env).exit_code == 0
        assert wait_job(daemon, "testorg/rows", 30, status="done")["repo_type"] == "dataset"
        status, shown = call(daemon, "GET", "/v1/jobs/testorg/rows?repo_type=dataset")
        assert status == 200 and (shown["repo"], shown["status"]) == ("testorg/rows", "done")
        assert call(daemon, "GET", "/v1/jobs/testorg/rows")[0] == 404
        assert runner.invoke(main, ["mirror", "sync", *dataset], env=env).exit_code == 0
        assert runner.invoke(main, ["mirror", "rm", "testorg/rows"], env=env).exit_code == 2  # not the model
        assert runner.invoke(main, ["mirror", "rm", *dataset], env=env).exit_code == 0
        assert runner.invoke(main, ["mirror", "add", "testorg/no-such-repo"], env=env).exit_code == 0
        failed = wait_job(daemon, "testorg/no-such-repo", 30, token=token, status="failed")
        assert "testorg/no-such-repo" not in jobs(daemon)  # like a private repo's: only the admin sees it
        assert failed["error"] and "\n" not in failed["error"] and failed["next_sync"] is None
    finally:
        stop(daemon)
    assert token.encode() not in daemon.log.read_bytes()
    down = CliRunner().invoke(main, ["mirror", "ls"], env={"MREG_SERVER": f"http://127.0.0.1:{free_port()}"})
    assert down.exit_code == 3 and len(down.output.strip().splitlines()) == 1
