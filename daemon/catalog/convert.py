"""``POST /v1/convert {"repo", "quant"[, "revision"]}``: convert a repo's safetensors to a GGUF in the
mirror's store, as a background job; ``GET /v1/convert/{id}`` says how it went.

A job is keyed by repo, commit and quant: asking again while one runs (or after it finished) gives
the same job; a failed one is started again. The caller's access is checked as for file downloads.
The Modelfile route converts the same way when a repo has no GGUF anywhere (``registry.gguf.pull``).
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from mreg.registry.convert.derive import Converted, convert_repo
from mreg.registry.convert.mixes import parse_mix
from mreg.registry.errors import MregError, UsageError
from mreg.registry.repo import RepoRef

from mreg.daemon.hub.answers import for_error, hub_error
from mreg.daemon.state import MIRROR
from mreg.daemon.serving.upstream import UpstreamRefused, bearer_token


@dataclass
class Job:
    """One conversion: ``running``, then ``complete`` (with ``result``) or ``failed`` (with ``error``)."""

    id: str
    repo: RepoRef
    commit: str
    quant: str
    status: str = "running"
    result: Converted | None = None
    error: str | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def answer(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "repo": self.repo.repo_id, "commit": self.commit, "quant": self.quant,
                                "status": self.status}
        if self.result is not None:
            data.update(path=str(self.result.path), sha256=self.result.sha256, size=self.result.size)
        if self.error is not None:
            data["error"] = self.error
        return data


class Jobs:
    """The daemon's conversion jobs, by id and by (repo, commit, quant)."""

    def __init__(self) -> None:
        self.by_id: dict[str, Job] = {}
        self.by_key: dict[tuple[RepoRef, str, str], Job] = {}

    async def close(self, _: web.Application) -> None:
        for job in self.by_id.values():
            if job.task is not None:
                job.task.cancel()


JOBS = web.AppKey("convert_jobs", Jobs)


async def start(request: web.Request) -> web.Response:
    mirror, jobs = request.app[MIRROR], request.app[JOBS]
    token = bearer_token(request)
    try:
        body = await request.json()
        if not isinstance(body, dict) or not isinstance(body.get("repo"), str) or not isinstance(body.get("quant"), str):
            raise UsageError('expected a JSON object {"repo": "org/name", "quant": "q4_k_m"}')
        mix = parse_mix(body["quant"])
        repo = RepoRef.parse(body["repo"])
        commit = await mirror.refs.resolve(repo, str(body.get("revision") or "main"), token)
        refusal = await mirror.access.refusal(await mirror.commits.get(repo, commit, token), "", token)
        if refusal is not None:
            return refusal.response()
    except UpstreamRefused as refused:
        return refused.answer.response()
    except ValueError:
        return hub_error(400, None, "the body is not JSON")
    except UsageError as exc:
        return hub_error(400, None, str(exc))
    except MregError as exc:
        return for_error(exc)
    key = (repo, commit, mix.label)
    job = jobs.by_key.get(key)
    if job is None or job.status == "failed":
        job = Job(secrets.token_hex(8), repo, commit, mix.label)
        jobs.by_id[job.id] = jobs.by_key[key] = job

        async def run() -> None:
            try:
                job.result = await convert_repo(repo, mix, revision=commit, client=mirror.upstream.client(token),
                                                store=mirror.store, catalog=mirror.catalog,
                                                offline=not mirror.upstream.available)
                job.status = "complete"
            except MregError as exc:
                job.status, job.error = "failed", str(exc)

        job.task = asyncio.create_task(run())
    return web.json_response(job.answer(), status=200 if job.status == "complete" else 202)


async def status(request: web.Request) -> web.Response:
    job = request.app[JOBS].by_id.get(request.match_info["id"])
    if job is None:
        return hub_error(404, None, "no such conversion job")
    return web.json_response(job.answer())


def add_jobs(app: web.Application) -> None:
    """The job table the conversion routes share (closed on shutdown)."""
    app[JOBS] = Jobs()
    app.on_shutdown.append(app[JOBS].close)
