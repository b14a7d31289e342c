"""The daemon's own answers, shaped as the Hub's: JSON bodies and ``X-Error-*`` headers."""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from mreg.registry.errors import (
    MregError,
    UpstreamError,
    UpstreamUnavailableError,
    UsageError,
)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def header_text(value: str) -> str:
    """``value`` fit for an HTTP header: control characters (CR, LF, NUL, DEL…) become one space."""
    return _CONTROL.sub(" ", value)


def hub_error(status: int, code: str | None, message: str, commit: str | None = None) -> web.Response:
    """An error as the Hub sends it: ``{"error": ...}`` plus X-Error-Code / X-Error-Message (/ X-Repo-Commit)."""
    headers = {"X-Error-Message": header_text(message)}
    if code:
        headers["X-Error-Code"] = header_text(code)
    if commit:
        headers["X-Repo-Commit"] = commit
    return web.json_response({"error": message}, status=status, headers=headers)


def json_answer(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer (compact, like the Hub's) with extra headers."""
    body = json.dumps(data, separators=(",", ":")).encode()
    return web.Response(status=status, body=body, headers={**(headers or {}), "Content-Type": "application/json"})


def error_status(exc: MregError) -> tuple[int, str]:
    """The status and message of an error raised before any body was sent (the one place errors become
    statuses; each protocol shapes them its own way)."""
    if isinstance(exc, UpstreamUnavailableError):
        return 504, f"mirror: {exc}"
    if isinstance(exc, UsageError):
        return 400, str(exc)
    if isinstance(exc, UpstreamError):
        return 502, f"mirror: {exc}"
    return 500, f"mirror: {exc}"


def for_error(exc: MregError) -> web.Response:
    """The Hub-shaped answer to an error raised before any body was sent."""
    status, message = error_status(exc)
    return hub_error(status, None, message)
