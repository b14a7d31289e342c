"""Reading the JSON bodies of the daemon's own POST routes: bounded, and every malformed body a UsageError."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from mreg.registry.errors import UsageError

MAX_BODY = 64 * 1024
"""The largest body a ``/v1`` route reads."""


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request's body as a JSON object (an empty body is ``{}``)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise UsageError("the request body is too large")
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise UsageError("the request body is too large")
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nesting deeper than Python's stack
        raise UsageError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise UsageError("the request body must be a JSON object")
    try:
        json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # a lone surrogate (``"\ud800"``) is valid JSON but no text
        raise UsageError("the request body holds a string that is not Unicode text (a lone surrogate)") from None
    return body
