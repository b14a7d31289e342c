"""What the mirror knows of one commit of a repo: its repo info, its tree, which files are stored.

A commit is immutable, so its metadata is fetched from upstream once (with the asking client's
token), recorded in the catalog as a revision with pending files, kept in the store for offline
answers (``kept``) and held in memory for the most recent commits. Files become "stored" when their
verified blob is linked into the commit's snapshot and marked complete in the catalog; a stored
weights file (or config) has the snapshot's headers indexed in the background, as ``mreg pull``
does, so ``mreg search`` and ``mreg inspect`` see what the mirror holds.

The store and catalog are shared with the CLI and other daemons, so memory is only a cache of them:

- After a ``mreg rm`` (``registry.removals``) the memory is dropped: the commit is listed upstream again,
  recorded again, and its files are stored again as they are asked for.
- A file is served from the store only while its blob is there (checked on every request, and the blob
  is opened before its answer starts; a blob gone is fetched again). Links are made under the store's
  link lock (``Store.linking``): a gc sees a link made before it, and one made after finds the blob gone.
- A file that lands for a revision the catalog no longer has (removed while it was fetched) records the
  revision again first: the catalog agrees with what is linked on disk.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from mreg.registry.catalog import Catalog, FileRecord
from mreg.registry.download import FileSpec
from mreg.registry.blobs import holds
from mreg.registry.errors import StoreError, UnsafePathError, UpstreamError, UpstreamUnavailableError
from mreg.registry.files import link_blob, present_blobs
from mreg.registry.upstream.hub.client import parse_tree_entry
from mreg.registry.inspect.reading import is_model_file
from mreg.registry.inspect.repo import CONFIG, index_snapshot
from mreg.registry.paths import safe_relpath
from mreg.registry.removals import RemovalWatch
from mreg.registry.repo import RepoRef
from mreg.registry.store import Store

from mreg.daemon.serving import kept
from mreg.daemon.serving.upstream import not_in_mirror, token_key
from mreg.daemon.serving.upstreams import Upstreams

log = logging.getLogger("mreg.daemon")


@dataclass
class CommitMeta:
    """One commit: repo info and tree entries (as clients get them), its servable files, its stored ones."""

    repo: RepoRef
    commit: str
    info: dict[str, Any]
    entries: list[dict[str, Any]]
    files: dict[str, FileSpec]
    stored: dict[str, str] = field(default_factory=dict)
    """path → sha256 of the files whose blob is linked into the snapshot."""
    upstream: str | None = None
    """The name of the upstream that listed the commit (None: not known, the first one)."""

    @property
    def restricted(self) -> bool:
        """Gated or private: each caller's access must be checked upstream."""
        return bool(self.info.get("gated")) or bool(self.info.get("private"))

    @property
    def private(self) -> bool:
        return bool(self.info.get("private"))


def file_spec(entry: dict[str, Any], repo: RepoRef) -> FileSpec | None:
    """The spec of a tree file entry (untrusted input); None for names unsafe to store."""
    remote = parse_tree_entry(entry, repo)
    path, size, oid, lfs_sha = remote.path, remote.size, remote.git_oid, remote.lfs_sha256
    try:
        safe_relpath(path)
    except UnsafePathError:
        log.warning("%s: not mirroring unsafe file name %r", repo, path)
        return None
    return FileSpec(path=path, size=size, git_oid=oid, sha256=lfs_sha)


def _meta(repo: RepoRef, commit: str, info: Any, entries: Any, upstream: str | None) -> CommitMeta:
    if not isinstance(info, dict) or info.get("sha") != commit:
        raise UpstreamError(f"the repo info of {repo}@{commit} does not name that commit")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise UpstreamError(f"the tree listing of {repo}@{commit} is not a list of entries")
    specs = (file_spec(e, repo) for e in entries if e.get("type") == "file")
    files = {spec.path: spec for spec in specs if spec is not None}
    return CommitMeta(repo, commit, info, entries, files, upstream=upstream)


def _records(meta: CommitMeta) -> list[FileRecord]:
    """The catalog's (pending) records of the commit's files."""
    return [FileRecord(path=s.path, size=s.size, git_oid=s.git_oid, lfs_sha256=s.sha256) for s in meta.files.values()]


class Commits:
    """Commit metadata by (repo, commit): memory, then the store, then upstream (once per caller)."""

    def __init__(self, store: Store, catalog: Catalog, upstream: Upstreams, cache_size: int) -> None:
        self._store, self._catalog, self._upstream = store, catalog, upstream
        self._memory: OrderedDict[tuple[RepoRef, str], CommitMeta] = OrderedDict()
        self._cache_size = cache_size
        self._loading: dict[tuple[RepoRef, str, str], asyncio.Task[CommitMeta]] = {}
        self._indexing: dict[tuple[RepoRef, str], asyncio.Task[None]] = {}
        self._reindex: set[tuple[RepoRef, str]] = set()
        """Commits whose snapshot gained a file while their indexing ran: indexed once more."""
        self._checked: OrderedDict[tuple[RepoRef, str], CommitMeta] = OrderedDict()
        """Commits listed upstream for an access check alone (not recorded, see ``for_access_check``)."""
        self._removals = RemovalWatch(store.home)

    async def get(self, repo: RepoRef, commit: str, token: str | None) -> CommitMeta:
        """The commit's metadata; fetched with ``token`` when the mirror has none (UpstreamRefusedError if refused)."""
        meta = await self.local(repo, commit)
        if meta is not None:
            return meta
        key = (repo, commit, token_key(token))  # a refusal for one caller must not answer another
        task = self._loading.get(key)
        if task is None:
            task = asyncio.create_task(self._fetch(repo, commit, token))
            self._loading[key] = task

            def forget(done: asyncio.Task[CommitMeta]) -> None:
                del self._loading[key]
                if not done.cancelled():
                    done.exception()  # retrieved: every request waiting for it may have gone

            task.add_done_callback(forget)
        return await asyncio.shield(task)

    async def local(self, repo: RepoRef, commit: str) -> CommitMeta | None:
        """The commit's metadata from memory or the store, or None."""
        meta = self._remembered(repo, commit)
        if meta is not None:
            return meta
        meta = await self._kept(repo, commit)
        return None if meta is None else await self._adopt(meta)

    async def for_access_check(self, repo: RepoRef, commit: str, token: str | None) -> CommitMeta:
        """The commit's metadata to decide who may see it, recording nothing: from memory or the store, else
        listed upstream with ``token``. A listing of the catalog checks revisions an eviction or ``mreg rm``
        may remove meanwhile; recording one would bring it back (UpstreamRefusedError if refused)."""
        meta = self._remembered(repo, commit) or self._checked.get((repo, commit)) or await self._kept(repo, commit)
        if meta is not None:
            return meta
        try:
            info, entries, upstream = await self._upstream.commit_listing(repo, commit, token)
        except UpstreamUnavailableError as exc:
            raise not_in_mirror(exc, repo, commit) from None
        meta = self._checked[(repo, commit)] = _meta(repo, commit, info, entries, upstream)
        while len(self._checked) > self._cache_size:
            self._checked.popitem(last=False)
        return meta

    def _remembered(self, repo: RepoRef, commit: str) -> CommitMeta | None:
        if self._removals.changed():
            self._memory.clear()
            self._checked.clear()
        meta = self._memory.get((repo, commit))
        if meta is not None:
            self._memory.move_to_end((repo, commit))
        return meta

    async def _kept(self, repo: RepoRef, commit: str) -> CommitMeta | None:
        info = kept.load(kept.commit_file(self._store, repo, commit, "info.json"))
        entries = kept.load(kept.commit_file(self._store, repo, commit, "tree.json"))
        if info is None or entries is None:
            return None
        upstream = next((r.upstream for r in await self._catalog.revisions(repo) if r.commit == commit), None)
        return _meta(repo, commit, info, entries, upstream)

    async def close(self) -> None:
        """Cancel the fetches and indexing still running."""
        tasks = [*self._loading.values(), *self._indexing.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _fetch(self, repo: RepoRef, commit: str, token: str | None) -> CommitMeta:
        try:
            info, entries, upstream = await self._upstream.commit_listing(repo, commit, token)
        except UpstreamUnavailableError as exc:
            raise not_in_mirror(exc, repo, commit) from None
        meta = _meta(repo, commit, info, entries, upstream)
        self._keep(meta)
        return await self._adopt(meta)

    def _keep(self, meta: CommitMeta) -> None:
        """Keep the commit's repo info and tree in the store, for offline answers and restarts."""
        self._store.open_snapshot(meta.repo, meta.commit)
        kept.save(kept.commit_file(self._store, meta.repo, meta.commit, "info.json"), meta.info)
        kept.save(kept.commit_file(self._store, meta.repo, meta.commit, "tree.json"), meta.entries)

    async def _adopt(self, meta: CommitMeta) -> CommitMeta:
        """Record the commit in the catalog, learn which files are stored, keep it in memory.

        If another request adopted the same commit meanwhile, that object is returned: there is one
        CommitMeta per commit in memory, so its ``stored`` sees every file that lands.
        """
        await self._catalog.record_revision(meta.repo, meta.commit, _records(meta), upstream=meta.upstream)
        stored = await self._catalog.revision_files(meta.repo, meta.commit)
        adopted = self._memory.get((meta.repo, meta.commit))
        if adopted is not None:
            return adopted
        for record in stored:
            spec = meta.files.get(record.path)
            if (spec is not None and record.state == "complete" and record.sha256
                    and await holds(self._store.blobs, record.sha256, spec.size)):
                meta.stored[record.path] = record.sha256
        self._memory[(meta.repo, meta.commit)] = meta
        while len(self._memory) > self._cache_size:
            self._memory.popitem(last=False)
        return meta

    async def stored_blob(self, meta: CommitMeta, path: str) -> str | None:
        """The sha256 of the stored blob holding ``path`` (linking content the store already has), or None."""
        spec = meta.files[path]
        sha = meta.stored.get(path)
        if sha is not None and await holds(self._store.blobs, sha, spec.size):
            return sha
        # only content the catalog records for this repo: a listing naming another (maybe gated) repo's hash
        # gets that content fetched and verified through this repo's upstream, never served from the store
        sha = (await present_blobs(self._store, self._catalog, [spec], only_of=meta.repo)).get(path)
        if sha is None:
            return None
        try:
            await self.mark_stored(meta, path, sha)
        except StoreError:
            if await holds(self._store.blobs, sha, spec.size):
                raise
            return None  # a gc removed it meanwhile: fetched again
        return sha

    async def mark_stored(self, meta: CommitMeta, path: str, sha256: str) -> None:
        """Link the verified blob into the snapshot and record the file (and maybe the commit) complete;
        a revision removed from the catalog meanwhile (``mreg rm``) is recorded again first."""
        again = await link_blob(self._store, self._catalog, meta.repo, meta.commit, meta.files[path], sha256,
                                _records(meta), meta.upstream)
        if again:
            log.info("%s@%s was removed from the store meanwhile: recorded again", meta.repo, meta.commit[:12])
            meta.stored.clear()
            self._keep(meta)
        meta.stored[path] = sha256
        if len(meta.stored) == len(meta.files):
            await self._catalog.mark_revision_complete(meta.repo, meta.commit)
        if is_model_file(path) or path == CONFIG:
            self.index_later(meta.repo, meta.commit)

    def index_later(self, repo: RepoRef, commit: str) -> None:
        """Index the snapshot's headers in a background task (one at a time per commit)."""
        key = (repo, commit)
        if key in self._indexing:
            self._reindex.add(key)
        else:
            self._indexing[key] = asyncio.create_task(self._index(key))

    async def _index(self, key: tuple[RepoRef, str]) -> None:
        """Run ``index_snapshot`` until no file was linked meanwhile; failures are logged, not raised."""
        repo, commit = key
        try:
            while True:
                self._reindex.discard(key)
                try:
                    await index_snapshot(self._store, self._catalog, repo, commit)
                except Exception as exc:  # noqa: BLE001 (indexing is best effort: the files stay served)
                    log.error("cannot index %s@%s: %s: %s", repo, commit[:12], type(exc).__name__, exc)
                if key not in self._reindex:
                    return
        finally:
            del self._indexing[key]  # with no await since the check above: no request is lost
