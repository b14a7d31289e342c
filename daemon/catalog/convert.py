"""``POST /v1/convert {"repo", "quant"[, "revision"]}``: convert a repo's safetensors to a GGUF in the
mirror's store, as a background job; ``GET /v1/convert/{id}`` says how it went.

A job is keyed by repo, commit and quant: asking again while one runs (or after it finished) gives
the same job; a failed one is started again. The caller's access is checked as for file downloads.
The jobs live in the catalog, so a restarted daemon still reports them; one left running by a daemon
that stopped is reported failed (asking again starts it anew). Only the running tasks are this
process's own. The Modelfile route converts the same way when a repo has no GGUF anywhere
(``registry.gguf.pull``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from mreg.registry.catalog import ConvertJob
from mreg.registry.convert.derive import convert_repo
from mreg.registry.convert.mixes import Mix, parse_mix
from mreg.registry.errors import MregError, UsageError
from mreg.registry.repo import RepoRef

from mreg.daemon.catalog.requests import json_object
from mreg.daemon.hub.answers import for_error, hub_error
from mreg.daemon.state import MIRROR, Mirror
from mreg.daemon.serving.upstream import bearer_token

INTERRUPTED = "interrupted: the daemon stopped before the conversion finished; ask again"


class Tasks:
    """This daemon's running conversions, by job id (the jobs themselves are in the catalog)."""

    def __init__(self) -> None:
        self.running: dict[str, asyncio.Task[None]] = {}

    def start(self, mirror: Mirror, job: ConvertJob, mix: Mix, token: str | None, upstream: str | None) -> None:
        """Run ``job`` in the background (fetching from the upstream named ``upstream``), recording how it
        ends in the catalog."""

        async def run() -> None:
            try:
                with mirror.budget.using(job.repo, job.commit):  # the size budget keeps the source meanwhile
                    result = await convert_repo(job.repo, mix, revision=job.commit,
                                                client=mirror.upstream.client(token, upstream),
                                                store=mirror.store, catalog=mirror.catalog,
                                                offline=not mirror.upstream.member(upstream).available)
                await mirror.catalog.finish_convert_job(job.id, result.path.name, result.sha256, result.size)
            except MregError as exc:
                await mirror.catalog.fail_convert_job(job.id, str(exc))
            finally:
                self.running.pop(job.id, None)

        self.running[job.id] = asyncio.create_task(run())

    async def close(self, _: web.Application) -> None:
        for task in list(self.running.values()):
            task.cancel()


TASKS = web.AppKey("convert_tasks", Tasks)


def answer(mirror: Mirror, job: ConvertJob) -> dict[str, Any]:
    """The JSON a job is reported as."""
    data: dict[str, Any] = {"id": job.id, "repo": job.repo.repo_id, "commit": job.commit, "quant": job.quant,
                            "status": job.status}
    if job.status == "complete" and job.name is not None:
        path = mirror.store.derived_dir(job.repo, job.commit) / job.name
        data.update(path=str(path), sha256=job.sha256, size=job.size)
    if job.error is not None:
        data["error"] = job.error
    return data


async def _body(request: web.Request) -> dict[str, Any]:
    """The request's ``{"repo", "quant"[, "revision"]}`` (UsageError when it is not that)."""
    body = await json_object(request)
    if not isinstance(body.get("repo"), str) or not isinstance(body.get("quant"), str):
        raise UsageError('expected a JSON object {"repo": "org/name", "quant": "q4_k_m"}')
    return body


async def start(request: web.Request) -> web.Response:
    mirror = request.app[MIRROR]
    token = bearer_token(request)
    try:
        body = await _body(request)
        mix = parse_mix(body["quant"])
        repo = RepoRef.parse(body["repo"])
        commit = await mirror.refs.resolve(repo, str(body.get("revision") or "main"), token)
        meta = await mirror.commits.get(repo, commit, token)
        refusal = await mirror.access.refusal(meta, "", token)
        if refusal is not None:
            return refusal.response()
    except MregError as exc:
        return for_error(exc)
    try:
        job, new = await mirror.catalog.start_convert_job(repo, commit, mix.label)
    except MregError as exc:
        return for_error(exc)
    if new:
        request.app[TASKS].start(mirror, job, mix, token, meta.upstream)
    return web.json_response(answer(mirror, job), status=200 if job.status == "complete" else 202)


async def status(request: web.Request) -> web.Response:
    mirror = request.app[MIRROR]
    try:
        job = await mirror.catalog.convert_job(request.match_info["id"])
    except MregError as exc:
        return for_error(exc)
    if job is None:
        return hub_error(404, None, "no such conversion job")
    return web.json_response(answer(mirror, job))


async def _jobs_context(app: web.Application) -> AsyncIterator[None]:
    """At start, report the jobs a stopped daemon left running as failed."""
    await app[MIRROR].catalog.fail_running_convert_jobs(INTERRUPTED)
    yield


def add_jobs(app: web.Application) -> None:
    """The running conversions the conversion routes share (stopped on shutdown), and the start-up report of
    jobs a stopped daemon left running."""
    app[TASKS] = Tasks()
    app.cleanup_ctx.append(_jobs_context)
    app.on_shutdown.append(app[TASKS].close)
