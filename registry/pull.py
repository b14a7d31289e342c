"""Pulling a repo at a revision into the store: pin the commit, list, download, verify, link.

The CLI's ``mreg pull`` and the daemon's mirror jobs both call ``pull``. On a store replicas share, a job's LFS
files go through their fill leases (``registry.fills``): each is fetched once for all replicas, fed to the store
as it arrives, and resumed from what a dead replica committed there.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from mreg.registry.blobs import holds
from mreg.registry.catalog import FileRecord
from mreg.registry.download.state import TransferState
from mreg.registry.download import Downloaded, FileSpec, Source, Tuning, download_from
from mreg.registry.errors import CatalogError, IntegrityError, MregError, StoreError, UpstreamUnavailableError, UsageError, first_error
from mreg.registry.files import checked_locator, link_blob, present_blobs
from mreg.registry.fills.fill import Lead, filled
from mreg.registry.fills.leases import CatalogInFlight
from mreg.registry.upstream.client import RemoteFile, RepoClient
from mreg.registry.inspect.repo import index_snapshot
from mreg.registry.local import CatalogOnDemand, opened
from mreg.registry.upstream.extra_sources import MirrorListing, list_mirrors
from mreg.registry.paths import safe_relpath
from mreg.registry.repo import RepoRef
from mreg.registry.selection import selected
from mreg.registry.store import Store

if TYPE_CHECKING:
    from mreg.registry.catalog import Catalog

PARALLEL_FILES = 8


class PullProgress(Protocol):
    """What a pull reports while it runs (the CLI draws bars or prints lines from it)."""

    def start(self, repo: RepoRef, commit: str, files: Sequence[tuple[str, int]]) -> None: ...
    def advance(self, path: str, nbytes: int) -> None: ...
    def file_done(self, path: str, fetched: int) -> None: ...


class NullProgress:
    def start(self, repo: RepoRef, commit: str, files: Sequence[tuple[str, int]]) -> None:
        pass

    def advance(self, path: str, nbytes: int) -> None:
        pass

    def file_done(self, path: str, fetched: int) -> None:
        pass


@dataclass(frozen=True)
class PullOptions:
    revision: str = "main"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    local_dir: Path | None = None
    local_dir_copy: bool = False
    """Give ``local_dir`` copies of its own even where a hard link to the blob could be made."""
    tuning: Tuning = field(default_factory=Tuning)
    parallel_files: int = PARALLEL_FILES
    offline: bool = False
    paths: frozenset[str] | None = None
    """Exactly these files (names compared literally, so glob characters are fine); None: every file."""
    upstream: str | None = None
    """The name of the upstream pulled from, recorded in the catalog with the revision and its files."""
    mirrors: tuple[RepoClient, ...] = ()
    """Other Hub endpoints with the repo: an LFS file one of them lists with the same sha256 is
    fetched from the upstream and from it at once (each with ``tuning.connections``)."""

    def wants(self, path: str) -> bool:
        """Whether the pull takes ``path``: one of ``paths`` (when set) and selected by the globs."""
        return (self.paths is None or path in self.paths) and selected(path, self.include, self.exclude)


@dataclass(frozen=True)
class PulledFile:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class PullResult:
    repo: RepoRef
    commit: str
    path: Path
    files: list[PulledFile]
    fetched: int
    source: str  # "upstream" or "local" (offline, or upstream unreachable)
    by_source: dict[str, int] = field(default_factory=dict)
    """Bytes fetched from each endpoint (the upstream's and the mirrors')."""
    dropped: dict[str, str] = field(default_factory=dict)
    """Mirrors left out (they could not list the repo, or failed during a file the others finished),
    with the last reason of each."""
    refetched: tuple[str, ...] = ()
    """Files whose first fetch failed verification and that were fetched again, whole."""


async def pull(repo: RepoRef, options: PullOptions, *, client: RepoClient, store: Store,
               catalog: Catalog | CatalogOnDemand, progress: PullProgress = NullProgress(),
               listed: tuple[str, Sequence[RemoteFile]] | None = None,
               fills: CatalogInFlight | None = None) -> PullResult:
    """Bring ``repo`` at ``options.revision`` into the store and return its snapshot (or local dir).

    ``listed`` is the commit ``options.revision`` pins and its files, when the caller has just
    listed them (so they are not asked for twice). ``fills``: the fill leases of a store replicas share.
    Given a ``CatalogOnDemand``, the large files the store lacks are fetched before the catalog is opened
    (see ``_fetch_early``).
    """
    if options.offline:
        return await _local(repo, options, store, await opened(catalog))
    if listed is None:
        try:
            commit = (await client.repo_info(repo, options.revision)).commit
        except UpstreamUnavailableError:
            catalog = await opened(catalog)
            if await catalog.resolve_revision(repo, options.revision) is None:
                raise
            return await _local(repo, options, store, catalog)
        files: Sequence[RemoteFile] = await client.list_files(repo, commit)
    else:
        commit, files = listed
    remote = _unique(list(files))
    records = [_record(f) for f in remote]
    wanted = [f for f in remote if options.wants(f.path)]
    progress.start(repo, commit, [(f.path, f.size) for f in wanted])
    tally = _Tally()
    if not isinstance(catalog, CatalogOnDemand):
        await catalog.record_revision(repo, commit, records, upstream=options.upstream)
    async with store.pulling_async():  # on an event loop: a blocking wait could deadlock a daemon's gc
        early: dict[str, str] = {}
        if isinstance(catalog, CatalogOnDemand):
            catalog, early = await _fetch_early(repo, commit, wanted, records, options, client, store, catalog,
                                                progress, tally)
        todo = await _link_present(repo, commit, [f for f in wanted if f.path not in early], records, options,
                                   store, catalog, progress)
        for f in wanted:
            if f.path in early:
                await link_blob(store, catalog, repo, commit, _spec(f), early[f.path], records, options.upstream)
        _check_space(store, todo)
        download_id = await catalog.start_download(repo, commit, sum(f.size for f in todo)
                                                   + sum(f.size for f in wanted if f.path in early))
        try:
            await _download_all(repo, commit, todo, records, options, client, store, catalog, progress, tally,
                                fills)
        except BaseException as exc:
            await _record_failure(catalog, download_id, tally, exc)
            raise
    fetched = tally.fetched
    await catalog.finish_download(download_id, "complete", fetched)
    if options.revision != commit:
        store.write_ref(repo, options.revision, commit)
        await catalog.set_ref(repo, options.revision, commit)
    if len(wanted) == len(remote):
        await catalog.mark_revision_complete(repo, commit)
    await catalog.record_use({(repo, commit): datetime.now(timezone.utc)})
    await index_snapshot(store, catalog, repo, commit)
    result = _finish(repo, commit, options, store, await _pulled(repo, commit, catalog, options), fetched, "upstream")
    return dataclasses.replace(result, by_source=dict(tally.by_source), dropped=tally.dropped,
                               refetched=tuple(sorted(tally.refetched)))


def _partial_bytes(store: Store, spec: FileSpec) -> int:
    """How many bytes of ``spec`` an interrupted download has already written (0 when none)."""
    state = TransferState.load(store.partial_paths(spec.key)[1], spec.size, spec.key)
    return state.completed if state is not None else 0


def _unique(files: list[RemoteFile]) -> list[RemoteFile]:
    """Validate every name before anything is written; keep the first entry of a repeated path."""
    seen: dict[str, RemoteFile] = {}
    for f in files:
        safe_relpath(f.path)
        seen.setdefault(f.path, f)
    return list(seen.values())


async def _link_present(repo: RepoRef, commit: str, wanted: list[RemoteFile], records: list[FileRecord],
                        options: PullOptions, store: Store, catalog: Catalog,
                        progress: PullProgress) -> list[RemoteFile]:
    """Link the files whose content the store holds for this repo (from any of its revisions) into the
    snapshot, moving no bytes; return the files still to download. Content the store holds only for other
    repos is downloaded (verified, stored once): a listing that names another repo's hash must not get its
    bytes (#14.4). ``records``: every file of the revision (see ``link_blob``)."""
    upstream = options.upstream
    known = {r.path: r for r in await catalog.revision_files(repo, commit)}
    found = await present_blobs(store, catalog, [_spec(f) for f in wanted], only_of=repo)
    store.open_snapshot(repo, commit)
    linked = store.snapshot_files(repo, commit)
    todo = []
    for f in wanted:
        sha = found.get(f.path)
        if sha is None:
            todo.append(f)
            continue
        record = known.get(f.path)
        if linked.get(f.path) != sha or record is None or record.state != "complete":
            await link_blob(store, catalog, repo, commit, _spec(f), sha, records, upstream)
        progress.advance(f.path, f.size)
        progress.file_done(f.path, 0)
    return todo


def _check_space(store: Store, files: list[RemoteFile]) -> None:
    """Fail before downloading when the files cannot fit (ENOSPC mid-way is still handled); the bytes a
    partial download already holds are not needed again."""
    need = sum(f.size - _partial_bytes(store, _spec(f)) for f in files)
    free = shutil.disk_usage(store.home).free if store.home.exists() else None
    if free is not None and need > free:
        raise StoreError(f"not enough disk space in {store.home}: the pull needs {need:,} bytes, {free:,} are free")


def _spec(f: RemoteFile) -> FileSpec:
    return FileSpec(path=f.path, size=f.size, git_oid=f.git_oid, sha256=f.lfs_sha256)


def _record(f: RemoteFile) -> FileRecord:
    return FileRecord(path=f.path, size=f.size, git_oid=f.git_oid, lfs_sha256=f.lfs_sha256)


class _Countdown:
    """Passes a pull's progress on, and calls ``then`` once ``left`` bytes have been reported."""

    def __init__(self, progress: PullProgress, left: int, then: Callable[[], None]) -> None:
        self.progress, self.left, self.then = progress, left, then
        if left <= 0:
            then()

    def start(self, repo: RepoRef, commit: str, files: Sequence[tuple[str, int]]) -> None:
        self.progress.start(repo, commit, files)

    def advance(self, path: str, nbytes: int) -> None:
        self.progress.advance(path, nbytes)
        self.left -= nbytes
        if self.left <= 0:
            self.then()

    def file_done(self, path: str, fetched: int) -> None:
        self.progress.file_done(path, fetched)


@dataclass
class _Tally:
    fetched: int = 0
    by_source: Counter[str] = field(default_factory=Counter)
    dropped: dict[str, str] = field(default_factory=dict)
    refetched: list[str] = field(default_factory=list)


async def _record_failure(catalog: Catalog, download_id: int, tally: _Tally, exc: BaseException) -> None:
    """Record the download ``download_id`` as failed with ``exc`` (unless the catalog cannot be written)."""
    message = str(exc) if isinstance(exc, MregError) else f"interrupted ({type(exc).__name__})"
    try:
        await asyncio.shield(catalog.finish_download(download_id, "failed", tally.fetched, message))
    except CatalogError:  # e.g. the disk that failed the download holds the catalog too: say what failed
        pass


async def _fetch_early(repo: RepoRef, commit: str, wanted: list[RemoteFile], records: list[FileRecord],
                       options: PullOptions, client: RepoClient, store: Store, on_demand: CatalogOnDemand,
                       progress: PullProgress, tally: _Tally) -> tuple[Catalog, dict[str, str]]:
    """Fetch the LFS files of ``wanted`` whose content the store lacks before the catalog is opened (nothing
    the catalog knows could spare them a download). Once all their bytes are in, while they are hashed and
    synced, the catalog is imported and opened and the revision recorded. Return the catalog and path → sha256
    of each file fetched; a failure is recorded in the catalog as a failed download."""
    files = [f for f in wanted if f.lfs_sha256 is not None and not await holds(store.blobs, f.lfs_sha256, f.size)]
    _check_space(store, files)
    size = sum(f.size for f in files)
    bytes_in = asyncio.Event()
    counting = _Countdown(progress, size, bytes_in.set)
    fetching = asyncio.ensure_future(_download_all(repo, commit, files, records, options, client, store, None,
                                                   counting, tally, None))
    recorded = False
    try:
        waiting = asyncio.ensure_future(bytes_in.wait())
        try:
            await asyncio.wait([fetching, waiting], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()
        if fetching.done():
            fetching.result()  # it failed before all its bytes were in
        catalog = await on_demand.get()
        await catalog.record_revision(repo, commit, records, upstream=options.upstream)
        recorded = True
        fetched = await fetching
    except BaseException as exc:
        fetching.cancel()
        await asyncio.wait([fetching])
        failure = exc
        if not fetching.cancelled() and fetching.exception() is not None:
            failure = fetching.exception()  # the download's, also when the catalog failed meanwhile (a full disk)
        with contextlib.suppress(CatalogError):  # the failure to report is the download's
            catalog = await on_demand.get()
            if not recorded:
                await catalog.record_revision(repo, commit, records, upstream=options.upstream)
            download_id = await catalog.start_download(repo, commit, size)
            await _record_failure(catalog, download_id, tally, failure)
        raise failure
    return catalog, fetched


async def _download_all(repo: RepoRef, commit: str, files: list[RemoteFile], records: list[FileRecord],
                        options: PullOptions, client: RepoClient, store: Store, catalog: Catalog | None,
                        progress: PullProgress, tally: _Tally, fills: CatalogInFlight | None) -> dict[str, str]:
    """Download, publish, link and record ``files``, several at once over shared connections (``records``:
    every file of the revision, see ``link_blob``; ``fills``: see ``pull``); return path → sha256 of each.
    Without a ``catalog`` the files are not linked."""
    slots = asyncio.Semaphore(options.tuning.connections)
    file_slots = asyncio.Semaphore(options.parallel_files)
    mirrors = [m for m in options.mirrors if m.endpoint != client.endpoint]
    listings: list[MirrorListing] = []
    if mirrors and any(f.is_lfs for f in files):
        listings, failed = await list_mirrors(mirrors, repo, options.revision, options.tuning.connections)
        tally.dropped.update(failed)

    fetched: dict[str, str] = {}

    async def one(f: RemoteFile) -> None:
        async with file_slots:
            spec = _spec(f)
            sources = [Source(client.endpoint, client, checked_locator(client, repo, commit, spec), slots)]
            sources += [s for s in (m.source_for(repo, f) for m in listings) if s is not None]
            done = await _fetch(repo, spec, sources, store, options.tuning, lambda n: progress.advance(f.path, n),
                                fills)
            tally.fetched += done.fetched
            if done.refetched:
                tally.refetched.append(f.path)
            tally.by_source.update(done.by_source)
            tally.dropped.update(done.dropped)
            fetched[f.path] = done.sha256
            if catalog is not None:
                await link_blob(store, catalog, repo, commit, spec, done.sha256, records, options.upstream)
            progress.file_done(f.path, done.fetched)

    try:
        async with asyncio.TaskGroup() as group:
            for f in sorted(files, key=lambda f: -f.size):
                group.create_task(one(f))
    except BaseExceptionGroup as group_error:
        raise first_error(group_error) from None
    return fetched


async def _fetch(repo: RepoRef, spec: FileSpec, sources: list[Source], store: Store, tuning: Tuning,
                 advance: Callable[[int], None], fills: CatalogInFlight | None) -> Downloaded:
    """One file into the store: downloaded from ``sources``, or, on a store replicas share (``fills``), through its
    fill lease: led, resumed from what the fill has committed, or left to the replica that fills it (then nothing
    is fetched here). Bytes that fail verification are dropped and the file is fetched once more before it fails
    (a transfer corrupted on the way rarely is twice)."""
    def alone(refetch_once: bool = True) -> Awaitable[Downloaded]:
        return download_from(sources, spec, store, tuning, advance, refetch_once=refetch_once)

    def lead(lead: Lead) -> Awaitable[Downloaded]:
        return download_from(sources, spec, store, lead.tuning, advance, lead.on_prefix, readers=lead.readers,
                             publish=lead.publish, hashed=lead.hashed)

    def through_lease() -> Awaitable[Downloaded | None]:
        assert fills is not None
        return filled(fills, store, spec, str(repo), tuning, lead, lambda: alone(refetch_once=False))

    if fills is None:
        return await alone()
    try:
        done = await through_lease()
    except IntegrityError as first:  # the fill's bytes were dropped (its lease ended failed): a new fill
        try:
            done = await through_lease()
        except IntegrityError as twice:
            raise IntegrityError(f"{twice} (fetched twice)") from first
        done = done and dataclasses.replace(done, refetched=True)
    if done is None:  # another replica published it
        assert spec.sha256 is not None
        advance(spec.size)
        return Downloaded(spec.sha256, 0)
    return done


async def _pulled(repo: RepoRef, commit: str, catalog: Catalog, options: PullOptions) -> list[PulledFile]:
    return [PulledFile(r.path, r.size, r.sha256) for r in await catalog.revision_files(repo, commit)
            if r.state == "complete" and r.sha256 and options.wants(r.path)]


async def _local(repo: RepoRef, options: PullOptions, store: Store, catalog: Catalog) -> PullResult:
    """The pull answered from the store alone (offline, or upstream unreachable)."""
    commit = await catalog.resolve_revision(repo, options.revision)
    if commit is None:
        raise UsageError(f"offline, and {repo}@{options.revision} is not in the local store")
    records = [r for r in await catalog.revision_files(repo, commit)
               if options.wants(r.path)]
    missing = [r.path for r in records if r.state != "complete" or r.sha256 is None
               or not await holds(store.blobs, r.sha256, r.size)]  # e.g. quarantined as damaged
    if missing:
        raise StoreError(f"offline, and {len(missing)} selected file(s) of {repo}@{commit[:12]} are not in the "
                         f"local store (first: {missing[0]})")
    files = [PulledFile(r.path, r.size, r.sha256 or "") for r in records]
    return _finish(repo, commit, options, store, files, 0, "local")


def _finish(repo: RepoRef, commit: str, options: PullOptions, store: Store, files: list[PulledFile],
            fetched: int, source: str) -> PullResult:
    path = store.snapshot_dir(repo, commit)
    if options.local_dir is not None:
        for f in files:
            store.export_file(f.sha256, options.local_dir / safe_relpath(f.path), copy=options.local_dir_copy)
        path = options.local_dir
    return PullResult(repo=repo, commit=commit, path=path, files=files, fetched=fetched, source=source)
