"""What every upstream client shares: one endpoint, one token, retries, and ranged GETs of files.

`UpstreamHTTP` sends requests to one endpoint with one optional token, which it attaches only to
requests for the endpoint's own origin (subclasses say how, in `_auth_headers`). 408/429/5xx answers
and connection failures are retried with exponential backoff (`RetryPolicy`), honouring ``Retry-After``.
`open_range` is the contract `registry.download.download_file` relies on: bytes ``[start, end)`` of
a `FileLocation`, checked to be exactly the range asked for.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import aiohttp
from yarl import URL

from mreg.registry.errors import LocationExpiredError, UpstreamError, UpstreamUnavailableError
from mreg.registry.upstream.client import FileLocation

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
MAX_REDIRECTS = 5
DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to retry transient failures; tests shrink these."""

    attempts: int = 6
    backoff: float = 0.5
    max_backoff: float = 20.0
    max_retry_after: float = 120.0
    statuses: frozenset[int] = RETRYABLE_STATUS
    """The answers retried (connection failures always are)."""

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.0), self.max_retry_after)
            except ValueError:
                pass
        return min(self.backoff * (2**attempt), self.max_backoff)


def same_origin(a: str, b: str) -> bool:
    """True when both URLs have the same scheme, host and port (a token may travel between them)."""
    ua, ub = urlsplit(a), urlsplit(b)
    return (ua.scheme, ua.hostname, ua.port) == (ub.scheme, ub.hostname, ub.port)


def redacted(url: str) -> str:
    """The URL without its query string, for messages (signed URLs carry signatures)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def content_range(value: str) -> tuple[int, int, int] | None:
    """(first, last, total) of a ``Content-Range: bytes a-b/n`` header, or None."""
    match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", value.strip())
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


async def read_body(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, whole, or its first ``limit + 1`` bytes when it is longer than ``limit``
    (``StreamReader.read(n)`` alone may return any part of it)."""
    body = bytearray()
    while len(body) <= limit:
        chunk = await resp.content.read(limit + 1 - len(body))
        if not chunk:
            break
        body += chunk
    return bytes(body)


class UpstreamHTTP:
    """An HTTP client bound to one upstream endpoint and its token."""

    def __init__(self, session: aiohttp.ClientSession, endpoint: str, token: str | None = None,
                 retry: RetryPolicy = RetryPolicy(), timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT) -> None:
        self._session = session
        self.endpoint = endpoint.rstrip("/")
        self._token = token
        self.retry = retry
        self.timeout = timeout
        """What a request waits for when its caller names no timeout."""

    @property
    def has_token(self) -> bool:
        return self._token is not None

    def _auth_headers(self, token: str) -> dict[str, str]:
        """The headers that carry the token to this upstream."""
        return {"Authorization": f"Bearer {token}"}

    def _headers(self, url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept-Encoding": "identity", "User-Agent": "mreg"}
        if self._token and same_origin(url, self.endpoint):
            headers.update(self._auth_headers(self._token))
        headers.update(extra or {})
        return headers

    async def send(self, method: str, url: str, headers: dict[str, str] | None = None,
                   timeout: aiohttp.ClientTimeout | None = None, data: bytes | None = None) -> aiohttp.ClientResponse:
        """One request, retried on connection failures and the policy's statuses (408/429/5xx unless told
        otherwise); redirects are not followed.

        The caller owns the returned response and must release it.
        """
        last = ""
        for attempt in range(self.retry.attempts):
            retry_after = None
            try:
                resp = await self._session.request(
                    method, URL(url, encoded=True), headers=self._headers(url, headers),
                    allow_redirects=False, timeout=timeout or self.timeout, data=data,
                )
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                last = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
            else:
                if resp.status not in self.retry.statuses:
                    return resp
                last = f"HTTP {resp.status}"
                retry_after = resp.headers.get("Retry-After")
                resp.release()
            if attempt + 1 < self.retry.attempts:
                await asyncio.sleep(self.retry.delay(attempt, retry_after))
        raise UpstreamUnavailableError(
            f"{method} {redacted(url)} failed after {self.retry.attempts} attempts ({last})")

    async def _range_refusal(self, resp: aiohttp.ClientResponse, url: str) -> UpstreamError:
        """The error for a ranged GET answered with a status >= 400 (the caller releases the response)."""
        return UpstreamError(f"GET {redacted(url)} failed: HTTP {resp.status}")

    async def _unranged(self, resp: aiohttp.ClientResponse, url: str, location: FileLocation, start: int,
                        end: int) -> aiohttp.ClientResponse:
        """A 200 (the whole file) answered a Range request: refuse it (subclasses may make do)."""
        resp.release()
        raise UpstreamError(f"{redacted(url)} ignored the Range header")

    async def open_range(self, location: FileLocation, start: int, end: int,
                         timeout: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
        """GET bytes ``[start, end)`` of a located file; the caller reads and releases the response.

        Raises LocationExpiredError when another host (a CDN) refuses the signed URL, so the caller
        can locate again.
        """
        headers = {"Range": f"bytes={start}-{end - 1}"}
        url = location.url
        for _ in range(MAX_REDIRECTS + 1):
            resp = await self.send("GET", url, headers, timeout=timeout)
            if resp.status in (301, 302, 303, 307, 308) and resp.headers.get("Location"):
                resp.release()
                url = urljoin(url, resp.headers["Location"])
                continue
            break
        else:
            raise UpstreamError(f"too many redirects from {redacted(location.url)}")
        if resp.status in (401, 403, 410) and not same_origin(url, self.endpoint):
            resp.release()
            raise LocationExpiredError(f"{redacted(url)} refused the signed URL (HTTP {resp.status})")
        if resp.status == 206:
            if content_range(resp.headers.get("Content-Range", "")) == (start, end - 1, location.size):
                return resp
            resp.release()
            raise UpstreamError(f"{redacted(url)} answered a different range than asked "
                                f"({resp.headers.get('Content-Range')!r} for bytes {start}-{end - 1})")
        if resp.status == 200 and start == 0 and end == location.size:
            return resp
        if resp.status == 200:
            return await self._unranged(resp, url, location, start, end)
        try:
            raise await self._range_refusal(resp, url)
        finally:
            resp.release()
