"""The Hub's metadata routes: passed through to upstream with the caller's token, reshaped for plain
HTTP (no ``xetHash``, pagination links pointing at the mirror); answered from what the mirror kept
per commit when upstream cannot be reached.

    GET      /api/{models|datasets}?search=&author=&filter=&sort=&limit=   (no offline answer)
    GET|HEAD /api/{models|datasets}/{repo}[/revision/{rev}]
    GET      /api/{type}s/{repo}/tree/{rev}[/{path}]
    POST     /api/{type}s/{repo}/paths-info/{rev}
    GET      /api/{type}s/{repo}/refs
    GET      /api/whoami-v2
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from mreg.registry.errors import UpstreamError, UpstreamUnavailableError
from mreg.registry.upstream.hub import urls
from mreg.registry.repo import RepoRef

from mreg.daemon.cross_site import own_origin
from mreg.daemon.serving import kept
from mreg.daemon.hub.answers import hub_error, json_answer
from mreg.daemon.serving.commits import CommitMeta
from mreg.daemon.hub.shapes import (
    info_view,
    info_without_xet,
    paths_info_view,
    rewrite_link,
    tree_view,
    without_xet,
)
from mreg.daemon.hub.paths import HubPath
from mreg.daemon.serving.refs import is_commit
from mreg.daemon.state import MIRROR, Mirror
from mreg.daemon.serving.upstream import Answer, bearer_token, not_in_mirror

KEPT_TREE_PAGE = 1000
"""Entries per page of a tree listing answered from the store (the Hub's page size)."""


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true")


def _data(answer: Answer) -> Any:
    try:
        return answer.json()
    except ValueError:
        raise UpstreamError(f"upstream answered HTTP {answer.status} without JSON") from None


def _reshaped(answer: Answer, data: Any, link: str | None = None) -> web.Response:
    headers = {k: v for k, v in answer.headers.items() if k != "Content-Type"}
    if link:
        headers["Link"] = link
    return json_answer(data, answer.status, headers)


async def _forward(request: web.Request, body: bytes | None = None) -> Answer:
    """The client's request, sent upstream as is (raw path and query, the client's token)."""
    mirror = request.app[MIRROR]
    return await mirror.upstream.call(request.method, request.raw_path, bearer_token(request), body,
                                      request.headers.get("Content-Type") if body is not None else None)


async def _kept_meta(mirror: Mirror, repo: RepoRef, revision: str, token: str | None,
                     cause: Exception) -> CommitMeta:
    """The commit ``revision`` was last seen at, as kept in the store, if the caller may see it: a gated or
    private repo's metadata only to callers whose access is known (upstream cannot be asked)."""
    commit = await mirror.refs.local(repo, revision)
    meta = await mirror.commits.local(repo, commit) if commit is not None else None
    if meta is None:
        raise not_in_mirror(cause, repo, revision)
    refusal = await mirror.access.refusal(meta, "", token, revision)  # gated too: nobody unchecked sees it
    if refusal is not None:
        raise refusal.refused()
    return meta


async def refs_data(mirror: Mirror, repo: RepoRef, token: str | None, include_prs: bool = False) -> Any:
    """Upstream's branches and tags (and pull requests) of ``repo``, kept for offline use; the kept
    ones, if the caller may see the repo, while upstream is away."""
    kept_at = kept.repo_file(mirror.store, repo, "refs-prs.json" if include_prs else "refs.json")
    try:
        answer = await mirror.upstream.call("GET", urls.refs_url("", repo, include_prs), token)
    except UpstreamUnavailableError as exc:
        await _kept_meta(mirror, repo, "main", token, exc)  # the caller may see the repo
        data = kept.load(kept_at)
        if data is None:
            raise UpstreamUnavailableError(f"{exc}, and the refs of {repo} are not in the mirror") from None
        return data
    if not answer.ok:
        raise answer.refused()
    data = _data(answer)
    kept.save(kept_at, data)
    return data


async def search(request: web.Request, hub: HubPath) -> web.Response:
    """A page of a model or dataset search, as upstream answers the caller; ``Link: rel="next"`` points at the mirror."""
    answer = await _forward(request)
    if not answer.ok:
        return answer.response()
    origin = answer.origin or request.app[MIRROR].upstream.endpoint
    link = rewrite_link(answer.link, origin, own_origin(request)) if answer.link else None
    return _reshaped(answer, _data(answer), link)


async def info(request: web.Request, hub: HubPath) -> web.Response:
    """Repo info (siblings without xetHash); the branch or tag asked for is remembered."""
    assert hub.repo is not None
    try:
        answer = await _forward(request)
    except UpstreamUnavailableError as exc:
        meta = await _kept_meta(request.app[MIRROR], hub.repo, hub.revision or "main", bearer_token(request), exc)
        expand = request.query.getall("expand", []) + request.query.getall("expand[]", [])
        return json_answer(info_view(meta.info, _flag(request, "blobs"), expand))
    if not answer.ok or request.method == "HEAD":
        return answer.response(head=request.method == "HEAD")
    data = info_without_xet(_data(answer))
    sha = data.get("sha") if isinstance(data, dict) else None
    if hub.revision is not None and isinstance(sha, str) and is_commit(sha):
        await request.app[MIRROR].refs.remember(hub.repo, hub.revision, sha)
    return _reshaped(answer, data)


async def tree(request: web.Request, hub: HubPath) -> web.Response:
    """A tree listing page; its ``Link: rel="next"`` points at the mirror."""
    assert hub.repo is not None and hub.revision is not None
    mirror = request.app[MIRROR]
    try:
        answer = await _forward(request)
    except UpstreamUnavailableError as exc:
        meta = await _kept_meta(mirror, hub.repo, hub.revision, bearer_token(request), exc)
        return await _kept_tree(request, hub, meta)
    if not answer.ok:
        return answer.response()
    origin = answer.origin or mirror.upstream.endpoint
    link = rewrite_link(answer.link, origin, own_origin(request)) if answer.link else None
    return _reshaped(answer, without_xet(_data(answer)), link)


async def _kept_tree(request: web.Request, hub: HubPath, meta: CommitMeta) -> web.Response:
    entries = tree_view(meta.entries, hub.path, _flag(request, "recursive"))
    if entries is None:
        return hub_error(404, "EntryNotFound", f"{hub.path} does not exist on {hub.revision}", meta.commit)
    cursor = request.query.get("cursor", "0")
    if not cursor.isdigit():
        return hub_error(400, "BadRequest", f"Invalid cursor: {cursor}")
    offset = int(cursor)
    page = entries[offset : offset + KEPT_TREE_PAGE]
    headers = {}
    if offset + len(page) < len(entries):
        query = [(k, v) for k, v in request.query.items() if k != "cursor"] + [("cursor", str(offset + len(page)))]
        url = f"{own_origin(request)}{request.raw_path.partition('?')[0]}?{urlencode(query)}"
        headers["Link"] = f'<{url}>; rel="next"'
    return json_answer(page, headers=headers)


async def paths_info(request: web.Request, hub: HubPath) -> web.Response:
    """Entries of the paths asked for (form ``paths=``), without xetHash."""
    assert hub.repo is not None and hub.revision is not None
    body = await request.read()
    try:
        answer = await _forward(request, body)
    except UpstreamUnavailableError as exc:
        meta = await _kept_meta(request.app[MIRROR], hub.repo, hub.revision, bearer_token(request), exc)
        form = await request.post()
        return json_answer(paths_info_view(meta.entries, [str(p) for p in form.getall("paths", [])]))
    if not answer.ok:
        return answer.response()
    return _reshaped(answer, without_xet(_data(answer)))


async def refs(request: web.Request, hub: HubPath) -> web.Response:
    """Branches, tags (and pull requests); the last answer is kept for offline use."""
    assert hub.repo is not None
    data = await refs_data(request.app[MIRROR], hub.repo, bearer_token(request), _flag(request, "include_prs"))
    return json_answer(data)


async def whoami(request: web.Request, hub: HubPath) -> web.Response:
    """Who the caller's token belongs to, as upstream says (no offline answer)."""
    return (await _forward(request)).response()
