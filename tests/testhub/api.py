"""The hub's answers: access rules, errors, the JSON API and `/resolve`, shaped as huggingface.co's.

Every handler takes the hub, the request and the already-routed parts of the path; refusals are
raised as `HubError` and turned into responses by the dispatcher.
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from aiohttp import web

from .repos import Commit, Entry, HubRepo
from .serving import RangeNotSatisfiable, parse_range, send_blob, url_signature, xet_hash

if TYPE_CHECKING:
    from .server import TestHub

INVALID_CREDENTIALS = "Invalid credentials in Authorization header"
EXPANDED_PAGE_SIZE = 50
"""Tree page size cap with `expand=true`, as huggingface.co."""


class HubError(Exception):
    """A refusal, carrying the response that says so."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def error_response(status: int, code: str | None, message: str, commit: str | None = None) -> web.Response:
    """A Hub error: JSON body plus `X-Error-Code` / `X-Error-Message` (and `X-Repo-Commit`)."""
    headers = {"X-Error-Message": message}
    if code:
        headers["X-Error-Code"] = code
    if commit:
        headers["X-Repo-Commit"] = commit
    return web.json_response({"error": message}, status=status, headers=headers)


def user_for(hub: TestHub, request: web.Request) -> str | None:
    """The user the request's Bearer token maps to; None if anonymous; 401 for an unknown token."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    user = hub.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
    if user is None:
        raise HubError(error_response(401, None, INVALID_CREDENTIALS))
    return user


def _repo_url(repo: HubRepo) -> str:
    prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
    return f"https://huggingface.co/{prefix}{repo.repo_id}"


def lookup(hub: TestHub, request: web.Request, repo_type: str, repo_id: str, *, files: bool) -> HubRepo:
    """The repo if the caller may see it (and, with `files`, pass its gate), else the Hub's refusal."""
    user = user_for(hub, request)
    repo = hub.repos.get((repo_type, repo_id))
    if repo is None or not repo.may_see(user):
        if user is None:
            raise HubError(error_response(401, "RepoNotFound", "Invalid username or password."))
        raise HubError(error_response(404, "RepoNotFound", "Repository not found"))
    if files and not repo.gate_open_for(user):
        what = f"Access to {repo.repo_type} {repo.repo_id} is restricted"
        if user is None:
            message = f"{what}. You must have access to it and be authenticated to access it. Please log in."
            raise HubError(error_response(401, "GatedRepo", message))
        message = f"{what} and you are not in the authorized list. Visit {_repo_url(repo)} to ask for access."
        raise HubError(error_response(403, "GatedRepo", message))
    return repo


def revision(repo: HubRepo, rev: str) -> Commit:
    """The commit `rev` names, or RevisionNotFound."""
    commit = repo.resolve(rev)
    if commit is None:
        raise HubError(error_response(404, "RevisionNotFound", f"Invalid rev id: {rev}"))
    return commit


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true")


def file_entry(path: str, entry: Entry, xet: bool) -> dict[str, Any]:
    """A tree / paths-info file entry."""
    item: dict[str, Any] = {"type": "file", "oid": entry.oid, "size": entry.blob.size, "path": path}
    if entry.lfs:
        item["lfs"] = {"oid": entry.blob.sha256, "size": entry.blob.size, "pointerSize": len(entry.pointer)}
        if xet:
            item["xetHash"] = xet_hash(entry.blob)
    return item


def listing(commit: Commit, xet: bool) -> dict[str, dict[str, Any]]:
    """Every file and directory entry of a commit, by path (directories are derived from file paths)."""
    children: dict[str, list[str]] = {}
    entries: dict[str, dict[str, Any]] = {}
    for path, entry in commit.files.items():
        entries[path] = file_entry(path, entry, xet)
        parts = path.split("/")
        for depth in range(1, len(parts)):
            if directory := "/".join(parts[:depth]):
                children.setdefault(directory, []).append(f"{path}\0{entry.oid}")
    for directory, items in children.items():
        oid = hashlib.sha1("\n".join(sorted(items)).encode()).hexdigest()
        entries.setdefault(directory, {"type": "directory", "oid": oid, "size": 0, "path": directory})
    return dict(sorted(entries.items()))


def _parent(path: str) -> str:
    return path.rpartition("/")[0]


async def repo_info(hub: TestHub, request: web.Request, repo_type: str, repo_id: str, rev: str) -> web.Response:
    """`GET /api/{type}s/{repo}[/revision/{rev}]`: model_info / dataset_info JSON."""
    repo = lookup(hub, request, repo_type, repo_id, files=False)
    commit = revision(repo, rev)
    blobs = _flag(request, "blobs")
    siblings = []
    for path in sorted(commit.files):
        entry = commit.files[path]
        sibling: dict[str, Any] = {"rfilename": path}
        if blobs:
            sibling.update(size=entry.blob.size, blobId=entry.oid)
            if entry.lfs:
                blob = entry.blob
                sibling["lfs"] = {"sha256": blob.sha256, "size": blob.size, "pointerSize": len(entry.pointer)}
        siblings.append(sibling)
    info: dict[str, Any] = {
        "_id": hashlib.sha1(f"{repo_type}/{repo_id}".encode()).hexdigest()[:24],
        "id": repo_id,
        "author": repo_id.split("/")[0] if "/" in repo_id else repo.owner,
        "sha": commit.sha,
        "lastModified": _iso(commit.created_at),
        "createdAt": _iso(repo.created_at),
        "private": repo.private,
        "gated": repo.gated,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "cardData": {},
        "siblings": siblings,
        "usedStorage": sum(e.blob.size for e in commit.files.values()),
    }
    if repo_type == "model":
        info.update(modelId=repo_id, spaces=[])
    info.update(repo.info)
    expand = request.query.getall("expand", []) + request.query.getall("expand[]", [])
    if expand:
        info = {k: v for k, v in info.items() if k in ("_id", "id") or k in expand}
    return web.json_response(info)


async def tree(hub: TestHub, request: web.Request, repo_type: str, repo_id: str, rev: str, path: str) -> web.Response:
    """`GET /api/{type}s/{repo}/tree/{rev}[/{path}]`: one page of entries, `Link: rel="next"` for more."""
    repo = lookup(hub, request, repo_type, repo_id, files=False)
    commit = revision(repo, rev)
    everything = listing(commit, hub.xet)
    if path and everything.get(path, {}).get("type") != "directory":
        message = f"{path} does not exist on {rev}"
        raise HubError(error_response(404, "EntryNotFound", message, commit.sha))
    prefix = f"{path}/" if path else ""
    recursive = _flag(request, "recursive")
    entries = [e for p, e in everything.items() if p.startswith(prefix) and (recursive or _parent(p) == path)]
    cursor = request.query.get("cursor", "0")
    if not cursor.isdigit():
        raise HubError(error_response(400, "BadRequest", f"Invalid cursor: {cursor}"))
    offset = int(cursor)
    page_size = min(hub.tree_page_size, EXPANDED_PAGE_SIZE) if _flag(request, "expand") else hub.tree_page_size
    page = entries[offset : offset + page_size]
    headers = {}
    if offset + len(page) < len(entries):
        query = [(k, v) for k, v in request.query.items() if k != "cursor"] + [("cursor", str(offset + len(page)))]
        raw_path = request.raw_path.partition("?")[0]
        headers["Link"] = f'<{request.scheme}://{request.host}{raw_path}?{urlencode(query)}>; rel="next"'
    return web.json_response(page, headers=headers)


async def paths_info(hub: TestHub, request: web.Request, repo_type: str, repo_id: str, rev: str) -> web.Response:
    """`POST /api/{type}s/{repo}/paths-info/{rev}` (form `paths=`): entries of the paths that exist."""
    repo = lookup(hub, request, repo_type, repo_id, files=False)
    commit = revision(repo, rev)
    everything = listing(commit, hub.xet)
    form = await request.post()
    wanted = [str(p) for p in form.getall("paths", [])]
    return web.json_response([everything[p] for p in dict.fromkeys(wanted) if p in everything])


async def refs(hub: TestHub, request: web.Request, repo_type: str, repo_id: str) -> web.Response:
    """`GET /api/{type}s/{repo}/refs`: branches, tags (and pull requests with `include_prs=1`)."""
    repo = lookup(hub, request, repo_type, repo_id, files=False)

    def items(names: dict[str, str], ref_prefix: str) -> list[dict[str, str]]:
        return [{"name": n, "ref": f"{ref_prefix}{n}", "targetCommit": sha} for n, sha in sorted(names.items())]

    body: dict[str, Any] = {
        "branches": items(repo.branches, "refs/heads/"),
        "converts": [],
        "tags": items(repo.tags, "refs/tags/"),
    }
    if _flag(request, "include_prs"):
        body["pullRequests"] = items(repo.pull_requests, "")
    return web.json_response(body)


SEARCH_SORTS = ("downloads", "likes", "trendingScore", "createdAt", "lastModified", "id")
SEARCH_PAGE_MAX = 1000
"""Models per page at most, as huggingface.co."""


def _model_hit(repo: HubRepo) -> dict[str, Any]:
    """A model as `GET /api/models` lists it."""
    hit: dict[str, Any] = {
        "_id": hashlib.sha1(f"model/{repo.repo_id}".encode()).hexdigest()[:24],
        "id": repo.repo_id,
        "likes": repo.info.get("likes", 0),
        "downloads": repo.info.get("downloads", 0),
        "private": repo.private,
        "tags": list(repo.info.get("tags", [])),
        "createdAt": _iso(repo.created_at),
        "modelId": repo.repo_id,
    }
    hit.update({k: repo.info[k] for k in ("pipeline_tag", "library_name") if k in repo.info})
    return hit


async def search_models(hub: TestHub, request: web.Request) -> web.Response:
    """`GET /api/models?search=&author=&filter=…&sort=&direction=&limit=`: the models the caller may
    see whose id contains `search`, owned by `author`, tagged with every `filter`; pages of `limit`
    models linked by `Link: rel="next"`."""
    user = user_for(hub, request)
    query = request.query
    search, author, filters = query.get("search", "").lower(), query.get("author"), query.getall("filter", [])
    sort, limit, cursor = query.get("sort", "id"), query.get("limit", str(SEARCH_PAGE_MAX)), query.get("cursor", "0")
    if sort not in SEARCH_SORTS or not limit.isdigit() or not cursor.isdigit():
        raise HubError(error_response(400, "BadRequest", "Invalid search parameters"))
    models = [r for (kind, _), r in sorted(hub.repos.items()) if kind == "model" and r.may_see(user)
              and search in r.repo_id.lower() and author in (None, r.repo_id.partition("/")[0])
              and all(f in r.info.get("tags", ()) for f in filters)]
    dates = {"createdAt": lambda r: r.created_at, "lastModified": lambda r: r.head.created_at}
    if sort != "id":
        models.sort(key=dates.get(sort, lambda r: r.info.get(sort, 0)), reverse=query.get("direction", "-1") == "-1")
    offset, size = int(cursor), min(int(limit) or SEARCH_PAGE_MAX, SEARCH_PAGE_MAX)
    page = models[offset : offset + size]
    headers = {}
    if offset + len(page) < len(models):
        rest = [(k, v) for k, v in query.items() if k != "cursor"] + [("cursor", str(offset + len(page)))]
        headers["Link"] = f'<{request.scheme}://{request.host}/api/models?{urlencode(rest)}>; rel="next"'
    return web.json_response([_model_hit(r) for r in page], headers=headers)


async def whoami(hub: TestHub, request: web.Request) -> web.Response:
    """`GET /api/whoami-v2`: the token's user."""
    user = user_for(hub, request)
    if user is None:
        raise HubError(error_response(401, None, INVALID_CREDENTIALS))
    return web.json_response(
        {
            "type": "user",
            "name": user,
            "fullname": user.title(),
            "orgs": [],
            "auth": {"type": "access_token", "accessToken": {"displayName": f"{user}-token", "role": "read"}},
        }
    )


def _signed_cdn_url(hub: TestHub, repo: HubRepo, path: str, entry: Entry) -> str:
    expires = int(time.time()) + hub.faults.url_ttl
    sha = entry.blob.sha256
    folder = hashlib.sha256(f"{repo.repo_type}/{repo.repo_id}".encode()).hexdigest()
    name = path.rpartition("/")[2]
    disposition = f"attachment; filename*=UTF-8''{quote(name)}; filename=\"{name}\";"
    query = urlencode(
        {
            "response-content-disposition": disposition,
            "Expires": expires,
            "Signature": url_signature(hub.secret, sha, expires),
        }
    )
    return f"{hub.cdn_base}/repos/{folder[:2]}/{folder[2:4]}/{folder}/{sha}?{query}"


async def resolve(
    hub: TestHub, request: web.Request, repo_type: str, repo_id: str, rev: str, path: str
) -> web.StreamResponse:
    """`GET|HEAD /{type prefix}{repo}/resolve/{rev}/{path}`: git files inline, LFS files 302 to the CDN."""
    repo = lookup(hub, request, repo_type, repo_id, files=True)
    commit = revision(repo, rev)
    entry = commit.files.get(path)
    if entry is None:
        raise HubError(error_response(404, "EntryNotFound", "Entry not found", commit.sha))
    if entry.lfs:
        location = _signed_cdn_url(hub, repo, path, entry)
        headers = {
            "Location": location,
            "X-Linked-Etag": f'"{entry.blob.sha256}"',
            "X-Linked-Size": str(entry.blob.size),
            "X-Repo-Commit": commit.sha,
        }
        if hub.xet:
            token_url = f"{request.scheme}://{request.host}/api/{repo_type}s/{repo_id}/xet-read-token/{commit.sha}"
            digest = xet_hash(entry.blob)
            headers["X-Xet-Hash"] = digest
            headers["Link"] = (
                f'<{token_url}>; rel="xet-auth", <{hub.cdn_base}/xet/reconstructions/{digest}>; '
                'rel="xet-reconstruction-info"'
            )
        return web.Response(status=302, text=f"Found. Redirecting to {location}", headers=headers)
    headers = {
        "ETag": f'"{entry.blob.git_sha1}"',
        "X-Repo-Commit": commit.sha,
        "Accept-Ranges": "bytes",
        "Content-Type": "application/octet-stream",
    }
    try:
        rng = parse_range(request.headers.get("Range"), entry.blob.size)
    except RangeNotSatisfiable:
        message = "Requested Range Not Satisfiable"
        response = error_response(416, None, message, commit.sha)
        response.headers["Content-Range"] = f"bytes */{entry.blob.size}"
        return response
    names = {path, entry.blob.sha256}
    return await send_blob(
        request, headers, entry.blob, rng, kind="resolve", names=names, faults=hub.faults, stats=hub.stats
    )
