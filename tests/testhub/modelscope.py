"""`TestModelScope`: a real aiohttp server speaking ModelScope's `/api/v1` model routes.

It serves the same `HubRepo` objects as `TestHub`, so one repo can live on both hubs with identical
bytes. ModelScope names the default branch `master`; here that is the repo's `main` branch, and
every other branch, tag and full commit sha is reachable under its own name.

    GET      /api/v1/models/{owner}/{name}                          repo info
    GET      /api/v1/models/{owner}/{name}/revisions[?EndTime=T]    branches and tags (tags up to T)
    GET      /api/v1/models/{owner}/{name}/repo/files?Revision=R&Recursive=True[&Root=D]
    GET|HEAD /api/v1/models/{owner}/{name}/repo?Revision=R&FilePath=P   bytes, Range → 206
    GET      /api/v1/datasets/{owner}/{name}[/revisions | /repo?…]  the same for datasets, whose
             /repo/tree?Revision=R&Recursive=True&PageNumber=N&PageSize=S lists files page by page
    GET      /api/v1/repos/internalAccelerationInfo                 no intra-cloud region

With `redirect_lfs`, LFS files answer a 302 to a signed URL on a second host (`cdn_base`, 127.0.0.2)
as modelscope.cn does to its object storage; the CDN is the test hub's (`serving.serve_cdn`).

JSON answers are `{"Code": 200, "Success": true, "Data": …, "Message": "success", "RequestId": …}`;
refusals carry the HTTP status the client maps (401, 403, 404, 400) with `Code`/`Message`. Tokens
arrive as `Authorization: Bearer T` and/or the `m_session_id` cookie, as the `modelscope` client
sends both. Faults and stats are those of `TestHub`, with route kinds "api", "tree" (file lists)
"resolve" (file bytes from the API host) and "cdn" (the redirect target). A request carrying the
token to the CDN (Authorization or the m_session_id cookie) is listed in `stats.cdn_authorization_seen`.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlencode

from aiohttp import web

from .content import Blob
from .faults import FailRule, Faults, Record, Stats
from .repos import Commit, HubRepo
from .serving import (
    RangeNotSatisfiable,
    parse_range,
    send_blob,
    serve_cdn,
    url_signature,
    xml_error,
)
from .threaded import ServerThread, bind

DEFAULT_BRANCH = "master"
"""ModelScope's default branch; it names the served repo's `main`."""
MODEL_NOT_FOUND = "模型不存在"
DATASET_NOT_FOUND = "数据集不存在"
FILE_NOT_FOUND = "文件不存在"
NOT_LOGGED_IN = "用户未登录"
NOT_FOUND_CODE = 10010205001
AUTH_CODE = 10010103009

Handler = Callable[[], Awaitable[web.StreamResponse]]
RepoKey = tuple[str, str]
"""(repo type, repo id)."""
_TYPES = {"models": "model", "datasets": "dataset"}


class ModelScopeError(Exception):
    """A refusal, carrying its HTTP status, business code and message."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def envelope(data: Any, status: int = 200, code: int = 200, message: str = "success") -> web.Response:
    """ModelScope's JSON envelope around `data`."""
    body = {
        "Code": code,
        "Data": data,
        "Message": message,
        "RequestId": uuid.uuid4().hex,
        "Success": code == 200,
    }
    return web.json_response(body, status=status)


def _epoch(commit: Commit) -> int:
    return int(commit.created_at.timestamp())


class TestModelScope:
    """A ModelScope stand-in at `endpoint`; `tokens` maps access tokens to user names.

    `faults` and `stats` may be used from any thread; `add_repo` takes the same `HubRepo` objects
    as `TestHub.add_repo` (model repos only).
    """

    __test__ = False  # not a pytest test class

    def __init__(self, tokens: dict[str, str] | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 cdn_host: str = "127.0.0.2", cdn_port: int = 0) -> None:
        self.tokens = dict(tokens or {})
        self.repos: dict[str, HubRepo] = {}
        self.datasets: dict[str, HubRepo] = {}
        self.faults = Faults()
        self.stats = Stats()
        self.commit_ids = True
        """Whether `/revisions` names each branch's and tag's commit (`CommitId`); False leaves it out."""
        self.redirect_lfs = False
        """Whether LFS files answer 302 to a signed CDN URL instead of their bytes."""
        self.inline_ranges = True
        """Whether files served by the API host honour Range; False answers 200 with the whole file
        (the `modelscope` client expects either: "files served without a redirect ignore Range")."""
        self.secret = secrets.token_bytes(32)
        self.endpoint = ""
        self.cdn_base = ""
        self._addresses = ((host, port), (cdn_host, cdn_port))
        self._server = ServerThread("testmodelscope")

    # -- repos -----------------------------------------------------------------------------

    def add_repo(self, repo: HubRepo) -> HubRepo:
        """Serve `repo` (replacing any repo of the same type and id); return it."""
        if repo.repo_type not in ("model", "dataset") or "/" not in repo.repo_id:
            raise ValueError(f"ModelScope serves owner/name models and datasets, not {repo.repo_type}:{repo.repo_id}")
        self._served(repo.repo_type)[repo.repo_id] = repo
        return repo

    def repo(self, repo_id: str, repo_type: str = "model") -> HubRepo:
        """The served repo of that id and type (KeyError if none)."""
        return self._served(repo_type)[repo_id]

    def _served(self, repo_type: str) -> dict[str, HubRepo]:
        return self.datasets if repo_type == "dataset" else self.repos

    # -- lifecycle -------------------------------------------------------------------------

    def find_blob(self, sha256: str) -> tuple[Blob, frozenset[str]] | None:
        """The blob with that sha256 in any repo, with every repo path it has been stored at."""
        found: Blob | None = None
        paths: set[str] = set()
        for repo in [*self.repos.values(), *self.datasets.values()]:
            for path, entry in repo.blobs():
                if entry.blob.sha256 == sha256:
                    found = entry.blob
                    paths.add(path)
        return None if found is None else (found, frozenset(paths))

    def start(self) -> TestModelScope:
        """Bind the API host and the CDN and serve them from a background thread; return self."""
        api_sock, cdn_sock = bind(self._addresses)
        (host, port), (cdn_host, cdn_port) = api_sock.getsockname(), cdn_sock.getsockname()
        self.endpoint, self.cdn_base = f"http://{host}:{port}", f"http://{cdn_host}:{cdn_port}"
        sites = []
        for handler, recorder, sock in ((self._handle, self._record, api_sock),
                                        (self._handle_cdn, self._record_cdn, cdn_sock)):
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", handler)
            app.on_response_prepare.append(recorder)
            sites.append((app, sock))
        self._server.start(sites)
        return self

    def stop(self) -> None:
        """Close the server (cancelling responses still running after a short grace)."""
        self._server.stop()

    def __enter__(self) -> TestModelScope:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- requests --------------------------------------------------------------------------

    async def _record(self, request: web.Request, response: web.StreamResponse) -> None:
        record = Record("hub", request.method, request.raw_path, response.status, request.headers.get("Range"),
                        request.headers.get("Authorization"))
        self.stats.request(self._route(request)[0], record, "Authorization" in request.headers)

    async def _record_cdn(self, request: web.Request, response: web.StreamResponse) -> None:
        record = Record("cdn", request.method, request.raw_path, response.status, request.headers.get("Range"),
                        request.headers.get("Authorization"))
        token_sent = "Authorization" in request.headers or "m_session_id" in request.cookies
        self.stats.request("cdn", record, token_sent)

    async def _handle_cdn(self, request: web.Request) -> web.StreamResponse:
        if self.faults.latency > 0:
            await asyncio.sleep(self.faults.latency)
        rule = self.faults.take(FailRule, "cdn")
        if isinstance(rule, FailRule):
            phrase = HTTPStatus(rule.status).phrase
            return xml_error(rule.status, phrase.replace(" ", ""), phrase)
        return await serve_cdn(request, self.secret, self.find_blob, self.faults, self.stats)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.faults.latency > 0:
            await asyncio.sleep(self.faults.latency)
        kind, call = self._route(request)
        rule = self.faults.take(FailRule, kind)
        if isinstance(rule, FailRule):
            headers = {} if rule.retry_after is None else {"Retry-After": str(rule.retry_after)}
            phrase = HTTPStatus(rule.status).phrase
            response = envelope(None, status=rule.status, code=rule.status, message=phrase)
            response.headers.update(headers)
            return response
        if call is None:
            return envelope(None, status=404, code=404, message="Not Found")
        try:
            return await call()
        except ModelScopeError as refusal:
            return envelope(None, status=refusal.status, code=refusal.code, message=refusal.message)

    def _route(self, request: web.Request) -> tuple[str, Handler | None]:
        """(route kind, handler call) for a request; the call is None for unknown routes."""
        segments = request.raw_path.partition("?")[0].split("/")[1:]
        method = request.method
        if segments == ["api", "v1", "repos", "internalAccelerationInfo"] and method == "GET":
            return "api", self._acceleration_info
        if segments[:2] != ["api", "v1"] or len(segments) < 5 or segments[2] not in _TYPES or not all(segments[3:5]):
            return "api", None
        key, rest = (_TYPES[segments[2]], unquote("/".join(segments[3:5]))), segments[5:]
        if not rest and method == "GET":
            return "api", lambda: self._info(request, key)
        if rest == ["revisions"] and method == "GET":
            return "api", lambda: self._revisions(request, key)
        if rest == ["repo", "files"] and method == "GET" and key[0] == "model":
            return "tree", lambda: self._files(request, key)
        if rest == ["repo", "tree"] and method == "GET" and key[0] == "dataset":
            return "tree", lambda: self._tree(request, key)
        if rest == ["repo"] and method in ("GET", "HEAD"):
            return "resolve", lambda: self._file(request, key)
        return "api", None

    # -- access ----------------------------------------------------------------------------

    def _user(self, request: web.Request) -> str | None:
        """The user of the request's token (Bearer header or m_session_id cookie); 401 if unknown."""
        tokens = []
        scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and bearer.strip():
            tokens.append(bearer.strip())
        if cookie := request.cookies.get("m_session_id"):
            tokens.append(cookie)
        if not tokens:
            return None
        users = {self.tokens.get(token) for token in tokens}
        if None in users or len(users) != 1:
            raise ModelScopeError(401, AUTH_CODE, "AccessToken is invalid or expired")
        return users.pop()

    def _lookup(self, request: web.Request, key: RepoKey) -> HubRepo:
        user = self._user(request)
        repo = self._served(key[0]).get(key[1])
        if repo is None or not repo.may_see(user):
            if repo is not None and user is None:
                raise ModelScopeError(401, 401, NOT_LOGGED_IN)
            raise ModelScopeError(404, NOT_FOUND_CODE, MODEL_NOT_FOUND if key[0] == "model" else DATASET_NOT_FOUND)
        return repo

    @staticmethod
    def _commit(repo: HubRepo, revision: str) -> Commit:
        """The commit a ModelScope revision names (`master` is the repo's main branch)."""
        commit = repo.resolve("main" if revision == DEFAULT_BRANCH else revision)
        if commit is None or (revision == "main" and "main" not in repo.tags):
            raise ModelScopeError(404, NOT_FOUND_CODE, f"Revision {revision} not found")
        return commit

    # -- answers ---------------------------------------------------------------------------

    async def _acceleration_info(self) -> web.Response:
        return envelope({"InternalRegionQueryAddress": ""})

    async def _info(self, request: web.Request, key: RepoKey) -> web.Response:
        repo = self._lookup(request, key)
        owner, name = key[1].split("/")
        head = repo.head
        data = {
            "Id": int(hashlib.sha1("/".join(key).encode()).hexdigest()[:6], 16),
            "Name": name,
            "Path": owner,
            "ChineseName": "",
            "Description": repo.info.get("description", ""),
            "Visibility": 1 if repo.private else 5,
            "License": repo.info.get("cardData", {}).get("license", "Apache License 2.0"),
            "Tags": list(repo.info.get("tags", [])),
            "Downloads": repo.info.get("downloads", 0),
            "Stars": repo.info.get("likes", 0),
            "CreatedTime": int(repo.created_at.timestamp()),
            "LastUpdatedTime": _epoch(head),
            "Revision": DEFAULT_BRANCH,
            "ModelType": [repo.info.get("config", {}).get("model_type", "")],
            "IsAccessible": 1,
        }
        return envelope(data)

    async def _revisions(self, request: web.Request, key: RepoKey) -> web.Response:
        repo = self._lookup(request, key)
        end = request.query.get("EndTime")
        if end is not None and not end.isdigit():
            raise ModelScopeError(400, 400, f"Invalid EndTime: {end}")
        branches = [
            {"Revision": DEFAULT_BRANCH if name == "main" else name, "CreatedAt": _epoch(repo.commits[sha]),
             **self._commit_id(sha)}
            for name, sha in sorted(repo.branches.items())
        ]
        tags = [
            {"Revision": name, "CreatedAt": _epoch(repo.commits[sha]), "Message": name, **self._commit_id(sha)}
            for name, sha in sorted(repo.tags.items())
            if end is None or _epoch(repo.commits[sha]) <= int(end)
        ]
        return envelope({"RevisionMap": {"Branches": branches, "Tags": tags}})

    def _commit_id(self, sha: str) -> dict[str, str]:
        return {"CommitId": sha} if self.commit_ids else {}

    async def _files(self, request: web.Request, key: RepoKey) -> web.Response:
        """Models: every entry under `Root` in one answer."""
        return envelope({"Files": self._entries(request, key), "IsVisual": 0})

    async def _tree(self, request: web.Request, key: RepoKey) -> web.Response:
        """Datasets: the entries under `Root`, `PageSize` at a time (page `PageNumber`, from 1)."""
        number, size = request.query.get("PageNumber", "1"), request.query.get("PageSize", "100")
        if not number.isdigit() or not size.isdigit() or int(number) < 1 or int(size) < 1:
            raise ModelScopeError(400, 400, "Invalid PageNumber or PageSize")
        entries = self._entries(request, key)
        start = (int(number) - 1) * int(size)
        return envelope({"Files": entries[start : start + int(size)], "TotalCount": len(entries)})

    def _entries(self, request: web.Request, key: RepoKey) -> list[dict[str, Any]]:
        repo = self._lookup(request, key)
        commit = self._commit(repo, request.query.get("Revision", DEFAULT_BRANCH))
        recursive = request.query.get("Recursive", "false").lower() == "true"
        root = request.query.get("Root", "").strip("/")
        prefix = f"{root}/" if root else ""
        entries: dict[str, dict[str, Any]] = {}
        for path in sorted(commit.files):
            if not path.startswith(prefix):
                continue
            entry = commit.files[path]
            parts = path[len(prefix) :].split("/")
            for depth in range(1, len(parts)):
                directory = prefix + "/".join(parts[:depth])
                entries.setdefault(directory, self._tree_entry(directory, commit))
            entries[path] = {
                "CommitMessage": commit.message,
                "CommittedDate": _epoch(commit),
                "CommitterName": repo.owner,
                "Id": entry.oid,
                "InCheck": False,
                "IsLFS": entry.lfs,
                "Mode": "33188",
                "Name": path.rpartition("/")[2],
                "Path": path,
                "Revision": commit.sha,
                "Sha256": entry.blob.sha256,
                "Size": entry.blob.size,
                "Type": "blob",
            }
        if root and not entries:
            raise ModelScopeError(404, NOT_FOUND_CODE, FILE_NOT_FOUND)
        if not recursive:
            depth = root.count("/") + 1 if root else 0
            entries = {p: e for p, e in entries.items() if p.count("/") == depth}
        return list(entries.values())

    @staticmethod
    def _tree_entry(path: str, commit: Commit) -> dict[str, Any]:
        return {
            "CommitMessage": commit.message,
            "CommittedDate": _epoch(commit),
            "Id": "",
            "IsLFS": False,
            "Mode": "16384",
            "Name": path.rpartition("/")[2],
            "Path": path,
            "Revision": commit.sha,
            "Sha256": "",
            "Size": 0,
            "Type": "tree",
        }

    async def _file(self, request: web.Request, key: RepoKey) -> web.StreamResponse:
        repo = self._lookup(request, key)
        commit = self._commit(repo, request.query.get("Revision", DEFAULT_BRANCH))
        path = request.query.get("FilePath", "")
        entry = commit.files.get(path)
        if entry is None:
            raise ModelScopeError(404, NOT_FOUND_CODE, FILE_NOT_FOUND)
        name = path.rpartition("/")[2]
        if self.redirect_lfs and entry.lfs:
            expires = int(time.time()) + self.faults.url_ttl
            sha = entry.blob.sha256
            query = urlencode({"Expires": expires, "Signature": url_signature(self.secret, sha, expires)})
            location = f"{self.cdn_base}/modelscope/{sha[:2]}/{sha}?{query}"
            return web.Response(status=302, headers={"Location": location})
        headers = {
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f'attachment; filename="{name}"',
        }
        try:
            rng = parse_range(request.headers.get("Range") if self.inline_ranges else None, entry.blob.size)
        except RangeNotSatisfiable:
            response = envelope(None, status=416, code=416, message="Requested Range Not Satisfiable")
            response.headers["Content-Range"] = f"bytes */{entry.blob.size}"
            return response
        names = {path, entry.blob.sha256}
        return await send_blob(
            request, headers, entry.blob, rng, kind="resolve", names=names, faults=self.faults, stats=self.stats
        )
