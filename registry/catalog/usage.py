"""The catalog's statements for the size budget: last use of revisions, pins, what each revision
holds, and removing one revision (rows only; the store removes its folders)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mreg.registry.catalog.models import DerivedArtifact, File, MirrorJob, Pin, Ref, Repo, Revision, utcnow
from mreg.registry.catalog.portable import by_code_point
from mreg.registry.catalog.queries import ensure_repo, repo_pk
from mreg.registry.catalog.records import PinRecord, RevisionUse
from mreg.registry.repo import RepoRef


async def record_use(conn: AsyncConnection, repo: RepoRef, commit: str, when: datetime) -> None:
    """Move the revision's last use forward to ``when`` (never back)."""
    pk = await repo_pk(conn, repo)
    if pk is None:
        return
    await conn.execute(update(Revision).where(
        Revision.repo == pk, Revision.commit == commit,
        or_(Revision.last_used_at.is_(None), Revision.last_used_at < when)).values(last_used_at=when))


def _pin_is(pk: int, commit: str | None) -> ColumnElement[bool]:
    return and_(Pin.repo == pk, Pin.commit.is_(None) if commit is None else Pin.commit == commit)


async def pin(conn: AsyncConnection, repo: RepoRef, commit: str | None) -> bool:
    """Pin ``repo`` (``commit`` None) or one revision; False if it was pinned already."""
    pk = await ensure_repo(conn, repo)
    if await conn.scalar(select(Pin.id).where(_pin_is(pk, commit))) is not None:
        return False
    await conn.execute(insert(Pin).values(repo=pk, commit=commit, created_at=utcnow()))
    return True


async def unpin(conn: AsyncConnection, repo: RepoRef, commit: str | None) -> bool:
    """Remove that pin; False if there was none."""
    pk = await repo_pk(conn, repo)
    if pk is None:
        return False
    return (await conn.execute(delete(Pin).where(_pin_is(pk, commit)))).rowcount > 0


async def pins(conn: AsyncConnection) -> list[PinRecord]:
    """Every pin, by repo then commit (repo-wide pins first)."""
    rows = await conn.execute(select(Repo.repo_type, Repo.repo_id, Pin.commit, Pin.created_at).join(Repo)
                              .order_by(by_code_point(Repo.repo_type), by_code_point(Repo.repo_id),
                                        Pin.commit.is_not(None), Pin.commit))
    return [PinRecord(RepoRef(t, i), commit, created) for t, i, commit, created in rows]


async def revision_uses(conn: AsyncConnection) -> list[RevisionUse]:
    """Every revision with its last use, pinned and mirrored flags and blobs."""
    last_used = func.coalesce(Revision.last_used_at, Revision.completed_at, Revision.created_at)
    revisions = (await conn.execute(select(Revision.id, Revision.repo, Repo.repo_type, Repo.repo_id,
                                           Revision.commit, last_used).join(Repo))).all()
    pinned = {(repo, commit) for repo, commit in await conn.execute(select(Pin.repo, Pin.commit))}
    mirrored = set((await conn.scalars(select(MirrorJob.repo))).all())
    blobs: dict[int, dict[str, int]] = {}
    stored = select(File.revision, File.sha256, File.size).where(File.state == "complete", File.sha256.is_not(None))
    for rev_id, sha256, size in await conn.execute(stored):
        blobs.setdefault(rev_id, {})[sha256] = size
    derived: dict[tuple[int, str], dict[str, int]] = {}
    for repo, commit, sha256, size in await conn.execute(
            select(DerivedArtifact.repo, DerivedArtifact.commit, DerivedArtifact.sha256, DerivedArtifact.size)):
        derived.setdefault((repo, commit), {})[sha256] = size
    return [RevisionUse(repo=RepoRef(repo_type, repo_id), commit=commit, last_used=used,
                        pinned=(repo, None) in pinned or (repo, commit) in pinned, mirrored=repo in mirrored,
                        blobs={**blobs.get(rev_id, {}), **derived.get((repo, commit), {})})
            for rev_id, repo, repo_type, repo_id, commit, used in revisions]


async def remove_revision(conn: AsyncConnection, repo: RepoRef, commit: str) -> bool:
    """Forget one revision: its row (files go with it), the refs pointing at it and the GGUFs converted
    from it. False if it was unknown."""
    pk = await repo_pk(conn, repo)
    if pk is None:
        return False
    await conn.execute(delete(Ref).where(Ref.repo == pk, Ref.commit == commit))
    await conn.execute(delete(DerivedArtifact).where(DerivedArtifact.repo == pk, DerivedArtifact.commit == commit))
    return (await conn.execute(delete(Revision).where(Revision.repo == pk, Revision.commit == commit))).rowcount > 0
