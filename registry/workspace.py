"""Opening mreg's pieces together: the store, the catalog and a Hub client with its HTTP session."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp

from mreg.registry.config import Settings
from mreg.registry.local import open_local
from mreg.registry.upstream.http import RetryPolicy
from mreg.registry.upstream.hub import HubClient
from mreg.registry.store import Store

if TYPE_CHECKING:
    from mreg.registry.catalog import Catalog

READ_BUFFER = 512 * 1024


@dataclass
class Workspace:
    settings: Settings
    store: Store
    catalog: Catalog
    client: HubClient
    session: aiohttp.ClientSession
    """The HTTP session `client` uses; clients of other upstreams share it."""


def http_session(connections: int) -> aiohttp.ClientSession:
    """An aiohttp session sized for ``connections`` parallel transfers, honouring proxy variables."""
    connector = aiohttp.TCPConnector(limit=connections + 8, limit_per_host=0, ttl_dns_cache=300)
    return aiohttp.ClientSession(connector=connector, auto_decompress=False, read_bufsize=READ_BUFFER,
                                 trust_env=True)


@contextlib.asynccontextmanager
async def open_workspace(settings: Settings, token: str | None, connections: int = 16,
                         retry: RetryPolicy = RetryPolicy()) -> AsyncIterator[Workspace]:
    """Yield a Workspace; everything it opened is closed on exit."""
    async with open_local(settings) as local, http_session(connections) as session:
        client = HubClient(session, settings.endpoint, token, retry)
        yield Workspace(settings, local.store, local.catalog, client, session)
