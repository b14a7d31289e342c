"""Mirror sources: other upstreams holding a repo's files, matched to the pulled files by sha256.

A file whose sha256 (the Hub's LFS oid) a mirror also lists is fetched from the upstream and from
every such mirror at once (``registry.download.download_from``); the bytes are verified as one file.
A mirror that cannot list the repo is left out of the pull (and reported); one that fails mid-file
is dropped from that file.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mreg.registry.download import FileSpec, Source
from mreg.registry.errors import UpstreamError
from mreg.registry.files import checked_locator
from mreg.registry.upstream.client import RemoteFile
from mreg.registry.upstream.client import RepoClient
from mreg.registry.repo import RepoRef
from mreg.registry.waiting import within

LIST_TIMEOUT = 10.0
"""Seconds a mirror has to list the repo; a slower one is left out rather than holding the pull."""


@dataclass(frozen=True)
class MirrorListing:
    """A mirror's files of a repo: which path holds each sha256, at the commit the mirror pins."""

    client: RepoClient
    commit: str
    paths: Mapping[str, str]
    slots: asyncio.Semaphore

    def source_for(self, repo: RepoRef, f: RemoteFile) -> Source | None:
        """The mirror as a source of ``f``'s bytes, or None when it does not hold them."""
        path = self.paths.get(f.lfs_sha256 or "")
        if path is None:
            return None

        spec = FileSpec(path=path, size=f.size, git_oid=f.git_oid, sha256=f.lfs_sha256)
        return Source(self.client.endpoint, self.client, checked_locator(self.client, repo, self.commit, spec),
                      self.slots)


async def list_mirrors(mirrors: Sequence[RepoClient], repo: RepoRef, revision: str,
                       connections: int) -> tuple[list[MirrorListing], dict[str, str]]:
    """The LFS files each mirror lists for ``repo`` at ``revision``, and why the others could not answer."""

    async def listing(mirror: RepoClient) -> tuple[str, list[RemoteFile]]:
        commit = (await mirror.repo_info(repo, revision)).commit
        return commit, await mirror.list_files(repo, commit)

    async def one(mirror: RepoClient) -> MirrorListing | str:
        try:
            commit, files = await within(listing(mirror), LIST_TIMEOUT)
        except UpstreamError as exc:
            return str(exc)
        except TimeoutError:
            return f"no file list within {LIST_TIMEOUT:g} s"
        paths = {f.lfs_sha256: f.path for f in files if f.lfs_sha256}
        return MirrorListing(mirror, commit, paths, asyncio.Semaphore(connections))

    found = await asyncio.gather(*(one(m) for m in mirrors))
    listings = [answer for answer in found if isinstance(answer, MirrorListing)]
    failed = {m.endpoint: answer for m, answer in zip(mirrors, found, strict=True) if isinstance(answer, str)}
    return listings, failed
