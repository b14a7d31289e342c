"""A repo as the catalog API and page show it: its catalog summary plus what its indexed headers add up to.

    await overviews(catalog)                        each repo's newest revision (the repo list)
    await find_commit(catalog, repo, revision)      the commit a revision names in the catalog (None: unknown)
    await repo_detail(catalog, store, repo, commit) one revision: files, headers, quants, tensors per dtype

Parameters, formats and quants are counted as ``mreg search`` counts them (``modelinfo`` over the
revision's indexed headers), so the list and the search agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from mreg.registry.catalog import Catalog, FileRecord, HeaderRecord, IndexedRevision, RepoSummary
from mreg.registry.blobs import holds
from mreg.registry.inspect.reading import read_blob
from mreg.registry.inspect.repo import CONFIG
from mreg.registry.inspect.modelinfo import ModelShape, formats, memory_estimates, parse_config, quants, repo_parameters
from mreg.registry.gguf.quants import QuantSet, gguf_sets
from mreg.registry.repo import RepoRef
from mreg.registry.store import Store

CONFIG_LIMIT = 16 * 1024 * 1024
"""A stored config.json larger than this is not read for the model's shape."""


@dataclass(frozen=True)
class RepoOverview:
    """One revision of a repo with its totals and what its indexed headers say."""

    summary: RepoSummary
    architecture: str | None
    parameters: int
    by_dtype: dict[str, int]
    formats: list[str]
    quants: list[str]


@dataclass(frozen=True)
class RepoDetail:
    """Everything the catalog knows of one revision, and the repo's other revisions."""

    overview: RepoOverview
    revisions: list[RepoSummary]
    files: list[FileRecord]
    headers: tuple[HeaderRecord, ...]
    tensor_counts: dict[str, int]
    """dtype → number of tensors."""
    quant_sets: list[QuantSet]
    shape: ModelShape | None
    memory: dict[str, int]
    """Bytes to run it at F16 / Q8_0 / Q4_K_M (empty when no parameters are indexed)."""


def overview(summary: RepoSummary, indexed: IndexedRevision | None) -> RepoOverview:
    """``summary`` with the parameters, formats and quants of its indexed headers."""
    headers = indexed.headers if indexed is not None else ()
    parameters, by_dtype = repo_parameters(headers)
    return RepoOverview(summary=summary, architecture=indexed.architecture if indexed is not None else None,
                        parameters=parameters, by_dtype=by_dtype, formats=formats(headers), quants=quants(headers))


async def overviews(catalog: Catalog) -> list[RepoOverview]:
    """Every repo's newest revision (the newest complete one if any), ordered by repo."""
    summaries = await catalog.list_repos()
    indexed = {(r.repo, r.commit): r for r in await catalog.indexed_revisions()}
    return [overview(s, indexed.get((s.repo, s.commit))) for s in summaries]


async def find_commit(catalog: Catalog, repo: RepoRef, revision: str | None) -> str | None:
    """The commit ``revision`` (a ref, a commit or a 7+ digit prefix) names; with none, the one the
    repo list shows. None when the catalog has no such repo or revision."""
    if revision is not None:
        return await catalog.resolve_revision(repo, revision)
    revisions = await catalog.revisions(repo)
    return revisions[0].commit if revisions else None


async def repo_detail(catalog: Catalog, store: Store, repo: RepoRef, commit: str) -> RepoDetail | None:
    """``repo`` at ``commit`` in full; None when the catalog does not know that revision."""
    revisions = await catalog.revisions(repo)
    summary = next((r for r in revisions if r.commit == commit), None)
    if summary is None:
        return None
    indexed = next(iter(await catalog.indexed_revisions(repo, commit)), None)
    files = await catalog.revision_files(repo, commit)
    top = overview(summary, indexed)
    headers = indexed.headers if indexed is not None else ()
    gguf = next((h.gguf for h in headers if h.gguf), None)
    shape = await _config_shape(store, files) or (ModelShape.from_gguf(gguf) if gguf else None)
    return RepoDetail(overview=top, revisions=revisions, files=files, headers=headers,
                      tensor_counts=await catalog.tensor_counts(repo, commit),
                      quant_sets=gguf_sets((f.path, f.size) for f in files), shape=shape,
                      memory=memory_estimates(top.parameters, shape) if top.parameters else {})


async def _config_shape(store: Store, files: list[FileRecord]) -> ModelShape | None:
    """The model's shape from its stored config.json, if that is stored and small."""
    config = next((f for f in files if f.path == CONFIG and f.state == "complete"), None)
    if config is None or config.sha256 is None or config.size > CONFIG_LIMIT:
        return None
    if not await holds(store.blobs, config.sha256, config.size):
        return None
    return ModelShape.from_config(parse_config(await read_blob(store.blobs, config.sha256)))
