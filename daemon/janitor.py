"""The S3 janitor (``mreg serve --store s3://… --s3-sweep-after``): what a killed replica left in the bucket,
multipart uploads it never completed and the chunk objects of fills it never finished, is removed once older
than the bound (``S3BlobStore.sweep``), at start and then every quarter of the bound (at most an hour apart).
Anything younger may be a live replica's and stays. Each sweep that removed something is one JSON line and
counted in /metrics. With ``--s3-lifecycle-days``, the bucket's own rule aborting incomplete uploads is set at
start too; a server that refuses it is one warning, and the daemon serves on.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, cast

from mreg.registry.errors import StoreError
from mreg.registry.objectstore import ObjectStore
from mreg.registry.store import Store

from mreg.daemon.config import ServeConfig
from mreg.daemon.metrics import Metrics
from mreg.daemon.periodic import Periodic

if TYPE_CHECKING:
    from mreg.registry.blobs.s3 import S3BlobStore  # aiobotocore is imported only by those who use S3

log = logging.getLogger("mreg.daemon")
LONGEST_INTERVAL = 3600.0
"""Seconds between two sweeps at most, however long the bound."""


class S3Janitor:
    """Sweeps ``blobs`` of leftovers older than ``sweep_after`` seconds (None: never), and sets the bucket's
    lifecycle rule at start if ``lifecycle_days`` is given."""

    def __init__(self, blobs: S3BlobStore, sweep_after: float | None, lifecycle_days: int | None,
                 metrics: Metrics) -> None:
        self._blobs, self._sweep_after, self._lifecycle_days = blobs, sweep_after, lifecycle_days
        self._metrics = metrics
        self._schedule = None if sweep_after is None else Periodic(
            self.sweep, min(sweep_after / 4, LONGEST_INTERVAL), "S3 sweep", at_start=True)

    async def start(self) -> None:
        """Set the lifecycle rule (if asked), then start the sweeps in the background."""
        if self._lifecycle_days is not None:
            try:
                await self._blobs.add_lifecycle_rule(self._lifecycle_days)
            except StoreError as exc:
                log.warning("the bucket's lifecycle rule was not set (the janitor still sweeps if enabled): %s", exc,
                            extra={"fields": {"event": "s3_lifecycle_refused"}})
            else:
                log.info("the bucket %s aborts incomplete uploads below %s after %d days", self._blobs.bucket,
                         self._blobs.location, self._lifecycle_days)
        if self._schedule is not None:
            self._schedule.start()

    async def close(self) -> None:
        """Stop the sweeps (one running is cancelled where it awaits)."""
        if self._schedule is not None:
            await self._schedule.close()

    async def sweep(self) -> None:
        """One sweep of what is older than the bound."""
        assert self._sweep_after is not None
        uploads, chunks = await self._blobs.sweep(self._sweep_after)
        self._metrics.s3_sweeps += 1
        self._metrics.s3_swept_uploads += uploads
        self._metrics.s3_swept_chunks += chunks
        if uploads or chunks:
            log.info("swept %s: %d incomplete uploads aborted, %d fill chunks deleted (older than %gs)",
                     self._blobs.location, uploads, chunks, self._sweep_after,
                     extra={"fields": {"event": "s3_swept", "uploads": uploads, "chunks": chunks,
                                       "older_than": self._sweep_after}})


def s3_janitor(store: Store, config: ServeConfig, metrics: Metrics) -> S3Janitor | None:
    """The janitor of ``store`` if it is an object store and ``config`` asks for a sweep or a lifecycle rule."""
    if not isinstance(store, ObjectStore) or (config.s3_sweep_after is None and config.s3_lifecycle_days is None):
        return None
    return S3Janitor(cast("S3BlobStore", store.blobs), config.s3_sweep_after, config.s3_lifecycle_days, metrics)
