"""Shared transfers: one upstream download per content into the store, streamed by any number of clients.

A transfer is ``registry.download.download_file`` run as a background task: many Range connections
into the store's partial file, hashed as it grows, published as a blob only when verified. The
transfer tells its readers which bytes are written (``Readers``), and fetches first the bytes a reader
waits for; readers stream them from the partial file as it grows, a whole file or any range of it, but
the last byte of what they send only once the content is verified, so no body is complete before its
content is verified. A verified blob is linked into the snapshot of every commit whose clients asked
for it while it ran, those asking while it is being linked too. Readers finish once that is done, or
``publish_wait`` seconds after the verification, whichever comes first: publishing into an object store
uploads the whole file, and a client waiting that long for its last byte would give up (huggingface_hub
after 10 s). From the verification on, the transfer holds the verified file open, so every reader can
finish from it whatever publishing does to its name.
Replicas sharing a blob store share transfers too: one of them fetches the content, the others stream the
bytes it commits to the store (``registry.fills``, which mirror jobs' pulls go through as well), and take over
if it dies; each of them frees from its partial file what the bucket holds already (``Readers.local``), and its
readers read those bytes from the bucket (``bodies.send_growing``).

A transfer that succeeded is kept ``linger`` seconds after its content is recorded: a request that began
looking for the file in the store before the record, found nothing, and joins only now, gets the stored
blob from it (and its commit linked) instead of starting a second download of the same content (clients
of one file arrive over seconds). A request that began looking after the record and found nothing starts
a new transfer: the blob is gone since (``mreg rm``, a quarantine). So does any request once a transfer
failed or was stopped.

Sharing the store with ``mreg rm``/``gc`` and other daemons: while a transfer runs it holds the store's
shared pull lock (``Store.pulling_async``), so a gc spares blobs published or linked in the last hour
(this one, until it is linked), and the downloader's flock on its partial file keeps gc off it. A
transfer that fails removes its partial (a full disk gets its space back, the next miss starts cleanly),
unless upstream was only unreachable; one stopped by shutdown keeps it too, to be resumed.

A client cut off by a failed transfer holds bytes that may be wrong, one byte short of its range. It
resumes with a Range request from where it was cut; served the tail of a good copy, it would assemble a
corrupt file under the right name. So the content of a transfer that failed after sending bytes is
remembered in the catalog (``FailedContent``) and, for an hour, a range that does not start at 0 gets the
whole file with a 200 instead, from this daemon, from it restarted, or from any replica sharing the catalog:
huggingface_hub then starts its file over, curl refuses to resume.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from mreg.registry.download import Downloaded, FileSpec, Readers, Tuning, download_file
from mreg.registry.download.transfer import Locate
from mreg.registry.catalog import Catalog
from mreg.registry.catalog.models import utcnow
from mreg.registry.errors import MregError, TransferFailedError, failure_reason
from mreg.registry.fills.fill import Lead, SharedFill
from mreg.registry.fills.leases import CatalogInFlight, Lease
from mreg.registry.fills.shared import not_resumable
from mreg.registry.repo import RepoRef
from mreg.registry.upstream.client import RepoClient
from mreg.registry.store import Store

from mreg.daemon.serving.commits import CommitMeta, Commits
from mreg.daemon.serving.inflight import InFlight, MemoryInFlight
from mreg.daemon.metrics import Metrics

log = logging.getLogger("mreg.daemon")


@dataclass(frozen=True)
class Target:
    """A file of a commit that a transfer's content is for."""

    meta: CommitMeta
    path: str

    @property
    def key(self) -> tuple[RepoRef, str, str]:
        """Which file of which commit it is (many requests may ask for the same)."""
        return self.meta.repo, self.meta.commit, self.path


class Transfer:
    """One running download, as its readers see it."""

    def __init__(self, spec: FileSpec, data_path: Path, key: str | None = None) -> None:
        self.spec = spec
        self.key = key or spec.key
        """What ``Transfers`` files it under: the repo and the content key."""
        self.data_path = data_path
        self.readers = Readers(self._notify)
        """The written bytes of the partial file (the download binds them to its parts)."""
        self.handed_out = False
        """Whether any reader got bytes of it (they may be wrong until it is verified)."""
        self.sha256: str | None = None
        """Set once the content is verified, published and recorded."""
        self.released = False
        """Whether readers may send their last byte: verified, and stored or waited for long enough."""
        self.error: str | None = None
        self._verified_fd: int | None = None
        self.targets: list[Target] = []
        self.record: int | None = None
        """Its number among the records of the transfers' content (``Transfers.records``), once recorded."""
        self.linked: set[tuple[RepoRef, str, str]] = set()
        """The ``Target.key`` of the targets the content is linked into (or being linked)."""
        self._changed = asyncio.Event()

    def sendable(self, pos: int, end: int) -> int:
        """Where a reader of bytes [pos, end) may send up to now: the bytes written from ``pos``, all but the
        range's last one until the content is verified."""
        return end if self.released else min(self.readers.written_from(pos), end - 1)

    async def wait_past(self, pos: int, end: int | None = None) -> int:
        """Wait until a reader of [pos, end) (``end``: the file's) may send byte ``pos``, or all is verified;
        return ``sendable(pos, end)``. Meanwhile the download fetches byte ``pos`` first.

        Raises TransferFailedError when the download failed or did not verify.
        """
        end, asked = self.spec.size if end is None else end, False
        while True:
            if self.error is not None:
                raise TransferFailedError(self.error)
            limit = self.sendable(pos, end)
            if limit > pos or self.released:
                self.handed_out = self.handed_out or limit > pos
                return limit
            changed = self._changed
            if not asked and self.readers.written_from(pos) == pos:
                self.readers.want(pos)
                asked = True
            await changed.wait()

    async def verified(self) -> str:
        """Wait until the whole content is verified and stored; its sha256 (TransferFailedError if it failed)."""
        while self.sha256 is None:
            if self.error is not None:
                raise TransferFailedError(self.error)
            await self._changed.wait()
        return self.sha256

    def open_data(self) -> int:
        """A descriptor of the partial file for a reader to close: the verified file the transfer holds open
        once there is one (its name may be gone, published), else the file by its name."""
        return os.dup(self._verified_fd) if self._verified_fd is not None else os.open(self.data_path, os.O_RDONLY)

    def verify(self) -> None:
        """The bytes are verified (the partial file still has its name): hold it open for the readers."""
        self._verified_fd = os.open(self.data_path, os.O_RDONLY)

    def release(self) -> None:
        """Let readers send their last byte (the content is verified)."""
        self.released = True
        self._notify()

    def succeed(self, sha256: str) -> None:
        self.sha256 = sha256
        self.release()

    def fail(self, error: str) -> None:
        self.error = error
        self._notify()

    def close(self) -> None:
        """Let go of the verified file (readers hold their own descriptors)."""
        if self._verified_fd is not None:
            os.close(self._verified_fd)
            self._verified_fd = None

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


class FailedContent:
    """The content keys whose transfer failed after clients may have got some of its bytes, each kept for
    ``memory`` seconds, in the catalog: a restarted daemon and every replica sharing the catalog know them.
    Written only when such a transfer fails; read only for a range that does not start at 0."""

    def __init__(self, catalog: Catalog, memory: float, clock: Callable[[], datetime] = utcnow) -> None:
        self._catalog, self._memory, self._clock = catalog, timedelta(seconds=memory), clock

    async def remember(self, key: str) -> None:
        """Record that the transfer of ``key`` failed now (a failure to record it is logged)."""
        try:
            await self._catalog.remember_failed_transfer(key, self._clock(), self._memory)
        except MregError as exc:
            log.error("cannot record the failed transfer of %s: %s", key, exc)

    async def recent(self, key: str) -> bool:
        """Whether a transfer of ``key`` failed within the last ``memory`` seconds, here or on a replica."""
        return await self._catalog.transfer_failed_since(key, self._clock() - self._memory)


class Transfers:
    """The running transfers, one per repo and content key (a repo gets content through its own upstream
    before it is shared); they outlive the requests that started them.

    Who fills which content, and how far it got, is kept in ``inflight``: this process's memory, or, for
    replicas sharing a blob store, the catalog (``fill_lease.CatalogInFlight``), whose shared leases make one
    replica fetch the content and the others follow it (``shared_fill``); the tasks and their readers' handles
    are this process's own.
    """

    def __init__(self, store: Store, commits: Commits, tuning: Tuning, connections: int, metrics: Metrics,
                 failed: FailedContent, inflight: InFlight | None = None, publish_wait: float = 5.0,
                 linger: float = 30.0) -> None:
        self._store, self._commits, self._tuning, self._metrics = store, commits, tuning, metrics
        self._publish_wait, self._linger = publish_wait, linger
        self._slots = asyncio.Semaphore(connections)
        self._running: dict[str, Transfer] = {}
        """The transfers by key, running or lingering (see the module docstring)."""
        self._tasks: set[asyncio.Task[None]] = set()
        """The transfers' tasks, and those linking content into the commits of requests that joined a transfer
        once it had succeeded."""
        self.records = 0
        """How many transfers have recorded their content so far (see ``join``)."""
        self.inflight: InFlight = inflight or MemoryInFlight()
        self.failed = failed
        """Contents a range request must not continue (see the module's docstring)."""

    def join(self, spec: FileSpec, target: Target, client: RepoClient, locate: Locate, looked: int) -> Transfer:
        """The transfer of ``spec``'s content, started (with ``client``) if there is none, for a caller that did
        not find the file in the store when it looked, and had noted ``records`` before: a transfer that
        recorded the content since is joined (the look may have missed the record), one recorded before is
        not (the blob is gone since it was recorded)."""
        key = f"{target.meta.repo}:{spec.key}"  # per repo: content is shared only after each repo's own fetch
        transfer = self._running.get(key)
        if transfer is None or (transfer.record is not None and transfer.record <= looked):  # none, or its blob gone
            transfer = self._running[key] = Transfer(spec, self._store.partial_paths(spec.key)[0], key)
            self._start(self._run(transfer, client, locate, str(target.meta.repo)))
        transfer.targets.append(target)
        if transfer.sha256 is not None and target.key not in transfer.linked:  # lingering: linked for the others
            self._start(self._link_targets(transfer, transfer.sha256))
        return transfer

    async def close(self) -> None:
        """Stop every transfer (their partial files stay, to be resumed) and every link still being made."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, transfer: Transfer, client: RepoClient, locate: Locate, owner: str) -> None:
        """Fetch and record the content; keep the transfer joinable ``linger`` seconds more if that succeeded."""
        try:
            if await self._fetch(transfer, client, locate, owner):
                await asyncio.sleep(self._linger)
        finally:
            self._forget(transfer)

    async def _fetch(self, transfer: Transfer, client: RepoClient, locate: Locate, owner: str) -> bool:
        """Download the content (or follow the replica fetching it), record it for every target; whether it
        succeeded (its readers are told either way)."""
        self._metrics.active_transfers += 1
        lease: Lease | None = None
        shared: SharedFill | None = None
        release: asyncio.TimerHandle | None = None

        def verified(_: str) -> None:
            nonlocal release
            transfer.verify()
            release = asyncio.get_running_loop().call_later(self._publish_wait, transfer.release)

        spec = transfer.spec
        try:
            lease = await self.inflight.claim(spec.key, owner, spec.size)
            async with self._store.pulling_async():
                if lease.shared:
                    shared = SharedFill(self._shared, lease, self._store, spec, owner, self._tuning)
                    done = await shared.run(transfer.readers, lambda lead: self._lead(transfer, client, locate, lead,
                                                                                    verified))
                    if done is None:  # the whole file is here, verified: the leader published it
                        await self._followed(transfer)
                        return True
                else:  # a follower of a lone daemon's lease fills it too: publish-if-absent keeps one blob
                    held = lease
                    done = await download_file(client, spec, locate, self._store, self._slots, self._tuning,
                                               discard=not_resumable, readers=transfer.readers,
                                               on_prefix=lambda prefix: self.inflight.note(held, prefix),
                                               on_verified=verified)
                self._metrics.bytes_upstream += done.fetched
                if shared is not None:
                    await shared.end()
                await self._record(transfer, done.sha256)
                return True
        except asyncio.CancelledError:
            transfer.fail("the mirror is shutting down")
            raise
        except Exception as exc:  # noqa: BLE001 (any failure must reach the readers, who cut their clients off)
            reason = failure_reason(exc)
            log.warning("transfer of %s failed: %s", spec.path, reason)
            if transfer.handed_out:  # readers may hold bytes of it
                await self.failed.remember(spec.key)  # before the readers cut their clients off
            if shared is not None:
                await shared.end(reason)
            transfer.fail(reason)
            return False
        finally:
            if release is not None:
                release.cancel()
            transfer.close()
            if shared is not None:
                await shared.release()
            elif lease is not None:
                await self.inflight.release(lease)
            self._metrics.active_transfers -= 1

    @property
    def _shared(self) -> CatalogInFlight:
        assert isinstance(self.inflight, CatalogInFlight)  # only its leases are shared
        return self.inflight

    def _lead(self, transfer: Transfer, client: RepoClient, locate: Locate, lead: Lead,
              verified: Callable[[str], None]) -> Awaitable[Downloaded]:
        """The download of a shared fill's leader: its clients stream the partial file the fill is fed from."""
        return download_file(client, transfer.spec, locate, self._store, self._slots, lead.tuning,
                             discard=not_resumable, readers=lead.readers, on_prefix=lead.on_prefix,
                             on_verified=verified, publish=lead.publish, hashed=lead.hashed)

    async def _followed(self, transfer: Transfer) -> None:
        """A followed fill ended with every byte here and verified: hold the file for the readers, drop its name,
        record the content for the targets' commits (``_record``)."""
        sha256 = transfer.spec.sha256
        assert sha256 is not None
        transfer.verify()
        for path in self._store.partial_paths(transfer.spec.key):
            path.unlink(missing_ok=True)
        await self._record(transfer, sha256)

    def _forget(self, transfer: Transfer) -> None:
        if self._running.get(transfer.key) is transfer:
            del self._running[transfer.key]

    async def _record(self, transfer: Transfer, sha256: str) -> None:
        """Record the verified content for every target's commit, then let the readers finish."""
        await self._link_targets(transfer, sha256)
        self.records += 1
        transfer.record = self.records
        transfer.succeed(sha256)

    async def _link_targets(self, transfer: Transfer, sha256: str) -> None:
        """Link the verified content into the commit of each of the transfer's targets not linked yet, those
        joining meanwhile too (a request finds the file in the store once its commit records it)."""
        for target in transfer.targets:  # a list that may grow while it is walked
            if target.key not in transfer.linked:
                transfer.linked.add(target.key)
                await self._link(target, sha256)

    async def _link(self, target: Target, sha256: str) -> None:
        try:
            await self._commits.mark_stored(target.meta, target.path, sha256)
        except MregError as exc:
            log.error("cannot link %s into %s@%s: %s", target.path, target.meta.repo, target.meta.commit[:12], exc)
