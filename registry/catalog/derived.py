"""The catalog's statements about derived artifacts (local conversions), run in the caller's transaction."""

from __future__ import annotations

from sqlalchemy import and_, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from mreg.registry.repo import RepoRef
from mreg.registry.catalog.models import DerivedArtifact, Repo, utcnow
from mreg.registry.catalog.queries import ensure_repo, repo_pk
from mreg.registry.catalog.records import DerivedRecord


async def record(conn: AsyncConnection, artifact: DerivedRecord) -> None:
    """Insert ``artifact``, replacing an earlier conversion of the same repo, commit and quant."""
    repo = await ensure_repo(conn, artifact.repo)
    await conn.execute(delete(DerivedArtifact).where(and_(
        DerivedArtifact.repo == repo, DerivedArtifact.commit == artifact.commit,
        DerivedArtifact.quant == artifact.quant)))
    await conn.execute(insert(DerivedArtifact).values(
        repo=repo, commit=artifact.commit, quant=artifact.quant, name=artifact.name, sha256=artifact.sha256,
        size=artifact.size, mreg_version=artifact.mreg_version, created_at=utcnow()))


async def find(conn: AsyncConnection, repo: RepoRef, commit: str, quant: str) -> DerivedRecord | None:
    """The conversion of ``repo`` at ``commit`` to ``quant``, if one was recorded."""
    pk = await repo_pk(conn, repo)
    if pk is None:
        return None
    row = (await conn.execute(select(DerivedArtifact).where(and_(
        DerivedArtifact.repo == pk, DerivedArtifact.commit == commit, DerivedArtifact.quant == quant)))).first()
    if row is None:
        return None
    return DerivedRecord(repo, row.commit, row.quant, row.name, row.sha256, row.size, row.mreg_version,
                         row.created_at)


async def blobs(conn: AsyncConnection) -> set[str]:
    """The sha256 of every derived artifact."""
    return set((await conn.scalars(select(DerivedArtifact.sha256).join(Repo))).all())
