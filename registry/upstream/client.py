"""`RepoClient`: what pulling, inspecting and downloading need from an upstream client, and the neutral
types it speaks in (`RepoInfo`, `RemoteFile`, `FileLocation`).

`registry.upstream.hub.HubClient` (the Hugging Face Hub) and `registry.upstream.modelscope.ModelScopeClient` both
provide it, so one downloader, one pull and one inspector serve every upstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import aiohttp

from mreg.registry.repo import RepoRef

if TYPE_CHECKING:
    from mreg.registry.upstream.http import RetryPolicy


@dataclass(frozen=True)
class RepoInfo:
    """A repo pinned at a commit, and who may read it."""

    repo: RepoRef
    commit: str
    gated: bool | str
    private: bool


@dataclass(frozen=True)
class RemoteFile:
    """A file of a repo at a commit, as the upstream's file listing announces it."""

    path: str
    size: int
    git_oid: str
    lfs_sha256: str | None

    @property
    def is_lfs(self) -> bool:
        return self.lfs_sha256 is not None


@dataclass(frozen=True)
class FileLocation:
    """Where a file's bytes can be fetched with Range requests (after any resolve redirect)."""

    url: str
    size: int
    etag: str
    commit: str


class RepoClient(Protocol):
    """An upstream client: repo lookup, file lists, file locations and ranged GETs."""

    endpoint: str
    retry: RetryPolicy

    async def repo_info(self, repo: RepoRef, revision: str) -> RepoInfo: ...

    async def list_files(self, repo: RepoRef, commit: str) -> list[RemoteFile]: ...

    async def locate(self, repo: RepoRef, commit: str, path: str) -> FileLocation: ...

    async def open_range(self, location: FileLocation, start: int, end: int,
                         timeout: aiohttp.ClientTimeout) -> aiohttp.ClientResponse: ...
