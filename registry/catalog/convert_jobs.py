"""The catalog's statements about convert jobs, run in the caller's transaction.

A job is ``running`` until it is ``complete`` or ``failed``. For one (repo, commit, quant) at most one
job is running or complete at a time: asking again gives that job; after a failure a new one starts.
Every job stays readable by its id.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import Row, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mreg.registry.repo import RepoRef
from mreg.registry.catalog.models import ConvertJob as Job
from mreg.registry.catalog.models import Repo, utcnow
from mreg.registry.catalog.queries import ensure_repo
from mreg.registry.catalog.records import ConvertJob

_COLUMNS = (Job.id, Repo.repo_type, Repo.repo_id, Job.commit, Job.quant, Job.status, Job.name, Job.sha256, Job.size,
            Job.error)


def _record(row: Row[Any]) -> ConvertJob:
    return ConvertJob(id=row.id, repo=RepoRef(row.repo_type, row.repo_id), commit=row.commit, quant=row.quant,
                      status=row.status, name=row.name, sha256=row.sha256, size=row.size, error=row.error)


async def get(conn: AsyncConnection, job_id: str) -> ConvertJob | None:
    """The job with this id, or None."""
    row = (await conn.execute(select(*_COLUMNS).join(Repo, Job.repo == Repo.id).where(Job.id == job_id))).first()
    return None if row is None else _record(row)


async def start(conn: AsyncConnection, repo: RepoRef, commit: str, quant: str) -> tuple[ConvertJob, bool]:
    """The running or complete job for ``(repo, commit, quant)``, else a new running one; and whether
    it is new (its caller must then run it)."""
    repo_pk = await ensure_repo(conn, repo)
    found = await conn.scalar(select(Job.id).where(
        Job.repo == repo_pk, Job.commit == commit, Job.quant == quant, Job.status != "failed"))
    if found is not None:
        job = await get(conn, found)
        assert job is not None
        return job, False
    job_id = secrets.token_hex(8)
    await conn.execute(insert(Job).values(id=job_id, repo=repo_pk, commit=commit, quant=quant, status="running",
                                          created_at=utcnow()))
    return ConvertJob(job_id, repo, commit, quant, "running"), True


async def finish(conn: AsyncConnection, job_id: str, name: str, sha256: str, size: int) -> None:
    """Record that the running job made ``name`` (blob ``sha256``, ``size`` bytes)."""
    await conn.execute(update(Job).where(Job.id == job_id, Job.status == "running").values(
        status="complete", name=name, sha256=sha256, size=size, finished_at=utcnow()))


async def fail(conn: AsyncConnection, job_id: str | None, error: str) -> int:
    """Record that the running job (every running job if ``job_id`` is None) failed; how many did."""
    query = update(Job).where(Job.status == "running")
    if job_id is not None:
        query = query.where(Job.id == job_id)
    return (await conn.execute(query.values(status="failed", error=error, finished_at=utcnow()))).rowcount
