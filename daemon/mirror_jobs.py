"""The daemon's mirror jobs: a scheduler that leases due jobs for a bounded pool of workers.

Jobs live in the catalog, so they outlive the daemon, and several daemons (replicas) sharing one catalog
share them: a replica takes a job with a lease of ``job_lease`` seconds (``Catalog.lease_job``), which its
worker renews every third of it; a replica killed mid-job stops renewing, and once the lease has run
out any replica (itself after a restart) takes the job again, its download resuming from the partial
files' saved state where they are at hand. Every write of a job's state carries the lease's fence: a
worker whose write is refused lost the job and stops quietly. A clean shutdown gives its leases back.
A worker runs ``registry.jobs.mirror.sync_job`` (``mreg pull``'s code) under the shared bandwidth cap (with a
shared blob store, each LFS file through its fill lease, ``registry.fills``: a job taken over resumes each file
from what the last replica committed to the store, and meets clients missing the same file at the same lease),
writes the job's progress to the catalog every ``job_progress_interval`` seconds, has each
weights file indexed as soon as it lands, and keeps the commit's repo info and listing (``kept``) so
the mirrored repo is answered while upstream is away.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from datetime import datetime, timedelta

from mreg.registry.catalog import Catalog, JobLease, MirrorJob
from mreg.registry.catalog.models import utcnow
from mreg.registry.errors import MregError, RepoNotFoundError, UpstreamRefusedError, UpstreamUnavailableError
from mreg.registry.fills.leases import CatalogInFlight
from mreg.registry.inspect.reading import is_model_file
from mreg.registry.inspect.repo import CONFIG
from mreg.registry.jobs.mirror import JobProgress, Synced, sync_job
from mreg.registry.store import Store
from mreg.registry.download.throttle import TokenBucket
from mreg.registry.waiting import wait_until_set, within

from mreg.daemon.replica import gone_from_this_host
from mreg.daemon.serving.commits import Commits
from mreg.daemon.config import ServeConfig
from mreg.daemon.metrics import Metrics
from mreg.daemon.serving.upstream import Upstream
from mreg.daemon.serving.upstreams import Upstreams

log = logging.getLogger("mreg.daemon")


class Mirroring:
    """The scheduler task and the running jobs' tasks; ``wake`` makes it look at the jobs now."""

    def __init__(self, config: ServeConfig, store: Store, catalog: Catalog, upstream: Upstreams,
                 commits: Commits, metrics: Metrics, replica: str, fills: CatalogInFlight | None = None) -> None:
        self._config, self._store, self._catalog, self._upstream = config, store, catalog, upstream
        self._commits, self._metrics, self._replica, self._fills = commits, metrics, replica, fills
        bucket = TokenBucket(config.max_bandwidth) if config.max_bandwidth else None
        self._tuning = dataclasses.replace(config.tuning, throttle=bucket.take if bucket else None)
        self._running: dict[int, asyncio.Task[None]] = {}
        self._leases: dict[int, JobLease] = {}
        self._wake = asyncio.Event()
        self._scheduler: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """End the leases of daemons that stopped on this host (a restart after kill -9 resumes their jobs at
        once, not when the leases run out), then start scheduling."""
        log.info("mirror jobs: replica %s, leases of %gs", self._replica, self._config.job_lease)
        gone = [r for r in await self._catalog.lease_holders() if gone_from_this_host(r, self._replica)]
        if gone and (freed := await self._catalog.expire_leases(gone)):
            log.info("resuming %d mirror job(s) of %s, stopped on this host", freed, ", ".join(gone))
        self._scheduler = asyncio.create_task(self._schedule())

    def wake(self) -> None:
        """Look at the jobs table now (a job was added, removed or asked to sync)."""
        self._wake.set()

    async def stop_job(self, job_id: int) -> None:
        """Cancel the job's running sync, if any (its job was removed)."""
        task = self._running.get(job_id)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def close(self) -> None:
        """Stop scheduling, stop the running jobs and give their leases back: queued again, for any
        replica (their partial files stay)."""
        held = list(self._leases.values())
        tasks = [t for t in (self._scheduler, *self._running.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for lease in held:
            try:
                if await self._catalog.release_job(lease.job.id, lease.fence):
                    log.info("mirror job %s: lease given back", lease.job.repo)
            except MregError as exc:
                log.warning("mirror job %s: cannot give its lease back (it runs out in %gs): %s", lease.job.repo,
                            self._config.job_lease, exc)

    async def _schedule(self) -> None:
        poll = min(self._config.job_poll, self._config.job_lease)  # other replicas' expired leases, new jobs
        while True:
            self._wake.clear()
            try:
                await self._lease_due()
                jobs = await self._catalog.list_jobs()
            except MregError as exc:
                log.error("mirror scheduler: %s", exc)
                jobs = []
            await wait_until_set(self._wake, sleep_for(jobs, utcnow(), poll))

    async def _lease_due(self) -> None:
        """Lease due jobs while a worker is free."""
        while len(self._running) < self._config.mirror_workers:
            lease = await self._catalog.lease_job(self._replica, self._config.job_lease)
            if lease is None:
                return
            self._metrics.job_leases += 1
            log.info("mirror job %s: leased (fence %d)", lease.job.repo, lease.fence)
            task = asyncio.create_task(self._work(lease))
            self._running[lease.job.id], self._leases[lease.job.id] = task, lease
            task.add_done_callback(functools.partial(self._finished, lease.job.id))

    def _finished(self, job_id: int, task: "asyncio.Task[None]") -> None:
        if self._running.get(job_id) is task:  # not a newer lease of the same job
            del self._running[job_id], self._leases[job_id]
        self.wake()  # a worker is free

    async def _work(self, lease: JobLease) -> None:
        """Run the leased job's sync while ``_hold`` keeps the lease; record how it ended, under the fence."""
        job, fence = lease.job, lease.fence
        progress = JobProgress(lambda commit, path: self._landed(job, commit, path))
        sync = asyncio.create_task(self._sync(job, progress))
        holder = asyncio.create_task(self._hold(lease, progress))
        try:
            await asyncio.wait((sync, holder), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sync, holder):
                task.cancel()
            await asyncio.gather(sync, holder, return_exceptions=True)
        if not holder.cancelled():  # it returned: the lease is lost
            return self._lost(job)
        try:
            synced, source = sync.result()
        except MregError as exc:
            log.warning("mirror job %s failed: %s", job.repo, exc)
            return await self._failed(lease, str(exc))
        except Exception as exc:  # noqa: BLE001 (a job's failure must be recorded, not kill the scheduler)
            log.exception("mirror job %s failed", job.repo)
            return await self._failed(lease, f"{type(exc).__name__}: {exc}")
        await self._keep_metadata(job, synced.commit, source)
        if not (await self._catalog.set_job_progress(job.id, fence, progress.bytes_done, progress.bytes_total)
                and await self._catalog.finish_job(job.id, fence, synced.commit)):
            return self._lost(job)
        self._metrics.jobs_finished += 1
        log.info("mirror job %s: at %s (%d bytes fetched)", job.repo, synced.commit[:12], synced.fetched)
        for path in synced.refetched:
            log.warning("mirror job %s: %s failed verification and was fetched again", job.repo, path)

    async def _failed(self, lease: JobLease, error: str) -> None:
        if not await self._catalog.fail_job(lease.job.id, lease.fence, error):
            return self._lost(lease.job)
        self._metrics.jobs_failed += 1

    def _lost(self, job: MirrorJob) -> None:
        """The job's lease was taken over (or the job removed): its writes were refused; this worker stops."""
        self._metrics.job_leases_lost += 1
        log.warning("mirror job %s: lost its lease (taken over by another replica, or the job was removed); "
                    "this replica stops its sync", job.repo)

    async def _sync(self, job: MirrorJob, progress: JobProgress) -> tuple[Synced, Upstream]:
        """Sync ``job`` from the first upstream that has the repo, as a pull falls back: one that is down,
        cannot be reached, (but for the last) does not answer within the start timeout, or does not have the
        repo, is passed over. Each is sent its own token only."""
        if self._upstream.offline:
            raise UpstreamUnavailableError("the mirror is offline")
        unreachable: list[str] = []
        missing: RepoNotFoundError | None = None
        for member in self._upstream.members:
            if not member.available:
                unreachable.append(member.unavailable_reason)
                continue
            client = member.client(member.token)
            try:
                if member is not self._upstream.members[-1]:
                    await within(client.repo_info(job.repo, job.revision), self._config.start_timeout)
                synced = await sync_job(job, client=client, store=self._store, catalog=self._catalog,
                                        tuning=self._tuning, progress=progress, upstream=member.name,
                                        fills=self._fills)
            except (TimeoutError, UpstreamUnavailableError) as exc:
                await member.outages.request_failed()
                unreachable.append(str(exc) or f"{member.endpoint} did not answer in time")
                continue
            except RepoNotFoundError as exc:
                missing = missing or exc
                continue
            self._upstream.remember(job.repo, synced.commit, member)
            return synced, member
        if missing is not None and not unreachable:
            raise missing
        raise UpstreamUnavailableError("; ".join(unreachable))

    async def _keep_metadata(self, job: MirrorJob, commit: str, source: Upstream) -> None:
        """Keep the commit's repo info and file listing, so Hub clients and the catalog are answered
        for the mirrored repo while upstream is away (best effort: the files are mirrored either way)."""
        try:
            await self._commits.get(job.repo, commit, source.token)
        except MregError as exc:
            why = f"upstream answered HTTP {exc.http_status}" if isinstance(exc, UpstreamRefusedError) else str(exc)
            log.warning("mirror job %s: cannot keep the repo info of %s for offline use: %s", job.repo,
                        commit[:12], why)

    async def _hold(self, lease: JobLease, progress: JobProgress) -> None:
        """Write the job's progress to the catalog while it changes and renew the lease every third of it;
        return when a write is refused (the lease is lost). A write that fails is tried again next time."""
        job_id, fence, seconds = lease.job.id, lease.fence, self._config.job_lease
        step = min(self._config.job_progress_interval, seconds / 3)
        written, renewed = (-1, -1), time.monotonic()
        while True:
            try:
                now = (progress.bytes_done, progress.bytes_total)
                if now != written:
                    if not await self._catalog.set_job_progress(job_id, fence, *now):
                        return
                    written = now
                if time.monotonic() - renewed + step > seconds / 3:  # the next turn would be late
                    if not await self._catalog.renew_job(job_id, fence, seconds):
                        return
                    renewed = time.monotonic()
            except MregError as exc:
                log.warning("mirror job %s: cannot write its state: %s", lease.job.repo, exc)
            await asyncio.sleep(step)

    def _landed(self, job: MirrorJob, commit: str, path: str) -> None:
        if is_model_file(path) or path == CONFIG:
            self._commits.index_later(job.repo, commit)


def sleep_for(jobs: list[MirrorJob], now: datetime, poll: float) -> float:
    """Seconds until the next scheduled sync or the end of a running job's lease, at most ``poll``. Jobs
    already due but waiting for a worker do not count: a worker finishing wakes the scheduler."""
    later = [t for j in jobs for t in (j.next_sync, j.lease_until) if t is not None and t > now]
    until = min(later, default=now + timedelta(seconds=poll)) - now
    return min(max(until.total_seconds(), 0.01), poll)
