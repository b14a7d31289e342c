"""Checking, repairing and freeing what is in the store: verify (and repair), remove a repo, collect garbage."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING

from mreg.registry.errors import MregError, UsageError
from mreg.registry.hashing import stream_digests
from mreg.registry.integrity import set_aside_if_damaged
from mreg.registry.removals import note_removal
from mreg.registry.repo import RepoRef
from mreg.registry.store import GcResult, Store

if TYPE_CHECKING:
    from mreg.registry.catalog import Catalog

STALE_PARTIAL_SECONDS = 7 * 24 * 3600
BUSY_BLOB_GRACE_SECONDS = 3600


@dataclasses.dataclass(frozen=True)
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


async def verify(store: Store, catalog: Catalog, repo: RepoRef, commit: str,
                 paths: Collection[str] | None = None) -> list[FileCheck]:
    """Re-hash every file of a local revision (or those of ``paths``) against the hashes upstream announced.

    A blob whose bytes no longer hash to its name is quarantined, so the next pull (or daemon request)
    fetches the file again. A revision whose snapshot is gone (as an interrupted eviction can leave
    it) has every file "not downloaded".
    """
    linked = store.snapshot_files(repo, commit) if store.snapshot_dir(repo, commit).is_dir() else {}
    checks = []
    for record in await catalog.revision_files(repo, commit):
        if paths is not None and record.path not in paths:
            continue
        sha = linked.get(record.path)
        if record.state != "complete" or sha is None:
            checks.append(FileCheck(record.path, True, "", "not downloaded"))
            continue
        info = await store.blobs.stat(sha)
        if info is None:
            checks.append(FileCheck(record.path, False, "not in the store (set aside as damaged, or removed)", "bad"))
            continue
        sha256, git_sha1 = await stream_digests(store.blobs.read(sha), info.size)
        expected = record.lfs_sha256 or record.git_oid
        got = sha256 if record.lfs_sha256 else git_sha1
        if got != expected or sha256 != sha:
            aside = "; quarantined" if await set_aside_if_damaged(store.blobs, info, sha256) else ""
            checks.append(FileCheck(record.path, False, f"hash mismatch (expected {expected}, got {got}){aside}", "bad"))
        else:
            checks.append(FileCheck(record.path, True))
    return checks


@dataclasses.dataclass(frozen=True)
class Repair:
    """What ``repair`` did: every file's state afterwards, the files it fetched again and verified, and why
    the others (still bad) could not be."""

    checks: list[FileCheck]
    repaired: list[str]
    failed: list[FileCheck]


async def repair(store: Store, catalog: Catalog, repo: RepoRef, commit: str,
                 refetch: Callable[[frozenset[str]], Awaitable[None]]) -> Repair:
    """Verify the revision, have ``refetch`` (a pull of exactly those files) fetch the bad ones again, and
    verify those once more. Files never downloaded are left as they are."""
    checks = await verify(store, catalog, repo, commit)
    bad = frozenset(c.path for c in checks if not c.ok)
    if not bad:
        return Repair(checks, [], [])
    reason = ""
    try:
        await refetch(bad)
    except MregError as exc:
        reason = str(exc)
    again = {c.path: c for c in await verify(store, catalog, repo, commit, bad)}
    failed = [dataclasses.replace(c, problem=f"{c.problem}; fetching it again failed: {reason}" if reason else c.problem)
              for c in again.values() if c.state != "verified"]
    after = again | {c.path: c for c in failed}
    return Repair([after.get(c.path, c) for c in checks], sorted(bad - {c.path for c in failed}), failed)


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
