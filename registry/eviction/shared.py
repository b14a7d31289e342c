"""Eviction on a store replicas share (S3): what is deleted from the bucket, and when, so that no replica's
reader is cut off and no catalog row ever points at a missing object.

One replica evicts at a time: it holds the catalog's eviction lease (``catalog.shared_eviction``), whose
fence every deletion checks (and renews), so a replica that stalled past its lease deletes nothing more.
Revisions leave the catalog first, as on the local store; their blobs are not deleted then. Deletion is
deferred and re-checked, for two reasons:

- A replica may be reading a blob (ranged GETs, for minutes) that another replica's round just made
  unreferenced; on S3 deleting the object can cut that reader off. Each replica writes the revisions and
  blobs it is serving to the catalog as marks that expire (``blobs_in_use``, rewritten every round, valid
  three rounds), so in-use is cluster-wide: the planner keeps marked revisions, and a marked blob is not
  deleted. A mark is written at most one round after a read began, hence the grace: a blob no revision
  holds (``doomed_blobs``, its grace starting when a round first sees it unreferenced) is deleted only once
  its grace (``--evict-grace``, at least 4 rounds) has passed; a replica that cached the revision forgets it
  within a round (the newest evicting round is polled every round), so no read of it can start unmarked
  later than that.
- A request can store the same content again (a re-request of an evicted repo is fetched again, and its
  publish finds the object there and keeps it). Recording a file with a blob and claiming a blob for deletion both run
  under the catalog's write lock: the claim deletes only a blob no file or derived artifact holds and no
  mark names; a file recorded first takes the blob out of its grace (``reclaim``). A file recorded after
  the claim is refused (BlobDeletedError, the file is fetched again), unless the object exists after the
  deletion finished: then it was stored again since, and the tombstone is dropped (``files``).

Marks rather than grace alone, because a read has no length limit; grace as well, because marks are
written once a round (never on the hot path). A round killed mid-way leaves revisions out of the catalog
(their blobs doomed, deleted later) or a claimed deletion unfinished (the next lease holder deletes it
again): never a file row pointing at a deleted object.

The budget counts the bytes the catalog's revisions hold (catalog rows, no bucket listing); blobs waiting
out their grace are on top of that until it ends. Collecting lists the bucket once per round.
"""

from __future__ import annotations

from datetime import timedelta

from mreg.registry.catalog import Catalog
from mreg.registry.catalog.models import utcnow
from mreg.registry.store import Store

TOMBSTONES = timedelta(days=1)
"""How long a deleted blob's row is kept, refusing a file recorded with the object deleted under it."""


class SharedCollector:
    """Collects for one round under the eviction lease ``fence`` (renewed ``lease`` seconds at each deletion)."""

    def __init__(self, store: Store, catalog: Catalog, fence: int, grace: float, lease: float) -> None:
        self._store, self._catalog = store, catalog
        self._fence, self._grace, self._lease = fence, timedelta(seconds=grace), lease
        self.lost = False
        """Whether the lease was lost meanwhile (this round deletes nothing more)."""

    async def stored(self) -> int:
        return await self._catalog.held_bytes()

    def free(self) -> int | None:
        return None  # a bucket has no free space to watch (``--min-free`` is refused with it)

    async def collect(self) -> int:
        """Start the grace of the bucket's blobs no file holds; delete those whose grace ended, if still
        unreferenced and unused."""
        held = await self._catalog.referenced_blobs()
        unreferenced = {blob.sha256: blob.size async for blob in self._store.blobs.list() if blob.sha256 not in held}
        await self._catalog.doom_blobs(unreferenced, TOMBSTONES)
        removed = 0
        for sha256 in await self._catalog.doomed_due(utcnow() - self._grace):
            outcome = await self._catalog.claim_deletion(sha256, self._fence, self._lease)
            if outcome == "lost":
                self.lost = True
                break
            if outcome == "claimed":
                await self._store.blobs.delete(sha256)
                await self._catalog.blob_deleted(sha256)
                removed += 1
        return removed
