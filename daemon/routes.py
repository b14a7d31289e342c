"""Every route of the daemon, in one table, and the one place errors become answers.

aiohttp routes ``/healthz`` and ``/metrics``; everything else goes to ``dispatch``, which routes Hub
paths by their literal markers (``hubpath``) through ``HUB_ROUTES``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from registry.errors import MregError, UsageError

from . import api, convert, modelfiles, resolve
from .answers import for_error, hub_error
from .hubpath import HubPath, parse_hub_path
from .state import MIRROR
from .upstream import UpstreamRefused

HubHandler = Callable[[web.Request, HubPath], Awaitable[web.StreamResponse]]

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

NOT_FOUND = "Sorry, we can't find the page you are looking for."


async def healthz(request: web.Request) -> web.Response:
    """Liveness, and whether upstream is currently reachable."""
    upstream = request.app[MIRROR].upstream
    return web.json_response({"status": "ok", "upstream": upstream.endpoint, "upstream_available": upstream.available,
                              "offline": upstream.offline})


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
        return hub_error(400, None, str(exc))
    handler = HUB_ROUTES.get((hub.kind, request.method)) if hub is not None else None
    if hub is None or handler is None:
        return hub_error(404, None, NOT_FOUND)
    request.app[MIRROR].metrics.requests[hub.kind] += 1
    try:
        return await handler(request, hub)
    except UpstreamRefused as refused:
        return refused.answer.response(head=request.method == "HEAD")
    except MregError as exc:
        return for_error(exc)


def add_routes(app: web.Application) -> None:
    """Install the daemon's routes on ``app``."""
    app.router.add_get("/healthz", healthz, allow_head=False)
    app.router.add_get("/metrics", metrics, allow_head=False)
    app.router.add_get("/v1/repos/{repo:[^/]+(?:/[^/]+)?}/modelfile", modelfiles.modelfile, allow_head=False)
    convert.add_routes(app)
    app.router.add_route("*", "/{tail:.*}", dispatch)
