"""The catalog's statements, one small function each, run inside a transaction the caller owns.

Only portable SQL (no upserts by dialect; text ordered with ``portable.by_code_point``): get-or-create
is a select then an insert, which the caller's write transaction makes safe (it holds the catalog's
write lock: ``BEGIN IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL; see ``db``).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, and_, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mreg.registry.errors import CatalogError
from mreg.registry.repo import RepoRef
from mreg.registry.catalog.models import Blob, Download, File, Ref, Repo, Revision, utcnow
from mreg.registry.catalog.portable import by_code_point
from mreg.registry.catalog.records import FileRecord
from mreg.registry.catalog import shared_eviction


def _is(repo: RepoRef) -> ColumnElement[bool]:
    """The condition selecting ``repo`` in the repos table."""
    return and_(Repo.repo_type == repo.repo_type, Repo.repo_id == repo.repo_id)


async def repo_pk(conn: AsyncConnection, repo: RepoRef) -> int | None:
    """The row id of ``repo``, or None."""
    return await conn.scalar(select(Repo.id).where(_is(repo)))


async def ensure_repo(conn: AsyncConnection, repo: RepoRef) -> int:
    """The row id of ``repo``, created if missing."""
    found = await repo_pk(conn, repo)
    if found is not None:
        return found
    values = {"repo_type": repo.repo_type, "repo_id": repo.repo_id, "created_at": utcnow()}
    result = await conn.execute(insert(Repo).values(values))
    return int(result.inserted_primary_key[0])


async def revision_pk(conn: AsyncConnection, repo: RepoRef, commit: str) -> int | None:
    """The row id of ``repo`` at ``commit``, or None."""
    return await conn.scalar(
        select(Revision.id)
        .join(Repo, Revision.repo == Repo.id)
        .where(_is(repo), Revision.commit == commit)
    )


async def record_revision(
    conn: AsyncConnection, repo: RepoRef, commit: str, files: Sequence[FileRecord], ref: str | None,
    upstream: str | None = None,
) -> None:
    """Create the repo and revision if missing, add the files not recorded yet, and set ``ref``.

    ``upstream`` (when given) becomes the revision's upstream and that of the files added now."""
    repo_id = await ensure_repo(conn, repo)
    rev_id = await conn.scalar(select(Revision.id).where(Revision.repo == repo_id, Revision.commit == commit))
    if rev_id is None:
        values = {"repo": repo_id, "commit": commit, "state": "pending", "created_at": utcnow(),
                  "upstream": upstream}
        rev_id = (await conn.execute(insert(Revision).values(values))).inserted_primary_key[0]
    elif upstream is not None:
        await conn.execute(update(Revision).where(Revision.id == rev_id).values(upstream=upstream))
    known = set((await conn.scalars(select(File.path).where(File.revision == rev_id))).all())
    new: dict[str, dict[str, object]] = {}
    for f in files:
        if f.path not in known and f.path not in new:
            new[f.path] = {
                "revision": rev_id,
                "path": f.path,
                "size": f.size,
                "git_oid": f.git_oid,
                "lfs_sha256": f.lfs_sha256,
                "sha256": f.sha256,
                "state": f.state,
                "upstream": upstream,
            }
    if new:
        await conn.execute(insert(File), list(new.values()))
    if ref is not None:
        await set_ref(conn, repo_id, ref, commit)


async def set_ref(conn: AsyncConnection, repo_id: int, ref: str, commit: str) -> None:
    """Point ``ref`` of the repo with row id ``repo_id`` at ``commit``."""
    updated = await conn.execute(update(Ref).where(Ref.repo == repo_id, Ref.name == ref).values(commit=commit))
    if updated.rowcount == 0:
        await conn.execute(insert(Ref).values(repo=repo_id, name=ref, commit=commit))


async def mark_file_complete(
    conn: AsyncConnection, repo: RepoRef, commit: str, path: str, sha256: str, size: int
) -> None:
    """Record the stored content of one file, and its blob (taken out of an eviction's grace: ``shared_eviction``)."""
    rev_id = await revision_pk(conn, repo, commit)
    if rev_id is None:
        raise CatalogError(f"cannot mark {path} complete: {repo} at {commit} is not in the catalog")
    updated = await conn.execute(
        update(File)
        .where(File.revision == rev_id, File.path == path)
        .values(sha256=sha256, size=size, state="complete")
    )
    if updated.rowcount == 0:
        raise CatalogError(f"cannot mark {path} complete: no such file in {repo} at {commit}")
    await shared_eviction.reclaim(conn, sha256)
    if await conn.scalar(select(Blob.sha256).where(Blob.sha256 == sha256)) is None:
        await conn.execute(insert(Blob).values(sha256=sha256, size=size, created_at=utcnow()))


async def mark_revision_complete(conn: AsyncConnection, repo: RepoRef, commit: str) -> None:
    """Mark a revision complete, keeping the first completion time."""
    row = (
        await conn.execute(
            select(Revision.id, Revision.state)
            .join(Repo, Revision.repo == Repo.id)
            .where(_is(repo), Revision.commit == commit)
        )
    ).first()
    if row is None:
        raise CatalogError(f"cannot mark {repo} at {commit} complete: it is not in the catalog")
    if row.state != "complete":
        done = update(Revision).where(Revision.id == row.id).values(state="complete", completed_at=utcnow())
        await conn.execute(done)


async def resolve_revision(conn: AsyncConnection, repo: RepoRef, revision: str) -> str | None:
    """A ref name, a known full commit or a unique hex prefix (7+ digits) → the commit, else None."""
    repo_id = await repo_pk(conn, repo)
    if repo_id is None:
        return None
    commit = await conn.scalar(select(Ref.commit).where(Ref.repo == repo_id, Ref.name == revision))
    if commit is not None:
        return commit
    prefix = revision.lower()
    if not 7 <= len(prefix) <= 40 or prefix.strip("0123456789abcdef"):
        return None
    matches = (
        await conn.scalars(
            select(Revision.commit).where(Revision.repo == repo_id, Revision.commit.startswith(prefix)).limit(2)
        )
    ).all()
    return matches[0] if len(matches) == 1 else None


async def revision_state(conn: AsyncConnection, repo: RepoRef, commit: str) -> str | None:
    """``pending`` or ``complete``, or None for an unknown revision."""
    return await conn.scalar(
        select(Revision.state)
        .join(Repo, Revision.repo == Repo.id)
        .where(_is(repo), Revision.commit == commit)
    )


async def revision_files(conn: AsyncConnection, repo: RepoRef, commit: str) -> list[FileRecord]:
    """The files of a revision, ordered by path (empty for an unknown revision)."""
    rows = await conn.execute(
        select(File.path, File.size, File.git_oid, File.lfs_sha256, File.sha256, File.state)
        .join(Revision, File.revision == Revision.id)
        .join(Repo, Revision.repo == Repo.id)
        .where(_is(repo), Revision.commit == commit)
        .order_by(by_code_point(File.path))
    )
    return [FileRecord(*row) for row in rows]


async def remove_repo(conn: AsyncConnection, repo: RepoRef) -> bool:
    """Delete a repo; its revisions, refs, files and downloads go with it (ON DELETE CASCADE)."""
    result = await conn.execute(delete(Repo).where(_is(repo)))
    return result.rowcount > 0


async def referenced_blobs(conn: AsyncConnection) -> set[str]:
    """The content sha256 of every file row that has one."""
    return set((await conn.scalars(select(File.sha256).where(File.sha256.is_not(None)).distinct())).all())


async def contents_of(conn: AsyncConnection, git_oids: Sequence[str]) -> dict[str, str]:
    """git oid → content sha256 of the non-LFS files already downloaded under any repo or revision."""
    found: dict[str, str] = {}
    for start in range(0, len(git_oids), 500):
        rows = await conn.execute(
            select(File.git_oid, File.sha256).where(
                File.git_oid.in_(git_oids[start : start + 500]), File.lfs_sha256.is_(None),
                File.state == "complete", File.sha256.is_not(None)))
        found.update({oid: sha for oid, sha in rows.all()})
    return found


async def stored_for_repo(conn: AsyncConnection, repo: RepoRef, sha256s: Sequence[str]) -> set[str]:
    """Those of ``sha256s`` recorded as the stored content of a file of ``repo`` (any revision)."""
    pk = await repo_pk(conn, repo)
    if pk is None or not sha256s:
        return set()
    found: set[str] = set()
    for start in range(0, len(sha256s), 500):
        rows = await conn.execute(
            select(File.sha256).join(Revision, File.revision == Revision.id).where(
                Revision.repo == pk, File.state == "complete", File.sha256.in_(sha256s[start : start + 500])))
        found.update(sha for (sha,) in rows.all())
    return found


async def start_download(conn: AsyncConnection, repo: RepoRef, commit: str, bytes_total: int) -> int:
    """Insert a running download and return its id."""
    repo_id = await ensure_repo(conn, repo)
    values = {
        "repo": repo_id, "commit": commit, "started_at": utcnow(), "status": "running",
        "bytes_total": bytes_total, "bytes_fetched": 0,
    }
    return int((await conn.execute(insert(Download).values(values))).inserted_primary_key[0])


async def finish_download(
    conn: AsyncConnection, download_id: int, status: str, bytes_fetched: int, error: str | None
) -> None:
    """Record how a download ended."""
    result = await conn.execute(
        update(Download)
        .where(Download.id == download_id)
        .values(status=status, bytes_fetched=bytes_fetched, error=error, finished_at=utcnow())
    )
    if result.rowcount == 0:
        raise CatalogError(f"cannot finish download {download_id}: no such download in the catalog")
