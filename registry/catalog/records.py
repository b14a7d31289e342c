"""The values the catalog hands out and takes in: frozen dataclasses, no database types."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mreg.registry.formats.events import TensorInfo
from mreg.registry.repo import RepoRef


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
    """One revision of a repo: for ``mreg ls``, its newest (the newest complete one if any).

    ``files``/``size`` count the whole revision; ``stored_*`` the files whose bytes are in the store.
    """

    repo: RepoRef
    commit: str
    refs: tuple[str, ...]
    files: int
    size: int
    complete: bool
    updated_at: datetime
    stored_files: int = 0
    stored_size: int = 0
    upstream: str | None = None
    """The configured name of the upstream the revision came from (None: not recorded)."""
    last_used: datetime | None = None
    """The last recorded use by a pull or a client (else ``updated_at``)."""
    pinned: bool = False
    mirrored: bool = False
    """Pinned (``mreg pin``) or with a mirror job: eviction never removes it."""


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
class TensorPage:
    """A slice of a revision's indexed tensors, ordered by file path then file order."""

    total: int
    """How many tensors the whole selection holds."""
    tensors: tuple[tuple[str, TensorInfo], ...]
    """(file path, tensor) pairs of the slice."""


@dataclass(frozen=True)
class MirrorJob:
    """A repo the daemon keeps mirrored, and where its current or last sync stands.

    ``status`` is ``queued`` (waiting for a worker), ``running``, ``done`` or ``failed``; a done or
    failed job with ``next_sync`` runs again at that time. ``commit`` is the last commit mirrored
    completely and ``last_sync`` when that sync ended (UTC); ``error`` is the last failure, one line.
    A running job's replica (``leased_by``) holds it until ``lease_until`` (then any replica may take it over).
    """

    id: int
    repo: RepoRef
    revision: str
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    every: float | None
    status: str
    bytes_done: int
    bytes_total: int
    commit: str | None
    last_sync: datetime | None
    next_sync: datetime | None
    error: str | None
    lease_until: datetime | None = None
    leased_by: str | None = None


@dataclass(frozen=True)
class JobLease:
    """A job taken by ``replica`` until ``until``; its writes carry ``fence`` and count only while it is current."""

    job: MirrorJob
    replica: str
    fence: int
    until: datetime


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


@dataclass(frozen=True)
class ConvertJob:
    """A conversion of ``repo`` at ``commit`` to ``quant`` asked of the daemon.

    ``status`` is ``running``, ``complete`` (``name``, ``sha256`` and ``size`` say what it made) or
    ``failed`` (``error`` says why, one line).
    """

    id: str
    repo: RepoRef
    commit: str
    quant: str
    status: str
    name: str | None = None
    sha256: str | None = None
    size: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class PinRecord:
    """A pinned repo (``commit`` None: every revision of it) or one pinned revision."""

    repo: RepoRef
    commit: str | None
    created_at: datetime


@dataclass(frozen=True)
class RevisionUse:
    """One revision as the size budget sees it: when it was last used, whether it must stay, and the
    blobs it holds (its stored files and the GGUFs converted from it), ``sha256 -> size``."""

    repo: RepoRef
    commit: str
    last_used: datetime
    """The last recorded use, else when it was completed, else when it was first recorded."""
    pinned: bool
    mirrored: bool
    blobs: Mapping[str, int]


@dataclass(frozen=True)
class FillRecord:
    """A blob's fill lease as a replica found it: ``leader`` if the caller now holds it (with ``fence``)."""

    key: str
    owner: str
    holder: str
    fence: int
    size: int
    committed: int
    until: datetime
    state: str
    error: str | None
    leader: bool = False
