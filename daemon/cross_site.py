"""Refusing cross-site requests: a web page must not make the mirror act (add a job, convert, delete).

With no admin token on loopback (the default) the ``/v1`` routes that change things need no credential,
so a page the operator visits could send them. Browsers name the page's origin in ``Origin`` on every
request that changes something, and send a cross-site POST without a preflight only with a form or text
content type. So: a state-changing request whose ``Origin`` is not the daemon's own is refused (403),
and a POST to a route of the daemon's own API must say ``Content-Type: application/json`` (415). Clients that are
not browsers send no ``Origin`` and are unaffected; the Hub's routes keep their own content types.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from mreg.daemon.hub.answers import hub_error

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OWN_API = "/v1/"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def own_origin(request: web.Request) -> str:
    """The daemon's origin as the client reached it (``scheme://host[:port]``): what its pages' links
    start with, and the ``Origin`` its own pages send."""
    return f"{request.scheme}://{request.host}"


@web.middleware
async def refuse_cross_site(request: web.Request, handler: Handler) -> web.StreamResponse:
    """403 for a state-changing request from another origin; 415 for a non-JSON POST to ``/v1``."""
    if request.method in SAFE_METHODS:
        return await handler(request)
    origin = request.headers.get("Origin")
    if origin is not None and origin.strip().lower() != own_origin(request).lower():
        return hub_error(403, None, "cross-site requests are refused: this request came from another origin")
    takes_post = request.match_info.route.method == "POST"  # not a 405, nor a protocol's catch-all
    if takes_post and request.path.startswith(OWN_API) and request.content_type != "application/json":
        return hub_error(415, None, "send the request body as JSON (Content-Type: application/json)")
    return await handler(request)
