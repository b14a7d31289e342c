"""The daemon's counters, rendered in the Prometheus text format for ``/metrics``."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from mreg.registry.fills.leases import FillCounts


@dataclass
class Metrics:
    """Counters since start. A resolve GET answered from the store is a hit; one needing upstream, a miss."""

    bytes_served: int = 0
    bytes_upstream: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    active_transfers: int = 0
    restarted_ranges: int = 0
    store_redirects: int = 0
    scrubbed_bytes: int = 0
    quarantined_blobs: int = 0
    scrub_passes: int = 0
    store_bytes: int = 0
    budget_bytes: int = 0
    kept_bytes: int = 0
    budget_short_bytes: int = 0
    evictions: int = 0
    evicted_bytes: int = 0
    eviction_rounds: int = 0
    eviction_rounds_skipped: int = 0
    doomed_bytes: int = 0
    s3_sweeps: int = 0
    s3_swept_uploads: int = 0
    s3_swept_chunks: int = 0
    replica: str = ""
    """This daemon's replica id (``daemon.replica``), the label of its job and fill counters."""
    job_leases: int = 0
    job_leases_lost: int = 0
    jobs_finished: int = 0
    jobs_failed: int = 0
    fills: FillCounts = field(default_factory=FillCounts)
    """Fills of a shared store (transfers' and mirror jobs')."""
    requests: Counter[str] = field(default_factory=Counter)

    def render(self) -> str:
        lookups = self.cache_hits + self.cache_misses
        ratio = self.cache_hits / lookups if lookups else 0.0
        lines = [
            *_metric("mreg_served_bytes_total", "counter", "Body bytes sent to clients.", self.bytes_served),
            *_metric("mreg_upstream_bytes_total", "counter", "File bytes fetched from upstream (counted when a "
                     "transfer ends, and as relayed ranges stream).", self.bytes_upstream),
            *_metric("mreg_cache_hits_total", "counter", "File GETs answered from the store.", self.cache_hits),
            *_metric("mreg_cache_misses_total", "counter", "File GETs that needed upstream.", self.cache_misses),
            *_metric("mreg_cache_hit_ratio", "gauge", "Hits over hits plus misses.", round(ratio, 6)),
            *_metric("mreg_active_transfers", "gauge", "Upstream transfers running (downloads into the store "
                     "and relayed ranges).", self.active_transfers),
            *_metric("mreg_restarted_ranges_total", "counter", "Range requests answered with the whole file: they "
                     "could have continued bytes of a transfer that failed.", self.restarted_ranges),
            *_metric("mreg_store_redirects_total", "counter", "File GETs and HEADs answered with a 302 to the "
                     "object store (--redirect-to-store): the client read the bytes from the store.",
                     self.store_redirects),
            *_metric("mreg_scrub_bytes_total", "counter", "Stored bytes the scrub re-hashed.", self.scrubbed_bytes),
            *_metric("mreg_scrub_quarantined_blobs_total", "counter", "Damaged blobs the scrub found and "
                     "quarantined (fetched again from upstream when next asked for).", self.quarantined_blobs),
            *_metric("mreg_scrub_passes_total", "counter", "Scrub passes over the whole store completed.",
                     self.scrub_passes),
            *_metric("mreg_store_bytes", "gauge", "Bytes of the blobs in the store (as of the last budget round).",
                     self.store_bytes),
            *_metric("mreg_store_budget_bytes", "gauge", "The store's size budget (0: none).", self.budget_bytes),
            *_metric("mreg_store_kept_bytes", "gauge", "Bytes held by revisions eviction may not remove (pinned, "
                     "mirrored or in use), as of the last round.", self.kept_bytes),
            *_metric("mreg_store_over_budget_bytes", "gauge", "Bytes the last round could not free because only "
                     "pinned, mirrored or in-use revisions were left (0: within budget).", self.budget_short_bytes),
            *_metric("mreg_evictions_total", "counter", "Revisions evicted to keep the store within its budget.",
                     self.evictions),
            *_metric("mreg_evicted_bytes_total", "counter", "Bytes freed by evictions.", self.evicted_bytes),
            *_metric("mreg_eviction_rounds_total", "counter", "Budget rounds run.", self.eviction_rounds),
            *_metric("mreg_eviction_rounds_skipped_total", "counter", "Budget rounds not run here: another replica "
                     "held the eviction lease (S3 store).", self.eviction_rounds_skipped),
            *_metric("mreg_store_doomed_bytes", "gauge", "Bytes no revision holds any more, waiting out --evict-grace "
                     "before they are deleted from the bucket (S3 store; as of the last round).", self.doomed_bytes),
            *_metric("mreg_s3_sweeps_total", "counter", "Sweeps of the S3 bucket for what dead replicas left.",
                     self.s3_sweeps),
            *_metric("mreg_s3_swept_uploads_total", "counter", "Incomplete multipart uploads older than "
                     "--s3-sweep-after that the sweeps aborted.", self.s3_swept_uploads),
            *_metric("mreg_s3_swept_chunks_total", "counter", "Chunk objects of unfinished fills older than "
                     "--s3-sweep-after that the sweeps deleted.", self.s3_swept_chunks),
            *_metric("mreg_job_leases_total", "counter", "Mirror jobs this replica leased (each run of a job).",
                     self.job_leases, self._replica_label),
            *_metric("mreg_job_leases_lost_total", "counter", "Mirror job runs this replica stopped because its lease "
                     "was taken over (or the job removed).", self.job_leases_lost, self._replica_label),
            *_metric("mreg_jobs_finished_total", "counter", "Mirror job runs this replica finished (done).",
                     self.jobs_finished, self._replica_label),
            *_metric("mreg_jobs_failed_total", "counter", "Mirror job runs this replica recorded as failed.",
                     self.jobs_failed, self._replica_label),
            *_metric("mreg_fills_led_total", "counter", "Fills of the shared store this replica led (held the blob's "
                     "fill lease and fetched it from upstream), taken over ones included.", self.fills.led,
                     self._replica_label),
            *_metric("mreg_fills_followed_total", "counter", "Fills this replica followed: another replica held the "
                     "lease, and this one streamed what it committed to the shared store (a mirror job waits for "
                     "it).", self.fills.followed,
                     self._replica_label),
            *_metric("mreg_fills_taken_over_total", "counter", "Followed fills whose leader's lease ran out, which "
                     "this replica took over and finished from upstream.", self.fills.taken_over, self._replica_label),
            *_metric("mreg_fill_leases_lost_total", "counter", "Fills this replica stopped because another replica "
                     "took its lease over.", self.fills.leases_lost, self._replica_label),
            "# HELP mreg_requests_total Requests by route.",
            "# TYPE mreg_requests_total counter",
            *(f'mreg_requests_total{{route="{route}"}} {n}' for route, n in sorted(self.requests.items())),
        ]
        return "\n".join(lines) + "\n"


    @property
    def _replica_label(self) -> str:
        return f'{{replica="{self.replica}"}}' if self.replica else ""


def _metric(name: str, kind: str, help_text: str, value: float, labels: str = "") -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name}{labels} {value}"]
