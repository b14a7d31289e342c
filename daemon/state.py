"""The daemon's typed application state: what every handler reaches through ``request.app[MIRROR]``."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from registry.catalog import Catalog
from registry.store import Store

from .access import Access
from .commits import Commits
from .config import ServeConfig
from .metrics import Metrics
from .mirroring import Mirroring
from .refs import Refs
from .transfers import Transfers
from .upstream import Upstream


@dataclass(frozen=True)
class Mirror:
    """Everything one running mirror owns; built and closed by ``app.mirror_context``."""

    config: ServeConfig
    store: Store
    catalog: Catalog
    upstream: Upstream
    refs: Refs
    commits: Commits
    access: Access
    transfers: Transfers
    metrics: Metrics
    mirroring: Mirroring


CONFIG = web.AppKey("config", ServeConfig)
MIRROR = web.AppKey("mirror", Mirror)
