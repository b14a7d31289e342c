"""The daemon's own answers, shaped as the Hub's: JSON bodies and ``X-Error-*`` headers."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from mreg.registry.errors import MregError, UpstreamRefusedError

from mreg.daemon.serving.upstream import Answer, header_text


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


def error_message(exc: MregError) -> str:
    """An error's line as the Hub and ModelScope routes say it: a 5xx names the mirror as the one failing."""
    return f"mirror: {exc}" if exc.http_status >= 500 else str(exc)


def for_error(exc: MregError, head: bool = False, commit: str | None = None) -> web.Response:
    """The Hub-shaped answer to an error raised before any body was sent: upstream's own refusal passed
    on unchanged, else the error's status and code (``registry.errors``) and its message."""
    if isinstance(exc, UpstreamRefusedError):
        return Answer.passed_on(exc).response(head)
    return hub_error(exc.http_status, exc.code, error_message(exc), commit)
