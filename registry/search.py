"""``mreg search``: filtering the catalog's indexed repos by text, architecture, format, quant and size."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .catalog import Catalog, IndexedRevision
from .errors import UsageError
from .modelinfo import formats, quants, repo_parameters
from .repo import RepoRef

_SUFFIXES = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9, "T": 10**12}


def parse_count(text: str) -> int:
    """A parameter count as people write it: ``7B``, ``500M``, ``1.5b``, ``22713728``."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMbBgGtT]?)\s*", text)
    if not match:
        raise UsageError(f"invalid parameter count {text!r}: use a number like 22713728, 500M or 7B")
    return int(float(match[1]) * _SUFFIXES[match[2].upper()])


@dataclass(frozen=True)
class Query:
    text: str | None = None
    arch: str | None = None
    format: str | None = None
    quant: str | None = None
    min_params: int | None = None
    max_params: int | None = None


@dataclass(frozen=True)
class SearchHit:
    repo: RepoRef
    commit: str
    architecture: str | None
    parameters: int
    formats: list[str]
    quants: list[str]


def _hit(revision: IndexedRevision) -> SearchHit:
    parameters, _ = repo_parameters(revision.headers)
    return SearchHit(revision.repo, revision.commit, revision.architecture, parameters,
                     formats(revision.headers), quants(revision.headers))


def matches(hit: SearchHit, query: Query) -> bool:
    fold = str.casefold
    if query.text and fold(query.text) not in fold(hit.repo.repo_id):
        return False
    if query.arch and fold(query.arch) not in fold(hit.architecture or ""):
        return False
    if query.format and query.format not in hit.formats:
        return False
    if query.quant and fold(query.quant) not in {fold(q) for q in hit.quants}:
        return False
    if query.min_params is not None and hit.parameters < query.min_params:
        return False
    return query.max_params is None or hit.parameters <= query.max_params


async def search(catalog: Catalog, query: Query) -> list[SearchHit]:
    """The local repos (newest revision each) that match every filter given."""
    return [hit for hit in map(_hit, await catalog.indexed_revisions()) if matches(hit, query)]
