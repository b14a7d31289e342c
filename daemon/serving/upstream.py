"""Talking to the upstream hub on a client's behalf, with the client's own token.

``Upstream.call`` sends one request to the upstream endpoint and returns its answer whole (metadata
is small); it never follows redirects. A connection failure is retried once, then upstream counts as
down for ``down_for`` seconds: every call fails at once with ``UpstreamUnavailableError`` and the
daemon answers from its store. ``--offline`` keeps it down for good. Answers of 5xx count as
unavailable too (the store may still answer); 4xx answers are the caller's to see (``UpstreamRefused``).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from mreg.registry.errors import UpstreamUnavailableError
from mreg.registry.upstream.http import RetryPolicy
from mreg.registry.upstream.hub import HubClient

MAX_ANSWER_BYTES = 256 * 1024 * 1024
CONNECT_ATTEMPTS = 2
TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
DOWNLOAD_RETRY = RetryPolicy(attempts=4, backoff=0.5, max_backoff=5.0, max_retry_after=30.0)
FORWARDED = ("Content-Type", "X-Error-Code", "X-Error-Message", "X-Repo-Commit", "Retry-After", "RateLimit",
             "RateLimit-Policy")
"""The upstream headers a client sees on passed-through answers (never X-Xet-*, never Set-Cookie)."""


@dataclass(frozen=True)
class Answer:
    """An upstream answer: status, the forwarded headers, the raw Link header and the body."""

    status: int
    headers: dict[str, str]
    link: str | None
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return json.loads(self.body)

    def response(self, head: bool = False) -> web.Response:
        """This answer for the client (an empty error body, as a HEAD gets, says the error in JSON)."""
        if head:
            return web.Response(status=self.status, headers=self.headers)
        if not self.body and "X-Error-Message" in self.headers:
            body = json.dumps({"error": self.headers["X-Error-Message"]}).encode()
            return web.Response(status=self.status, headers={**self.headers, "Content-Type": "application/json"},
                                body=body)
        return web.Response(status=self.status, headers=self.headers, body=self.body)


class UpstreamRefused(Exception):
    """Upstream said no (4xx): its answer goes to the client unchanged."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.status)
        self.answer = answer


def bearer_token(request: web.Request) -> str | None:
    """The client's Bearer token, or None (other schemes count as anonymous)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def token_key(token: str | None) -> str:
    """What identifies a caller in the daemon's memory: a sha256 of the token, never the token."""
    return hashlib.sha256(token.encode()).hexdigest() if token else "anonymous"


class Upstream:
    """The upstream endpoint, its liveness, and the HTTP session the daemon shares."""

    def __init__(self, session: aiohttp.ClientSession, endpoint: str, offline: bool, down_for: float) -> None:
        self.session = session
        self.endpoint = endpoint.rstrip("/")
        self.offline = offline
        self._down_for = down_for
        self._down_until = 0.0

    @property
    def available(self) -> bool:
        """False when offline, or while upstream is considered down."""
        return not self.offline and time.monotonic() >= self._down_until

    def client(self, token: str | None) -> HubClient:
        """A Hub client speaking for one caller (their token; downloads retry a little)."""
        return HubClient(self.session, self.endpoint, token, DOWNLOAD_RETRY)

    @property
    def unavailable_reason(self) -> str:
        return "the mirror runs offline" if self.offline else f"{self.endpoint} is unreachable"

    def _check(self) -> None:
        if not self.available:
            raise UpstreamUnavailableError(self.unavailable_reason)

    def mark_down(self) -> None:
        """Answer from the store alone for the next ``down_for`` seconds."""
        self._down_until = time.monotonic() + self._down_for

    async def call(self, method: str, path: str, token: str | None, body: bytes | None = None,
                   content_type: str | None = None) -> Answer:
        """Send ``method path`` (path and query, as raw as the client sent them) to upstream."""
        self._check()
        headers = {"Accept-Encoding": "identity", "User-Agent": "mreg-serve"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if content_type:
            headers["Content-Type"] = content_type
        url = URL(self.endpoint + path, encoded=True)
        failure = ""
        for _ in range(CONNECT_ATTEMPTS):  # a pooled connection may have died: try a fresh one
            try:
                answer = await self._send(method, url, headers, body)
                break
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                failure = type(exc).__name__
        else:
            self.mark_down()
            raise UpstreamUnavailableError(f"{self.endpoint} is unreachable ({failure})")
        if answer.status >= 500:
            raise UpstreamUnavailableError(f"{self.endpoint} answered HTTP {answer.status}")
        return answer

    async def _send(self, method: str, url: URL, headers: dict[str, str], body: bytes | None) -> Answer:
        async with self.session.request(method, url, headers=headers, data=body, allow_redirects=False,
                                        timeout=TIMEOUT) as resp:
            forwarded = {k: resp.headers[k] for k in FORWARDED if k in resp.headers}
            return Answer(resp.status, forwarded, resp.headers.get("Link"), await _read(resp))


async def _read(resp: aiohttp.ClientResponse) -> bytes:
    chunks, size = [], 0
    async for chunk in resp.content.iter_any():
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise aiohttp.ClientPayloadError(f"answer larger than {MAX_ANSWER_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
