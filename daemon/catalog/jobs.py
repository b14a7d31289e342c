"""``/v1/jobs``: the mirror job endpoints (JSON), behind the admin token policy of ``daemon.admin``.

    GET    /v1/jobs                      every job
    POST   /v1/jobs                      {repo, revision?, repo_type?, include?, exclude?, every?} → 201, the job
    POST   /v1/jobs/sync                 sync every job now → {"queued": n}
    GET    /v1/jobs/{repo}               one job            (``?repo_type=dataset`` for datasets)
    DELETE /v1/jobs/{repo}               stop mirroring it, cancelling a running sync (its files stay)
    POST   /v1/jobs/{repo}/sync          sync it now

``every`` is seconds (a number) or text like ``30m``, ``6h``, ``1d``, from ``--min-every`` (1m) to a year;
absent or null: sync once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from mreg.registry.catalog import MirrorJob
from mreg.registry.errors import MregError, UsageError
from mreg.registry.jobs.mirror import check_every
from mreg.registry.units import parse_interval
from mreg.registry.repo import RepoRef, check_revision

from mreg.daemon import admin, visibility
from mreg.daemon.catalog.requests import json_object
from mreg.daemon.hub.answers import for_error, hub_error, json_answer
from mreg.daemon.serving.upstream import bearer_token
from mreg.daemon.state import MIRROR

Handler = Callable[[web.Request], Awaitable[web.Response]]


def job_json(job: MirrorJob) -> dict[str, Any]:
    """A job as the API and ``mreg mirror ls --json`` show it (times are ISO 8601 UTC)."""
    return {
        "repo": job.repo.repo_id, "repo_type": job.repo.repo_type, "revision": job.revision,
        "include": list(job.include), "exclude": list(job.exclude), "every": job.every, "status": job.status,
        "bytes_done": job.bytes_done, "bytes_total": job.bytes_total, "commit": job.commit,
        "last_sync": job.last_sync.isoformat() if job.last_sync else None,
        "next_sync": job.next_sync.isoformat() if job.next_sync else None, "error": job.error,
        "replica": job.leased_by if job.status == "running" else None,
    }


def guarded(handler: Handler, mutation: bool) -> Handler:
    """``handler`` behind the admin policy, with mreg's errors turned into JSON answers."""

    async def guarded(request: web.Request) -> web.Response:
        config = request.app[MIRROR].config
        refused = admin.refusal(request, config.host, config.admin_token, mutation)
        if refused is not None:
            return refused
        try:
            return await handler(request)
        except MregError as exc:
            return for_error(exc)

    return guarded


def _repo(request: web.Request) -> RepoRef:
    return RepoRef.parse(request.match_info["repo"], request.query.get("repo_type", "model"))


def _globs(body: dict[str, Any], key: str) -> tuple[str, ...]:
    value = body.get(key) or []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{key!r} must be a glob or a list of globs")
    return tuple(value)


def _every(value: Any, minimum: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        return check_every(parse_interval(value), minimum)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return check_every(float(value), minimum)
    raise UsageError("'every' must be seconds or an interval like 6h")


async def readable_jobs(request: web.Request) -> list[MirrorJob]:
    """Every job for whoever may change them (the admin token; anyone, on loopback without one); for anyone
    else, the jobs of repos upstream lets the caller read (a gated or private repo's job, its commit and
    size, are the repo's secrets too)."""
    mirror = request.app[MIRROR]
    listed = await mirror.catalog.list_jobs()
    if admin.refusal(request, mirror.config.host, mirror.config.admin_token, mutation=True) is None:
        return listed  # whoever may change the jobs (the admin; anyone on loopback without a token) sees them all
    token = bearer_token(request)
    limit = asyncio.Semaphore(visibility.CONCURRENT_CHECKS)

    async def commit_of(job: MirrorJob) -> tuple[RepoRef, str]:
        return job.repo, job.commit or await mirror.refs.resolve(job.repo, job.revision, token)

    async def readable(job: MirrorJob) -> bool:
        async with limit:
            try:
                return await visibility.refusal(mirror, *await commit_of(job), token) is None
            except MregError:  # refused upstream, or cannot tell: not readable
                return False

    verdicts = await asyncio.gather(*(readable(job) for job in listed))
    return [job for job, ok in zip(listed, verdicts) if ok]


async def list_jobs(request: web.Request) -> web.Response:
    return json_answer([job_json(j) for j in await readable_jobs(request)])


async def add_job(request: web.Request) -> web.Response:
    mirror = request.app[MIRROR]
    body = await json_object(request)
    repo_id, repo_type, revision = body.get("repo"), body.get("repo_type") or "model", body.get("revision") or "main"
    if not (isinstance(repo_id, str) and isinstance(repo_type, str) and isinstance(revision, str)):
        raise UsageError("'repo' (and 'repo_type', 'revision' if given) must be strings")
    job = await mirror.catalog.add_job(RepoRef.parse(repo_id, repo_type), check_revision(revision),
                                       _globs(body, "include"), _globs(body, "exclude"),
                                       _every(body.get("every"), mirror.config.min_every))
    mirror.mirroring.wake()
    return json_answer(job_json(job), status=201)


async def show_job(request: web.Request) -> web.Response:
    job = await request.app[MIRROR].catalog.job(_repo(request))
    return json_answer(job_json(job)) if job else _no_job(request)


async def remove_job(request: web.Request) -> web.Response:
    mirror = request.app[MIRROR]
    repo = _repo(request)
    job = await mirror.catalog.job(repo)
    if job is None or not await mirror.catalog.remove_job(repo):
        return _no_job(request)
    await mirror.mirroring.stop_job(job.id)
    return json_answer({"removed": str(repo)})


async def sync_job(request: web.Request) -> web.Response:
    mirror = request.app[MIRROR]
    repo = _repo(request)
    if not await mirror.catalog.queue_jobs(repo):
        return _no_job(request)
    mirror.mirroring.wake()
    job = await mirror.catalog.job(repo)
    return json_answer(job_json(job)) if job else _no_job(request)


async def sync_all(request: web.Request) -> web.Response:
    mirror = request.app[MIRROR]
    count = await mirror.catalog.queue_jobs()
    mirror.mirroring.wake()
    return json_answer({"queued": count})


def _no_job(request: web.Request) -> web.Response:
    return hub_error(404, None, f"no mirror job for {request.match_info['repo']}")
