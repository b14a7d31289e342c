"""The daemon's mirror jobs: a scheduler that hands due jobs to a bounded pool of workers.

Jobs live in the catalog, so they outlive the daemon: at start, jobs a stopped (or killed) daemon
left ``running`` are queued again, and their downloads resume from the partial files' saved state.
A worker runs ``registry.jobs.mirror.sync_job`` (``mreg pull``'s code) under the shared bandwidth cap,
writes the job's progress to the catalog every ``job_progress_interval`` seconds, has each
weights file indexed as soon as it lands, and keeps the commit's repo info and listing (``kept``) so
the mirrored repo is answered while upstream is away.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from datetime import datetime, timedelta, timezone

from mreg.registry.catalog import Catalog, MirrorJob
from mreg.registry.catalog.models import utcnow
from mreg.registry.errors import MregError, RepoNotFoundError, UpstreamRefusedError, UpstreamUnavailableError
from mreg.registry.inspect.reading import is_model_file
from mreg.registry.inspect.repo import CONFIG
from mreg.registry.jobs.mirror import JobProgress, Synced, is_due, sync_job
from mreg.registry.store import Store
from mreg.registry.download.throttle import TokenBucket

from mreg.daemon.serving.commits import Commits
from mreg.daemon.config import ServeConfig
from mreg.daemon.serving.upstream import Upstream
from mreg.daemon.serving.upstreams import Upstreams

log = logging.getLogger("mreg.daemon")


class Mirroring:
    """The scheduler task and the running jobs' tasks; ``wake`` makes it look at the jobs now."""

    def __init__(self, config: ServeConfig, store: Store, catalog: Catalog, upstream: Upstreams,
                 commits: Commits) -> None:
        self._config, self._store, self._catalog, self._upstream = config, store, catalog, upstream
        self._commits = commits
        bucket = TokenBucket(config.max_bandwidth) if config.max_bandwidth else None
        self._tuning = dataclasses.replace(config.tuning, throttle=bucket.take if bucket else None)
        self._running: dict[int, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._scheduler: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Queue again the jobs a previous daemon left running, then start scheduling."""
        requeued = await self._catalog.requeue_running_jobs()
        if requeued:
            log.info("resuming %d mirror job(s) left running", requeued)
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
        """Stop scheduling, stop the running jobs and queue them again (their partial files stay)."""
        tasks = [t for t in (self._scheduler, *self._running.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if len(tasks) > 1:
            await self._catalog.requeue_running_jobs()

    async def _schedule(self) -> None:
        while True:
            self._wake.clear()
            try:
                jobs = await self._catalog.list_jobs()
                await self._start_due(jobs)
            except MregError as exc:
                log.error("mirror scheduler: %s", exc)
                jobs = []
            try:
                await asyncio.wait_for(self._wake.wait(), sleep_for(jobs, utcnow(), self._config.job_poll))
            except asyncio.TimeoutError:
                pass

    async def _start_due(self, jobs: list[MirrorJob]) -> None:
        now = utcnow()
        for job in sorted((j for j in jobs if is_due(j, now) and j.id not in self._running), key=_queue_order):
            if len(self._running) >= self._config.mirror_workers:
                return
            if await self._catalog.start_job(job.id):
                task = asyncio.create_task(self._work(job))
                self._running[job.id] = task
                task.add_done_callback(functools.partial(self._finished, job.id))

    def _finished(self, job_id: int, _task: "asyncio.Task[None]") -> None:
        self._running.pop(job_id, None)
        self.wake()  # a worker is free

    async def _work(self, job: MirrorJob) -> None:
        progress = JobProgress(lambda commit, path: self._landed(job, commit, path))
        reporter = asyncio.create_task(self._report(job.id, progress))
        try:
            synced, source = await self._sync(job, progress)
        except MregError as exc:
            log.warning("mirror job %s failed: %s", job.repo, exc)
            await self._catalog.fail_job(job.id, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 (a job's failure must be recorded, not kill the scheduler)
            log.exception("mirror job %s failed", job.repo)
            await self._catalog.fail_job(job.id, f"{type(exc).__name__}: {exc}")
            return
        finally:
            reporter.cancel()
        await self._keep_metadata(job, synced.commit, source)
        await self._catalog.set_job_progress(job.id, progress.bytes_done, progress.bytes_total)
        await self._catalog.finish_job(job.id, synced.commit)
        log.info("mirror job %s: at %s (%d bytes fetched)", job.repo, synced.commit[:12], synced.fetched)

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
                    await asyncio.wait_for(client.repo_info(job.repo, job.revision), self._config.start_timeout)
                synced = await sync_job(job, client=client, store=self._store, catalog=self._catalog,
                                        tuning=self._tuning, progress=progress, upstream=member.name)
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

    async def _report(self, job_id: int, progress: JobProgress) -> None:
        """Write the job's progress to the catalog while it changes."""
        written = (-1, -1)
        while True:
            now = (progress.bytes_done, progress.bytes_total)
            if now != written:
                await self._catalog.set_job_progress(job_id, *now)
                written = now
            await asyncio.sleep(self._config.job_progress_interval)

    def _landed(self, job: MirrorJob, commit: str, path: str) -> None:
        if is_model_file(path) or path == CONFIG:
            self._commits.index_later(job.repo, commit)


def sleep_for(jobs: list[MirrorJob], now: datetime, poll: float) -> float:
    """Seconds until the next scheduled sync, at most ``poll``. Jobs already due but waiting for a
    worker do not count: a worker finishing wakes the scheduler."""
    later = [j.next_sync for j in jobs if j.next_sync is not None and j.next_sync > now]
    until = min(later, default=now + timedelta(seconds=poll)) - now
    return min(max(until.total_seconds(), 0.01), poll)


def _queue_order(job: MirrorJob) -> tuple[bool, datetime]:
    """Queued jobs first (asked for now), then the longest overdue."""
    return (job.status != "queued", job.next_sync or datetime.min.replace(tzinfo=timezone.utc))
