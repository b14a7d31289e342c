"""The catalog's statements for eviction on a store replicas share (S3; see ``eviction.shared``): the fenced
eviction lease and its rounds, readers' in-use marks, and blobs waiting out their grace before deletion.

Every write here runs under the catalog's write lock (``db``), as ``mark_file_complete`` does: a deletion's
claim (still unreferenced, unused) and a file recorded with that blob never interleave.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mreg.registry.catalog.models import BlobInUse, DerivedArtifact, DoomedBlob, EvictionLease, EvictionRound, File, utcnow
from mreg.registry.errors import BlobDeletedError
from mreg.registry.repo import RepoRef

LEASE = "store"
Mark = tuple[RepoRef, str, str | None]
"""A revision (repo, commit) a replica serves, and the blob it reads if known."""


async def take_lease(conn: AsyncConnection, replica: str, seconds: float) -> tuple[int, int] | None:
    """Take the eviction lease for ``seconds`` if nobody holds it (or its holder's ran out) and open a round;
    (fence, round id), or None if another replica holds it. A round its holder left open ends at its lease's end."""
    now = utcnow()
    row = (await conn.execute(select(EvictionLease.holder, EvictionLease.until, EvictionLease.fence)
                              .where(EvictionLease.name == LEASE).with_for_update())).first()
    if row is None:
        fence = 1
        await conn.execute(insert(EvictionLease).values(name=LEASE, holder=replica, until=now + timedelta(seconds=seconds),
                                                        fence=fence))
    else:
        if row.holder is not None and row.until is not None and row.until > now:
            return None
        await conn.execute(update(EvictionRound).where(EvictionRound.ended_at.is_(None))
                           .values(ended_at=min(row.until or now, now)))
        fence = row.fence + 1
        await conn.execute(update(EvictionLease).where(EvictionLease.name == LEASE)
                           .values(holder=replica, until=now + timedelta(seconds=seconds), fence=fence))
    result = await conn.execute(insert(EvictionRound).values(replica=replica, fence=fence, started_at=now,
                                                             evicted=0, freed_bytes=0))
    return fence, int(result.inserted_primary_key[0])


def _held(fence: int, now: datetime) -> object:
    return and_(EvictionLease.name == LEASE, EvictionLease.fence == fence, EvictionLease.until > now)


async def renew(conn: AsyncConnection, fence: int, seconds: float) -> bool:
    """Hold the lease ``seconds`` more from now; False if it is no longer held with ``fence``."""
    now = utcnow()
    result = await conn.execute(update(EvictionLease).where(_held(fence, now))
                                .values(until=now + timedelta(seconds=seconds)))
    return result.rowcount > 0


async def evicting(conn: AsyncConnection, round_id: int, fence: int, seconds: float) -> bool:
    """Before a revision goes: renew the lease and count the revision in the round (other replicas then forget
    their caches); False if the lease is no longer held with ``fence``."""
    if not await renew(conn, fence, seconds):
        return False
    await conn.execute(update(EvictionRound).where(EvictionRound.id == round_id)
                       .values(evicted=EvictionRound.evicted + 1))
    return True


async def end_round(conn: AsyncConnection, round_id: int, fence: int, freed: int) -> None:
    """Close the round with the bytes it freed and give the lease back (if still held with ``fence``)."""
    now = utcnow()
    await conn.execute(update(EvictionRound).where(EvictionRound.id == round_id, EvictionRound.ended_at.is_(None))
                       .values(ended_at=now, freed_bytes=freed))
    await conn.execute(update(EvictionLease).where(_held(fence, now)).values(holder=None, until=None))


async def last_eviction(conn: AsyncConnection) -> int:
    """The id of the newest round that evicted something (0: none)."""
    return int(await conn.scalar(select(func.max(EvictionRound.id)).where(EvictionRound.evicted > 0)) or 0)


async def rounds(conn: AsyncConnection) -> list[tuple[str, int, datetime, datetime | None]]:
    """Every recorded round: (replica, fence, started, ended), oldest first."""
    rows = await conn.execute(select(EvictionRound.replica, EvictionRound.fence, EvictionRound.started_at,
                                     EvictionRound.ended_at).order_by(EvictionRound.id))
    return [(r, f, s, e) for r, f, s, e in rows]


async def write_marks(conn: AsyncConnection, replica: str, marks: Iterable[Mark], seconds: float) -> None:
    """Replace ``replica``'s in-use marks with ``marks``, valid ``seconds``; drop everyone's expired marks."""
    now = utcnow()
    await conn.execute(delete(BlobInUse).where(or_(BlobInUse.replica == replica, BlobInUse.until <= now)))
    rows = [{"replica": replica, "repo_type": repo.repo_type, "repo_id": repo.repo_id, "commit": commit,
             "sha256": sha, "until": now + timedelta(seconds=seconds)} for repo, commit, sha in marks]
    if rows:
        await conn.execute(insert(BlobInUse), rows)


async def live_marks(conn: AsyncConnection) -> set[Mark]:
    """Every replica's in-use marks that have not expired."""
    rows = await conn.execute(select(BlobInUse.repo_type, BlobInUse.repo_id, BlobInUse.commit, BlobInUse.sha256)
                              .where(BlobInUse.until > utcnow()))
    return {(RepoRef(t, i), c, s) for t, i, c, s in rows}


def _referenced(sha256: str) -> object:
    return or_(exists().where(File.sha256 == sha256), exists().where(DerivedArtifact.sha256 == sha256))


async def doom(conn: AsyncConnection, unreferenced: Mapping[str, int], tombstones: timedelta) -> None:
    """Start the grace of the blobs in ``unreferenced`` (sha256 → size) not waiting yet; forget waiting ones a file
    holds again, and tombstones older than ``tombstones``."""
    now = utcnow()
    await conn.execute(delete(DoomedBlob).where(DoomedBlob.deleting_at.is_(None), exists().where(
        File.sha256 == DoomedBlob.sha256)))
    await conn.execute(delete(DoomedBlob).where(DoomedBlob.deleted_at < now - tombstones))
    known = set((await conn.scalars(select(DoomedBlob.sha256))).all())
    rows = [{"sha256": sha, "size": size, "since": now} for sha, size in unreferenced.items() if sha not in known]
    if rows:
        await conn.execute(insert(DoomedBlob), rows)


async def due(conn: AsyncConnection, before: datetime) -> list[str]:
    """Blobs whose grace began before ``before``, and deletions a killed round left unfinished."""
    rows = await conn.scalars(select(DoomedBlob.sha256).where(DoomedBlob.deleted_at.is_(None), or_(
        DoomedBlob.since <= before, DoomedBlob.deleting_at.is_not(None))).order_by(DoomedBlob.since))
    return list(rows.all())


async def doomed_bytes(conn: AsyncConnection) -> int:
    """Bytes of the blobs waiting out their grace (not deleted yet)."""
    return int(await conn.scalar(select(func.sum(DoomedBlob.size)).where(DoomedBlob.deleted_at.is_(None))) or 0)


async def claim(conn: AsyncConnection, sha256: str, fence: int, seconds: float) -> str:
    """Begin deleting ``sha256`` under the lease ``fence`` (renewed for ``seconds``): ``claimed`` if no file holds
    it and no replica marks it in use; ``kept`` if one does (a file: forgotten; a mark: its grace starts again);
    ``lost`` if the lease is no longer held with ``fence``."""
    if not await renew(conn, fence, seconds):
        return "lost"
    if await conn.scalar(select(_referenced(sha256))):
        await conn.execute(delete(DoomedBlob).where(DoomedBlob.sha256 == sha256, DoomedBlob.deleting_at.is_(None)))
        return "kept"
    now = utcnow()
    if await conn.scalar(select(BlobInUse.id).where(BlobInUse.sha256 == sha256, BlobInUse.until > now).limit(1)):
        await conn.execute(update(DoomedBlob).where(DoomedBlob.sha256 == sha256, DoomedBlob.deleting_at.is_(None))
                           .values(since=now))
        return "kept"
    await conn.execute(update(DoomedBlob).where(DoomedBlob.sha256 == sha256).values(deleting_at=now))
    return "claimed"


async def deleted(conn: AsyncConnection, sha256: str) -> None:
    """Record that the object of ``sha256`` is gone (its row stays a while as a tombstone)."""
    await conn.execute(update(DoomedBlob).where(DoomedBlob.sha256 == sha256).values(deleted_at=utcnow()))


async def reclaim(conn: AsyncConnection, sha256: str) -> None:
    """Before a file is recorded with blob ``sha256``: take it out of its grace. BlobDeletedError if its deletion
    began (the object found may be deleted: the caller checks it exists now, after the deletion, and
    ``forget_deleted``)."""
    row = (await conn.execute(select(DoomedBlob.deleting_at, DoomedBlob.deleted_at)
                              .where(DoomedBlob.sha256 == sha256))).first()
    if row is None:
        return
    if row.deleting_at is None:
        await conn.execute(delete(DoomedBlob).where(DoomedBlob.sha256 == sha256))
        return
    state = "was deleted" if row.deleted_at is not None else "is being deleted"
    raise BlobDeletedError(f"blob {sha256} {state} by an eviction round", deleted=row.deleted_at is not None)


async def forget_deleted(conn: AsyncConnection, sha256: str) -> bool:
    """Drop the tombstone of a deleted blob stored again since; False if its deletion is not finished."""
    result = await conn.execute(delete(DoomedBlob).where(DoomedBlob.sha256 == sha256, DoomedBlob.deleted_at.is_not(None)))
    return result.rowcount > 0


async def held_bytes(conn: AsyncConnection) -> int:
    """Bytes of the distinct blobs the catalog's complete files and derived artifacts hold."""
    sizes: dict[str, int] = {}
    for sha, size in await conn.execute(select(File.sha256, File.size).where(File.state == "complete",
                                                                            File.sha256.is_not(None)).distinct()):
        sizes[sha] = size or 0
    for sha, size in await conn.execute(select(DerivedArtifact.sha256, DerivedArtifact.size)):
        sizes[sha] = size
    return sum(sizes.values())
