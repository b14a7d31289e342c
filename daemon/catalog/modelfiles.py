"""``GET /v1/repos/{repo}/modelfile?quant=Q[&revision=R][&repo_type=T]``: an Ollama Modelfile for a
repo's GGUF, pulled into the mirror's store first (``registry.ollama.modelfile.prepare_modelfile``).

The caller's access is checked as for file downloads: a gated or private repo's Modelfile goes only
to callers upstream lets read its files. ``FROM`` names the GGUF by its path in the repo
(``./model-Q4_K_M.gguf``), for a client that downloads it beside the Modelfile: the daemon's own
filesystem is none of the caller's business.
"""

from __future__ import annotations

from dataclasses import replace

from aiohttp import web

from mreg.registry.errors import MregError, UsageError
from mreg.registry.ollama.modelfile import prepare_modelfile
from mreg.registry.ollama.modelfile.render import render
from mreg.registry.pull import PullOptions
from mreg.registry.repo import REPO_TYPES, RepoRef

from mreg.daemon.hub.answers import for_error
from mreg.daemon.state import MIRROR
from mreg.daemon.serving.upstream import bearer_token


async def modelfile(request: web.Request) -> web.Response:
    mirror = request.app[MIRROR]
    token = bearer_token(request)
    repo_type = request.query.get("repo_type", "model")
    revision = request.query.get("revision", "main")
    try:
        if repo_type not in REPO_TYPES:
            raise UsageError(f"unknown repo type {repo_type!r}")
        repo = RepoRef.parse(request.match_info["repo"], repo_type)
        commit = await mirror.refs.resolve(repo, revision, token)
        meta = await mirror.commits.get(repo, commit, token)
        refusal = await mirror.access.refusal(meta, "", token)
        if refusal is not None:
            return refusal.response()
        options = PullOptions(revision=commit, offline=not mirror.upstream.member(meta.upstream).available)
        prepared = await prepare_modelfile(repo, request.query.get("quant") or None, options,
                                           client=mirror.upstream.client(token, meta.upstream), store=mirror.store,
                                           catalog=mirror.catalog)
        relative = replace(prepared.modelfile, model=f"./{prepared.choice.quant.files[0]}")
        text = render(relative)  # rendering can fail too (a system prompt or licence no Modelfile can quote)
    except MregError as exc:
        return for_error(exc)
    return web.Response(text=text, content_type="text/plain", charset="utf-8",
                        headers={"X-Repo-Commit": commit, "X-Mreg-Quant": prepared.choice.quant.label})
