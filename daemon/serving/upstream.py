"""Talking to the upstream hub on a client's behalf, with the client's own token.

``Upstream.call`` sends one request to the upstream endpoint through registry's HTTP core and returns
its answer whole (metadata is small); it never follows redirects. A connection failure is retried once
on a fresh connection (`PASS_THROUGH`), then this request fails with ``UpstreamUnavailableError`` (the
daemon answers it from its store) and the daemon checks upstream's health (``registry.upstream.health``):
only that check marks upstream down, for ``down_for`` seconds, during which every call fails at once.
``--offline`` keeps it down for good. Answers of 5xx count as unavailable too (the store may still
answer); 4xx answers are the caller's to see (``Answer.refused``: an ``UpstreamRefusedError``). What the daemon asks for itself has
its own methods (``pin``, ``commit_listing``, ``access_probe``), which another kind of upstream answers
its own way (``daemon.modelscope.upstream``); ``pin`` and ``commit_listing`` are registry's raw
``HubClient.repo_info_json`` and ``tree_json``, under the same outage policy.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

from mreg.registry.errors import UpstreamError, UpstreamRefusedError, UpstreamUnavailableError
from mreg.registry.repo import RepoRef
from mreg.registry.upstream.health import Health, Outages, check
from mreg.registry.upstream.http import RetryPolicy, UpstreamHTTP, read_body
from mreg.registry.upstream.hub import HubClient, urls
from mreg.registry.upstream.hub.client import HUB_HEADERS

from mreg.daemon.hub.shapes import info_without_xet, without_xet

MAX_ANSWER_BYTES = 256 * 1024 * 1024
COMMIT = re.compile(r"^[0-9a-f]{40}$")
PASS_THROUGH = RetryPolicy(attempts=2, backoff=0.0, statuses=frozenset())
"""A caller's request: tried again once on a fresh connection (a pooled one may have died); every
answer, 429 and 5xx included, is the caller's."""
TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
DOWNLOAD_RETRY = RetryPolicy(attempts=4, backoff=0.5, max_backoff=5.0, max_retry_after=30.0)
T = TypeVar("T")


NOT_PARSED: Any = object()
"""`Answer.data` of an answer that arrived as bytes."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def header_text(value: str) -> str:
    """``value`` fit for an HTTP header: control characters (CR, LF, NUL, DEL…) become one space."""
    return _CONTROL.sub(" ", value)


@dataclass(frozen=True)
class Answer:
    """An upstream answer: status, the forwarded headers, the raw Link header and the body, or the body's
    data when the answer was built as data (a ModelScope upstream answering as the Hub), never serialised
    until a client gets it."""

    status: int
    headers: dict[str, str]
    link: str | None
    body: bytes
    data: Any = NOT_PARSED
    origin: str | None = None
    """The endpoint that gave it (its ``link`` points there), when it came from one."""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return json.loads(self.body) if self.data is NOT_PARSED else self.data

    def raw_body(self) -> bytes:
        """The body as bytes (an answer built as data, serialised)."""
        return self.body if self.data is NOT_PARSED else json.dumps(self.data, separators=(",", ":")).encode()

    def response(self, head: bool = False) -> web.Response:
        """This answer for the client (an empty error body, as a HEAD gets, says the error in JSON)."""
        headers = {name: header_text(value) for name, value in self.headers.items()}
        if head:
            return web.Response(status=self.status, headers=headers)
        if self.data is not NOT_PARSED:
            return web.Response(status=self.status, headers={**headers, "Content-Type": "application/json"},
                                body=self.raw_body())
        if not self.body and "X-Error-Message" in self.headers:
            body = json.dumps({"error": self.headers["X-Error-Message"]}).encode()
            return web.Response(status=self.status, headers={**headers, "Content-Type": "application/json"},
                                body=body)
        return web.Response(status=self.status, headers=headers, body=self.body)

    def refused(self) -> UpstreamRefusedError:
        """This refusal (4xx) as the error that passes it on to the client unchanged."""
        headers = self.headers if self.data is NOT_PARSED else {**self.headers, "Content-Type": "application/json"}
        return UpstreamRefusedError(self.status, headers, self.raw_body())

    @classmethod
    def passed_on(cls, refused: UpstreamRefusedError) -> "Answer":
        """The upstream answer a refusal carries (the inverse of ``refused``)."""
        return cls(refused.http_status, refused.headers, None, refused.body)


def bearer_token(request: web.Request) -> str | None:
    """The client's Bearer token, or None (other schemes count as anonymous)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def token_key(token: str | None) -> str:
    """What identifies a caller in the daemon's memory: a sha256 of the token, never the token."""
    return hashlib.sha256(token.encode()).hexdigest() if token else "anonymous"


class Upstream:
    """An upstream endpoint, its liveness, and the HTTP session the daemon shares.

    ``name`` is its configured name (the catalog records it, health memory is kept under it); ``token``
    the daemon's own token for it (mirror jobs), never a caller's. Several upstreams share one ``health``.
    """

    kind = "hf"

    def __init__(self, session: aiohttp.ClientSession, endpoint: str, offline: bool, down_for: float, *,
                 name: str | None = None, token: str | None = None, health: Health | None = None) -> None:
        self.session = session
        self.endpoint = endpoint.rstrip("/")
        self.offline = offline
        self.name = name or self.endpoint
        self.token = token
        health = health if health is not None else Health(None, clock=time.monotonic, down_for=down_for)
        self.outages = Outages(health, self.name,
                               lambda: check(UpstreamHTTP(session, self.endpoint, None, PASS_THROUGH)))

    @property
    def available(self) -> bool:
        """False when offline, or while upstream is considered down."""
        return not self.offline and self.outages.down() is None

    def client(self, token: str | None) -> HubClient:
        """A Hub client speaking for one caller (their token; downloads retry a little)."""
        return HubClient(self.session, self.endpoint, token, DOWNLOAD_RETRY)

    @property
    def unavailable_reason(self) -> str:
        return "the mirror runs offline" if self.offline else f"{self.endpoint} is unreachable"

    def _check(self) -> None:
        if not self.available:
            raise UpstreamUnavailableError(self.unavailable_reason)

    async def pin(self, repo: RepoRef, revision: str, token: str | None) -> str:
        """The commit ``revision`` is at, as upstream tells ``token`` (UpstreamRefusedError: upstream's answer)."""
        info = await self._hub_ask(token, lambda hub: hub.repo_info_json(repo, revision, expand=("sha",)))
        return checked_commit(info.get("sha") if isinstance(info, dict) else None, repo, revision)

    async def commit_listing(self, repo: RepoRef, commit: str, token: str | None) -> tuple[Any, list[Any]]:
        """The repo info (its ``blobs=true`` form) and the recursive tree of ``commit``, as upstream shows
        them to ``token``, without xet fields (UpstreamRefusedError: upstream's answer)."""
        info = await self._hub_ask(token, lambda hub: hub.repo_info_json(repo, commit, blobs=True))
        entries = await self._hub_ask(token, lambda hub: hub.tree_json(repo, commit))
        return info_without_xet(info), without_xet(entries)

    async def access_probe(self, repo: RepoRef, commit: str, path: str, token: str | None) -> Answer:
        """Upstream's answer to ``token`` reading ``path`` of ``commit`` (a HEAD on its resolve URL, which is
        where the Hub enforces gates)."""
        return await self.call("HEAD", urls.resolve_url("", repo, commit, path), token)

    def _speaker(self, token: str | None) -> HubClient:
        """A Hub client sending for the daemon as ``token`` (`PASS_THROUGH`)."""
        return HubClient(self.session, self.endpoint, token, PASS_THROUGH, TIMEOUT)

    async def _hub_ask(self, token: str | None, question: Callable[[HubClient], Awaitable[T]]) -> T:
        """``question`` put to upstream through registry's Hub client with ``token``: its 4xx answer is the
        caller's (UpstreamRefusedError), a 5xx one or failing to reach it is UpstreamUnavailableError (the
        latter has the daemon check upstream's health)."""
        self._check()
        try:
            return await question(self._speaker(token))
        except UpstreamRefusedError as refused:
            if refused.http_status >= 500:
                raise UpstreamUnavailableError(f"{self.endpoint} answered HTTP {refused.http_status}") from None
            raise
        except UpstreamUnavailableError:
            await self.outages.request_failed()
            raise UpstreamUnavailableError(f"{self.endpoint} is unreachable") from None

    async def call(self, method: str, path: str, token: str | None, body: bytes | None = None,
                   content_type: str | None = None) -> Answer:
        """Send ``method path`` (path and query, as raw as the client sent them) to upstream."""
        self._check()
        http = self._speaker(token)
        headers = {"Content-Type": content_type} if content_type else None
        try:
            resp = await http.send(method, self.endpoint + path, headers, data=body)
            try:
                answer = Answer(resp.status, {k: resp.headers[k] for k in HUB_HEADERS if k in resp.headers},
                                resp.headers.get("Link"), await read_body(resp, MAX_ANSWER_BYTES),
                                origin=self.endpoint)
            finally:
                resp.release()
        except (UpstreamUnavailableError, TimeoutError, aiohttp.ClientError) as exc:
            await self.outages.request_failed()
            failure = "" if isinstance(exc, UpstreamUnavailableError) else f" ({type(exc).__name__})"
            raise UpstreamUnavailableError(f"{self.endpoint} is unreachable{failure}") from None
        if len(answer.body) > MAX_ANSWER_BYTES:
            raise UpstreamUnavailableError(f"{self.endpoint} answered more than {MAX_ANSWER_BYTES} bytes")
        if answer.status >= 500:
            raise UpstreamUnavailableError(f"{self.endpoint} answered HTTP {answer.status}")
        return answer


def not_in_mirror(cause: object, repo: RepoRef, revision: str) -> UpstreamUnavailableError:
    """What a caller is told of ``repo`` at ``revision`` when upstream cannot be asked (``cause``) and the
    mirror has nothing of it to show: whether it never saw it or, offline, may not show it to this caller."""
    return UpstreamUnavailableError(f"{cause}, and {repo}@{revision} is not in the mirror")


def checked_commit(commit: object, repo: RepoRef, revision: str) -> str:
    """``commit`` when it is a commit id (what upstream pinned ``revision`` to), else UpstreamError."""
    if not isinstance(commit, str) or not COMMIT.match(commit):
        raise UpstreamError(f"upstream's answer for {repo}@{revision} has no valid commit sha")
    return commit

