"""ModelScopeClient: talks to a ModelScope endpoint's `/api/v1` model routes over aiohttp.

JSON answers come in an envelope, ``{"Code": 200, "Success": true, "Data": …}``; any other ``Code``
(or an HTTP error) is a refusal whose ``Message`` becomes a one-line error. The token travels as the
`modelscope` client sends it (``Authorization: Bearer`` and the ``m_session_id`` cookie), to the
endpoint's origin only. ModelScope's default branch is ``master``: asking for ``main`` on a repo
without such a revision means ``master``, so one revision name works on the Hub and on ModelScope.
Every listed file carries its sha256, which is what downloads are verified against. Datasets are
listed page by page (``/repo/tree``) and pinned by their listing, as the `modelscope` client does
not ask for their revisions.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from typing import Any

import aiohttp

from mreg.registry.errors import (
    EntryNotFoundError,
    RepoNotFoundError,
    RevisionNotFoundError,
    UpstreamError,
    UpstreamUnavailableError,
    UsageError,
)
from mreg.registry.repo import RepoRef
from mreg.registry.upstream.client import FileLocation, RemoteFile, RepoInfo
from mreg.registry.upstream.http import UpstreamHTTP, read_body, redacted
from mreg.registry.upstream.modelscope import urls

MAX_JSON_BYTES = 256 * 1024 * 1024
MAX_ERROR_BYTES = 64 * 1024
DATASET_PAGE_SIZE = 200
MAX_DATASET_PAGES = 10_000
MAX_SKIPPED_BYTES = 64 * 1024 * 1024
"""The longest prefix read and dropped to resume a file served without Range support."""
SKIP_PIECE = 1024 * 1024
DEFAULT_BRANCH = "master"
PRIVATE_VISIBILITY = 1
_SHA1 = re.compile(r"^[0-9a-f]{40}$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_TOKEN_HINT = "pass --token or set MODELSCOPE_API_TOKEN"


def _message(body: Any) -> str:
    """The one-line `Message` of an envelope (empty if there is none)."""
    text = body.get("Message") if isinstance(body, dict) else None
    return text.strip().splitlines()[0][:200] if isinstance(text, str) and text.strip() else ""


class Listings:
    """Which revision each commit a client met was reached by, and its file list (the most recent
    ``limit`` commits). Clients made for one caller each may share one, as the daemon's do."""

    def __init__(self, limit: int = 1024) -> None:
        self.revision_of: OrderedDict[tuple[RepoRef, str], str] = OrderedDict()
        self.listed: OrderedDict[tuple[RepoRef, str], list[RemoteFile]] = OrderedDict()
        self._limit = limit

    def remember(self, key: tuple[RepoRef, str], revision: str, files: list[RemoteFile] | None = None) -> None:
        """``key``'s commit is ``revision``'s (and lists ``files``, when given)."""
        self.revision_of[key] = revision
        self.revision_of.move_to_end(key)
        if files is not None:
            self.listed[key] = files
            self.listed.move_to_end(key)
        for known in (self.revision_of, self.listed):
            while len(known) > self._limit:
                known.popitem(last=False)


class ModelScopeClient(UpstreamHTTP):
    """Speaks ModelScope's model API to one endpoint with one (optional) token."""

    def __init__(self, *args: Any, listings: Listings | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._listings = listings or Listings()

    def _auth_headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}", "Cookie": f"m_session_id={token}"}

    def _refusal(self, status: int, body: Any, repo: RepoRef, revision: str | None, path: str | None) -> UpstreamError:
        """Map a refusal (HTTP status, envelope) to a one-line error."""
        message = _message(body)
        detail = f": {message}" if message else ""
        if status == 401 and self.has_token:
            return UpstreamError(f"{self.endpoint} refused the token (401){detail}: check --token / MODELSCOPE_API_TOKEN")
        if status in (401, 404) and path is None and revision is None:
            hint = "" if self.has_token else f" (if it is private, {_TOKEN_HINT})"
            return RepoNotFoundError(f"repository {repo} not found on {self.endpoint}{detail}{hint}")
        if status == 404 and path is None:
            return RevisionNotFoundError(f"revision {revision!r} not found in {repo} on {self.endpoint}{detail}")
        if status == 404:
            return EntryNotFoundError(f"file {path!r} not found in {repo} at {revision}{detail}")
        if status in (401, 403):
            return UpstreamError(f"access to {repo} denied by {self.endpoint} ({status}){detail}")
        return UpstreamError(f"{self.endpoint} refused a request for {repo}: HTTP {status}{detail}")

    async def _data(self, url: str, repo: RepoRef, revision: str | None = None) -> Any:
        """The `Data` of a JSON answer; refusals (HTTP >= 400 or Code != 200) raise."""
        resp = await self.send("GET", url)
        try:
            body_bytes = await read_body(resp, MAX_JSON_BYTES)
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailableError(f"reading {redacted(url)} failed: {type(exc).__name__}") from exc
        finally:
            resp.release()
        if len(body_bytes) > MAX_JSON_BYTES:
            raise UpstreamError(f"answer from {redacted(url)} is larger than {MAX_JSON_BYTES} bytes")
        try:
            body = json.loads(body_bytes)
        except ValueError:
            body = None
        if resp.status >= 400:
            raise self._refusal(resp.status, body, repo, revision, None)
        if not isinstance(body, dict):
            raise UpstreamError(f"{redacted(url)} did not answer with a JSON envelope (HTTP {resp.status})")
        code = body.get("Code")
        if code != 200 or body.get("Success") is False:
            status = code if isinstance(code, int) and 400 <= code < 600 else 404
            raise self._refusal(status, body, repo, revision, None)
        return body.get("Data")

    async def repo_info(self, repo: RepoRef, revision: str) -> RepoInfo:
        """Whether the repo exists and which commit ``revision`` (a branch, tag or commit) names."""
        if "/" not in repo.repo_id:
            raise UsageError(f"ModelScope repos are named owner/name, not {repo}")
        info = await self._data(urls.repo_info_url(self.endpoint, repo), repo)
        private = isinstance(info, dict) and (info.get("Visibility") == PRIVATE_VISIBILITY or info.get("Private") is True)
        if (repo, revision) in self._listings.revision_of:  # a commit met before (maybe a listing's digest)
            return RepoInfo(repo=repo, commit=revision, gated=False, private=private)
        if repo.repo_type == "model":
            named = await self._revisions(repo)
        else:  # any name: the file list answers 404 for one the dataset does not have
            named = {DEFAULT_BRANCH: None} if revision == "main" else {revision: None}
        if revision == "main" and "main" not in named:
            revision = DEFAULT_BRANCH
        if revision in named:
            commit = named[revision]
        elif _SHA1.match(revision):
            commit = revision
        else:
            raise RevisionNotFoundError(f"revision {revision!r} not found in {repo} on {self.endpoint}")
        files = None
        if commit is None:
            files = await self._list(repo, revision)
            commit = _listing_id(files)
        self._listings.remember((repo, commit), revision, files)
        return RepoInfo(repo=repo, commit=commit, gated=False, private=private)

    async def _revisions(self, repo: RepoRef) -> dict[str, str | None]:
        """Branch and tag names → their commit id (None where ModelScope gives none)."""
        data = await self._data(urls.revisions_url(self.endpoint, repo), repo)
        revision_map = data.get("RevisionMap") if isinstance(data, dict) else None
        if not isinstance(revision_map, dict):
            raise UpstreamError(f"the revisions of {repo} on {self.endpoint} are malformed")
        named: dict[str, str | None] = {}
        for kind in ("Branches", "Tags"):
            for entry in revision_map.get(kind) or []:
                name = entry.get("Revision") if isinstance(entry, dict) else None
                if isinstance(name, str) and name:
                    commit = entry.get("CommitId")
                    named.setdefault(name, commit if isinstance(commit, str) and _SHA1.match(commit) else None)
        return named

    async def _list(self, repo: RepoRef, revision: str) -> list[RemoteFile]:
        if repo.repo_type == "model":
            return self._files(await self._data(urls.files_url(self.endpoint, repo, revision), repo, revision),
                               repo, revision)
        files: list[RemoteFile] = []
        for page in range(1, MAX_DATASET_PAGES + 1):
            url = urls.tree_url(self.endpoint, repo, revision, page, DATASET_PAGE_SIZE)
            data = await self._data(url, repo, revision)
            entries = data.get("Files") if isinstance(data, dict) else data
            files += self._files(data, repo, revision)
            if not isinstance(entries, list) or len(entries) < DATASET_PAGE_SIZE:
                return files
        raise UpstreamError(f"the file list of {repo} has more than {MAX_DATASET_PAGES} pages")

    def _files(self, data: Any, repo: RepoRef, revision: str) -> list[RemoteFile]:
        """The files (not folders) of one answer of a file list."""
        entries = data.get("Files") if isinstance(data, dict) else data
        if not isinstance(entries, list):
            raise UpstreamError(f"the file list of {repo}@{revision} on {self.endpoint} is malformed")
        return [parse_file_entry(e, repo) for e in entries if not (isinstance(e, dict) and e.get("Type") == "tree")]

    async def list_files(self, repo: RepoRef, commit: str) -> list[RemoteFile]:
        """Every file of the repo at ``commit`` (a commit `repo_info` returned, or a commit id)."""
        key = (repo, commit)
        files = self._listings.listed.get(key)
        if files is None:
            revision = self._listings.revision_of.get(key, commit)
            files = await self._list(repo, revision)
            self._listings.remember(key, revision, files)
        return list(files)

    async def locate(self, repo: RepoRef, commit: str, path: str) -> FileLocation:
        """Where the bytes of ``path`` are: the `/repo?FilePath=` route, with size and sha256 from the list."""
        listed = {f.path: f for f in await self.list_files(repo, commit)}
        remote = listed.get(path)
        if remote is None:
            raise EntryNotFoundError(f"file {path!r} not found in {repo} at {commit}")
        revision = self._listings.revision_of.get((repo, commit), commit)
        return FileLocation(url=urls.file_url(self.endpoint, repo, revision, path), size=remote.size,
                            etag=remote.lfs_sha256 or "", commit=commit)

    async def _unranged(self, resp: aiohttp.ClientResponse, url: str, location: FileLocation, start: int,
                        end: int) -> aiohttp.ClientResponse:
        """Files ModelScope serves itself (not redirected) ignore Range: a tail is the whole body past
        ``start`` bytes, which are read and dropped (at most `MAX_SKIPPED_BYTES`)."""
        if end != location.size or resp.content_length != location.size or start > MAX_SKIPPED_BYTES:
            resp.release()
            raise UpstreamError(f"{redacted(url)} ignored the Range header")
        try:
            skipped = 0
            while skipped < start:
                chunk = await resp.content.read(min(SKIP_PIECE, start - skipped))
                if not chunk:
                    raise aiohttp.ClientPayloadError(f"body cut after {skipped} of the {start} bytes to skip")
                skipped += len(chunk)
        except BaseException:
            resp.release()
            raise
        return resp

    async def _range_refusal(self, resp: aiohttp.ClientResponse, url: str) -> UpstreamError:
        try:
            body: Any = json.loads(await read_body(resp, MAX_ERROR_BYTES))
        except (ValueError, aiohttp.ClientError):
            body = None
        message = _message(body)
        detail = f": {message}" if message else ""
        if resp.status == 404:
            return EntryNotFoundError(f"{redacted(url)} answered 404{detail}")
        return UpstreamError(f"GET {redacted(url)} failed: HTTP {resp.status}{detail}")


def _listing_id(files: list[RemoteFile]) -> str:
    """A commit-like id (40 hex) for a listing ModelScope gave no commit for: the digest of its files."""
    digest = hashlib.sha1()
    for f in sorted(files, key=lambda f: f.path):
        digest.update(f"{f.path}\0{f.size}\0{f.lfs_sha256}\n".encode())
    return digest.hexdigest()


def parse_file_entry(entry: Any, repo: RepoRef) -> RemoteFile:
    """Validate one file of a ModelScope file list (untrusted input); its sha256 is required."""
    if not isinstance(entry, dict):
        raise UpstreamError(f"malformed file entry in the file list of {repo}: {str(entry)[:120]}")
    path, size, sha256, oid = entry.get("Path"), entry.get("Size"), entry.get("Sha256"), entry.get("Id")
    if (not isinstance(path, str) or type(size) is not int or size < 0
            or not isinstance(sha256, str) or not _SHA256.match(sha256)):
        raise UpstreamError(f"malformed file entry in the file list of {repo}: {str(entry)[:120]}")
    sha256 = sha256.lower()
    git_oid = oid if isinstance(oid, str) and _SHA1.match(oid) else sha256
    return RemoteFile(path=path, size=size, git_oid=git_oid, lfs_sha256=sha256)
