"""The daemon's typed application state: what every handler reaches through ``request.app[MIRROR]``."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from mreg.registry.catalog import Catalog
from mreg.registry.store import Store

from mreg.daemon.access import Access
from mreg.daemon.budget import StoreBudget
from mreg.daemon.serving.commits import Commits
from mreg.daemon.config import ServeConfig
from mreg.daemon.metrics import Metrics
from mreg.daemon.mirror_jobs import Mirroring
from mreg.daemon.serving.refs import Refs
from mreg.daemon.serving.store_redirects import StoreRedirects
from mreg.daemon.serving.transfers import Transfers
from mreg.daemon.serving.upstreams import Upstreams


@dataclass(frozen=True)
class Mirror:
    """Everything one running mirror owns; built and closed by ``app.mirror_context``."""

    config: ServeConfig
    store: Store
    catalog: Catalog
    upstream: Upstreams
    refs: Refs
    commits: Commits
    access: Access
    transfers: Transfers
    metrics: Metrics
    mirroring: Mirroring
    budget: StoreBudget
    redirects: StoreRedirects | None = None
    """With ``--redirect-to-store``: where stored LFS files are redirected to."""


CONFIG = web.AppKey("config", ServeConfig)
MIRROR = web.AppKey("mirror", Mirror)
