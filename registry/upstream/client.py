"""`RepoClient`: what pulling, inspecting and downloading need from an upstream client.

`registry.upstream.hub.HubClient` (the Hugging Face Hub) and `registry.upstream.modelscope.ModelScopeClient` both
provide it, so one downloader, one pull and one inspector serve every upstream.
"""

from __future__ import annotations

from typing import Protocol

import aiohttp

from mreg.registry.upstream.hub.client import RemoteFile, RepoInfo
from mreg.registry.repo import RepoRef
from mreg.registry.upstream.http import FileLocation, RetryPolicy


class RepoClient(Protocol):
    """An upstream client: repo lookup, file lists, file locations and ranged GETs."""

    endpoint: str
    retry: RetryPolicy

    async def repo_info(self, repo: RepoRef, revision: str) -> RepoInfo: ...

    async def list_files(self, repo: RepoRef, commit: str) -> list[RemoteFile]: ...

    async def locate(self, repo: RepoRef, commit: str, path: str) -> FileLocation: ...

    async def open_range(self, location: FileLocation, start: int, end: int,
                         timeout: aiohttp.ClientTimeout) -> aiohttp.ClientResponse: ...
