"""The catalog's statements about mirror jobs (see ``queries`` for repos, revisions and files).

A job row moves ``queued → running → done | failed``; ``queue`` sends it back. Running is a lease
held by one replica: taking it and every write of a running job's state are in ``job_leases``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mreg.registry.repo import RepoRef
from mreg.registry.catalog import queries as q
from mreg.registry.catalog.models import MirrorJob as Job
from mreg.registry.catalog.models import Repo, utcnow
from mreg.registry.catalog.portable import by_code_point
from mreg.registry.catalog.records import MirrorJob

_COLUMNS = (
    Job.id, Repo.repo_type, Repo.repo_id, Job.revision, Job.include, Job.exclude, Job.every, Job.status,
    Job.bytes_done, Job.bytes_total, Job.commit, Job.last_sync, Job.next_sync, Job.error, Job.lease_until,
    Job.leased_by,
)


def _is(repo: RepoRef) -> ColumnElement[bool]:
    return and_(Repo.repo_type == repo.repo_type, Repo.repo_id == repo.repo_id)


def _record(row: Row[Any]) -> MirrorJob:
    return MirrorJob(
        id=row.id, repo=RepoRef(row.repo_type, row.repo_id), revision=row.revision,
        include=tuple(row.include), exclude=tuple(row.exclude), every=row.every, status=row.status,
        bytes_done=row.bytes_done, bytes_total=row.bytes_total, commit=row.commit,
        last_sync=row.last_sync, next_sync=row.next_sync, error=row.error, lease_until=row.lease_until,
        leased_by=row.leased_by,
    )


async def list_jobs(conn: AsyncConnection, repo: RepoRef | None = None) -> list[MirrorJob]:
    """Every job (or ``repo``'s), ordered by repo."""
    query = (select(*_COLUMNS).join(Repo, Job.repo == Repo.id)
             .order_by(by_code_point(Repo.repo_type), by_code_point(Repo.repo_id)))
    if repo is not None:
        query = query.where(_is(repo))
    return [_record(row) for row in await conn.execute(query)]


async def job_by_id(conn: AsyncConnection, job_id: int) -> MirrorJob | None:
    """The job with this id, or None."""
    row = (await conn.execute(select(*_COLUMNS).join(Repo, Job.repo == Repo.id).where(Job.id == job_id))).first()
    return None if row is None else _record(row)


async def add_job(conn: AsyncConnection, repo: RepoRef, revision: str, include: Sequence[str],
                  exclude: Sequence[str], every: float | None) -> MirrorJob:
    """Create ``repo``'s job, or replace the settings of the existing one; either way it is due now
    (a running job keeps running and uses the new settings from its next sync)."""
    repo_pk = await q.ensure_repo(conn, repo)
    settings = {"revision": revision, "include": list(include), "exclude": list(exclude), "every": every}
    status = await conn.scalar(select(Job.status).where(Job.repo == repo_pk))
    if status is None:
        values = {**settings, "repo": repo_pk, "status": "queued", "bytes_done": 0, "bytes_total": 0,
                  "fence": 0, "created_at": utcnow()}
        await conn.execute(insert(Job).values(values))
    else:
        queued = {} if status == "running" else {"status": "queued", "next_sync": None}
        await conn.execute(update(Job).where(Job.repo == repo_pk).values(**settings, **queued))
    return (await list_jobs(conn, repo))[0]


async def remove_job(conn: AsyncConnection, repo: RepoRef) -> bool:
    """Delete ``repo``'s job (not its files); False if it had none."""
    repo_pk = await q.repo_pk(conn, repo)
    if repo_pk is None:
        return False
    return (await conn.execute(delete(Job).where(Job.repo == repo_pk))).rowcount > 0


async def queue(conn: AsyncConnection, repo: RepoRef | None) -> int:
    """Make ``repo``'s job (or every job) due now unless it is running; how many jobs exist for it."""
    query = select(Job.id, Job.status).join(Repo, Job.repo == Repo.id)
    if repo is not None:
        query = query.where(_is(repo))
    found = (await conn.execute(query)).all()
    waiting = [row.id for row in found if row.status != "running"]
    if waiting:
        await conn.execute(update(Job).where(Job.id.in_(waiting)).values(status="queued", next_sync=None))
    return len(found)
