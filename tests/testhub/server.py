"""`TestHub`: the hub and its CDN as two real aiohttp servers on a background thread's own loop.

Sync tests, click's CliRunner, subprocesses and async tests on any loop can all talk to it. Routing
works on the raw request path (never normalized, so hostile paths reach the handlers as sent) by the
literal markers `/revision/`, `/tree/`, `/resolve/`, `/paths-info/`, `/refs`.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from types import TracebackType
from urllib.parse import unquote

from aiohttp import web

from . import api
from .content import Blob
from .faults import DropRule, FailRule, Faults, Record, Stats
from .repos import HubRepo
from .serving import serve_cdn, xml_error
from .threaded import ServerThread, bind

_API_MARKERS = ("revision", "tree", "paths-info", "refs", "xet-read-token")
_REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
Route = tuple[str, Callable[[], Awaitable[web.StreamResponse]] | None]


def _split_repo(segments: list[str], markers: tuple[str, ...]) -> tuple[str, str, list[str]] | None:
    """(repo_id, marker, segments after it): the repo id is 1 or 2 segments followed by a marker."""
    for n in (2, 1):
        if len(segments) > n and segments[n] in markers and all(segments[:n]):
            return unquote("/".join(segments[:n])), segments[n], segments[n + 1 :]
    return None


def _fail_response(rule: FailRule, cdn: bool) -> web.Response:
    phrase = HTTPStatus(rule.status).phrase
    headers = {}
    if rule.status == 429:
        wait = 1 if rule.retry_after is None else rule.retry_after
        headers.update({"Retry-After": str(wait), "RateLimit": f'"api";r=0;t={wait}'})
    elif rule.retry_after is not None:
        headers["Retry-After"] = str(rule.retry_after)
    if cdn:
        return xml_error(rule.status, phrase.replace(" ", ""), phrase, headers)
    if rule.status < 500:
        headers["X-Error-Message"] = phrase
    return web.json_response({"error": phrase}, status=rule.status, headers=headers)


class TestHub:
    """A Hugging Face Hub stand-in: `endpoint` speaks the Hub protocol, `cdn_base` serves LFS bytes.

    `tokens` maps bearer tokens to user names. `xet` adds xet headers/hashes as huggingface.co does;
    `tree_page_size` sets the tree pagination. `faults` and `stats` may be used from any thread.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        tokens: dict[str, str] | None = None,
        *,
        host: str = "127.0.0.1",
        cdn_host: str = "127.0.0.2",
        port: int = 0,
        cdn_port: int = 0,
    ) -> None:
        self.tokens = dict(tokens or {})
        self.repos: dict[tuple[str, str], HubRepo] = {}
        self.faults = Faults()
        self.stats = Stats()
        self.xet = True
        self.tree_page_size = 1000
        self.secret = secrets.token_bytes(32)
        self.endpoint = ""
        self.cdn_base = ""
        self._addresses = ((host, port), (cdn_host, cdn_port))
        self._blob_index: dict[str, tuple[Blob, frozenset[str]]] = {}
        self._indexed: tuple[tuple[int, int], ...] | None = None
        self._server = ServerThread("testhub")

    # -- repos -----------------------------------------------------------------------------

    def add_repo(self, repo: HubRepo) -> HubRepo:
        """Serve `repo` (replacing any repo of the same type and id); return it."""
        self.repos[(repo.repo_type, repo.repo_id)] = repo
        return repo

    def repo(self, repo_id: str, repo_type: str = "model") -> HubRepo:
        """The served repo of that id and type (KeyError if none)."""
        return self.repos[(repo_type, repo_id)]

    def find_blob(self, sha256: str) -> tuple[Blob, frozenset[str]] | None:
        """The blob with that sha256 in any repo, with every repo path it has been stored at."""
        repos = list(self.repos.values())  # tests may add repos and commits while we serve
        fingerprint = tuple((id(repo), len(repo.commits)) for repo in repos)
        if fingerprint != self._indexed:
            index: dict[str, tuple[Blob, set[str]]] = {}
            for repo in repos:
                for path, entry in repo.blobs():
                    index.setdefault(entry.blob.sha256, (entry.blob, set()))[1].add(path)
            self._blob_index = {sha: (blob, frozenset(paths)) for sha, (blob, paths) in index.items()}
            self._indexed = fingerprint
        return self._blob_index.get(sha256)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> TestHub:
        """Bind both servers and serve them from a background thread; return self."""
        if self._server.running:
            raise RuntimeError("TestHub already started")
        hub_sock, cdn_sock = bind(self._addresses)
        (hub_host, hub_port), (cdn_host, cdn_port) = hub_sock.getsockname(), cdn_sock.getsockname()
        self.endpoint, self.cdn_base = f"http://{hub_host}:{hub_port}", f"http://{cdn_host}:{cdn_port}"
        sites = []
        for handler, recorder, sock in (
            (self._hub_handler, self._record_hub, hub_sock),
            (self._cdn_handler, self._record_cdn, cdn_sock),
        ):
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", handler)
            app.on_response_prepare.append(recorder)
            sites.append((app, sock))
        self._server.start(sites)
        return self

    def stop(self) -> None:
        """Close both servers (cancelling responses still running after `threaded.SHUTDOWN_TIMEOUT`)."""
        self._server.stop()

    def __enter__(self) -> TestHub:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- requests --------------------------------------------------------------------------

    def _record(self, kind: str, request: web.Request, response: web.StreamResponse) -> None:
        """Count a request as its answer starts (before the client can see any of it)."""
        host = "cdn" if kind == "cdn" else "hub"
        record = Record(host, request.method, request.raw_path, response.status, request.headers.get("Range"),
                        request.headers.get("Authorization"))
        self.stats.request(kind, record, "Authorization" in request.headers)

    async def _record_hub(self, request: web.Request, response: web.StreamResponse) -> None:
        self._record(self._route(request)[0], request, response)

    async def _record_cdn(self, request: web.Request, response: web.StreamResponse) -> None:
        self._record("cdn", request, response)

    async def _cdn_handler(self, request: web.Request) -> web.StreamResponse:
        if self.faults.latency > 0:
            await asyncio.sleep(self.faults.latency)
        rule = self.faults.take(FailRule, "cdn")
        if isinstance(rule, FailRule):
            return _fail_response(rule, cdn=True)
        return await serve_cdn(request, self.secret, self.find_blob, self.faults, self.stats)

    async def _hub_handler(self, request: web.Request) -> web.StreamResponse:
        if self.faults.latency > 0:
            await asyncio.sleep(self.faults.latency)
        kind, call = self._route(request)
        if self.faults.take(DropRule, kind, (request.raw_path,)) is not None:
            self.stats.drop(request.method, request.raw_path)
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError  # the connection is gone: no answer
        rule = self.faults.take(FailRule, kind)
        if isinstance(rule, FailRule):
            return _fail_response(rule, cdn=False)
        if call is None:
            return api.error_response(404, None, "Sorry, we can't find the page you are looking for.")
        try:
            return await call()
        except api.HubError as refusal:
            return refusal.response

    def _route(self, request: web.Request) -> Route:
        """(route kind, handler call) for a hub request; the call is None for unknown routes."""
        method, segments = request.method, request.raw_path.partition("?")[0].split("/")[1:]
        bind = functools.partial
        if segments[:2] == ["api", "whoami-v2"]:
            return "api", bind(api.whoami, self, request)
        if segments == ["api", "models"] and method == "GET":
            return "api", bind(api.search_models, self, request)
        if len(segments) > 2 and segments[0] == "api" and segments[1] in _REPO_TYPES:
            repo_type, rest = _REPO_TYPES[segments[1]], segments[2:]
            split = _split_repo(rest, _API_MARKERS)
            if split is None:
                if len(rest) <= 2 and all(rest) and method in ("GET", "HEAD"):
                    return "api", bind(api.repo_info, self, request, repo_type, unquote("/".join(rest)), "main")
                return "api", None
            repo_id, marker, tail = split
            if marker == "tree" and tail and method == "GET":
                path = unquote("/".join(tail[1:])).strip("/")
                return "tree", bind(api.tree, self, request, repo_type, repo_id, unquote(tail[0]), path)
            if marker == "revision" and tail and method in ("GET", "HEAD"):
                return "api", bind(api.repo_info, self, request, repo_type, repo_id, unquote("/".join(tail)))
            if marker == "paths-info" and tail and method == "POST":
                return "api", bind(api.paths_info, self, request, repo_type, repo_id, unquote("/".join(tail)))
            if marker == "refs" and not tail and method == "GET":
                return "api", bind(api.refs, self, request, repo_type, repo_id)
            return "api", None
        repo_type = "model"
        if segments and segments[0] in ("datasets", "spaces"):
            repo_type, segments = _REPO_TYPES[segments[0]], segments[1:]
        split = _split_repo(segments, ("resolve",))
        if split is None or len(split[2]) < 2 or method not in ("GET", "HEAD"):
            return "resolve" if split else "api", None
        repo_id, _, tail = split
        rev, path = unquote(tail[0]), unquote("/".join(tail[1:]))
        return "resolve", bind(api.resolve, self, request, repo_type, repo_id, rev, path)
