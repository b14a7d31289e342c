"""`mreg serve`: the daemon, configured from its options (``serve_config``, which tests running the daemon
in process use too)."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

import click

from mreg.daemon.app import build_app, serve
from mreg.daemon.config import GRACE_ROUNDS, MAX_REDIRECT_TTL, ServeConfig
from mreg.daemon.logs import setup_logging
from mreg.registry.blobs.s3location import parse_endpoint, parse_s3_url
from mreg.registry.config import STORE_VARIABLE, Settings
from mreg.registry.errors import UsageError
from mreg.registry.eviction.policy import Budget
from mreg.registry.jobs.mirror import check_every
from mreg.registry.units import parse_interval, parse_rate
from mreg.registry.upstream.configured import load, serve_upstreams

from mreg.cli.budget_options import budget_options
from mreg.cli.common import _run
from mreg.cli.configured import configured


def serve_config(settings: Settings, host: str, port: int, upstream: Sequence[str], offline: bool, ref_ttl: float,
                 mirror_workers: int, max_bandwidth: str | None, min_every: str | None,
                 admin_token: str | None, scrub_every: str | None, scrub_rate: str | None,
                 max_size: str | None = None, high: float = 95.0, low: float = 85.0, min_free: str | None = None,
                 order: str = "lru", evict_after: str = "30d", evict_every: str | None = None,
                 job_lease: float = ServeConfig.job_lease, s3_sweep_after: str | None = None,
                 s3_lifecycle_days: int | None = None, redirect_to_store: bool = False,
                 redirect_ttl: int = ServeConfig.redirect_ttl, store_public_url: str | None = None,
                 env: Mapping[str, str] | None = None, evict_grace: str | None = None) -> ServeConfig:
    """The daemon's settings from `mreg serve`'s options (``settings`` and ``env``, default the process's
    environment, give the defaults the environment sets)."""
    upstreams = serve_upstreams(upstream, env)
    budget = Budget.parse(max_size, high, low, min_free, order, evict_after)
    if settings.store is not None:
        parse_s3_url(settings.store)  # a malformed URL is a usage error before anything starts
        if budget.min_free is not None:
            raise UsageError(f"--min-free has no meaning for the bucket of {settings.store} (use --max-size)")
    elif s3_sweep_after is not None or s3_lifecycle_days is not None or evict_grace is not None:
        raise UsageError("--s3-sweep-after, --s3-lifecycle-days and --evict-grace need an S3 store "
                         "(--store s3://BUCKET[/PREFIX])")
    elif redirect_to_store:
        raise UsageError("--redirect-to-store needs an S3 store (--store s3://BUCKET[/PREFIX]): a local store's "
                         "files are streamed")
    if store_public_url and not redirect_to_store:
        raise UsageError("--store-public-url is only used with --redirect-to-store")
    shortest = parse_interval(min_every) if min_every else ServeConfig.min_every
    every = parse_interval(evict_every) if evict_every else ServeConfig.evict_every
    return ServeConfig(host=host, port=port, upstream=upstreams[0].url, upstream_kind=upstreams[0].kind,
                       upstreams=upstreams, start_timeout=load(env).start_timeout,
                       offline=offline or settings.offline, ref_ttl=ref_ttl, mirror_workers=mirror_workers,
                       max_bandwidth=parse_rate(max_bandwidth) if max_bandwidth else None,
                       min_every=shortest, job_lease=job_lease,
                       admin_token=admin_token.strip() if admin_token and admin_token.strip() else None,
                       scrub_every=check_every(parse_interval(scrub_every), shortest, "--scrub-every")
                       if scrub_every else None,
                       scrub_rate=parse_rate(scrub_rate) if scrub_rate else ServeConfig.scrub_rate,
                       budget=budget,
                       evict_every=every, evict_grace=parse_grace(evict_grace, every),
                       s3_sweep_after=parse_sweep_after(s3_sweep_after), s3_lifecycle_days=s3_lifecycle_days,
                       redirect_to_store=redirect_to_store, redirect_ttl=redirect_ttl,
                       store_public_url=parse_endpoint(store_public_url) if store_public_url else None)


def parse_grace(text: str | None, every: float) -> float:
    """``--evict-grace``: seconds, at least ``GRACE_ROUNDS`` budget rounds (default: the larger of 10 minutes and that)."""
    least = GRACE_ROUNDS * every
    if text is None:
        return max(ServeConfig.evict_grace, least)
    grace = parse_interval(text)
    if grace < least:
        raise UsageError(f"--evict-grace must be at least {GRACE_ROUNDS} budget rounds (--evict-every): {least:g}s")
    return grace


def parse_sweep_after(text: str | None) -> float | None:
    """``--s3-sweep-after``: seconds, None for ``0`` or ``off`` (no sweep), the default if not given."""
    if text is None:
        return ServeConfig.s3_sweep_after
    return None if text.strip().lower() in ("0", "off") else parse_interval(text)


@click.command("serve")
@click.option("--host", default=ServeConfig.host, show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=ServeConfig.port, show_default=True,
              help="Port to listen on (0: any free port, logged at start).")
@click.option("--upstream", metavar="[KIND+]URL", multiple=True,
              help="Hub to mirror (default: MREG_UPSTREAMS, the config file's upstreams, else HF_ENDPOINT, else "
              "https://huggingface.co); modelscope+URL mirrors a ModelScope endpoint to Hub clients. Repeat it "
              "for fallbacks, tried in order.")
@click.option("--offline", is_flag=True, help="Never contact upstream; serve what the store holds (also HF_HUB_OFFLINE=1).")
@click.option("--ref-ttl", type=click.FloatRange(0), default=ServeConfig.ref_ttl, show_default=True, metavar="SECONDS",
              help="How long a branch or tag is trusted to point at the same commit before upstream is asked again.")
@click.option("--mirror-workers", type=click.IntRange(1, 64), default=ServeConfig.mirror_workers, show_default=True,
              help="Mirror jobs that sync at the same time.")
@click.option("--max-bandwidth", metavar="RATE", help="Bytes per second shared by all mirror jobs' downloads "
              "(50M, 1.5G, 800K); default: no cap.")
@click.option("--min-every", metavar="INTERVAL", help="Shortest schedule a mirror job may ask for (30s, 5m); "
              "default: 1m.")
@click.option("--job-lease", type=click.FloatRange(0, 86400, min_open=True), default=ServeConfig.job_lease,
              show_default=True, metavar="SECONDS", help="How long a replica holds a mirror job without renewing "
              "it; replicas sharing a catalog take over a dead one's jobs after this long.")
@click.option("--database-url", metavar="URL", help="The catalog's database: sqlite+aiosqlite:///PATH or "
              "postgresql+asyncpg://USER[:PASSWORD]@HOST[:PORT]/DATABASE (default: MREG_DATABASE_URL, else "
              "catalog.db in MREG_HOME).")
@click.option("--store", metavar="s3://BUCKET[/PREFIX]", help=f"Where blobs live: an S3 bucket (and key prefix) that "
              "replicas share, credentials and endpoint from the standard AWS variables (default: "
              f"{STORE_VARIABLE}, else the local store in MREG_HOME).")
@click.option("--admin-token", envvar="MREG_ADMIN_TOKEN", show_envvar=True,
              help="Bearer token the /v1/jobs endpoints require (always for changes; beyond loopback, "
              "where they are disabled without one, for everything). Prefer the variable: other users "
              "can see command lines.")
@click.option("--scrub-every", metavar="INTERVAL", help="Re-hash every stored blob at this interval (6h, 1d; "
              "from --min-every to a year) and quarantine the damaged ones, which the next request fetches "
              "again from upstream; default: no scrub.")
@click.option("--scrub-rate", metavar="RATE", help="Bytes per second a scrub reads at most (50M, 1.5G, 800K); "
              "default: 50M.")
@budget_options
@click.option("--evict-every", metavar="INTERVAL", help="How often the budget is checked (and last uses written to "
              "the catalog); default: 1m.")
@click.option("--evict-grace", metavar="INTERVAL", help="With --store s3://… and a budget: how long a blob no "
              "revision holds any more stays in the bucket before it is deleted (at least 4 budget rounds; "
              "default: 10m).")
@click.option("--s3-sweep-after", metavar="INTERVAL", help="With --store s3://…: abort incomplete uploads and delete "
              "fill chunks older than this (what a killed replica left; younger ones may be a live replica's), at "
              "start and every quarter of it (at most hourly); 0 or off: never; default: 1d.")
@click.option("--s3-lifecycle-days", type=click.IntRange(1, 36500), metavar="DAYS", help="With --store s3://…: at "
              "start, also set the bucket's lifecycle rule that aborts incomplete uploads DAYS days after they began.")
@click.option("--redirect-to-store/--no-redirect-to-store", envvar="MREG_REDIRECT_TO_STORE", show_envvar=True,
              default=configured("serve", "redirect_to_store", False), show_default="off",
              help="With --store s3://…: answer a request for a stored LFS file with a 302 to a presigned URL of "
              "its object, so clients read it from the store itself (they must reach it; files not stored yet are "
              "streamed and stored as before).")
@click.option("--redirect-ttl", type=click.IntRange(1, MAX_REDIRECT_TTL), envvar="MREG_REDIRECT_TTL", show_envvar=True,
              default=configured("serve", "redirect_ttl", ServeConfig.redirect_ttl), show_default=str(ServeConfig.redirect_ttl),
              metavar="SECONDS", help="How long the presigned URLs of --redirect-to-store are valid.")
@click.option("--store-public-url", metavar="URL", envvar="MREG_STORE_PUBLIC_URL", show_envvar=True,
              default=configured("serve", "store_public_url"),
              help="The S3 endpoint as clients reach it (http[s]://HOST[:PORT]), named by the presigned URLs of "
              "--redirect-to-store; default: the endpoint the daemon uses.")
@_run
async def serve_command(host: str, port: int, upstream: tuple[str, ...], offline: bool, ref_ttl: float,
                        mirror_workers: int, max_bandwidth: str | None, min_every: str | None, job_lease: float,
                        database_url: str | None, store: str | None, admin_token: str | None, scrub_every: str | None,
                        scrub_rate: str | None, max_size: str | None, high: float, low: float, min_free: str | None,
                        order: str, evict_after: str, evict_every: str | None, evict_grace: str | None,
                        s3_sweep_after: str | None, s3_lifecycle_days: int | None, redirect_to_store: bool,
                        redirect_ttl: int, store_public_url: str | None) -> None:
    """Serve the store as a Hugging Face Hub mirror that pulls missing files through (until SIGTERM),
    and run the mirror jobs (``mreg mirror``).

    Point clients at it with HF_ENDPOINT=http://HOST:PORT; they keep their own tokens. Mirror jobs
    use the daemon's own token (HF_TOKEN or huggingface_hub's saved token) if there is one.
    """
    settings = Settings.from_env().with_database_url(database_url).with_store(store)
    setup_logging(sys.stderr)
    config = serve_config(settings, host, port, upstream, offline, ref_ttl, mirror_workers, max_bandwidth,
                          min_every, admin_token, scrub_every, scrub_rate, max_size, high, low, min_free, order,
                          evict_after, evict_every, job_lease, s3_sweep_after, s3_lifecycle_days, redirect_to_store,
                          redirect_ttl, store_public_url, evict_grace=evict_grace)
    await serve(build_app(config, settings), config)
