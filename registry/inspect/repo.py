"""Inspecting a repo: read its weights' headers (remotely, or from the store after a pull), index
them in the catalog, and add them up into what ``mreg inspect`` shows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mreg.registry.catalog import FileRecord, HeaderRecord
from mreg.registry.errors import FormatError, MregError
from mreg.registry.formats.events import HeaderParsed, TensorInfo
from mreg.registry.formats.safetensors import ShardIndex, parse_index
from mreg.registry.formats.summary import summarize
from mreg.registry.upstream.client import RemoteFile, RepoClient
from mreg.registry.inspect.reading import (
    FileHeader,
    is_model_file,
    parse_blob,
    parse_remote_many,
    read_blob,
    read_remote_file,
)
from mreg.registry.inspect.sizing import indexed_first_reads
from mreg.registry.inspect.modelinfo import ModelShape, architecture_from_config, memory_estimates, parse_config, repo_parameters
from mreg.registry.repo import RepoRef
from mreg.registry.store import Store

if TYPE_CHECKING:
    from mreg.registry.catalog import Catalog

CONFIG = "config.json"
SHARD_INDEX_SUFFIX = ".safetensors.index.json"
SMALL_FILE_LIMIT = 16 * 1024 * 1024


@dataclass(frozen=True)
class FileInspection:
    path: str
    size: int
    header: HeaderRecord
    tensors: tuple[TensorInfo, ...]


@dataclass(frozen=True)
class Inspection:
    """A repo at a commit as its headers describe it; ``requests``/``bytes`` are what reading cost."""

    repo: RepoRef
    commit: str
    architecture: str | None
    parameters: int
    by_dtype: dict[str, int]
    files: list[FileInspection]
    shape: ModelShape | None
    memory: dict[str, int]
    requests: int
    bytes: int


def header_record(path: str, parsed: HeaderParsed | None, error: MregError | None, fmt: str) -> HeaderRecord:
    """What the catalog keeps of a parse: the summary, or the error."""
    if parsed is None:
        return HeaderRecord(path=path, format=fmt, error=str(error))
    summary = summarize(parsed)
    return HeaderRecord(path=path, format=summary.format, header_bytes=summary.header_bytes,
                        tensor_count=summary.tensor_count, parameters=summary.parameters,
                        dtypes=dict(summary.parameters_by_dtype),
                        gguf=dataclasses.asdict(summary.gguf) if summary.gguf else None)


def _format_of(path: str) -> str:
    return "gguf" if path.endswith(".gguf") else "safetensors"


def _shards(index_path: str, index: ShardIndex) -> list[str]:
    folder = posixpath.dirname(index_path)
    return [posixpath.join(folder, name) if folder else name for name in index.shards]


@dataclass(frozen=True)
class RemoteHeaders:
    """What reading a revision's headers found: config.json's content (b"{}" if none), the shard
    indexes by path, every weights file's header, and what the reads cost."""

    config: bytes
    indexes: dict[str, ShardIndex]
    headers: dict[str, FileHeader]
    requests: int
    bytes: int


async def read_headers(client: RepoClient, repo: RepoRef, commit: str, remote: Sequence[RemoteFile]) -> RemoteHeaders:
    """Read config.json and the shard indexes of a listed revision, then every weights header, shards
    named by an index with a first read sized from it."""
    sizes = {f.path: f.size for f in remote}
    small = [p for p in sizes if p == CONFIG or p.endswith(SHARD_INDEX_SUFFIX)]
    contents = dict(zip(small, await asyncio.gather(*(read_remote_file(client, repo, commit, p, SMALL_FILE_LIMIT)
                                                      for p in small))))
    indexes = {p: parse_index(c) for p, c in contents.items() if p != CONFIG}
    headers = await parse_remote_many(client, repo, commit, [p for p in sizes if is_model_file(p)],
                                      first_reads=indexed_first_reads(indexes, sizes))
    return RemoteHeaders(contents.get(CONFIG, b"{}"), indexes, headers,
                         len(small) + sum(h.stats.requests for h in headers.values()),
                         sum(map(len, contents.values())) + sum(h.stats.bytes for h in headers.values()))


async def inspect_remote(client: RepoClient, catalog: Catalog, repo: RepoRef, revision: str,
                         upstream: str | None = None) -> Inspection:
    """Read every weights header of ``repo`` at ``revision`` over ranged GETs and index it (recording
    the revision as listed from ``upstream``)."""
    commit = (await client.repo_info(repo, revision)).commit
    remote = await client.list_files(repo, commit)
    await catalog.record_revision(repo, commit, [FileRecord(f.path, f.size, f.git_oid, f.lfs_sha256) for f in remote],
                                  upstream=upstream)
    read = await read_headers(client, repo, commit, remote)
    sizes = {f.path: f.size for f in remote}
    indexed = [s for p, index in read.indexes.items() for s in _shards(p, index)]
    files = []
    for path, result in sorted(read.headers.items()):
        record = header_record(path, result.header, result.error, _format_of(path))
        tensors = result.header.tensors if result.header else ()
        await catalog.record_header(repo, commit, record, tensors)
        files.append(FileInspection(path, sizes[path], record, tensors))
    return await _finish(catalog, repo, commit, files, parse_config(read.config), indexed, read.requests, read.bytes)


async def stored_files(catalog: Catalog, repo: RepoRef, commit: str) -> dict[str, FileRecord]:
    """path → record of the revision's files the catalog records as stored (complete, with their blob)."""
    return {r.path: r for r in await catalog.revision_files(repo, commit) if r.state == "complete" and r.sha256}


async def _small_blob(store: Store, record: FileRecord) -> bytes:
    """A stored small file's content (config.json, an index); FormatError past ``SMALL_FILE_LIMIT``."""
    if record.size > SMALL_FILE_LIMIT:
        raise FormatError(f"{record.path}: {record.size} bytes is more than the {SMALL_FILE_LIMIT} expected of it")
    return await read_blob(store.blobs, record.sha256 or "")


async def index_snapshot(store: Store, catalog: Catalog, repo: RepoRef, commit: str) -> None:
    """Index the headers of the weights files stored for the revision (those not indexed yet), read through
    the blob store."""
    stored = await stored_files(catalog, repo, commit)
    done = {h.path for r in await catalog.indexed_revisions(repo, commit) for h in r.headers}
    for path in sorted(p for p in stored if is_model_file(p) and p not in done):
        record = stored[path]
        try:
            parsed: HeaderParsed | None = await parse_blob(store.blobs, record.sha256 or "", record.size, path)
            error = None
        except MregError as exc:
            parsed, error = None, exc
        await catalog.record_header(repo, commit, header_record(path, parsed, error, _format_of(path)),
                                    parsed.tensors if parsed else ())
    await inspect_local(catalog, store, repo, commit, with_tensors=False)  # records the architecture


async def inspect_local(catalog: Catalog, store: Store, repo: RepoRef, commit: str, with_tensors: bool) -> Inspection:
    """What the catalog knows of a local revision (after ``mreg pull`` or an earlier inspect)."""
    records = {r.path: r for r in await catalog.revision_files(repo, commit)}
    stored = await stored_files(catalog, repo, commit)
    config = parse_config(await _small_blob(store, stored[CONFIG])) if CONFIG in stored else {}
    indexed = [s for p in stored if p.endswith(SHARD_INDEX_SUFFIX)
               for s in _shards(p, parse_index(await _small_blob(store, stored[p])))]
    files = []
    for revision in await catalog.indexed_revisions(repo, commit):
        for header in revision.headers:
            tensors = tuple(await catalog.tensors(repo, commit, header.path)) if with_tensors else ()
            files.append(FileInspection(header.path, records[header.path].size, header, tensors))
    return await _finish(catalog, repo, commit, files, config, indexed, 0, 0)


async def _finish(catalog: Catalog, repo: RepoRef, commit: str, files: Sequence[FileInspection],
                  config: dict, indexed: Sequence[str], requests: int, nbytes: int) -> Inspection:
    headers = [f.header for f in files]
    parameters, by_dtype = repo_parameters(headers, indexed)
    gguf = next((h.gguf for h in headers if h.gguf), None)
    architecture = architecture_from_config(config) or (gguf or {}).get("architecture")
    await catalog.set_architecture(repo, commit, architecture)
    shape = ModelShape.from_config(config) or (ModelShape.from_gguf(gguf) if gguf else None)
    return Inspection(repo=repo, commit=commit, architecture=architecture, parameters=parameters,
                      by_dtype=by_dtype, files=list(files), shape=shape,
                      memory=memory_estimates(parameters, shape), requests=requests, bytes=nbytes)
