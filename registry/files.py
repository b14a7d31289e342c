"""What a pull and the daemon share about one commit's files: content the store already holds (from any
repo or revision), linked in without moving a byte, and where upstream serves a file, checked against the
size its file listing announced."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from mreg.registry.catalog import FileRecord
from mreg.registry.download import FileSpec
from mreg.registry.download.transfer import Locate
from mreg.registry.errors import BlobDeletedError, CatalogError, IntegrityError
from mreg.registry.repo import RepoRef
from mreg.registry.store import Store
from mreg.registry.upstream.client import FileLocation, RepoClient

if TYPE_CHECKING:
    from mreg.registry.catalog import Catalog


async def present_blobs(store: Store, catalog: Catalog, files: Sequence[FileSpec], only_of: RepoRef) -> dict[str, str]:
    """path → sha256 of those of ``files`` whose content is in the store and recorded by the catalog for the
    repo ``only_of`` (a non-LFS file's content is known by its git oid once it was downloaded anywhere): a
    listing that names another repo's hash must not get its bytes (#14.4)."""
    contents = await catalog.contents_of([f.git_oid for f in files if f.sha256 is None])
    found: dict[str, str] = {}
    for f in files:
        sha = f.sha256 or contents.get(f.git_oid)
        info = None if sha is None else await store.blobs.stat(sha)
        if sha is not None and info is not None and info.size == f.size:
            found[f.path] = sha
    if found:
        own = await catalog.stored_for_repo(only_of, sorted(set(found.values())))
        found = {path: sha for path, sha in found.items() if sha in own}
    return found


async def link_blob(store: Store, catalog: Catalog, repo: RepoRef, commit: str, spec: FileSpec, sha256: str,
                    revision: Sequence[FileRecord], upstream: str | None = None) -> bool:
    """Link the stored blob ``sha256`` into the commit's snapshot as ``spec.path``; record the file complete.

    If the revision was removed from the catalog meanwhile (``mreg rm`` next to a pull or a daemon), it is
    recorded again first, with the files of ``revision`` (pending) and its ``upstream``: the catalog then
    agrees with the snapshot the link brought back. True if it was recorded again.
    """
    async with store.linking():  # a gc running now finishes first, without blocking the event loop
        store.link_file(repo, commit, spec.path, sha256)
    try:
        await _mark_complete(store, catalog, repo, commit, spec, sha256)
        return False
    except CatalogError:
        if await catalog.revision_state(repo, commit) is not None:
            raise
    await catalog.record_revision(repo, commit, revision, upstream=upstream)
    await _mark_complete(store, catalog, repo, commit, spec, sha256)
    return True


async def _mark_complete(store: Store, catalog: Catalog, repo: RepoRef, commit: str, spec: FileSpec,
                         sha256: str) -> None:
    """Record the file complete. A blob an eviction round deleted (on a shared store) is recorded only if it
    exists now, after that deletion: stored again since (else BlobDeletedError: the file is fetched again)."""
    try:
        await catalog.mark_file_complete(repo, commit, spec.path, sha256, spec.size)
    except BlobDeletedError as exc:
        info = await store.blobs.stat(sha256)
        if not exc.deleted or info is None or info.size != spec.size or not await catalog.forget_deleted(sha256):
            raise
        await catalog.mark_file_complete(repo, commit, spec.path, sha256, spec.size)


def checked_locator(client: RepoClient, repo: RepoRef, commit: str, spec: FileSpec) -> Locate:
    """Where ``client``'s upstream serves ``spec``, checked against the size the file listing announced."""

    async def locate() -> FileLocation:
        location = await client.locate(repo, commit, spec.path)
        if location.size != spec.size:
            raise IntegrityError(f"{spec.path}: {client.endpoint} announces {location.size} bytes, "
                                 f"its file listing {spec.size}")
        return location

    return locate
