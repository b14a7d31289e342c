"""Mirror jobs' library side: reading intervals and rates as people write them, and one sync of a job (``mreg pull``'s code, told to report progress and the files as they land).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mreg.registry.catalog import Catalog, MirrorJob
from mreg.registry.download import Tuning
from mreg.registry.blobs import holds
from mreg.registry.errors import UsageError
from mreg.registry.fills.leases import CatalogInFlight
from mreg.registry.upstream.client import RepoClient
from mreg.registry.pull import PullOptions, pull
from mreg.registry.repo import RepoRef
from mreg.registry.store import Store

MIN_EVERY = 60.0
"""The shortest schedule a job may ask for by default (``mreg serve --min-every`` changes it)."""
MAX_EVERY = 366 * 86400.0
"""The longest schedule: a year."""


def check_every(seconds: float, minimum: float = MIN_EVERY, what: str = "'every'") -> float:
    """``seconds`` if it is a schedule mreg keeps (``minimum`` … a year); UsageError (naming ``what``) otherwise."""
    if not math.isfinite(seconds) or not minimum <= seconds <= MAX_EVERY:
        raise UsageError(f"{what} must be between {_duration(minimum)} and a year, not {seconds:g} seconds")
    return seconds


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


class JobProgress:
    """A ``PullProgress`` that counts a sync's bytes and announces each file that lands."""

    def __init__(self, landed: Callable[[str, str], None]) -> None:
        self._landed = landed
        self._commit = ""
        self.bytes_done = 0
        self.bytes_total = 0

    def start(self, repo: RepoRef, commit: str, files: Sequence[tuple[str, int]]) -> None:
        self._commit = commit
        self.bytes_total = sum(size for _, size in files)

    def advance(self, path: str, nbytes: int) -> None:
        self.bytes_done += nbytes

    def file_done(self, path: str, fetched: int) -> None:
        self._landed(self._commit, path)


@dataclass(frozen=True)
class Synced:
    commit: str
    fetched: int
    """Bytes downloaded from upstream by this sync."""
    refetched: tuple[str, ...] = ()
    """Files whose first fetch failed verification and that were fetched again, whole (#14.9)."""


async def sync_job(job: MirrorJob, *, client: RepoClient, store: Store, catalog: Catalog, tuning: Tuning,
                   progress: JobProgress, upstream: str | None = None, fills: CatalogInFlight | None = None) -> Synced:
    """Bring ``job.repo`` to the commit ``job.revision`` names upstream (``upstream``: its name, recorded in
    the catalog), with ``pull`` (``fills``: the fill leases of a store replicas share).

    Only new and changed files move (the store is content-addressed); the ref flips to the new
    commit once all of them are stored, so the previous snapshot is what readers see until then.
    An unreachable upstream is a failure here (``UpstreamUnavailableError``), not the local copy.
    """
    options = PullOptions(revision=job.revision, include=job.include, exclude=job.exclude, tuning=tuning,
                          upstream=upstream)
    commit = (await client.repo_info(job.repo, job.revision)).commit
    if commit == job.commit and await _still_complete(job, commit, store, catalog, options):
        progress.bytes_total = progress.bytes_done = job.bytes_total
        return Synced(commit, 0)
    result = await pull(job.repo, options, client=client, store=store, catalog=catalog, progress=progress,
                        listed=(commit, await client.list_files(job.repo, commit)), fills=fills)
    return Synced(result.commit, result.fetched, result.refetched)


async def _still_complete(job: MirrorJob, commit: str, store: Store, catalog: Catalog,
                          options: PullOptions) -> bool:
    """Whether every selected file of the already mirrored ``commit`` is still stored."""
    files = [f for f in await catalog.revision_files(job.repo, commit) if options.wants(f.path)]
    return bool(files) and all([f.state == "complete" and f.sha256 and await holds(store.blobs, f.sha256, f.size)
                                for f in files])
