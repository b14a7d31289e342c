"""What ``mreg serve`` is told: where to listen, which hub to mirror, and its named limits."""

from __future__ import annotations

from dataclasses import dataclass, field

from mreg.registry.config import DEFAULT_ENDPOINT, resolve_token
from mreg.registry.download import Tuning
from mreg.registry.eviction.policy import Budget
from mreg.registry.jobs.mirror import MIN_EVERY
from mreg.registry.upstream.configured import DEFAULT_START_TIMEOUT, Upstream

SCRUB_RATE = 50e6
S3_SWEEP_AFTER = 86400.0
REDIRECT_TTL = 300
MAX_REDIRECT_TTL = 7 * 86400
"""The longest lifetime a presigned URL can have (Signature Version 4)."""
GRACE_ROUNDS = 4
"""The shortest ``evict_grace``, in budget rounds (``registry.eviction.shared`` says why)."""


@dataclass(frozen=True)
class ServeConfig:
    """The daemon's settings; the time limits are named here so tests can shrink them."""

    host: str = "127.0.0.1"
    port: int = 8700
    upstream: str = DEFAULT_ENDPOINT
    upstream_kind: str = "hf"
    """What ``upstream`` speaks: ``hf`` (a Hub) or ``modelscope`` (answered to Hub clients as a Hub)."""
    upstreams: tuple[Upstream, ...] = ()
    """Every upstream in priority order, with its own token (``mreg serve`` fills it from
    ``configured.serve_upstreams``); empty: ``upstream`` alone, a Hub with the daemon's own Hub token."""
    start_timeout: float = DEFAULT_START_TIMEOUT
    """Seconds an upstream but the last may take to answer a question before the next one is asked."""
    offline: bool = False
    ref_ttl: float = 60.0
    """Seconds a branch or tag → commit answer is trusted before it is asked again (commits never expire)."""
    access_ttl: float = 60.0
    """Seconds upstream's answer to "may this token read this gated/private repo" is trusted."""
    upstream_down_for: float = 10.0
    """Seconds the daemon answers from its store alone after upstream could not be reached."""
    failed_transfer_memory: float = 3600.0
    """Seconds after a transfer failed during which a range request for its content that does not start at
    0 gets the whole file (200): it may continue bytes of the failed transfer."""
    publish_wait: float = 5.0
    """Seconds after its verification that a file's clients wait for it to be published and recorded before
    they get their last byte anyway (an object store uploads the whole file; huggingface_hub gives up after
    10 s without a byte)."""
    connections: int = 64
    """Upstream connections shared by every transfer into the store."""
    tuning: Tuning = field(default_factory=Tuning)
    shutdown_timeout: float = 5.0
    """Seconds a SIGTERM lets running responses finish before they are cut (transfers then stop,
    their partial files kept for the next run to resume)."""
    commit_cache: int = 256
    """Commits whose metadata (repo info, file listing) is kept in memory."""
    mirror_workers: int = 2
    """Mirror jobs that sync at the same time; the others wait, queued."""
    max_bandwidth: float | None = None
    """Bytes per second all mirror jobs' downloads share (None: no cap; clients' downloads are never capped)."""
    admin_token: str | None = field(default=None, repr=False)
    """The Bearer token the mirror job endpoints require (see ``daemon.admin``)."""
    job_progress_interval: float = 0.5
    """Seconds between two writes of a running job's progress to the catalog."""
    min_every: float = MIN_EVERY
    """The shortest schedule (``every``, seconds) a mirror job may ask for."""
    job_poll: float = 60.0
    """Longest the scheduler sleeps before it looks at the jobs table again (an API call wakes it sooner;
    it looks at least every ``job_lease`` seconds, for other replicas' jobs)."""
    job_lease: float = 30.0
    """Seconds a replica holds a mirror job it runs without renewing it (renewed every third of it); a
    replica that dies loses its jobs to the others after at most this long."""
    fill_lease: float = 5.0
    """With a shared blob store: seconds a replica holds the fill lease of a blob it fetches without renewing it
    (renewed every fifth of it, and as it commits bytes); a killed replica's fill is taken over after that long."""
    scrub_every: float | None = None
    """Seconds between two scrubs of the store (every blob re-hashed, damaged ones quarantined); None: no scrub."""
    scrub_rate: float = SCRUB_RATE
    """Bytes per second a scrub reads at most."""
    s3_sweep_after: float | None = S3_SWEEP_AFTER
    """With an S3 store: seconds after which incomplete uploads and fill chunks count as a dead replica's and are
    removed (``daemon.janitor``); None: never."""
    s3_lifecycle_days: int | None = None
    """With an S3 store: set the bucket's rule aborting incomplete uploads after this many days at start."""
    redirect_to_store: bool = False
    """With an S3 store: answer a request for a stored LFS file with a 302 to a presigned URL of its object
    (``daemon.serving.store_redirects``) instead of streaming it."""
    redirect_ttl: int = REDIRECT_TTL
    """Seconds a presigned URL of ``redirect_to_store`` is valid."""
    store_public_url: str | None = None
    """The S3 endpoint as clients reach it, named by presigned URLs (None: the endpoint the daemon uses)."""
    budget: Budget = field(default_factory=Budget)
    """The store's size budget (none by default: nothing is evicted)."""
    evict_every: float = 60.0
    """Seconds between two budget rounds (uses written to the catalog, then eviction if over budget)."""
    evict_grace: float = 600.0
    """With an S3 store: seconds a blob no revision holds stays in the bucket before a round deletes it."""
    use_flush_every: float = 300.0
    """Longest a noted use waits before it is written to the catalog (a budget round writes it sooner)."""

    @property
    def upstream_list(self) -> tuple[Upstream, ...]:
        """The upstreams the mirror uses, in priority order."""
        if self.upstreams:
            return self.upstreams
        token = resolve_token(None) if self.upstream_kind == "hf" else None
        return (Upstream(self.upstream_kind, self.upstream_kind, self.upstream.rstrip("/"), token),)
