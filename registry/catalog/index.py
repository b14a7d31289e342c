"""The catalog's statements about inspected headers and their tensors (see ``queries`` for the rest)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mreg.registry.errors import CatalogError
from mreg.registry.formats.events import TensorInfo
from mreg.registry.repo import RepoRef
from mreg.registry.catalog import queries as q
from mreg.registry.catalog.models import File, FileHeader, Repo, Revision, Tensor, utcnow
from mreg.registry.catalog.portable import by_code_point
from mreg.registry.catalog.records import HeaderRecord, IndexedRevision, TensorPage

TENSOR_BATCH = 1000


async def _file_pk(conn: AsyncConnection, repo: RepoRef, commit: str, path: str) -> int:
    revision = await q.revision_pk(conn, repo, commit)
    found = None if revision is None else await conn.scalar(
        select(File.id).where(File.revision == revision, File.path == path))
    if found is None:
        raise CatalogError(f"{repo}@{commit[:12]} has no file {path!r} in the catalog")
    return found


async def record_header(conn: AsyncConnection, repo: RepoRef, commit: str, header: HeaderRecord,
                        tensors: Sequence[TensorInfo]) -> None:
    """Replace what is known of one file's header and tensors."""
    file_pk = await _file_pk(conn, repo, commit, header.path)
    await conn.execute(delete(FileHeader).where(FileHeader.file == file_pk))
    values = {"file": file_pk, "format": header.format, "header_bytes": header.header_bytes,
              "tensor_count": header.tensor_count, "parameters": header.parameters,
              "dtypes": dict(header.dtypes), "gguf": None if header.gguf is None else dict(header.gguf),
              "error": header.error, "indexed_at": utcnow()}
    header_pk = (await conn.execute(insert(FileHeader).values(values))).inserted_primary_key[0]
    rows = [{"header": header_pk, "name": t.name, "dtype": t.dtype, "shape": list(t.shape), "offset": t.offset,
             "nbytes": t.nbytes} for t in tensors]
    for start in range(0, len(rows), TENSOR_BATCH):
        await conn.execute(insert(Tensor), rows[start : start + TENSOR_BATCH])


async def set_architecture(conn: AsyncConnection, repo: RepoRef, commit: str, architecture: str | None) -> None:
    revision = await q.revision_pk(conn, repo, commit)
    if revision is None:
        raise CatalogError(f"{repo}@{commit[:12]} is not in the catalog")
    await conn.execute(update(Revision).where(Revision.id == revision).values(architecture=architecture))


def _record(row: Any) -> HeaderRecord:
    return HeaderRecord(path=row.path, format=row.format, header_bytes=row.header_bytes,
                        tensor_count=row.tensor_count, parameters=row.parameters, dtypes=row.dtypes or {},
                        gguf=row.gguf, error=row.error)


async def headers(conn: AsyncConnection, revision_ids: Sequence[int]) -> dict[int, list[HeaderRecord]]:
    """The header records of the given revisions, by revision id, ordered by path."""
    found: dict[int, list[HeaderRecord]] = {rid: [] for rid in revision_ids}
    statement = (select(File.revision, File.path, FileHeader.format, FileHeader.header_bytes,
                        FileHeader.tensor_count, FileHeader.parameters, FileHeader.dtypes, FileHeader.gguf,
                        FileHeader.error)
                 .join(FileHeader, FileHeader.file == File.id)
                 .where(File.revision.in_(revision_ids)).order_by(by_code_point(File.path)))
    for row in (await conn.execute(statement)).all():
        found[row.revision].append(_record(row))
    return found


async def indexed_revisions(conn: AsyncConnection, repo: RepoRef | None = None,
                            commit: str | None = None) -> list[IndexedRevision]:
    """Each repo's newest revision (or the one asked for) with its architecture and headers."""
    statement = select(Revision.id, Repo.repo_type, Repo.repo_id, Revision.commit, Revision.architecture,
                       Revision.state, Revision.created_at).join(Repo, Repo.id == Revision.repo)
    if repo is not None:
        statement = statement.where(Repo.repo_type == repo.repo_type, Repo.repo_id == repo.repo_id)
    if commit is not None:
        statement = statement.where(Revision.commit == commit)
    newest: dict[RepoRef, tuple] = {}
    for row in (await conn.execute(statement)).all():
        ref = RepoRef(row.repo_type, row.repo_id)
        rank = (row.state == "complete", row.created_at, row.id)
        if ref not in newest or rank > newest[ref][0]:
            newest[ref] = (rank, row)
    by_revision = await headers(conn, [row.id for _, row in newest.values()])
    return [IndexedRevision(repo=ref, commit=row.commit, architecture=row.architecture,
                            headers=tuple(by_revision[row.id]))
            for ref, (_, row) in sorted(newest.items())]


async def tensors(conn: AsyncConnection, repo: RepoRef, commit: str, path: str) -> list[TensorInfo]:
    """The tensors of one indexed file, in file order."""
    file_pk = await _file_pk(conn, repo, commit, path)
    statement = (select(Tensor.name, Tensor.dtype, Tensor.shape, Tensor.offset, Tensor.nbytes).join(FileHeader, FileHeader.id == Tensor.header)
                 .where(FileHeader.file == file_pk).order_by(Tensor.offset, Tensor.id))
    return [TensorInfo(t.name, t.dtype, tuple(t.shape), t.offset, t.nbytes) for t in (await conn.execute(statement)).all()]


async def tensor_page(conn: AsyncConnection, repo: RepoRef, commit: str, path: str | None, offset: int,
                      limit: int) -> TensorPage:
    """A slice of the revision's tensors (of one file if ``path``), by file path then file order."""
    revision = await q.revision_pk(conn, repo, commit)
    selected = (File.revision == revision) if path is None else (File.revision == revision) & (File.path == path)
    joined = (select(File.path, Tensor.name, Tensor.dtype, Tensor.shape, Tensor.offset, Tensor.nbytes)
              .join(FileHeader, FileHeader.id == Tensor.header).join(File, File.id == FileHeader.file)
              .where(selected))
    total = await conn.scalar(select(func.count()).select_from(joined.subquery()))
    rows = await conn.execute(joined.order_by(by_code_point(File.path), Tensor.offset, Tensor.id).offset(offset).limit(limit))
    tensors = tuple((r.path, TensorInfo(r.name, r.dtype, tuple(r.shape), r.offset, r.nbytes)) for r in rows)
    return TensorPage(int(total or 0), tensors)


async def tensor_counts(conn: AsyncConnection, repo: RepoRef, commit: str) -> dict[str, int]:
    """dtype → how many tensors of the revision's indexed files have it."""
    revision = await q.revision_pk(conn, repo, commit)
    rows = await conn.execute(
        select(Tensor.dtype, func.count()).join(FileHeader, FileHeader.id == Tensor.header)
        .join(File, File.id == FileHeader.file).where(File.revision == revision).group_by(Tensor.dtype)
        .order_by(by_code_point(Tensor.dtype)))
    return {dtype: int(n) for dtype, n in rows}
