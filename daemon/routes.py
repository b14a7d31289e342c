"""Every route of the daemon, in one table, and the one place errors become answers.

aiohttp routes the daemon's own paths (``OWN_ROUTES``: operators' ``/healthz`` and ``/metrics``, the
catalog API under ``/v1`` with ``/openapi.json``, which documents exactly those (a test holds them
together), the catalog page ``/`` and ``/-/repos/...``); ``/api/v1/…`` goes to ``dispatch_modelscope``,
which routes ModelScope paths (``mspath``) through ``MODELSCOPE_ROUTES``; everything else goes to
``dispatch``, which routes Hub paths by their literal markers (``hubpath``) through ``HUB_ROUTES``.
A path any of them knows, asked with a method it does not take, is answered 405 with ``Allow`` (in that
surface's error shape; the own routes' GETs take HEAD too).
Pages live under ``/-/``: no Hub path starts with ``-`` (repo ids start with a letter or digit), so they
can never shadow one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from aiohttp import web

from mreg.registry.errors import MethodNotAllowedError, MregError, UsageError

from mreg.daemon.catalog import api as catalog_api
from mreg.daemon.catalog import convert, modelfiles, openapi, pages
from mreg.daemon.catalog import jobs, pins
from mreg.daemon.hub import metadata as api
from mreg.daemon.hub import resolve
from mreg.daemon.modelscope import routes as modelscope_api
from mreg.daemon.hub.answers import for_error, hub_error
from mreg.daemon.hub.paths import HubPath, parse_hub_path
from mreg.daemon.modelscope.paths import PREFIX as MODELSCOPE_PREFIX
from mreg.daemon.modelscope.paths import MsPath, parse_ms_path
from mreg.daemon.state import MIRROR

HubHandler = Callable[[web.Request, HubPath], Awaitable[web.StreamResponse]]
MsHandler = Callable[[web.Request, MsPath], Awaitable[web.StreamResponse]]

HUB_ROUTES: dict[tuple[str, str], HubHandler] = {
    ("search", "GET"): api.search,
    ("info", "GET"): api.info,
    ("info", "HEAD"): api.info,
    ("tree", "GET"): api.tree,
    ("paths-info", "POST"): api.paths_info,
    ("refs", "GET"): api.refs,
    ("whoami", "GET"): api.whoami,
    ("resolve", "GET"): resolve.resolve,
    ("resolve", "HEAD"): resolve.resolve,
}
"""(route kind, method) → handler; the kinds are those of ``hubpath.HubPath``."""

MODELSCOPE_ROUTES: dict[tuple[str, str], MsHandler] = {
    ("info", "GET"): modelscope_api.info,
    ("revisions", "GET"): modelscope_api.revisions,
    ("files", "GET"): modelscope_api.files,
    ("file", "GET"): modelscope_api.file,
    ("file", "HEAD"): modelscope_api.file,
    ("acceleration", "GET"): modelscope_api.acceleration,
}
"""(route kind, method) → handler; the kinds are those of ``mspath.MsPath``."""

REPO = "{repo:[^/]+(?:/[^/]+)?}"
"""A repo id in a daemon path: ``name`` or ``org/name`` (validated by ``RepoRef.parse``)."""
NOT_FOUND = "Sorry, we can't find the page you are looking for."


def refused_method(method: str, allowed: Iterable[str]) -> MethodNotAllowedError:
    """The error for ``method`` on a route that takes only ``allowed``."""
    methods = tuple(sorted(set(allowed)))
    return MethodNotAllowedError(f"method {method} is not allowed here: use {', '.join(methods)}", methods)


def with_allow(response: web.Response, exc: MethodNotAllowedError) -> web.Response:
    """``response`` (a surface's answer to ``exc``) with the ``Allow`` header the 405 must carry."""
    response.headers["Allow"] = ", ".join(exc.allowed)
    return response


async def healthz(request: web.Request) -> web.Response:
    """Liveness, and whether each upstream is currently reachable."""
    upstream = request.app[MIRROR].upstream
    members = [{"name": m.name, "kind": m.kind, "url": m.endpoint, "available": m.available,
                "down": m.outages.down()} for m in upstream.members]
    return web.json_response({"status": "ok", "upstream": upstream.endpoint, "upstream_available": upstream.available,
                              "offline": upstream.offline, "upstreams": members})


async def metrics(request: web.Request) -> web.Response:
    """Counters in the Prometheus text format."""
    return web.Response(text=request.app[MIRROR].metrics.render(), content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


async def dispatch(request: web.Request) -> web.StreamResponse:
    """Route a Hub path and turn the errors a handler raises before answering into Hub-shaped answers."""
    if not request.raw_path.startswith("/") or request.raw_path.startswith("//"):
        return hub_error(404, None, NOT_FOUND)  # only origin-form paths are ever sent upstream
    try:
        hub = parse_hub_path(request.raw_path)
    except UsageError as exc:
        return for_error(exc)
    if hub is None:
        return hub_error(404, None, NOT_FOUND)
    handler = HUB_ROUTES.get((hub.kind, request.method))
    if handler is None:
        refused = refused_method(request.method, (method for kind, method in HUB_ROUTES if kind == hub.kind))
        return with_allow(for_error(refused), refused)
    request.app[MIRROR].metrics.requests[hub.kind] += 1
    try:
        return await handler(request, hub)
    except MregError as exc:
        return for_error(exc, head=request.method == "HEAD")


async def dispatch_modelscope(request: web.Request) -> web.StreamResponse:
    """Route a ModelScope path and turn the errors a handler raises before answering into ModelScope-shaped answers."""
    try:
        ms = parse_ms_path(request.raw_path)
    except UsageError as exc:
        return modelscope_api.for_error(exc)
    if ms is None:
        return modelscope_api.ms_error(404, NOT_FOUND)
    handler = MODELSCOPE_ROUTES.get((ms.kind, request.method))
    if handler is None:
        refused = refused_method(request.method, (method for kind, method in MODELSCOPE_ROUTES if kind == ms.kind))
        return with_allow(modelscope_api.for_error(refused), refused)
    request.app[MIRROR].metrics.requests[f"modelscope-{ms.kind}"] += 1
    try:
        return await handler(request, ms)
    except MregError as exc:
        return modelscope_api.for_error(exc)


@dataclass(frozen=True)
class Route:
    """One of the daemon's own routes."""

    method: str
    path: str
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]


OWN_ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", healthz),
    Route("GET", "/metrics", metrics),
    Route("GET", "/openapi.json", openapi.document),
    Route("GET", "/v1/repos", catalog_api.repos),
    # /v1/repos/{repo} last: a one-segment repo id followed by /files would match it too.
    Route("GET", f"/v1/repos/{REPO}/files", catalog_api.files),
    Route("GET", f"/v1/repos/{REPO}/tensors", catalog_api.tensors),
    Route("GET", f"/v1/repos/{REPO}/modelfile", modelfiles.modelfile),
    Route("GET", f"/v1/repos/{REPO}", catalog_api.repo),
    Route("GET", "/v1/search", catalog_api.search_route),
    Route("GET", "/v1/jobs", jobs.guarded(jobs.list_jobs, mutation=False)),
    Route("POST", "/v1/jobs", jobs.guarded(jobs.add_job, mutation=True)),
    Route("POST", "/v1/jobs/sync", jobs.guarded(jobs.sync_all, mutation=True)),
    Route("POST", f"/v1/jobs/{REPO}/sync", jobs.guarded(jobs.sync_job, mutation=True)),
    Route("GET", f"/v1/jobs/{REPO}", jobs.guarded(jobs.show_job, mutation=False)),
    Route("DELETE", f"/v1/jobs/{REPO}", jobs.guarded(jobs.remove_job, mutation=True)),
    Route("GET", "/v1/pins", jobs.guarded(pins.list_pins, mutation=False)),
    Route("POST", "/v1/pins", jobs.guarded(pins.add_pin, mutation=True)),
    Route("DELETE", "/v1/pins", jobs.guarded(pins.remove_pin, mutation=True)),
    Route("POST", "/v1/convert", convert.start),
    Route("GET", "/v1/convert/{id}", convert.status),
    Route("GET", "/", pages.index),
    Route("GET", f"/-/repos/{REPO}", pages.repo),
)
"""The daemon's own routes, in matching order (a GET answers HEAD too), before the protocols' catch-alls."""


def own_methods() -> dict[str, tuple[str, ...]]:
    """Each own path (in matching order) → the methods it takes."""
    methods: dict[str, tuple[str, ...]] = {}
    for route in OWN_ROUTES:
        also = ("HEAD",) if route.method == "GET" else ()
        methods[route.path] = (*methods.get(route.path, ()), route.method, *also)
    return methods


def method_not_allowed(allowed: tuple[str, ...]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The handler of an own path for the methods it does not take: 405 in the catalog API's error shape."""

    async def refuse(request: web.Request) -> web.StreamResponse:
        refused = refused_method(request.method, allowed)
        return with_allow(catalog_api.error_answer(refused), refused)

    return refuse


def add_routes(app: web.Application) -> None:
    """Install the daemon's routes on ``app``."""
    convert.add_jobs(app)
    for path, allowed in own_methods().items():
        for route in OWN_ROUTES:
            if route.path == path:
                app.router.add_route(route.method, path, route.handler)
                if route.method == "GET":
                    app.router.add_route("HEAD", path, route.handler)
        app.router.add_route("*", path, method_not_allowed(allowed))
    app.router.add_route("*", MODELSCOPE_PREFIX + "{tail:.*}", dispatch_modelscope)
    app.router.add_route("*", "/{tail:.*}", dispatch)
