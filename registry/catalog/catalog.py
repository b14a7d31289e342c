"""``Catalog``: the async API over the catalog database.

Every call is one short transaction. Writes go through one writer per process (an asyncio lock)
and take the catalog's write lock up front (``db``: SQLite's, or an advisory lock on PostgreSQL), so
several processes can share one catalog.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mreg.registry.errors import UsageError
from mreg.registry.formats.events import TensorInfo
from mreg.registry.repo import RepoRef
from mreg.registry.catalog import (convert_jobs, derived, failed_transfers, fill_leases, index, job_leases, jobs,
                                   listing, shared_eviction, usage)
from mreg.registry.catalog import queries as q
from mreg.registry.catalog.db import db_errors, make_engine, upgrade_to_head, writer
from mreg.registry.catalog.models import STATES
from mreg.registry.catalog.records import (ConvertJob, DerivedRecord, FileRecord, FillRecord, HeaderRecord,
                                           IndexedRevision, JobLease, MirrorJob, PinRecord, RepoSummary, RevisionUse, TensorPage)

T = TypeVar("T")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FINAL_STATUSES = ("complete", "failed")


def _check_commit(commit: str) -> str:
    if not _COMMIT.match(commit):
        raise UsageError(f"invalid commit {commit!r}: expected 40 lowercase hex digits")
    return commit


def _check_sha256(sha256: str) -> str:
    if not _SHA256.match(sha256):
        raise UsageError(f"invalid sha256 {sha256!r}: expected 64 lowercase hex digits")
    return sha256


def _check_ref(ref: str) -> str:
    if not ref or len(ref) > 255:
        raise UsageError(f"invalid ref name {ref[:80]!r}")
    return ref


def _check_job_settings(revision: str, include: Sequence[str], exclude: Sequence[str], every: float | None) -> None:
    _check_ref(revision)
    for glob in (*include, *exclude):
        if not isinstance(glob, str) or not glob or len(glob) > 1024:
            raise UsageError(f"invalid glob {str(glob)[:80]!r}")
    number = isinstance(every, (int, float)) and not isinstance(every, bool)
    if every is not None and not (number and 0 < every < float("inf")):
        raise UsageError(f"invalid interval {every!r}: expected a positive number of seconds")


def _check_content_key(key: str) -> None:
    if not (_SHA256.match(key) or (key.startswith("git-") and len(key) <= 80)):
        raise UsageError(f"invalid content key {key[:80]!r}: expected a sha256 or git-<oid>")


def _check_replica(replica: str) -> None:
    if not replica or len(replica) > 128:
        raise UsageError(f"invalid replica id {replica[:80]!r}: expected 1 to 128 characters")


def _check_lease(seconds: float) -> None:
    if not (isinstance(seconds, (int, float)) and 0 < seconds <= 86400):
        raise UsageError(f"invalid lease {seconds!r}: expected a positive number of seconds, at most a day")


def _check_file(record: FileRecord) -> None:
    if record.state not in STATES:
        raise UsageError(f"invalid file state {record.state!r} for {record.path}: use one of {', '.join(STATES)}")
    if record.sha256 is not None:
        _check_sha256(record.sha256)


class Catalog:
    """What mreg knows about repos, revisions, refs, files, blobs and downloads. Use ``open``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = writer(engine)
        self._write_lock = asyncio.Lock()
        self._pending: set[asyncio.Task[Any]] = set()

    @classmethod
    async def open(cls, url: str) -> "Catalog":
        """Connect to the database at ``url`` and migrate its schema to head."""
        engine = make_engine(url)
        try:
            await upgrade_to_head(engine)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine)

    async def close(self) -> None:
        """Finish the writes in flight, then close every pooled connection."""
        await asyncio.gather(*self._pending, return_exceptions=True)
        await self._engine.dispose()

    async def _read(self, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        with db_errors("read", self._engine.url):
            async with self._engine.connect() as conn, conn.begin():
                return await fn(conn)

    async def _transact(self, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        async with self._writer.begin() as conn:
            return await fn(conn)

    async def _write(self, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``fn`` in a write transaction that a cancelled caller cannot leave open.

        The transaction runs in its own task: if the caller is cancelled (a pull interrupted, a
        sibling download failing), it still commits or rolls back and gives the write lock back;
        otherwise the database would hold the lock for a connection nobody finishes.
        """
        task = asyncio.ensure_future(self._locked_write(fn))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        task.add_done_callback(_consume_error)
        return await asyncio.shield(task)

    async def _locked_write(self, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        async with self._write_lock:
            with db_errors("write", self._engine.url):
                try:
                    return await self._transact(fn)
                except IntegrityError:  # another process inserted the same row first: retry once
                    return await self._transact(fn)

    async def record_revision(
        self, repo: RepoRef, commit: str, files: Sequence[FileRecord], ref: str | None = None,
        upstream: str | None = None,
    ) -> None:
        """Record ``repo`` at ``commit`` with its files (pending unless already complete), and set
        ``ref`` to it if given. Idempotent: known files are left as they are. ``upstream`` names
        where the revision (and the files added now) came from."""
        _check_commit(commit)
        for record in files:
            _check_file(record)
        if ref is not None:
            _check_ref(ref)
        await self._write(lambda conn: q.record_revision(conn, repo, commit, files, ref, upstream))

    async def set_ref(self, repo: RepoRef, ref: str, commit: str) -> None:
        """Point ``ref`` (``main``, ``refs/pr/1``...) of ``repo`` at ``commit``."""
        _check_ref(ref)
        _check_commit(commit)

        async def run(conn: AsyncConnection) -> None:
            await q.set_ref(conn, await q.ensure_repo(conn, repo), ref, commit)

        await self._write(run)

    async def mark_file_complete(self, repo: RepoRef, commit: str, path: str, sha256: str, size: int) -> None:
        """Record that ``path`` is stored with content ``sha256`` (and that blob exists)."""
        _check_commit(commit)
        _check_sha256(sha256)
        await self._write(lambda conn: q.mark_file_complete(conn, repo, commit, path, sha256, size))

    async def mark_revision_complete(self, repo: RepoRef, commit: str) -> None:
        """Record that every file of ``repo`` at ``commit`` is stored."""
        _check_commit(commit)
        await self._write(lambda conn: q.mark_revision_complete(conn, repo, commit))

    async def resolve_revision(self, repo: RepoRef, revision: str) -> str | None:
        """The commit a ref name, a known full commit or a unique 7+ digit prefix stands for, else None."""
        return await self._read(lambda conn: q.resolve_revision(conn, repo, revision))

    async def revision_state(self, repo: RepoRef, commit: str) -> str | None:
        """``pending`` or ``complete``; None if the revision is unknown."""
        return await self._read(lambda conn: q.revision_state(conn, repo, commit))

    async def revision_files(self, repo: RepoRef, commit: str) -> list[FileRecord]:
        """The files of ``repo`` at ``commit``, ordered by path."""
        return await self._read(lambda conn: q.revision_files(conn, repo, commit))

    async def list_repos(self) -> list[RepoSummary]:
        """One summary per repo with a revision, ordered by repo: its newest complete revision, or
        its newest one if none is complete."""
        return listing.newest_per_repo(await self._listing(None))

    async def revisions(self, repo: RepoRef) -> list[RepoSummary]:
        """Every revision of ``repo``: complete ones first, newest first (the first is what ``list_repos`` shows)."""
        return await self._listing(repo)

    async def _listing(self, repo: RepoRef | None) -> list[RepoSummary]:
        revisions, totals, refs, params = listing.statements(repo)

        async def run(conn: AsyncConnection) -> list[RepoSummary]:
            rows = [(await conn.execute(text(sql), params)).all() for sql in (revisions, totals, refs)]
            return listing.summaries(*rows)

        return await self._read(run)

    async def remove_repo(self, repo: RepoRef) -> bool:
        """Forget ``repo`` with its revisions, refs, files and downloads; False if it was unknown."""
        return await self._write(lambda conn: q.remove_repo(conn, repo))

    async def remove_revision(self, repo: RepoRef, commit: str) -> bool:
        """Forget one revision of ``repo`` with its files, the refs pointing at it and the GGUFs converted
        from it; False if it was unknown."""
        _check_commit(commit)
        return await self._write(lambda conn: usage.remove_revision(conn, repo, commit))

    async def record_use(self, uses: Mapping[tuple[RepoRef, str], datetime]) -> None:
        """Move each ``(repo, commit)``'s last use forward to the time given (one transaction)."""
        for _, commit in uses:
            _check_commit(commit)

        async def run(conn: AsyncConnection) -> None:
            for (repo, commit), when in uses.items():
                await usage.record_use(conn, repo, commit, when)

        await self._write(run)

    async def pin(self, repo: RepoRef, commit: str | None = None) -> bool:
        """Keep ``repo`` (every revision, ``commit`` None) or one revision from eviction; False if already pinned."""
        if commit is not None:
            _check_commit(commit)
        return await self._write(lambda conn: usage.pin(conn, repo, commit))

    async def unpin(self, repo: RepoRef, commit: str | None = None) -> bool:
        """Remove that pin; False if there was none."""
        return await self._write(lambda conn: usage.unpin(conn, repo, commit))

    async def pins(self) -> list[PinRecord]:
        """Every pin."""
        return await self._read(usage.pins)

    async def revision_uses(self) -> list[RevisionUse]:
        """Every revision as the size budget sees it (last use, pinned, mirrored, blobs)."""
        return await self._read(usage.revision_uses)

    async def referenced_blobs(self) -> set[str]:
        """The content sha256 of every file row that has one, and of every derived artifact."""

        async def run(conn: AsyncConnection) -> set[str]:
            return await q.referenced_blobs(conn) | await derived.blobs(conn)

        return await self._read(run)

    async def held_bytes(self) -> int:
        """Bytes of the distinct blobs the catalog's complete files and derived artifacts hold."""
        return await self._read(shared_eviction.held_bytes)

    # -- eviction on a shared store (``shared_eviction``) ----------------------------------------------

    async def take_eviction_lease(self, replica: str, seconds: float) -> tuple[int, int] | None:
        """The eviction lease for ``seconds`` and a new round: (fence, round id); None if another replica holds it."""
        _check_replica(replica)
        _check_lease(seconds)
        return await self._write(lambda conn: shared_eviction.take_lease(conn, replica, seconds))

    async def evicting(self, round_id: int, fence: int, lease_seconds: float) -> bool:
        """Before a revision goes: renew the lease and count it in the round; False if the lease was lost."""
        _check_lease(lease_seconds)
        return await self._write(lambda conn: shared_eviction.evicting(conn, round_id, fence, lease_seconds))

    async def end_eviction_round(self, round_id: int, fence: int, freed: int) -> None:
        """Close the round (``freed`` bytes) and give the lease back."""
        await self._write(lambda conn: shared_eviction.end_round(conn, round_id, fence, freed))

    async def last_eviction(self) -> int:
        """The id of the newest round that evicted something (0: none)."""
        return await self._read(shared_eviction.last_eviction)

    async def eviction_rounds(self) -> list[tuple[str, int, datetime, datetime | None]]:
        """Every recorded eviction round: (replica, fence, started, ended)."""
        return await self._read(shared_eviction.rounds)

    async def write_marks(self, replica: str, marks: Sequence[shared_eviction.Mark], seconds: float) -> None:
        """Replace ``replica``'s in-use marks, valid ``seconds``."""
        _check_replica(replica)
        await self._write(lambda conn: shared_eviction.write_marks(conn, replica, marks, seconds))

    async def live_marks(self) -> set[shared_eviction.Mark]:
        """Every replica's unexpired in-use marks."""
        return await self._read(shared_eviction.live_marks)

    async def doom_blobs(self, unreferenced: Mapping[str, int], tombstones: timedelta) -> None:
        """Start the grace of these unreferenced blobs (sha256 → size) not waiting yet."""
        await self._write(lambda conn: shared_eviction.doom(conn, unreferenced, tombstones))

    async def doomed_due(self, before: datetime) -> list[str]:
        """Blobs whose grace began before ``before``, and unfinished deletions."""
        return await self._read(lambda conn: shared_eviction.due(conn, before))

    async def doomed_bytes(self) -> int:
        """Bytes of the blobs waiting out their grace."""
        return await self._read(shared_eviction.doomed_bytes)

    async def claim_deletion(self, sha256: str, fence: int, lease_seconds: float) -> str:
        """``claimed``, ``kept`` or ``lost`` (``shared_eviction.claim``)."""
        return await self._write(lambda conn: shared_eviction.claim(conn, sha256, fence, lease_seconds))

    async def blob_deleted(self, sha256: str) -> None:
        """Record that the object of ``sha256`` is gone."""
        await self._write(lambda conn: shared_eviction.deleted(conn, sha256))

    async def forget_deleted(self, sha256: str) -> bool:
        """Drop the tombstone of a deleted blob stored again since."""
        _check_sha256(sha256)
        return await self._write(lambda conn: shared_eviction.forget_deleted(conn, sha256))

    async def record_derived(self, artifact: DerivedRecord) -> None:
        """Record a local conversion (replacing an earlier one of the same repo, commit and quant)."""
        _check_commit(artifact.commit)
        _check_sha256(artifact.sha256)
        await self._write(lambda conn: derived.record(conn, artifact))

    async def find_derived(self, repo: RepoRef, commit: str, quant: str) -> DerivedRecord | None:
        """The recorded conversion of ``repo`` at ``commit`` to ``quant``, or None."""
        return await self._read(lambda conn: derived.find(conn, repo, commit, quant))

    async def contents_of(self, git_oids: Sequence[str]) -> dict[str, str]:
        """For the given git oids of non-LFS files, the content sha256 where one was downloaded before."""
        return await self._read(lambda conn: q.contents_of(conn, list(git_oids)))

    async def stored_for_repo(self, repo: RepoRef, sha256s: Sequence[str]) -> set[str]:
        """Those of ``sha256s`` already recorded as the content of one of ``repo``'s files."""
        return await self._read(lambda conn: q.stored_for_repo(conn, repo, list(sha256s)))

    async def record_header(self, repo: RepoRef, commit: str, header: HeaderRecord,
                            tensors: Sequence[TensorInfo] = ()) -> None:
        """Store what a file's header says (replacing an earlier record of it)."""
        _check_commit(commit)
        await self._write(lambda conn: index.record_header(conn, repo, commit, header, tensors))

    async def set_architecture(self, repo: RepoRef, commit: str, architecture: str | None) -> None:
        """Record the model architecture of a revision (from config.json or a GGUF header)."""
        _check_commit(commit)
        await self._write(lambda conn: index.set_architecture(conn, repo, commit, architecture))

    async def indexed_revisions(self, repo: RepoRef | None = None, commit: str | None = None) -> list[IndexedRevision]:
        """Each repo's newest revision (or ``repo`` at ``commit``) with its architecture and headers."""
        return await self._read(lambda conn: index.indexed_revisions(conn, repo, commit))

    async def tensors(self, repo: RepoRef, commit: str, path: str) -> list[TensorInfo]:
        """The tensors of one indexed file, in file order."""
        return await self._read(lambda conn: index.tensors(conn, repo, commit, path))

    async def tensor_page(self, repo: RepoRef, commit: str, path: str | None, offset: int, limit: int) -> TensorPage:
        """``limit`` tensors from ``offset`` of a revision's indexed files (of file ``path`` alone if given)."""
        return await self._read(lambda conn: index.tensor_page(conn, repo, commit, path, offset, limit))

    async def tensor_counts(self, repo: RepoRef, commit: str) -> dict[str, int]:
        """How many tensors of each dtype a revision's indexed files hold."""
        return await self._read(lambda conn: index.tensor_counts(conn, repo, commit))

    async def start_download(self, repo: RepoRef, commit: str, bytes_total: int) -> int:
        """Record a download that starts now; return its id for ``finish_download``."""
        _check_commit(commit)
        return await self._write(lambda conn: q.start_download(conn, repo, commit, bytes_total))

    async def finish_download(
        self, download_id: int, status: str, bytes_fetched: int, error: str | None = None
    ) -> None:
        """Record how download ``download_id`` ended: ``complete`` or ``failed`` (with ``error``)."""
        if status not in _FINAL_STATUSES:
            raise UsageError(f"invalid download status {status!r}: use one of {', '.join(_FINAL_STATUSES)}")
        await self._write(lambda conn: q.finish_download(conn, download_id, status, bytes_fetched, error))

    async def add_job(self, repo: RepoRef, revision: str = "main", include: Sequence[str] = (),
                      exclude: Sequence[str] = (), every: float | None = None) -> MirrorJob:
        """Mirror ``repo`` at ``revision`` (a branch or tag to follow, or a commit), limited to files
        matching ``include`` and not ``exclude``, again every ``every`` seconds (None: once).

        Adding a repo that has a job already replaces that job's settings and makes it due now
        (if it is running, the new settings apply from its next sync); its progress is kept.
        """
        _check_job_settings(revision, include, exclude, every)
        return await self._write(lambda conn: jobs.add_job(conn, repo, revision, include, exclude, every))

    async def list_jobs(self) -> list[MirrorJob]:
        """Every mirror job, ordered by repo."""
        return await self._read(jobs.list_jobs)

    async def job(self, repo: RepoRef) -> MirrorJob | None:
        """``repo``'s mirror job, or None."""
        found = await self._read(lambda conn: jobs.list_jobs(conn, repo))
        return found[0] if found else None

    async def remove_job(self, repo: RepoRef) -> bool:
        """Stop mirroring ``repo`` (its stored files stay); False if it had no job."""
        return await self._write(lambda conn: jobs.remove_job(conn, repo))

    async def queue_jobs(self, repo: RepoRef | None = None) -> int:
        """Make ``repo``'s job (or every job) due now, except running ones; how many jobs matched."""
        return await self._write(lambda conn: jobs.queue(conn, repo))

    async def lease_job(self, replica: str, lease_seconds: float) -> JobLease | None:
        """Take the most urgent due job (queued, scheduled and due, or running under a lease that ran
        out) for ``replica``, for ``lease_seconds``, and record the run; None if none is due."""
        _check_replica(replica)
        _check_lease(lease_seconds)
        return await self._write(lambda conn: job_leases.lease(conn, replica, lease_seconds))

    async def lease_holders(self) -> list[str]:
        """The replicas holding a running job's lease that has not run out."""
        return await self._read(job_leases.holders)

    async def expire_leases(self, replicas: Sequence[str]) -> int:
        """End now the leases of ``replicas``, which are known to be gone (their jobs are due at once); how
        many jobs that frees."""
        for replica in replicas:
            _check_replica(replica)
        return await self._write(lambda conn: job_leases.expire(conn, replicas))

    async def renew_job(self, job_id: int, fence: int, lease_seconds: float) -> bool:
        """Hold the job ``lease_seconds`` more from now; False if the lease with ``fence`` was lost."""
        _check_lease(lease_seconds)
        return await self._write(lambda conn: job_leases.renew(conn, job_id, fence, lease_seconds))

    async def set_job_progress(self, job_id: int, fence: int, bytes_done: int, bytes_total: int) -> bool:
        """Record how many bytes of the running sync are stored, out of ``bytes_total``; False if the
        lease with ``fence`` was lost (nothing is written)."""
        return await self._write(lambda conn: job_leases.set_progress(conn, job_id, fence, bytes_done, bytes_total))

    async def finish_job(self, job_id: int, fence: int, commit: str) -> bool:
        """Record that a running job mirrored ``commit`` completely and schedule its next sync; False if
        the lease with ``fence`` was lost (nothing is written)."""
        _check_commit(commit)
        return await self._write(lambda conn: job_leases.finish(conn, job_id, fence, commit))

    async def fail_job(self, job_id: int, fence: int, error: str) -> bool:
        """Record that a running job failed with ``error`` (kept to its first line); False if the lease
        with ``fence`` was lost (nothing is written)."""
        return await self._write(lambda conn: job_leases.fail(conn, job_id, fence, _first_line(error)))

    async def release_job(self, job_id: int, fence: int) -> bool:
        """Queue a running job again (its replica stops; the run ends ``stopped``); False if the lease
        with ``fence`` was lost."""
        return await self._write(lambda conn: job_leases.release(conn, job_id, fence))

    async def remember_failed_transfer(self, key: str, at: datetime, memory: timedelta) -> None:
        """Record that the transfer of content ``key`` failed at ``at`` after sending bytes (a Range request
        must not continue it); rows older than ``memory`` are deleted meanwhile."""
        _check_content_key(key)
        await self._write(lambda conn: failed_transfers.remember(conn, key, at, memory))

    async def transfer_failed_since(self, key: str, since: datetime) -> bool:
        """Whether a transfer of content ``key`` failed at ``since`` or later (on any replica)."""
        return await self._read(lambda conn: failed_transfers.failed_since(conn, key, since))

    async def claim_fill(self, key: str, owner: str, replica: str, size: int, lease_seconds: float) -> FillRecord:
        """Hold the fill lease of content ``key`` (for repo ``owner``), or the live lease another holds
        (``leader`` False); see ``fill_leases``."""
        _check_content_key(key)
        _check_replica(replica)
        _check_lease(lease_seconds)
        if not owner or len(owner) > 300 or not (isinstance(size, int) and size >= 0):
            raise UsageError(f"invalid fill of {key}: owner {owner[:80]!r}, size {size!r}")
        return await self._write(lambda conn: fill_leases.claim(conn, key, owner, replica, size, lease_seconds))

    async def fill_lease(self, key: str) -> FillRecord | None:
        """The fill lease of content ``key`` as it stands, or None."""
        _check_content_key(key)
        return await self._read(lambda conn: fill_leases.look(conn, key))

    async def advance_fill(self, key: str, fence: int, committed: int, lease_seconds: float) -> bool:
        """Renew the fill lease and record ``committed`` bytes; False if ``fence`` no longer holds it."""
        _check_lease(lease_seconds)
        return await self._write(lambda conn: fill_leases.advance(conn, key, fence, committed, lease_seconds))

    async def finish_fill(self, key: str, fence: int, error: str | None = None) -> bool:
        """End the fill, done (``error`` None) or failed; False if ``fence`` no longer holds it."""
        error = None if error is None else _first_line(error)
        return await self._write(lambda conn: fill_leases.finish(conn, key, fence, error))

    @asynccontextmanager
    async def fill_wakeups(self, wake: Callable[[str], None]) -> AsyncIterator[bool]:
        """For the block, call ``wake(key)`` whenever a fill lease's bytes or outcome change (PostgreSQL's
        ``LISTEN`` on a connection of its own; True). Other databases send nothing (False): followers look."""
        if self._engine.dialect.name != "postgresql":
            yield False
            return

        def heard(_conn: object, _pid: int, _channel: str, key: str) -> None:
            wake(key)

        with db_errors("listen", self._engine.url):
            conn = await self._engine.connect()
        try:
            with db_errors("listen", self._engine.url):
                driver = (await conn.get_raw_connection()).driver_connection
                await driver.add_listener(fill_leases.CHANNEL, heard)
            try:
                yield True
            finally:
                with contextlib.suppress(Exception):  # a connection lost meanwhile has no listener left
                    await driver.remove_listener(fill_leases.CHANNEL, heard)
        finally:
            await conn.close()

    async def give_back_fill(self, key: str, fence: int) -> bool:
        """End the fill lease unfinished, for another replica to take over at once; False if already lost."""
        return await self._write(lambda conn: fill_leases.give_back(conn, key, fence))

    async def start_convert_job(self, repo: RepoRef, commit: str, quant: str) -> tuple[ConvertJob, bool]:
        """The running or complete conversion of ``repo`` at ``commit`` to ``quant``, else a new running
        one; and whether it is new (then the caller runs it)."""
        _check_commit(commit)
        return await self._write(lambda conn: convert_jobs.start(conn, repo, commit, quant))

    async def convert_job(self, job_id: str) -> ConvertJob | None:
        """The convert job with this id, or None."""
        return await self._read(lambda conn: convert_jobs.get(conn, job_id))

    async def finish_convert_job(self, job_id: str, name: str, sha256: str, size: int) -> None:
        """Record that a running convert job made the derived file ``name`` (blob ``sha256``)."""
        _check_sha256(sha256)
        await self._write(lambda conn: convert_jobs.finish(conn, job_id, name, sha256, size))

    async def fail_convert_job(self, job_id: str, error: str) -> None:
        """Record that a running convert job failed with ``error`` (kept to its first line)."""
        await self._write(lambda conn: convert_jobs.fail(conn, job_id, _first_line(error)))

    async def fail_running_convert_jobs(self, error: str) -> int:
        """Mark every running convert job failed with ``error`` (their daemon stopped); how many there were."""
        return await self._write(lambda conn: convert_jobs.fail(conn, None, _first_line(error)))


def _first_line(error: str) -> str:
    """An error message kept to its first line (at most 1000 characters)."""
    return (error.strip().splitlines() or ["failed"])[0][:1000]


def _consume_error(task: "asyncio.Task[object]") -> None:
    """Mark a shielded write's error as seen when its caller was cancelled and will not look."""
    if not task.cancelled():
        task.exception()
