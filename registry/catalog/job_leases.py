"""Leasing mirror jobs to replicas, and the fenced writes of a leased job's state.

A replica takes one due job at a time (``lease``): queued, past its ``next_sync``, or ``running`` under a
lease that ran out (its replica died or stalled; a row a pre-lease daemon left running has no lease).
Taking it sets ``leased_by`` and ``lease_until``, adds 1 to ``fence`` and opens a ``mirror_job_runs`` row
(the newest ``RUNS_KEPT`` of a job are kept); a run the previous holder left open ends at its lease's end
(``expired``). Every later write of the
job's state names the fence it holds and changes nothing once the fence moved on or the job is gone:
False then tells the worker it lost the job.

The pick is ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL. SQLite has no row locks (SQLAlchemy leaves
the clause out) and needs none: its write transactions are exclusive (``BEGIN IMMEDIATE``, ``db``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, case, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mreg.registry.catalog.jobs import job_by_id
from mreg.registry.catalog.models import MirrorJob as Job
from mreg.registry.catalog.models import MirrorJobRun as Run
from mreg.registry.catalog.models import utcnow
from mreg.registry.catalog.records import JobLease

RUNS_KEPT = 100
"""The newest runs of each job kept in ``mirror_job_runs`` (older ones are deleted as a new one starts)."""


def _due(now: datetime) -> ColumnElement[bool]:
    return or_(Job.status == "queued",
               and_(Job.status.in_(("done", "failed")), Job.next_sync <= now),
               and_(Job.status == "running", or_(Job.lease_until.is_(None), Job.lease_until <= now)))


def _held(job_id: int, fence: int) -> ColumnElement[bool]:
    return and_(Job.id == job_id, Job.fence == fence, Job.status == "running")


async def lease(conn: AsyncConnection, replica: str, seconds: float) -> JobLease | None:
    """Take the most urgent due job for ``replica`` for ``seconds`` (queued ones first, then the longest
    overdue); None if no job is due."""
    now = utcnow()
    pick = (select(Job.id, Job.fence, Job.lease_until).where(_due(now))
            .order_by(case((Job.status == "queued", 0), else_=1), func.coalesce(Job.next_sync, Job.lease_until), Job.id)
            .limit(1).with_for_update(skip_locked=True))
    row = (await conn.execute(pick)).first()
    if row is None:
        return None
    until, fence = now + timedelta(seconds=seconds), row.fence + 1
    await conn.execute(update(Run).where(Run.job == row.id, Run.ended_at.is_(None))
                       .values(ended_at=min(row.lease_until or now, now), outcome="expired"))
    await conn.execute(update(Job).where(Job.id == row.id).values(
        status="running", leased_by=replica, lease_until=until, fence=fence, bytes_done=0, bytes_total=0,
        error=None, next_sync=None))
    await conn.execute(insert(Run).values(job=row.id, replica=replica, fence=fence, started_at=now))
    newest = select(Run.id).where(Run.job == row.id).order_by(Run.id.desc()).limit(RUNS_KEPT)
    await conn.execute(delete(Run).where(Run.job == row.id, Run.id.not_in(newest.scalar_subquery())))
    job = await job_by_id(conn, row.id)
    assert job is not None  # the row is locked (or the database is: SQLite)
    return JobLease(job=job, replica=replica, fence=fence, until=until)


async def renew(conn: AsyncConnection, job_id: int, fence: int, seconds: float) -> bool:
    """Extend the lease to ``seconds`` from now; False if it is no longer held with ``fence``."""
    values = {"lease_until": utcnow() + timedelta(seconds=seconds)}
    return (await conn.execute(update(Job).where(_held(job_id, fence)).values(values))).rowcount > 0


async def set_progress(conn: AsyncConnection, job_id: int, fence: int, bytes_done: int, bytes_total: int) -> bool:
    """Record how many of the sync's bytes are stored; False if the lease is lost."""
    result = await conn.execute(update(Job).where(_held(job_id, fence))
                                .values(bytes_done=bytes_done, bytes_total=bytes_total))
    return result.rowcount > 0


async def finish(conn: AsyncConnection, job_id: int, fence: int, commit: str) -> bool:
    """Record a complete sync of ``commit`` and schedule the next one if the job repeats (the fence
    holder alone does it, so a schedule fires once across replicas); False if the lease is lost."""
    now = utcnow()
    return await _end(conn, job_id, fence, now, "done", status="done", commit=commit, last_sync=now,
                      next_sync=await _after(conn, job_id, now), error=None)


async def fail(conn: AsyncConnection, job_id: int, fence: int, error: str) -> bool:
    """Record a failed sync and schedule the next attempt if the job repeats; False if the lease is lost."""
    now = utcnow()
    return await _end(conn, job_id, fence, now, "failed", status="failed", error=error,
                      next_sync=await _after(conn, job_id, now))


async def release(conn: AsyncConnection, job_id: int, fence: int) -> bool:
    """Give the job back, queued (its replica stops cleanly; the partial files stay); False if the lease is lost."""
    return await _end(conn, job_id, fence, utcnow(), "stopped", status="queued")


async def _after(conn: AsyncConnection, job_id: int, now: datetime) -> datetime | None:
    every = await conn.scalar(select(Job.every).where(Job.id == job_id))
    return None if every is None else now + timedelta(seconds=every)


async def _end(conn: AsyncConnection, job_id: int, fence: int, now: datetime, outcome: str, **values: object) -> bool:
    """End the lease with ``values`` written to the job and the run closed as ``outcome``."""
    result = await conn.execute(update(Job).where(_held(job_id, fence))
                                .values(leased_by=None, lease_until=None, **values))
    if result.rowcount == 0:
        return False
    await conn.execute(update(Run).where(Run.job == job_id, Run.fence == fence, Run.ended_at.is_(None))
                       .values(ended_at=now, outcome=outcome))
    return True


async def holders(conn: AsyncConnection) -> list[str]:
    """The replicas holding the lease of a running job, a lease that has not run out."""
    rows = await conn.scalars(select(Job.leased_by).distinct()
                              .where(Job.status == "running", Job.leased_by.is_not(None), Job.lease_until > utcnow()))
    return sorted(r for r in rows.all() if r is not None)


async def expire(conn: AsyncConnection, replicas: Sequence[str]) -> int:
    """End now the leases ``replicas`` hold (replicas known to be gone): their jobs are due at once, for any
    replica. How many jobs that frees."""
    now = utcnow()
    result = await conn.execute(update(Job).where(Job.status == "running", Job.leased_by.in_(list(replicas)),
                                                  Job.lease_until > now).values(lease_until=now))
    return result.rowcount
