"""The catalog page: server-side HTML over the catalog API's own dicts (``catalog_json``), no build step.

    GET /                          every repo the caller may see, with sizes, parameters and quants,
                                   and the mirror jobs with their live progress
    GET /-/repos/{repo}[?revision=R&repo_type=T]   one revision: how to fetch it, quants, tensors,
                                                   GGUF metadata, files, revisions

Templates (``daemon/catalog/templates``) are Jinja2 with autoescaping on: every name, path and metadata
string from upstream is escaped. Responses carry a Content-Security-Policy that runs only the
page's own script (by nonce) and connects only to the daemon. What a browser sees is what an
anonymous API caller sees (browsers send no Hub token).

Jobs are shown, and polled from ``/v1/jobs`` by a few lines of plain JS, when the admin token policy
lets a browser without a token read them (a daemon listening on loopback); otherwise
each repo shows its mirror status as ``/v1/repos`` has it, as of the page load.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from mreg.registry.errors import MregError
from mreg.registry.units import human_count, human_size

from mreg.daemon import admin
from mreg.daemon.catalog import api as catalog_api
from mreg.daemon.catalog import shapes as catalog_json
from mreg.daemon.catalog.api import Handler
from mreg.daemon.cross_site import own_origin
from mreg.daemon.catalog.jobs import job_json, readable_jobs
from mreg.daemon.state import MIRROR

FILES_SHOWN = 2000
"""Files listed on a detail page; the rest are in ``/v1/repos/{repo}/files``."""


def page_url(item: Mapping[str, Any], revision: str | None = None) -> str:
    """The detail page of a repo dict (``repo``, ``repo_type``), at ``revision`` if given."""
    query = {k: v for k, v in (("revision", revision), ("repo_type", item["repo_type"])) if v and v != "model"}
    return f"/-/repos/{item['repo']}" + (f"?{urlencode(query)}" if query else "")


def mirror_status(mirror: Mapping[str, Any]) -> str:
    """A mirror status dict as a word, with the share done while it runs: ``running 42%``."""
    running = mirror["status"] in ("queued", "running") and mirror["bytes_total"]
    return f"{mirror['status']} {100 * mirror['bytes_done'] // mirror['bytes_total']}%" if running else mirror["status"]


def interval(seconds: float) -> str:
    """Seconds as the largest whole unit: ``6h``, ``90s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


ENVIRONMENT = jinja2.Environment(loader=jinja2.PackageLoader("mreg.daemon.catalog", "templates"), autoescape=True,
                                 undefined=jinja2.StrictUndefined)
ENVIRONMENT.filters.update(size=human_size, count=human_count, page_url=page_url, mirror_status=mirror_status,
                           interval=interval)


def render(request: web.Request, template: str, status: int = 200, **values: Any) -> web.Response:
    """``template`` rendered with ``values``, the daemon's upstream and a fresh script nonce."""
    upstream = request.app[MIRROR].upstream
    nonce = secrets.token_urlsafe(16)
    html = ENVIRONMENT.get_template(template).render(nonce=nonce, upstream=upstream.endpoint,
                                                     online=upstream.available, base_url=own_origin(request), **values)
    policy = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; "
              "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8",
                        headers={"Content-Security-Policy": policy, "X-Content-Type-Options": "nosniff",
                                 "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"})


def jobs_readable(request: web.Request) -> bool:
    """Whether a browser (no token) may read ``/v1/jobs`` under the admin token policy."""
    config = request.app[MIRROR].config
    return admin.policy(config.host, config.admin_token, mutation=False) is admin.Verdict.ALLOW


def html_errors(handler: Handler) -> Handler:
    """``handler`` with its errors rendered as an error page of their status, code and message."""

    async def page(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except MregError as exc:
            return render(request, "error.html", exc.http_status, error=exc)

    return page


@html_errors
async def index(request: web.Request) -> web.Response:
    repos = await catalog_api.repos_listing(request)
    jobs = [job_json(job) for job in await readable_jobs(request)] if jobs_readable(request) else None
    return render(request, "index.html", repos=repos, jobs=jobs, stored_size=sum(r["stored_size"] for r in repos),
                  budget=_budget(request))


def _budget(request: web.Request) -> dict[str, float] | None:
    """The size budget's bar, as of the last round: percents of the budget held by kept revisions (pinned,
    mirrored, in use), by the rest, and free; None without a budget."""
    mirror = request.app[MIRROR]
    limit = mirror.config.budget.max_size
    if not limit:
        return None
    used, kept = mirror.metrics.store_bytes, min(mirror.metrics.kept_bytes, mirror.metrics.store_bytes)
    percent = {"kept": 100 * kept / limit, "other": 100 * (used - kept) / limit}
    return {**{k: round(min(v, 100.0), 2) for k, v in percent.items()}, "used": used, "kept_bytes": kept,
            "limit": limit, "free": round(max(0.0, 100.0 - percent["kept"] - percent["other"]), 2)}


@html_errors
async def repo(request: web.Request) -> web.Response:
    detail = await catalog_api.detail_of(request)
    job = await request.app[MIRROR].catalog.job(detail.overview.summary.repo)
    data = catalog_json.detail_json(detail, job, own_origin(request))
    files = catalog_json.files_json(detail.overview.summary.repo, data["commit"], detail.files, detail.headers)
    query = urlencode({"revision": data["commit"], **({"repo_type": data["repo_type"]}
                                                      if data["repo_type"] != "model" else {})})
    return render(request, "repo.html", r=data, files=files["files"][:FILES_SHOWN], live_jobs=jobs_readable(request),
                  more_files=max(0, len(detail.files) - FILES_SHOWN),
                  api_url=f"/v1/repos/{data['repo']}?{query}", files_url=f"/v1/repos/{data['repo']}/files?{query}",
                  tensors_url=f"/v1/repos/{data['repo']}/tensors?{query}")
