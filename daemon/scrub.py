"""The daemon's scrub (``mreg serve --scrub-every``): at that interval, every stored blob is re-hashed in the
background, read no faster than ``--scrub-rate`` (hashing runs in worker threads: requests are served
meanwhile). A blob whose bytes no longer hash to its name is quarantined, logged as one JSON line and
counted in /metrics; the next request for a file of it is then a miss, fetched again from upstream.
"""

from __future__ import annotations

import logging

from mreg.registry.blobs import BlobStore
from mreg.registry.download.throttle import TokenBucket
from mreg.registry.integrity import scrub

from mreg.daemon.metrics import Metrics
from mreg.daemon.periodic import Periodic

log = logging.getLogger("mreg.daemon")


class Scrubber:
    """The scrub's background task: a pass over the store ``every`` seconds after start, then ``every`` seconds
    after each pass ends (passes never overlap, however long one takes at its rate)."""

    def __init__(self, blobs: BlobStore, every: float, rate: float, metrics: Metrics) -> None:
        self._blobs, self._rate, self._metrics = blobs, rate, metrics
        self._schedule = Periodic(self._pass, every, "scrub pass")

    def start(self) -> None:
        self._schedule.start()

    async def close(self) -> None:
        """Stop the scrub (a pass stops between two chunks)."""
        await self._schedule.close()

    async def _pass(self) -> None:
        """Re-hash every stored blob once, quarantining the damaged ones."""
        checked = damaged = 0
        async for check in scrub(self._blobs, TokenBucket(self._rate)):
            checked += 1
            self._metrics.scrubbed_bytes += check.info.size
            if check.damaged:
                damaged += 1
                self._metrics.quarantined_blobs += 1
                log.warning("quarantined damaged blob %s: its bytes hash to %s; the next request fetches it again",
                            check.info.sha256, check.found,
                            extra={"fields": {"event": "blob_quarantined", "sha256": check.info.sha256,
                                              "found": check.found, "size": check.info.size}})
        self._metrics.scrub_passes += 1
        log.info("scrub pass done: %d blobs checked, %d quarantined", checked, damaged)
