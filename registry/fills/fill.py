"""One blob's fill of the shared store as this replica takes part in it (#13): what the daemon's transfers and
mirror jobs' pulls share, so a client and a job missing the same blob meet at its one lease.

The caller claims the blob's lease (``CatalogInFlight.claim``); a shared one goes to ``SharedFill``: ``run``
follows the leader (``shared.follow``) until it publishes the blob, or until its lease runs out and this replica
takes it over, and leads (``lead``): the partial file seeded with what the fill has committed, the download's
prefix fed to the fill as it grows, the blob published from the fill. ``end`` tells the followers how it ended,
``release`` gives the lease back. ``filled`` is the whole of it for a caller without readers (a pull).

The partial file keeps only a window of the blob's bytes on disk (``holes.LocalBytes``): what the fill has in the
bucket is freed from it, and readers read those bytes from the bucket (``shared.shared_bytes``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from mreg.registry.download import Downloaded, FileSpec, Hashed, Readers, Tuning
from mreg.registry.download.transfer import Advance, Publish
from mreg.registry.errors import MregError, failure_reason
from mreg.registry.fills.leases import CatalogInFlight, Lease
from mreg.registry.fills.shared import Feeder, follow, leader_tuning, not_resumable, seed
from mreg.registry.store import Store

log = logging.getLogger("mreg.fills")


@dataclass(frozen=True)
class Lead:
    """What the leader's download is run with: its ``tuning`` (held back by the fill), the ``readers`` the fill
    follows, the ``on_prefix`` that feeds it, the ``publish`` that publishes the blob from it, and the sha256 of
    the bytes the fill had committed (``hashed``: they are not in the partial file)."""

    tuning: Tuning
    readers: Readers
    on_prefix: Advance
    publish: Publish
    hashed: Hashed | None


Fetch = Callable[[Lead], Awaitable[Downloaded]]
"""The leader's download (``download_file`` or ``download_from``, given the ``Lead``'s parts)."""


class SharedFill:
    """This replica's part in the fill of ``spec``'s content for the repo ``owner``, under the shared ``lease`` it
    claimed (``lease`` changes when it takes a followed fill over); see the module docstring."""

    def __init__(self, inflight: CatalogInFlight, lease: Lease, store: Store, spec: FileSpec, owner: str,
                 tuning: Tuning) -> None:
        assert lease.shared and spec.sha256 is not None
        self.lease = lease
        self._inflight, self._store, self._spec, self._owner, self._tuning = inflight, store, spec, owner, tuning

    async def run(self, readers: Readers | None, fetch: Fetch) -> Downloaded | None:
        """Follow the fill (``readers`` streaming it, if any) and lead it if its leader's lease runs out, or lead
        it at once; None when another replica published the blob (with ``readers``, every byte of it is in the
        partial file, verified). Raises TransferFailedError when the leader's fill failed."""
        counts = self._inflight.counts
        if readers is not None:
            readers.local.attach(self._paths[0])
        try:
            if not self.lease.leader:
                counts.followed += 1
                taken = await follow(self._store.blobs, self._inflight, self._spec, self._owner, self._paths,
                                     readers, self._part_size)
                if taken is None:
                    return None
                self.lease = taken
                counts.taken_over += 1
            if readers is None:  # a pull's (a follower without readers copied nothing)
                readers = Readers()
                readers.local.attach(self._paths[0])
            counts.led += 1
            return await self._lead(readers, fetch)
        finally:
            if readers is not None:  # the fill is over: its readers read the bucket below ``freed``, the disk above
                readers.local.close()
                if readers.local.freed:  # a partial file kept to resume holds only a window: its saved state would
                    self._paths[1].unlink(missing_ok=True)  # say more (a next lead seeds it from the bucket again)

    @property
    def lost(self) -> bool:
        """Whether this replica led the fill until another replica took its lease over (its fill stopped)."""
        return self.lease.leader and not self._inflight.holds(self.lease)

    async def end(self, error: str | None = None) -> None:
        """Tell the followers how the fill ended: done (the blob is published) or failed with ``error`` (a
        failure to record it is logged; a follower's or a lost lease records nothing)."""
        try:
            await self._inflight.finish(self.lease, error)
        except MregError as exc:
            log.error("cannot record the end of the fill of %s: %s", self.lease.key, exc)

    async def release(self) -> None:
        """Give the lease back if it is still held (unfinished: another replica takes it over at once)."""
        await self._inflight.release(self.lease)

    @property
    def _paths(self) -> tuple[Path, Path]:
        return self._store.partial_paths(self._spec.key)

    @property
    def _part_size(self) -> int:
        """The parts of a shared fill's partial file."""
        return leader_tuning(self._tuning).part_size(self._spec.size)

    async def _lead(self, readers: Readers, fetch: Fetch) -> Downloaded:
        """Fill the shared store as the lease's holder."""
        spec, blobs = self._spec, self._store.blobs
        assert spec.sha256 is not None
        fill = await blobs.open_fill(spec.sha256, spec.size)
        try:
            self._inflight.note(self.lease, fill.committed)
            hashed = await seed(blobs, spec, self._paths, fill.committed, self._part_size)
            readers.local.gone(fill.committed)
            feeder = Feeder(fill, self._paths[0], self._inflight, self.lease, spec, readers)
            return await feeder.around(fetch(Lead(leader_tuning(self._tuning, feeder.room), readers, feeder.prefix,
                                                  feeder.publish, hashed)))
        except Exception as exc:
            if not_resumable(exc) and self._inflight.holds(self.lease):  # bytes that failed verification, a refusal
                await asyncio.shield(fill.discard())
            raise


async def filled(inflight: CatalogInFlight, store: Store, spec: FileSpec, owner: str, tuning: Tuning,
                 fetch: Fetch, alone: Callable[[], Awaitable[Downloaded]]) -> Downloaded | None:
    """``spec``'s content in the shared store, as the content of the repo ``owner``: led (``fetch``), or followed
    until another replica published it (None), or fetched ``alone`` when its lease is not shared (no sha256,
    another repo's live fill, the catalog unreachable). A fill whose lease another replica took over is followed
    from then on."""
    while True:
        lease = await inflight.claim(spec.key, owner, spec.size)
        if not lease.shared:
            return await alone()
        fill = SharedFill(inflight, lease, store, spec, owner, tuning)
        try:
            done = await fill.run(None, fetch)
            await fill.end()
            return done
        except Exception as exc:
            if fill.lost:
                log.warning("the fill of %s was taken over by another replica: following it", spec.path)
                continue
            await fill.end(failure_reason(exc))
            raise
        finally:
            await fill.release()
