"""The catalog's tables as SQLAlchemy ORM models, in portable types.

The schema itself is owned by the Alembic migrations in ``migrations/versions``; these models must
match them (``tests/test_migrations.py`` compares the two on SQLite and PostgreSQL). Timestamps are
timezone-aware UTC; strings are ``text_column``s (unbounded on PostgreSQL, as SQLite keeps them).
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    JSON,
    MetaData,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mreg.registry.catalog.columns import text_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
STATES = ("pending", "complete")
DOWNLOAD_STATUSES = ("running", "complete", "failed")
JOB_STATUSES = ("queued", "running", "done", "failed")
CONVERT_STATUSES = ("running", "complete", "failed")


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the catalog: use timezone-aware UTC")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Repo(Base):
    """A repository on a hub, known by its type and id."""

    __tablename__ = "repos"
    __table_args__ = (UniqueConstraint("repo_type", "repo_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repo_type: Mapped[str] = mapped_column(text_column(16))
    repo_id: Mapped[str] = mapped_column(text_column(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Revision(Base):
    """One commit of a repo and whether all its files are stored."""

    __tablename__ = "revisions"
    __table_args__ = (UniqueConstraint("repo", "commit"), CheckConstraint(_in("state", STATES), name="state"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repo: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"))
    commit: Mapped[str] = mapped_column(text_column(40))
    state: Mapped[str] = mapped_column(text_column(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    architecture: Mapped[str | None] = mapped_column(text_column(128))
    upstream: Mapped[str | None] = mapped_column(text_column(64))
    """The configured name of the upstream the revision was listed from (None: not recorded)."""
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    """When a pull or a client last used it (recorded at most every few minutes; None: not since stored)."""


class Ref(Base):
    """A named ref (``main``, ``refs/pr/1``) of a repo and the commit it points to."""

    __tablename__ = "refs"
    __table_args__ = (UniqueConstraint("repo", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repo: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(text_column(255))
    commit: Mapped[str] = mapped_column(text_column(40))


class File(Base):
    """One file of a revision; ``sha256`` is the content hash once the bytes are stored."""

    __tablename__ = "files"
    __table_args__ = (UniqueConstraint("revision", "path"), CheckConstraint(_in("state", STATES), name="state"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision: Mapped[int] = mapped_column(ForeignKey("revisions.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(text_column(4096))
    size: Mapped[int] = mapped_column(BigInteger)
    git_oid: Mapped[str] = mapped_column(text_column(64), index=True)
    lfs_sha256: Mapped[str | None] = mapped_column(text_column(64))
    sha256: Mapped[str | None] = mapped_column(text_column(64), index=True)
    state: Mapped[str] = mapped_column(text_column(16))
    upstream: Mapped[str | None] = mapped_column(text_column(64))
    """The configured name of the upstream the file was listed from (None: not recorded)."""


class Blob(Base):
    """A blob in the content-addressed store."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(text_column(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Download(Base):
    """One download run of a repo revision."""

    __tablename__ = "downloads"
    __table_args__ = (CheckConstraint(_in("status", DOWNLOAD_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repo: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), index=True)
    commit: Mapped[str] = mapped_column(text_column(40))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(text_column(16))
    bytes_total: Mapped[int] = mapped_column(BigInteger)
    bytes_fetched: Mapped[int] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)


class FileHeader(Base):
    """What a weights file's header says (safetensors or GGUF), or why it could not be read."""

    __tablename__ = "file_headers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file: Mapped[int] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), unique=True)
    format: Mapped[str] = mapped_column(text_column(16))
    header_bytes: Mapped[int | None] = mapped_column(BigInteger)
    tensor_count: Mapped[int | None] = mapped_column(Integer)
    parameters: Mapped[int | None] = mapped_column(BigInteger)
    dtypes: Mapped[dict | None] = mapped_column(JSON)
    gguf: Mapped[dict | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    indexed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Tensor(Base):
    """One tensor of an indexed file: ``offset`` is absolute in the file, ``shape`` a JSON list."""

    __tablename__ = "tensors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    header: Mapped[int] = mapped_column(ForeignKey("file_headers.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(text_column(1024))
    dtype: Mapped[str] = mapped_column(text_column(32))
    shape: Mapped[list] = mapped_column(JSON)
    offset: Mapped[int] = mapped_column(BigInteger)
    nbytes: Mapped[int] = mapped_column(BigInteger)


class MirrorJob(Base):
    """A repo the daemon keeps mirrored: what to follow, when, and how far the current sync got."""

    __tablename__ = "mirror_jobs"
    __table_args__ = (CheckConstraint(_in("status", JOB_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repo: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), unique=True)
    revision: Mapped[str] = mapped_column(text_column(255))
    include: Mapped[list] = mapped_column(JSON)
    exclude: Mapped[list] = mapped_column(JSON)
    every: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(text_column(16))
    bytes_done: Mapped[int] = mapped_column(BigInteger)
    bytes_total: Mapped[int] = mapped_column(BigInteger)
    commit: Mapped[str | None] = mapped_column(text_column(40))
    last_sync: Mapped[datetime | None] = mapped_column(UTCDateTime())
    next_sync: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    leased_by: Mapped[str | None] = mapped_column(text_column(128))
    """The replica running the job (while ``running``), until ``lease_until``; then any replica may take it."""
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    fence: Mapped[int] = mapped_column(Integer, server_default="0")
    """+1 at every lease: a write carrying an older fence comes from a replica that lost the job."""


class MirrorJobRun(Base):
    """One run of a mirror job by one replica under one fence, and how it ended (``ended_at`` None: running).

    Outcomes: ``done``, ``failed``, ``stopped`` (its replica shut down cleanly) and ``expired`` (its lease
    ran out and another replica took the job: ``ended_at`` is the lease's end)."""

    __tablename__ = "mirror_job_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job: Mapped[int] = mapped_column(ForeignKey("mirror_jobs.id", ondelete="CASCADE"), index=True)
    replica: Mapped[str] = mapped_column(text_column(128))
    fence: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    outcome: Mapped[str | None] = mapped_column(text_column(16))


class DerivedArtifact(Base):
    """A file mreg made from a repo at a commit (a GGUF converted to ``quant``), stored as a blob."""

    __tablename__ = "derived_artifacts"
    __table_args__ = (UniqueConstraint("repo", "commit", "quant"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repo: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"))
    commit: Mapped[str] = mapped_column(text_column(40))
    quant: Mapped[str] = mapped_column(text_column(32))
    name: Mapped[str] = mapped_column(text_column(255))
    sha256: Mapped[str] = mapped_column(text_column(64))
    size: Mapped[int] = mapped_column(BigInteger)
    mreg_version: Mapped[str] = mapped_column(text_column(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ConvertJob(Base):
    """A conversion the daemon was asked for (``POST /v1/convert``): running, complete or failed."""

    __tablename__ = "convert_jobs"
    __table_args__ = (CheckConstraint(_in("status", CONVERT_STATUSES), name="status"),
                      Index(None, "repo", "commit", "quant"))

    id: Mapped[str] = mapped_column(text_column(32), primary_key=True)
    repo: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"))
    commit: Mapped[str] = mapped_column(text_column(40))
    quant: Mapped[str] = mapped_column(text_column(32))
    status: Mapped[str] = mapped_column(text_column(16))
    name: Mapped[str | None] = mapped_column(text_column(255))
    sha256: Mapped[str | None] = mapped_column(text_column(64))
    size: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Pin(Base):
    """A repo (``commit`` None: every revision) or one revision that eviction must never remove."""

    __tablename__ = "pins"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repo: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), index=True)
    commit: Mapped[str | None] = mapped_column(text_column(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class FailedTransfer(Base):
    """Content (its download key: the sha256, or ``git-<oid>``) whose transfer failed after a daemon sent some
    of its bytes: until ``failed_at`` is an hour old (the daemon's ``failed_transfer_memory``), every replica
    answers a Range request for it that does not start at 0 with the whole file. Older rows are deleted as
    new ones are written."""

    __tablename__ = "failed_transfers"

    key: Mapped[str] = mapped_column(text_column(80), primary_key=True)
    failed_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class EvictionLease(Base):
    """Who may evict from a store replicas share, until when; ``fence`` (+1 at every lease) refuses a former
    holder's deletions. One row, ``name`` ``"store"``."""

    __tablename__ = "eviction_lease"

    name: Mapped[str] = mapped_column(text_column(32), primary_key=True)
    holder: Mapped[str | None] = mapped_column(text_column(128))
    until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    fence: Mapped[int] = mapped_column(Integer)


class EvictionRound(Base):
    """One eviction round a replica ran under the lease: when, and what it evicted (``ended_at`` None: it
    was cut short, its replica killed)."""

    __tablename__ = "eviction_rounds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    replica: Mapped[str] = mapped_column(text_column(128))
    fence: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    evicted: Mapped[int] = mapped_column(Integer)
    freed_bytes: Mapped[int] = mapped_column(BigInteger)


class BlobInUse(Base):
    """A replica's mark: it serves ``sha256`` (None: not known yet) of a revision, until ``until`` unless it
    writes the mark again."""

    __tablename__ = "blobs_in_use"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    replica: Mapped[str] = mapped_column(text_column(128), index=True)
    repo_type: Mapped[str] = mapped_column(text_column(16))
    repo_id: Mapped[str] = mapped_column(text_column(255))
    commit: Mapped[str] = mapped_column(text_column(40))
    sha256: Mapped[str | None] = mapped_column(text_column(64))
    until: Mapped[datetime] = mapped_column(UTCDateTime())


class DoomedBlob(Base):
    """A blob in a shared store that no revision held when a round looked (``since``); deleted once that is a
    grace period old, if still unreferenced and unused. ``deleting_at``: its deletion began; ``deleted_at``: the
    object is gone (kept a while as a tombstone, see ``catalog.shared_eviction``)."""

    __tablename__ = "doomed_blobs"

    sha256: Mapped[str] = mapped_column(text_column(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    since: Mapped[datetime] = mapped_column(UTCDateTime())
    deleting_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class FillLease(Base):
    """Who fills blob ``key`` into the shared store (``holder``, a replica, until ``lease_until``), for which repo
    (``owner``), under which ``fence``, and how many leading bytes the store holds (``committed``). ``state`` is
    ``filling``, ``done`` (the blob is published) or ``failed`` (``error`` says why). Finished rows an hour old are
    deleted as leases are claimed."""

    __tablename__ = "fill_leases"

    key: Mapped[str] = mapped_column(text_column(80), primary_key=True)
    owner: Mapped[str] = mapped_column(text_column(300))
    holder: Mapped[str] = mapped_column(text_column(128))
    fence: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(BigInteger)
    committed: Mapped[int] = mapped_column(BigInteger)
    lease_until: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    state: Mapped[str] = mapped_column(text_column(16))
    error: Mapped[str | None] = mapped_column(Text)
