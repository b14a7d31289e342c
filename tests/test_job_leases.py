"""Mirror job leases on real databases (a SQLite file and a PostgreSQL database: the `catalog_url` fixture).
Each "replica" is a `Catalog` of its own (its own engine, connections and write lock), as separate
processes would have: concurrent leases never hand one job to two replicas, an expired lease goes to
another replica with the next fence, and the old holder's writes then change nothing."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime

import pytest

from mreg.daemon.replica import gone_from_this_host, replica_id
from mreg.registry.catalog import Catalog, JobLease
from mreg.registry.catalog.job_leases import RUNS_KEPT
from mreg.registry.catalog.models import utcnow
from mreg.registry.errors import UsageError
from mreg.registry.repo import RepoRef
from tests.postgres import fetch_rows

pytestmark = pytest.mark.timeout(120)
COMMIT = "c" * 40


@pytest.fixture
async def replicas(catalog_url: str) -> AsyncIterator[tuple[Catalog, Catalog]]:
    """Two catalogs over the same database."""
    first = await Catalog.open(catalog_url)
    second = await Catalog.open(catalog_url)
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


async def eventually(attempt: Callable[[], Awaitable[JobLease | None]], deadline: float, what: str) -> JobLease:
    """Call ``attempt`` until it gives a lease; fail after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while (lease := await attempt()) is None:
        assert time.monotonic() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)
    return lease


async def runs(url: str) -> list[tuple[int, str, int, datetime, datetime | None, str | None]]:
    rows = await fetch_rows(url, "SELECT job, replica, fence, started_at, ended_at, outcome FROM mirror_job_runs"
                                 " ORDER BY id")
    return [(job, replica, fence, _utc(start), _utc(end), outcome) for job, replica, fence, start, end, outcome in rows]


def _utc(value: datetime | str | None) -> datetime | None:
    """A timestamp as either backend returns it in a raw query, as an aware datetime (SQLite: text)."""
    if value is None:
        return None
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=utcnow().tzinfo)


async def test_concurrent_replicas_never_lease_the_same_job(replicas: tuple[Catalog, Catalog], catalog_url: str) -> None:
    first, _ = replicas
    added = {(await first.add_job(RepoRef.parse(f"org/m{i}"))).id for i in range(24)}
    taken: dict[str, list[int]] = {}

    async def worker(catalog: Catalog, name: str) -> None:
        while (lease := await catalog.lease_job(name, 60)) is not None:
            assert lease.replica == name and lease.fence == 1 and lease.job.status == "running"
            taken.setdefault(name, []).append(lease.job.id)

    await asyncio.gather(*(worker(catalog, f"{i}-{n}") for i, catalog in enumerate(replicas) for n in range(3)))
    every = [job for jobs in taken.values() for job in jobs]
    assert sorted(every) == sorted(added)  # each job leased once, none left
    assert {job.status for job in await first.list_jobs()} == {"running"}
    assert sorted(job for job, *_ in await runs(catalog_url)) == sorted(added)


async def test_an_expired_lease_goes_to_another_replica_and_fences_the_old_one(
        replicas: tuple[Catalog, Catalog], catalog_url: str) -> None:
    a, b = replicas
    repo = RepoRef.parse("org/model")
    job = await a.add_job(repo, every=3600)
    old = await a.lease_job("a", 0.5)
    assert old is not None and old.fence == 1 and await a.set_job_progress(job.id, 1, 10, 100)
    assert await b.lease_job("b", 30) is None  # held
    assert await a.renew_job(job.id, 1, 0.5)
    held_until = (await a.job(repo)).lease_until  # type: ignore[union-attr]
    new = await eventually(lambda: b.lease_job("b", 30), 10, "a's lease to run out")
    assert (new.job.id, new.replica, new.fence, new.job.bytes_done) == (job.id, "b", 2, 0)
    before = await a.job(repo)
    # a's writes under the old fence change nothing, and tell it the job is lost
    assert not await a.set_job_progress(job.id, 1, 100, 100)
    assert not await a.renew_job(job.id, 1, 30)
    assert not await a.finish_job(job.id, 1, COMMIT)
    assert not await a.fail_job(job.id, 1, "late")
    assert not await a.release_job(job.id, 1)
    assert await a.job(repo) == before and before is not None and before.status == "running"
    assert await b.set_job_progress(job.id, 2, 100, 100) and await b.finish_job(job.id, 2, COMMIT)
    done = await b.job(repo)
    assert done is not None and (done.status, done.commit, done.bytes_done, done.lease_until) == ("done", COMMIT, 100, None)
    assert done.next_sync is not None  # the holder scheduled the next sync, once
    [(_, ra, fa, start_a, end_a, out_a), (_, rb, fb, start_b, end_b, out_b)] = await runs(catalog_url)
    assert (ra, fa, out_a, rb, fb, out_b) == ("a", 1, "expired", "b", 2, "done")
    assert end_a == held_until and start_a < end_a <= start_b < end_b  # the killed run ends at its lease's end


async def test_a_due_schedule_fires_once_across_replicas(replicas: tuple[Catalog, Catalog]) -> None:
    a, b = replicas
    repo = RepoRef.parse("org/model")
    job = await a.add_job(repo, every=0.3)
    first = await a.lease_job("a", 30)
    assert first is not None and await a.finish_job(job.id, first.fence, COMMIT)
    assert await a.lease_job("a", 30) is None  # not due yet
    scheduled = (await a.job(repo)).next_sync  # type: ignore[union-attr]
    assert scheduled is not None
    end = time.monotonic() + 10
    while utcnow() < scheduled:  # wait for the schedule to come due
        assert time.monotonic() < end
        await asyncio.sleep(0.02)
    leases = await asyncio.gather(*(c.lease_job(c_name, 30) for c, c_name in ((a, "a"), (b, "b")) * 3))
    won = [lease for lease in leases if lease is not None]
    assert len(won) == 1 and won[0].fence == 2


async def test_bad_lease_arguments_are_refused(replicas: tuple[Catalog, Catalog]) -> None:
    a, _ = replicas
    for replica, seconds in (("", 30), ("x" * 129, 30), ("a", 0), ("a", -1), ("a", float("inf"))):
        with pytest.raises(UsageError):
            await a.lease_job(replica, seconds)


async def test_the_newest_runs_of_a_job_are_kept(catalog_url: str) -> None:
    catalog = await Catalog.open(catalog_url)
    try:
        job = await catalog.add_job(RepoRef.parse("org/model"))
        for fence in range(1, RUNS_KEPT + 3):
            lease = await catalog.lease_job("a", 30)
            assert lease is not None and lease.fence == fence and await catalog.release_job(job.id, fence)
    finally:
        await catalog.close()
    kept = await runs(catalog_url)
    assert [fence for _, _, fence, *_ in kept] == list(range(3, RUNS_KEPT + 3))
    assert {outcome for *_, outcome in kept} == {"stopped"}


async def test_the_leases_of_a_replica_known_gone_end_at_once(replicas: tuple[Catalog, Catalog]) -> None:
    first, second = replicas
    job = await first.add_job(RepoRef.parse("org/gone"), "main")
    held = await first.lease_job("host-1-aaaa", 600)
    assert held is not None and held.job.id == job.id
    assert await second.lease_job("host-2-bbbb", 600) is None  # held for ten minutes
    assert await second.lease_holders() == ["host-1-aaaa"]
    assert await second.expire_leases(["host-1-aaaa"]) == 1
    taken = await second.lease_job("host-2-bbbb", 600)
    assert taken is not None and taken.job.id == job.id and taken.fence == held.fence + 1
    assert await second.lease_holders() == ["host-2-bbbb"]
    assert not await first.renew_job(job.id, held.fence, 600)  # the gone replica's writes change nothing


def test_a_replica_gone_from_this_host_is_known_by_its_process() -> None:
    me = replica_id()
    host = socket.gethostname()[:96]
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    assert gone_from_this_host(f"{host}-{ended.pid}-abcd", me)
    assert gone_from_this_host(f"{host}-{os.getpid()}-0000", me)  # an earlier daemon that had this pid
    assert not gone_from_this_host(f"{host}-{os.getppid()}-abcd", me)  # its process still runs
    assert not gone_from_this_host(me, me)
    assert not gone_from_this_host(f"another-host-{ended.pid}-abcd", me)
    assert not gone_from_this_host("no-pid-here", me)
