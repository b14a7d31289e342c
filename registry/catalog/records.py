"""The values the catalog hands out and takes in: frozen dataclasses, no database types."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

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
