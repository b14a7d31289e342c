"""Mirror jobs across replicas: three real `mreg serve` processes sharing one PostgreSQL catalog, two jobs added
through replica A, A killed with SIGKILL mid-job; B and C take the jobs over once A's leases run out and finish
them, and ``mirror_job_runs`` shows that no two runs of one job overlapped. With one S3 bucket for all (``s3``), the
jobs' files go through the blobs' fill leases: B and C resume each file from what A committed to the bucket, so
upstream sends at most 1.2x the files, and no replica's home takes more disk than a window of each file. With a home
each (``local``), nothing of A's partial files can reach B or C: they fetch the files again from the start, and the
ratio is only printed. And a daemon whose lease another replica took over stops its sync and writes nothing more."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from sqlalchemy import update

from mreg.cli.main import main
from mreg.registry.catalog import Catalog, JobLease
from mreg.registry.catalog.db import make_engine, writer
from mreg.registry.catalog.models import MirrorJob as MirrorJobRow
from mreg.registry.catalog.models import utcnow
from mreg.registry.repo import RepoRef
from mreg.registry.store import Store
from tests.daemons import Daemon, DaemonProcess, start_daemon, start_daemon_process, wait_for
from tests.postgres import rows_of
from tests.test_daemon_s3 import BlobWatch, DiskWatch, bounded, objects
from tests.test_mirror import call, jobs, stop
from tests.testhub import TestHub, generated_file, small_repo

pytestmark = pytest.mark.timeout(120)
MiB = 2**20
SIZES = {"local": 32 * MiB, "s3": 128 * MiB}
"""Each weights file. On S3 what A fetched beyond its last commit is lost (at most about BACKLOG + the parts in
flight: 24 MiB), so the file is large enough for that to stay within 0.2x of it."""
KILL_AT = 0.3
LEASE = 3.0
REPOS = ("testorg/left", "testorg/right")


def replica_of(daemon: DaemonProcess) -> str:
    """The replica id the daemon labels its job counters with."""
    labels = [key for key in daemon.metrics() if key.startswith("mreg_job_leases_total{")]
    assert len(labels) == 1, labels
    return labels[0].split('replica="', 1)[1].rstrip('"}')


def counter(daemon: Daemon, name: str) -> float:
    return next(value for key, value in daemon.metrics().items() if key.split("{")[0] == name)


def start_all(homes: list[Path], upstream: str, *args: str) -> list[DaemonProcess]:
    """`mreg serve` processes with these homes, started in parallel (each waits for its /healthz); all of
    them, or none left running."""
    made: dict[int, DaemonProcess | BaseException] = {}

    def run(i: int, home: Path) -> None:
        try:
            made[i] = start_daemon_process(home, upstream, *args)
        except BaseException as exc:  # noqa: BLE001 (handed to the test's thread)
            made[i] = exc

    threads = [threading.Thread(target=run, args=(i, home)) for i, home in enumerate(homes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    daemons = [d for d in made.values() if isinstance(d, DaemonProcess)]
    errors = [e for e in made.values() if isinstance(e, BaseException)]
    if errors:
        for daemon in daemons:
            stop(daemon)
        raise errors[0]
    return [made[i] for i in range(len(homes))]  # type: ignore[misc]


@pytest.mark.parametrize("store", ["local", "s3"])
def test_a_replica_killed_mid_job_loses_its_jobs_to_the_others(test_hub: TestHub, tmp_path: Path, pg_url: str,
                                                               store: str, request: pytest.FixtureRequest) -> None:
    stores = ("--store", request.getfixturevalue("s3_url")) if store == "s3" else ()
    watch = BlobWatch(request.getfixturevalue("seaweed"), stores[1].split("/", 3)[3]) if stores else None
    size, shas = SIZES[store], {}
    for i, name in enumerate(REPOS):
        data = generated_file(tmp_path / "data" / f"{i}.bin", size, seed=40 + i)
        repo = test_hub.add_repo(small_repo(name, {"weights.bin": data, "config.json": '{"model_type": "x"}'}))
        shas[name] = (repo.head.sha, repo.head.files["weights.bin"].blob.sha256)
    test_hub.faults.throttle = 1_000_000  # per connection: A is mid-job for several seconds
    a, b, c = start_all([tmp_path / name / "home" for name in "abc"], test_hub.endpoint, "--database-url", pg_url,
                        "--job-lease", str(LEASE), *stores)
    disk = DiskWatch([d.home for d in (a, b, c)]) if stores else None
    try:
        killed = replica_of(a)
        if watch is not None and disk is not None:
            watch.start()
            disk.start()
        started = time.monotonic()
        for name in REPOS:
            assert call(a, "POST", "/v1/jobs", {"repo": name})[0] == 201
        wait_for(lambda: len(jobs(a)) == 2 and all(j["status"] == "running" and KILL_AT * size < j["bytes_done"] < size
                                                   for j in jobs(a).values()), 60, "both jobs 30 % through")
        holders = {who for (who,) in rows_of(pg_url, "SELECT leased_by FROM mirror_jobs")}
        assert killed in holders
        a.process.send_signal(signal.SIGKILL)
        a.process.wait(timeout=10)
        killed_at, kill_time = datetime.now(timezone.utc), time.monotonic() - started
        committed = sum(int(n) for (n,) in rows_of(pg_url, "SELECT committed FROM fill_leases"))
        test_hub.faults.throttle = None
        wait_for(lambda: {j["status"] for j in jobs(c).values()} == {"done"}, 60, "the others to finish both jobs")
        finish_time = time.monotonic() - started
        runner = CliRunner()
        for daemon in (b, c):  # through any replica
            listed = runner.invoke(main, ["mirror", "ls", "--json"], env={"MREG_SERVER": daemon.url})
            assert listed.exit_code == 0, listed.output
            assert {(j["repo"], j["status"], j["commit"]) for j in json.loads(listed.output)} == {
                (name, "done", shas[name][0]) for name in REPOS}
        finished = {replica_of(d): d for d in (b, c)}
        assert sum(counter(d, "mreg_jobs_finished_total") for d in (b, c)) == 2
        assert sum(counter(d, "mreg_job_leases_lost_total") for d in (b, c)) == 0
        if watch is not None and disk is not None:  # each file led by B or C, taken over if A's lease was still live
            disk.__exit__()
            bounded(disk, files=len(REPOS))
            fills = {name: sum(counter(d, f"mreg_fills_{name}_total") for d in (b, c))
                     for name in ("led", "followed", "taken_over")}
            assert fills["led"] == 2 and fills["followed"] == fills["taken_over"], fills
            watch.stop.set()
            watch.join(10)
            stored = objects(watch.seaweed, watch.prefix)
            assert not any(key.startswith("fills/") for key in stored), stored  # the fills' chunks are gone
            assert {f"blobs/{sha}" for _, sha in shas.values()} <= set(stored)
            assert all(stored.get(key) == n for key, n in watch.seen), watch.seen  # never an incomplete blob
    finally:
        if watch is not None and disk is not None:
            watch.stop.set()
            disk.stop.set()
        for daemon in (a, b, c):
            stop(daemon)

    runs = rows_of(pg_url, "SELECT r.job, j.id, r.replica, r.fence, r.started_at, r.ended_at, r.outcome, rp.repo_id"
                           " FROM mirror_job_runs r JOIN mirror_jobs j ON r.job = j.id JOIN repos rp ON j.repo = rp.id"
                           " ORDER BY r.job, r.fence")
    by_repo: dict[str, list[tuple]] = {}
    for job, _, replica, fence, start_at, end_at, outcome, repo_id in runs:
        by_repo.setdefault(repo_id, []).append((replica, fence, start_at, end_at, outcome))
    assert set(by_repo) == set(REPOS)
    for repo_id, history in by_repo.items():
        assert [fence for _, fence, *_ in history] == list(range(1, len(history) + 1))
        assert all(end is not None for *_, end, _ in history)
        for earlier, later in zip(history, history[1:]):
            assert earlier[3] <= later[2], (repo_id, history)  # no two runs of one job overlapped
        last = history[-1]
        assert last[0] in finished and last[4] == "done"
        for replica, _, start_at, end_at, outcome in history[:-1]:
            assert (replica, outcome) == (killed, "expired")  # the killed run ends at its lease's end
            assert killed_at - timedelta(seconds=LEASE) < end_at <= killed_at + timedelta(seconds=LEASE)
        commit, sha = shas[repo_id]
        if not stores:
            assert Store(finished[last[0]].home).snapshot_files(RepoRef.parse(repo_id), commit)["weights.bin"] == sha
    assert any(history[0][0] == killed for history in by_repo.values())
    sent = sum(test_hub.stats.bytes_by_sha256[sha] for _, sha in shas.values())
    taken_over = min(history[-1][2] for history in by_repo.values()) - killed_at
    print(f"\n{store}: killed at {kill_time:.1f}s ({committed / (len(REPOS) * size):.0%} committed to the store), "
          f"both done at {finish_time:.1f}s; upstream bytes for the two weights files: "
          f"{sent / (len(REPOS) * size):.3f}x their size; first take-over {taken_over.total_seconds():.1f}s after "
          "the kill")
    if stores:
        assert sent <= 1.2 * len(REPOS) * size, sent / (len(REPOS) * size)


async def _take_over(url: str) -> JobLease:
    """Take the one job as another replica would once the daemon's lease had run out (its lease is made
    to end now: the daemon may renew it meanwhile, so again until the take-over wins)."""
    engine, catalog = make_engine(url), await Catalog.open(url)
    try:
        end = time.monotonic() + 30
        while True:
            async with writer(engine).begin() as conn:
                await conn.execute(update(MirrorJobRow).values(lease_until=utcnow()))
            if (lease := await catalog.lease_job("intruder", 60)) is not None:
                return lease
            assert time.monotonic() < end, "the take-over never won"
    finally:
        await catalog.close()
        await engine.dispose()


async def _release(url: str, lease: JobLease) -> bool:
    catalog = await Catalog.open(url)
    try:
        return await catalog.release_job(lease.job.id, lease.fence)
    finally:
        await catalog.close()


def test_a_worker_whose_lease_was_taken_over_stops_its_sync(test_hub: TestHub, tmp_path: Path,
                                                            catalog_url: str) -> None:
    test_hub.add_repo(small_repo("testorg/slow", {"slow.bin": generated_file(tmp_path / "slow.bin", 8 * MiB, seed=7)}))
    test_hub.faults.throttle = 1_000_000
    daemon = start_daemon(tmp_path / "home", test_hub.endpoint, "--database-url", catalog_url, "--job-lease", "3")
    try:
        assert call(daemon, "POST", "/v1/jobs", {"repo": "testorg/slow"})[0] == 201
        wait_for(lambda: jobs(daemon)["testorg/slow"]["bytes_done"] > 0, 30, "the first bytes")
        lease = asyncio.run(_take_over(catalog_url))
        assert lease.fence == 2
        wait_for(lambda: counter(daemon, "mreg_job_leases_lost_total") == 1, 30, "the worker to notice")
        job = jobs(daemon)["testorg/slow"]
        assert (job["status"], job["bytes_done"]) == ("running", 0)  # the intruder's state, untouched
        test_hub.faults.throttle = None
        assert asyncio.run(_release(catalog_url, lease))  # the daemon takes it again and finishes it
        wait_for(lambda: jobs(daemon)["testorg/slow"]["status"] == "done", 30, "the job done")
        assert counter(daemon, "mreg_job_leases_total") == 2 and counter(daemon, "mreg_jobs_finished_total") == 1
    finally:
        stop(daemon)
    assert daemon.log.read_text().count("lost its lease") == 1
    fences = rows_of(catalog_url, "SELECT replica, fence, outcome FROM mirror_job_runs ORDER BY fence")
    assert [(fence, outcome) for _, fence, outcome in fences] == [(1, "expired"), (2, "stopped"), (3, "done")]
    assert fences[1][0] == "intruder" and fences[0][0] == fences[2][0]
