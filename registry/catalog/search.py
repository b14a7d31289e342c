"""``mreg search``: filtering the catalog's indexed repos by text, architecture, format, quant and size."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mreg.registry.catalog import Catalog, IndexedRevision
from mreg.registry.errors import UsageError
from mreg.registry.inspect.modelinfo import formats, quants, repo_parameters
from mreg.registry.repo import RepoRef

FORMATS = ("safetensors", "gguf")
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

    @classmethod
    def parse(cls, text: str | None = None, arch: str | None = None, format: str | None = None,
              quant: str | None = None, min_params: str | None = None, max_params: str | None = None) -> "Query":
        """The query the filters say, as typed (empty means unset); UsageError for a bad format or count."""
        if format and format not in FORMATS:
            raise UsageError(f"invalid format {format!r}: use one of {', '.join(FORMATS)}")
        return cls(text=text or None, arch=arch or None, format=format or None, quant=quant or None,
                   min_params=parse_count(min_params) if min_params else None,
                   max_params=parse_count(max_params) if max_params else None)


@dataclass(frozen=True)
class SearchHit:
    repo: RepoRef
    commit: str
    architecture: str | None
    parameters: int
    formats: list[str]
    quants: list[str]


def hit_json(hit: SearchHit) -> dict[str, Any]:
    """A hit as ``mreg search --json`` and ``GET /v1/search`` give it."""
    return {"repo": hit.repo.repo_id, "repo_type": hit.repo.repo_type, "commit": hit.commit,
            "architecture": hit.architecture, "parameters": hit.parameters, "formats": hit.formats,
            "quants": hit.quants}


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
