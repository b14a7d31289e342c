"""Checking and freeing what is in the store: verify, remove a repo, collect garbage."""

from __future__ import annotations

from dataclasses import dataclass

from mreg.registry.catalog import Catalog
from mreg.registry.errors import UsageError
from mreg.registry.hashing import stream_digests
from mreg.registry.removals import note_removal
from mreg.registry.repo import RepoRef
from mreg.registry.store import GcResult, Store

STALE_PARTIAL_SECONDS = 7 * 24 * 3600
BUSY_BLOB_GRACE_SECONDS = 3600


@dataclass(frozen=True)
class FileCheck:
    """One file of a verified revision: ``verified``, ``bad`` (with the problem) or ``not downloaded`` (a
    file the pull left out, e.g. by ``--include``: nothing to check, and nothing wrong)."""

    path: str
    ok: bool
    problem: str = ""
    state: str = "verified"


async def resolve_local(catalog: Catalog, repo: RepoRef, revision: str) -> str:
    """The commit a local revision (ref name, commit or prefix) points to, or a UsageError."""
    commit = await catalog.resolve_revision(repo, revision)
    if commit is None:
        raise UsageError(f"{repo}@{revision} is not in the local store (pull it first)")
    return commit


async def verify(store: Store, catalog: Catalog, repo: RepoRef, commit: str) -> list[FileCheck]:
    """Re-hash every file of a local revision against the hashes upstream announced."""
    linked = store.snapshot_files(repo, commit)
    checks = []
    for record in await catalog.revision_files(repo, commit):
        sha = linked.get(record.path)
        if record.state != "complete" or sha is None:
            checks.append(FileCheck(record.path, True, "", "not downloaded"))
            continue
        info = await store.blobs.stat(sha)
        if info is None:
            checks.append(FileCheck(record.path, False, "blob missing from the store", "bad"))
            continue
        sha256, git_sha1 = await stream_digests(store.blobs.read(sha), info.size)
        expected = record.lfs_sha256 or record.git_oid
        got = sha256 if record.lfs_sha256 else git_sha1
        if got != expected or sha256 != sha:
            checks.append(FileCheck(record.path, False, f"hash mismatch (expected {expected}, got {got})", "bad"))
        else:
            checks.append(FileCheck(record.path, True))
    return checks


async def collect_garbage(store: Store, catalog: Catalog, abandoned_partials: bool = True) -> GcResult:
    """Delete blobs no snapshot or catalog entry uses, partial downloads untouched for a week and, with
    ``abandoned_partials``, those no running pull or daemon is writing (``Store.gc``).

    While a pull or a daemon's transfer runs, blobs published or linked in the last hour are spared (it
    may be about to link them); links are never made while the gc scans and deletes (``Store.gc``).
    """
    keep = await catalog.referenced_blobs()
    with store.quiet() as no_pulls:
        return await store.gc(keep=keep, partial_older_than=STALE_PARTIAL_SECONDS,
                              min_blob_age=0 if no_pulls else BUSY_BLOB_GRACE_SECONDS,
                              unowned_partials=abandoned_partials)


async def remove(store: Store, catalog: Catalog, repo: RepoRef) -> GcResult:
    """Forget a repo (every revision) and free the blobs nothing else uses (an interrupted pull's partial
    downloads stay, to be resumed). Daemons on the store are told (``removals``): they forget what they
    cached and record the repo again as they serve it."""
    in_catalog = await catalog.remove_repo(repo)
    on_disk = store.remove_repo(repo)
    if not (in_catalog or on_disk):
        raise UsageError(f"{repo} is not in the local store")
    note_removal(store.home)
    return await collect_garbage(store, catalog, abandoned_partials=False)
