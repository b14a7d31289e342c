"""Inspecting a repo: read its weights' headers (remotely, or from the store after a pull), index
them in the catalog, and add them up into what ``mreg inspect`` shows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass

from mreg.registry.catalog import Catalog, FileRecord, HeaderRecord
from mreg.registry.errors import MregError
from mreg.registry.formats.events import HeaderParsed, TensorInfo
from mreg.registry.formats.safetensors import parse_index
from mreg.registry.formats.summary import summarize
from mreg.registry.upstream.client import RepoClient
from mreg.registry.inspect.reading import is_model_file, parse_local, parse_remote_many, read_remote_file
from mreg.registry.inspect.modelinfo import ModelShape, architecture_from_config, memory_estimates, parse_config, repo_parameters
from mreg.registry.repo import RepoRef
from mreg.registry.store import Store

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


def _shards(index_path: str, data: bytes) -> list[str]:
    folder = posixpath.dirname(index_path)
    return [posixpath.join(folder, name) if folder else name for name in parse_index(data).shards]


async def inspect_remote(client: RepoClient, catalog: Catalog, repo: RepoRef, revision: str,
                         upstream: str | None = None) -> Inspection:
    """Read every weights header of ``repo`` at ``revision`` over ranged GETs and index it (recording
    the revision as listed from ``upstream``)."""
    commit = (await client.repo_info(repo, revision)).commit
    remote = await client.list_files(repo, commit)
    await catalog.record_revision(repo, commit, [FileRecord(f.path, f.size, f.git_oid, f.lfs_sha256) for f in remote],
                                  upstream=upstream)
    sizes = {f.path: f.size for f in remote}
    small = [p for p in sizes if p == CONFIG or p.endswith(SHARD_INDEX_SUFFIX)]
    contents = await asyncio.gather(*(read_remote_file(client, repo, commit, p, SMALL_FILE_LIMIT) for p in small))
    requests, nbytes = len(small), sum(len(c) for c in contents)
    config = parse_config(dict(zip(small, contents)).get(CONFIG, b"{}"))
    indexed = [s for p, c in zip(small, contents) if p != CONFIG for s in _shards(p, c)]
    results = await parse_remote_many(client, repo, commit, [p for p in sizes if is_model_file(p)])
    files = []
    for path, result in sorted(results.items()):
        record = header_record(path, result.header, result.error, _format_of(path))
        tensors = result.header.tensors if result.header else ()
        await catalog.record_header(repo, commit, record, tensors)
        files.append(FileInspection(path, sizes[path], record, tensors))
        requests, nbytes = requests + result.stats.requests, nbytes + result.stats.bytes
    return await _finish(catalog, repo, commit, files, config, indexed, requests, nbytes)


async def index_snapshot(store: Store, catalog: Catalog, repo: RepoRef, commit: str) -> None:
    """Index the headers of the weights files a pull stored (those not indexed yet)."""
    linked = store.snapshot_files(repo, commit)
    done = {h.path for r in await catalog.indexed_revisions(repo, commit) for h in r.headers}
    for path in sorted(p for p in linked if is_model_file(p) and p not in done):
        blob = store.blob_path(linked[path])
        try:
            parsed: HeaderParsed | None = await asyncio.to_thread(parse_local, blob, name=path)
            error = None
        except MregError as exc:
            parsed, error = None, exc
        await catalog.record_header(repo, commit, header_record(path, parsed, error, _format_of(path)),
                                    parsed.tensors if parsed else ())
    await inspect_local(catalog, store, repo, commit, with_tensors=False)  # records the architecture


async def inspect_local(catalog: Catalog, store: Store, repo: RepoRef, commit: str, with_tensors: bool) -> Inspection:
    """What the catalog knows of a local revision (after ``mreg pull`` or an earlier inspect)."""
    records = {r.path: r for r in await catalog.revision_files(repo, commit)}
    linked = store.snapshot_files(repo, commit) if store.snapshot_dir(repo, commit).is_dir() else {}
    config = parse_config(store.blob_path(linked[CONFIG]).read_bytes()) if CONFIG in linked else {}
    indexed = [s for p in linked if p.endswith(SHARD_INDEX_SUFFIX)
               for s in _shards(p, store.blob_path(linked[p]).read_bytes())]
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
