"""HubClient: the one object that talks to a Hugging Face Hub endpoint over aiohttp.

It owns the token, the retry policy and the redirect policy (sending, retries and ranged GETs are
``registry.upstream.http``'s, shared with the ModelScope client):
- the token is sent only to the endpoint's own origin; any hop to another host (the LFS CDN, a
  mirror's redirect) goes without it;
- the raw answers (``repo_info_json``, ``tree_json``: the JSON as the hub sent it, an error answer as an
  ``UpstreamRefusedError`` carrying it) are what the mirror daemon passes through; ``repo_info`` and
  ``list_files`` parse them, and their ``X-Error-Code`` refusals become the one-line errors of
  ``registry.errors``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urljoin

import aiohttp

from mreg.registry.errors import (
    EntryNotFoundError,
    GatedRepoError,
    RepoNotFoundError,
    RevisionNotFoundError,
    UpstreamError,
    UpstreamRefusedError,
    UpstreamUnavailableError,
    UsageError,
)
from mreg.registry.repo import RepoRef
from mreg.registry.upstream.client import FileLocation, RemoteFile, RepoInfo
from mreg.registry.upstream.http import MAX_REDIRECTS, UpstreamHTTP, read_body
from mreg.registry.upstream.hub import urls

__all__ = ["HUB_HEADERS", "HubClient", "ModelHit"]

MAX_TREE_PAGES = 10_000
MAX_JSON_BYTES = 256 * 1024 * 1024
SEARCH_PAGE_SIZE = 100
"""Models asked per page of `search_models` (the Hub serves at most 1000)."""
HUB_HEADERS = ("Content-Type", "X-Error-Code", "X-Error-Message", "X-Repo-Commit", "Retry-After", "RateLimit",
               "RateLimit-Policy")
"""The headers of a hub's answer that mean something to its reader (never X-Xet-*, never Set-Cookie): what a
refusal carries and the mirror daemon forwards."""
_SHA1 = re.compile(r"^[0-9a-f]{40}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ModelHit:
    """One model of a search answer."""

    repo_id: str
    downloads: int
    tags: tuple[str, ...]


def _error_for(status: int, headers: Mapping[str, str], request: str, repo: RepoRef, revision: str | None,
               path: str | None, endpoint: str, has_token: bool) -> UpstreamError:
    """Map a hub's error answer (``status``, ``headers``) to ``request`` (its method and URL) to a one-line error."""
    code = headers.get("X-Error-Code", "")
    message = headers.get("X-Error-Message", "").strip().splitlines()[0:1]
    detail = f": {message[0][:200]}" if message else ""
    page = f"{endpoint}/{repo}"
    if code == "GatedRepo":
        if status == 401 or not has_token:
            return GatedRepoError(f"{repo} is a gated repo: request access at {page} and pass a token "
                                  f"(--token or HF_TOKEN)")
        return GatedRepoError(f"{repo} is a gated repo and your token is not approved for it: ask for access at {page}")
    if code == "RevisionNotFound":
        return RevisionNotFoundError(f"revision {revision!r} not found in {repo}")
    if code == "EntryNotFound":
        return EntryNotFoundError(f"file {path!r} not found in {repo} at {revision}")
    if code == "RepoNotFound" or (status == 401 and not has_token) or status == 404 and path is None:
        hint = "" if has_token else " (if it is private, pass --token or set HF_TOKEN)"
        return RepoNotFoundError(f"repository {repo} not found on {endpoint}{hint}")
    if status == 401:
        return UpstreamError(f"{endpoint} refused the token (401){detail}: check --token / HF_TOKEN")
    if status == 403:
        return UpstreamError(f"access to {repo} denied by {endpoint} (403){detail}")
    if status == 404:
        return EntryNotFoundError(f"file {path!r} not found in {repo} at {revision}")
    return UpstreamError(f"{request} failed: HTTP {status}{detail}")


class HubClient(UpstreamHTTP):
    """Speaks the Hub's download protocol to one endpoint with one (optional) token."""

    def mirror(self, endpoint: str) -> HubClient:
        """A client of another endpoint over the same session, retry policy and timeout, without this token."""
        return HubClient(self._session, endpoint, None, self.retry, self.timeout)

    async def _follow(self, method: str, url: str, headers: dict[str, str] | None = None,
                      stop_at_other_host: bool = False) -> aiohttp.ClientResponse:
        """Send, following redirects (the token is dropped on any hop off the endpoint's origin).

        With ``stop_at_other_host`` a redirect to another host is returned unfollowed (as
        huggingface_hub's HEAD does for LFS files).
        """
        for _ in range(MAX_REDIRECTS + 1):
            resp = await self.send(method, url, headers)
            location = resp.headers.get("Location")
            if resp.status not in (301, 302, 303, 307, 308) or not location:
                return resp
            target = urljoin(url, location)
            if stop_at_other_host and not urls.same_origin(target, url):
                return resp
            resp.release()
            url = target
        raise UpstreamError(f"too many redirects from {urls.redacted(url)}")

    async def _get_json(self, url: str) -> tuple[Any, str | None]:
        """GET ``url`` (following redirects): its JSON and the URL of its next page (``Link: rel="next"``).

        An error answer the retry policy hands back (4xx; 5xx too under a policy that retries none) raises
        UpstreamRefusedError carrying it.
        """
        resp = await self._follow("GET", url)
        try:
            body = await read_body(resp, MAX_JSON_BYTES)
            if resp.status >= 400:
                headers = {name: resp.headers[name] for name in HUB_HEADERS if name in resp.headers}
                raise UpstreamRefusedError(resp.status, headers, body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamUnavailableError(f"reading {urls.redacted(url)} failed: {type(exc).__name__}") from exc
        finally:
            resp.release()
        if len(body) > MAX_JSON_BYTES:
            raise UpstreamError(f"answer from {urls.redacted(url)} is larger than {MAX_JSON_BYTES} bytes")
        next_link = resp.links.get("next")
        try:
            return json.loads(body), None if next_link is None else str(next_link["url"])
        except ValueError:
            raise UpstreamError(f"{urls.redacted(url)} did not answer with JSON (HTTP {resp.status})") from None

    @contextmanager
    def _one_line(self, url: str, repo: RepoRef, revision: str) -> Iterator[None]:
        """Refusals of the raw requests within, as the one-line errors of ``registry.errors``."""
        try:
            yield
        except UpstreamRefusedError as refused:
            raise _error_for(refused.http_status, refused.headers, f"GET {urls.redacted(url)}", repo, revision,
                             None, self.endpoint, self.has_token) from None

    async def repo_info_json(self, repo: RepoRef, revision: str, *, blobs: bool = False,
                             expand: Sequence[str] = ()) -> Any:
        """The hub's repo info at ``revision`` as it sent it (``blobs``: with sizes and LFS of the siblings;
        ``expand``: only these fields). UpstreamRefusedError: the hub's error answer."""
        query = [("blobs", "true")] if blobs else []
        query += [("expand", field) for field in expand]
        url = urls.repo_info_url(self.endpoint, repo, revision)
        data, _ = await self._get_json(f"{url}?{urlencode(query)}" if query else url)
        return data

    async def tree_json(self, repo: RepoRef, commit: str) -> list[Any]:
        """Every entry of the recursive tree listing at ``commit``, as the hub sent them, walking its Link
        pagination (next pages on the endpoint's own origin only). UpstreamRefusedError: the hub's error answer."""
        url: str | None = urls.tree_url(self.endpoint, repo, commit)
        entries: list[Any] = []
        for _ in range(MAX_TREE_PAGES):
            if url is None:
                return entries
            page, url = await self._get_json(url)
            if not isinstance(page, list):
                raise UpstreamError(f"the tree listing of {repo}@{commit} is not a JSON list")
            entries.extend(page)
            if url is not None and not urls.same_origin(url, self.endpoint):
                raise UpstreamError(f"the tree listing of {repo}@{commit} points its next page at another host")
        raise UpstreamError(f"the tree listing of {repo}@{commit} has more than {MAX_TREE_PAGES} pages")

    async def repo_info(self, repo: RepoRef, revision: str) -> RepoInfo:
        """Repo metadata at ``revision``; pins the revision to its commit."""
        with self._one_line(urls.repo_info_url(self.endpoint, repo, revision), repo, revision):
            data = await self.repo_info_json(repo, revision)
        sha = data.get("sha") if isinstance(data, dict) else None
        if not isinstance(sha, str) or not _SHA1.match(sha):
            raise UpstreamError(f"the hub's answer for {repo}@{revision} has no valid commit sha")
        return RepoInfo(repo=repo, commit=sha, gated=data.get("gated", False), private=bool(data.get("private")))

    async def list_files(self, repo: RepoRef, commit: str) -> list[RemoteFile]:
        """Every file of the repo at ``commit`` (`tree_json`, parsed)."""
        with self._one_line(urls.tree_url(self.endpoint, repo, commit), repo, commit):
            entries = await self.tree_json(repo, commit)
        return [parse_tree_entry(entry, repo) for entry in entries
                if isinstance(entry, dict) and entry.get("type") == "file"]

    async def search_models(self, *, search: str | None = None, author: str | None = None,
                            filters: Sequence[str] = (), sort: str = "downloads", limit: int = 100) -> list[ModelHit]:
        """Up to ``limit`` models matching ``search`` (a substring of the id), ``author`` and every tag
        of ``filters``, sorted by ``sort`` descending (`GET /api/models`, following Link pagination)."""
        url: str | None = urls.models_search_url(self.endpoint, search, author, filters, sort,
                                                 min(limit, SEARCH_PAGE_SIZE))
        hits: list[ModelHit] = []
        while url is not None and len(hits) < limit:
            try:
                data, next_url = await self._get_json(url)
            except UpstreamRefusedError as refused:
                raise UpstreamError(f"GET {urls.redacted(url)} failed: HTTP {refused.http_status}") from None
            if not isinstance(data, list):
                raise UpstreamError(f"the model search of {self.endpoint} did not answer a JSON list")
            hits.extend(_parse_model_hit(entry) for entry in data)
            url = next_url if data else None
            if url is not None and not urls.same_origin(url, self.endpoint):
                raise UpstreamError(f"the model search of {self.endpoint} points its next page at another host")
        return hits[:limit]

    async def locate(self, repo: RepoRef, commit: str, path: str) -> FileLocation:
        """Resolve a file: HEAD on its resolve URL, following same-host redirects only.

        An LFS file answers with a redirect to a signed CDN URL, which is where its bytes come from.
        """
        url = urls.resolve_url(self.endpoint, repo, commit, path)
        resp = await self._follow("HEAD", url, stop_at_other_host=True)
        try:
            if resp.status >= 400:
                raise _error_for(resp.status, resp.headers, f"HEAD {urls.redacted(str(resp.url))}", repo, commit, path,
                                 self.endpoint, self.has_token)
            headers = resp.headers
            etag = (headers.get("X-Linked-Etag") or headers.get("ETag") or "").removeprefix("W/").strip('"')
            size_text = headers.get("X-Linked-Size") or headers.get("Content-Length") or ""
            if not size_text.isdigit():
                raise UpstreamError(f"the hub sent no size for {path!r} in {repo}")
            location = urljoin(str(resp.url), headers["Location"]) if 300 <= resp.status < 400 else str(resp.url)
            return FileLocation(url=location, size=int(size_text), etag=etag,
                                commit=headers.get("X-Repo-Commit", commit))
        finally:
            resp.release()

def _parse_model_hit(entry: Any) -> ModelHit:
    """Validate one model of a search answer (untrusted input): its id must be a valid repo id."""
    if not isinstance(entry, dict):
        raise UpstreamError(f"malformed model in a search answer: {str(entry)[:120]}")
    repo_id, downloads, tags = entry.get("id"), entry.get("downloads", 0), entry.get("tags", [])
    if not isinstance(repo_id, str) or type(downloads) is not int or not isinstance(tags, list):
        raise UpstreamError(f"malformed model in a search answer: {str(entry)[:120]}")
    try:
        RepoRef.parse(repo_id)
    except UsageError:
        raise UpstreamError(f"malformed model id in a search answer: {repo_id[:120]!r}") from None
    return ModelHit(repo_id=repo_id, downloads=downloads, tags=tuple(t for t in tags if isinstance(t, str)))


def parse_tree_entry(entry: dict[str, Any], repo: RepoRef) -> RemoteFile:
    """Validate one file entry of a tree listing (untrusted input)."""
    path, size, oid, lfs = entry.get("path"), entry.get("size"), entry.get("oid"), entry.get("lfs")
    lfs_sha = None
    if isinstance(lfs, dict):
        lfs_sha = lfs.get("oid") or lfs.get("sha256")
        if not isinstance(lfs_sha, str) or not _SHA256.match(lfs_sha) or lfs.get("size", size) != size:
            raise UpstreamError(f"malformed LFS entry for {path!r} in the tree of {repo}")
    if (not isinstance(path, str) or type(size) is not int or size < 0
            or not isinstance(oid, str) or not _SHA1.match(oid)):
        raise UpstreamError(f"malformed file entry in the tree of {repo}: {str(entry)[:120]}")
    return RemoteFile(path=path, size=size, git_oid=oid, lfs_sha256=lfs_sha)
