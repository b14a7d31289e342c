"""Revision → commit: a commit stands for itself; a branch or tag is asked upstream, then trusted for
``ttl`` seconds. Answers are written to the store's refs and the catalog, which answer when
upstream cannot be reached. After a ``mreg rm`` on the store (``registry.removals``) everything remembered
is forgotten, so the next answer from upstream is written again.
"""

from __future__ import annotations

import time

from mreg.registry.catalog import Catalog
from mreg.registry.errors import UpstreamUnavailableError
from mreg.registry.removals import RemovalWatch
from mreg.registry.repo import RepoRef, check_revision
from mreg.registry.store import Store

from mreg.daemon.serving.upstream import COMMIT, not_in_mirror
from mreg.daemon.serving.upstreams import Upstreams


def is_commit(revision: str) -> bool:
    return bool(COMMIT.match(revision))


class Refs:
    """Where each (repo, branch or tag) pointed when upstream was last asked."""

    def __init__(self, store: Store, catalog: Catalog, upstream: Upstreams, ttl: float) -> None:
        self._store, self._catalog, self._upstream, self._ttl = store, catalog, upstream, ttl
        self._known: dict[tuple[RepoRef, str], tuple[str, float]] = {}
        self._removals = RemovalWatch(store.home)

    async def resolve(self, repo: RepoRef, revision: str, token: str | None) -> str:
        """The commit ``revision`` names, asking upstream with ``token`` when the answer is stale.

        Raises UsageError for a malformed revision (never sent upstream), UpstreamRefusedError with upstream's
        answer, or UpstreamUnavailableError when upstream is away and the mirror never saw the revision.
        """
        if is_commit(check_revision(revision)):
            return revision
        known = self._remembered(repo, revision)
        if known is not None and time.monotonic() - known[1] < self._ttl:
            return known[0]
        try:
            commit = await self._upstream.pin(repo, revision, token)
        except UpstreamUnavailableError as exc:
            commit = await self.local(repo, revision)
            if commit is None:
                raise not_in_mirror(exc, repo, revision) from None
            return commit
        await self.remember(repo, revision, commit)
        return commit

    async def local(self, repo: RepoRef, revision: str) -> str | None:
        """The commit the mirror last saw ``revision`` at (no upstream call), or None."""
        if is_commit(revision):
            return revision
        known = self._remembered(repo, revision)
        return known[0] if known is not None else await self._catalog.resolve_revision(repo, revision)

    def _remembered(self, repo: RepoRef, revision: str) -> tuple[str, float] | None:
        """What is remembered of ``revision`` (nothing once a repo was removed from the store since)."""
        if self._removals.changed():
            self._known.clear()
        return self._known.get((repo, revision))

    async def remember(self, repo: RepoRef, revision: str, commit: str) -> None:
        """Upstream just said ``revision`` is at ``commit``: trust it for ``ttl`` and record it."""
        if is_commit(revision):
            return
        previous = self._remembered(repo, revision)
        self._known[(repo, revision)] = (commit, time.monotonic())
        if previous is None or previous[0] != commit:
            self._store.write_ref(repo, revision, commit)
            await self._catalog.set_ref(repo, revision, commit)
