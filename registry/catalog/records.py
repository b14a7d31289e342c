"""The values the catalog hands out and takes in: frozen dataclasses, no database types."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..repo import RepoRef


@dataclass(frozen=True)
class FileRecord:
    """One file of a revision as the Hub lists it, plus its content sha256 once stored."""

    path: str
    size: int
    git_oid: str
    lfs_sha256: str | None = None
    sha256: str | None = None
    state: str = "pending"


@dataclass(frozen=True)
class RepoSummary:
    """One line of ``mreg list``: a repo's newest revision (the newest complete one if any)."""

    repo: RepoRef
    commit: str
    refs: tuple[str, ...]
    files: int
    size: int
    complete: bool
    updated_at: datetime


@dataclass(frozen=True)
class HeaderRecord:
    """What the catalog keeps of a weights file's header (``error`` set when it could not be read)."""

    path: str
    format: str
    header_bytes: int | None = None
    tensor_count: int | None = None
    parameters: int | None = None
    dtypes: Mapping[str, int] = field(default_factory=dict)
    gguf: Mapping[str, Any] | None = None
    error: str | None = None


@dataclass(frozen=True)
class IndexedRevision:
    """A repo's newest revision with what inspection found in it: the input of ``mreg search``."""

    repo: RepoRef
    commit: str
    architecture: str | None
    headers: tuple[HeaderRecord, ...]


@dataclass(frozen=True)
class DerivedRecord:
    """A GGUF mreg converted from ``repo`` at ``commit``: its file name, blob and the mreg that made it."""

    repo: RepoRef
    commit: str
    quant: str
    name: str
    sha256: str
    size: int
    mreg_version: str
    created_at: datetime | None = None
