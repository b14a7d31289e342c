"""Building and running the mirror: the aiohttp app, its state's lifetime, and graceful shutdown.

    app = build_app(ServeConfig(upstream="https://huggingface.co"), Settings.from_env())
    await serve(app, config)        # until SIGTERM / SIGINT
    async with listening(app, config) as addresses: ...   # as long as the block runs (tests in process)

The store (``opened_store``: local, or S3 with ``--store``), catalog, HTTP session, background transfers, mirror jobs, the scrub, the size budget and the S3 janitor live in ``mirror_context`` (a
``cleanup_ctx``): opened before the first request, closed after the last response on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from mreg.registry.blobs import LocalBlobPaths
from mreg.registry.catalog import Catalog
from mreg.registry.config import Settings
from mreg.registry.fills.leases import CatalogInFlight
from mreg.registry.upstream.health import Health
from mreg.registry.objectstore import opened_store
from mreg.registry.workspace import http_session

from mreg.daemon.access import Access
from mreg.daemon.admin import is_loopback
from mreg.daemon.budget import StoreBudget
from mreg.daemon.serving.commits import Commits
from mreg.daemon.config import ServeConfig
from mreg.daemon.cross_site import refuse_cross_site
from mreg.daemon.janitor import s3_janitor
from mreg.daemon.metrics import Metrics
from mreg.daemon.mirror_jobs import Mirroring
from mreg.daemon.replica import replica_id
from mreg.daemon.modelscope.upstream import ModelScopeUpstream
from mreg.daemon.serving.refs import Refs
from mreg.daemon.serving.store_redirects import store_redirects
from mreg.daemon.routes import add_routes
from mreg.daemon.scrub import Scrubber
from mreg.daemon.state import CONFIG, MIRROR, Mirror
from mreg.daemon.serving.transfers import FailedContent, Transfers
from mreg.daemon.serving.upstream import Upstream
from mreg.daemon.serving.upstreams import Upstreams

SETTINGS = web.AppKey("settings", Settings)
log = logging.getLogger("mreg.daemon")


def upstreams(session: aiohttp.ClientSession, config: ServeConfig) -> Upstreams:
    """The configured upstreams, each speaking its kind's protocol, sharing one health memory."""
    health = Health(None, clock=time.monotonic, down_for=config.upstream_down_for)
    return Upstreams([(ModelScopeUpstream if u.kind == "modelscope" else Upstream)(
        session, u.url, config.offline, config.upstream_down_for, name=u.name, token=u.token, health=health)
        for u in config.upstream_list], config.offline, config.start_timeout)


async def mirror_context(app: web.Application) -> AsyncIterator[None]:
    """Open everything the mirror owns; close it (stopping running transfers) on shutdown."""
    config, settings = app[CONFIG], app[SETTINGS]
    catalog = await Catalog.open(settings.database_url)
    try:
        async with (opened_store(settings) as store, store_redirects(store, config) as redirects,
                    http_session(config.connections) as session):
            upstream = upstreams(session, config)
            metrics = Metrics(replica=replica_id())
            commits = Commits(store, catalog, upstream, config.commit_cache)
            inflight = (None if isinstance(store.blobs, LocalBlobPaths)  # a store of this machine: MemoryInFlight
                        else CatalogInFlight(catalog, metrics.replica, metrics.fills, config.fill_lease))
            if inflight is not None:
                await inflight.open()
            transfers = Transfers(store, commits, config.tuning, config.connections, metrics,
                                  FailedContent(catalog, config.failed_transfer_memory), inflight,
                                  publish_wait=config.publish_wait)
            mirroring = Mirroring(config, store, catalog, upstream, commits, metrics, metrics.replica, inflight)
            budget = StoreBudget(store, catalog, config.budget, config.evict_every, config.use_flush_every, metrics,
                                 config.evict_grace)
            app[MIRROR] = Mirror(config=config, store=store, catalog=catalog, upstream=upstream,
                                 refs=Refs(store, catalog, upstream, config.ref_ttl), commits=commits,
                                 access=Access(upstream, config.access_ttl), transfers=transfers, metrics=metrics,
                                 mirroring=mirroring, budget=budget, redirects=redirects)
            scrubber = None if config.scrub_every is None else Scrubber(store.blobs, config.scrub_every,
                                                                         config.scrub_rate, metrics)
            janitor = s3_janitor(store, config, metrics)
            await mirroring.start()
            budget.start()
            if scrubber is not None:
                scrubber.start()
            if janitor is not None:
                await janitor.start()
            try:
                yield
            finally:
                if janitor is not None:
                    await janitor.close()
                if scrubber is not None:
                    await scrubber.close()
                await mirroring.close()
                await transfers.close()
                if inflight is not None:
                    await inflight.close()
                await budget.close()
                await commits.close()
                await upstream.close()
    finally:
        await catalog.close()


def build_app(config: ServeConfig, settings: Settings) -> web.Application:
    """The mirror's aiohttp application (its state is opened when it starts)."""
    app = web.Application(middlewares=[refuse_cross_site])
    app[CONFIG] = config
    app[SETTINGS] = settings
    app.cleanup_ctx.append(mirror_context)
    add_routes(app)
    return app


@contextlib.asynccontextmanager
async def listening(app: web.Application, config: ServeConfig) -> AsyncIterator[list[tuple[str, int]]]:
    """Serve ``app`` on ``config.host:port`` inside the block (yielding the addresses it listens on), then
    shut down gracefully."""
    # aiohttp waits shutdown_timeout for running handlers, then as long again before it cancels them:
    # halves make ``config.shutdown_timeout`` the whole grace a long download gets.
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=config.shutdown_timeout / 2)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        addresses = [(address[0], address[1]) for address in runner.addresses]
        mirrored = ", ".join(f"{u.kind}+{u.url}" for u in config.upstream_list)
        for host, port in addresses:
            log.info("mirroring %s on http://%s:%s%s", mirrored, host, port, " (offline)" if config.offline else "")
        if not config.admin_token and not is_loopback(config.host):
            log.warning("listening beyond loopback without an admin token: the /v1/jobs endpoints are disabled "
                        "(set MREG_ADMIN_TOKEN)")
        yield addresses
        log.info("shutting down")
    finally:
        await runner.cleanup()


async def serve(app: web.Application, config: ServeConfig) -> None:
    """Serve ``app`` on ``config.host:port`` until SIGTERM or SIGINT, then shut down gracefully."""
    async with listening(app, config):
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
