"""The catalog API: JSON over what the mirror's catalog holds (described at ``GET /openapi.json``).

    GET /v1/repos                                       every repo the caller may see, newest revision each
    GET /v1/repos/{repo}[?revision=R&repo_type=T]       one revision in full, and the repo's revisions
    GET /v1/repos/{repo}/files[?revision=&repo_type=]   its files, stored or not, with their headers
    GET /v1/repos/{repo}/tensors[?revision=&repo_type=&path=&offset=&limit=]   a page of its tensors
    GET /v1/search?text=&arch=&format=&quant=&min_params=&max_params=          ``mreg search``

Errors have one shape, the Hub's ``{"error": message}`` plus a ``code``, with the status and code of
the error's class (``registry.errors``): 400 ``BadRequest`` (an unknown or malformed parameter), 404
``RepoNotFound`` / ``RevisionNotFound`` / ``EntryNotFound``, 401/403 ``GatedRepo``, 502/504 when
upstream must be asked who may see a repo and cannot answer.
Gated and private repos are shown only to callers upstream lets read them (``visibility``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from mreg.registry.errors import EntryNotFoundError, MregError, RepoNotFoundError, RevisionNotFoundError, UsageError
from mreg.registry.catalog.overview import RepoDetail, find_commit, overviews, repo_detail
from mreg.registry.repo import RepoRef
from mreg.registry.catalog.search import Query, hit_json, search

from mreg.daemon import visibility
from mreg.daemon.cross_site import own_origin
from mreg.daemon.catalog import shapes as catalog_json
from mreg.daemon.hub.answers import json_answer
from mreg.daemon.state import MIRROR
from mreg.daemon.serving.upstream import bearer_token

REVISION_PARAMS = frozenset({"revision", "repo_type"})
SEARCH_PARAMS = frozenset({"text", "arch", "format", "quant", "min_params", "max_params"})
TENSOR_PARAMS = frozenset({"path", "offset", "limit"})
TENSOR_PAGE = 1000
MAX_TENSOR_PAGE = 10_000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_answer(exc: MregError) -> web.Response:
    """The catalog API's one error shape: ``{"error": message, "code": code}`` with the error's status."""
    return json_answer({"error": str(exc), "code": exc.code}, exc.http_status)


def json_errors(handler: Handler) -> Handler:
    """``handler`` with its errors answered in the API's error shape."""

    async def answer(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except MregError as exc:
            return error_answer(exc)

    return answer


def params(request: web.Request, allowed: frozenset[str]) -> dict[str, str]:
    """The query parameters, each given at most once and all of them known (else 400)."""
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        raise UsageError(f"unknown parameter {unknown[0]!r}: use {', '.join(sorted(allowed))}")
    repeated = sorted(k for k in request.query if len(request.query.getall(k)) > 1)
    if repeated:
        raise UsageError(f"parameter {repeated[0]!r} given more than once")
    return dict(request.query)


@dataclass(frozen=True)
class Located:
    """A repo revision the caller may see, and the request's other parameters."""

    repo: RepoRef
    commit: str
    params: dict[str, str]


async def locate(request: web.Request, allowed: frozenset[str] = frozenset()) -> Located:
    """The repo (``{repo}``, ``repo_type``) and commit (``revision``, else the listed one) a request
    names, once the caller may see it. A private repo the caller may not see is not found, whatever
    revision is asked for."""
    mirror = request.app[MIRROR]
    given = params(request, allowed | REVISION_PARAMS)
    repo = RepoRef.parse(request.match_info["repo"], given.get("repo_type", "model"))
    revision = given.get("revision")
    commit = await find_commit(mirror.catalog, repo, revision)
    checked = commit or await find_commit(mirror.catalog, repo, None)
    if checked is None:
        raise visibility.not_found(repo)
    refusal = await visibility.refusal(mirror, repo, checked, bearer_token(request))
    if refusal is not None:
        raise refusal
    if commit is None:
        raise RevisionNotFoundError(f"{repo} has no revision {revision!r} in the mirror's catalog")
    return Located(repo, commit, given)


async def repos_listing(request: web.Request) -> list[dict]:
    """``GET /v1/repos``'s body: the repos the caller may see."""
    mirror = request.app[MIRROR]
    items = await visibility.visible(mirror, await overviews(mirror.catalog),
                                     lambda item: (item.summary.repo, item.summary.commit), bearer_token(request))
    jobs = {job.repo: job for job in await mirror.catalog.list_jobs()}
    return [catalog_json.repo_json(item, jobs.get(item.summary.repo)) for item in items]


async def detail_of(request: web.Request) -> RepoDetail:
    """The detail of the revision a request names (404 when the catalog lost it meanwhile)."""
    mirror = request.app[MIRROR]
    located = await locate(request)
    detail = await repo_detail(mirror.catalog, mirror.store, located.repo, located.commit)
    if detail is None:
        raise RepoNotFoundError(f"{located.repo} is not in the mirror's catalog")
    return detail


@json_errors
async def repos(request: web.Request) -> web.Response:
    params(request, frozenset())
    return json_answer(await repos_listing(request))


@json_errors
async def repo(request: web.Request) -> web.Response:
    detail = await detail_of(request)
    job = await request.app[MIRROR].catalog.job(detail.overview.summary.repo)
    return json_answer(catalog_json.detail_json(detail, job, own_origin(request)))


@json_errors
async def files(request: web.Request) -> web.Response:
    catalog = request.app[MIRROR].catalog
    located = await locate(request)
    records = await catalog.revision_files(located.repo, located.commit)
    indexed = await catalog.indexed_revisions(located.repo, located.commit)
    headers = indexed[0].headers if indexed else ()
    return json_answer(catalog_json.files_json(located.repo, located.commit, records, headers))


def _count(given: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    text = given.get(name)
    if text is None:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise UsageError(f"invalid {name} {text[:40]!r}: use a whole number from {low} to {high}")
    return int(text)


@json_errors
async def tensors(request: web.Request) -> web.Response:
    catalog = request.app[MIRROR].catalog
    located = await locate(request, TENSOR_PARAMS)
    offset = _count(located.params, "offset", 0, 0, 2**62)
    limit = _count(located.params, "limit", TENSOR_PAGE, 1, MAX_TENSOR_PAGE)
    path = located.params.get("path")
    if path is not None:
        indexed = await catalog.indexed_revisions(located.repo, located.commit)
        if not any(h.path == path for r in indexed for h in r.headers):
            raise EntryNotFoundError(f"{located.repo}@{located.commit[:12]} has no indexed weights file "
                                      f"{path[:200]!r}")
    page = await catalog.tensor_page(located.repo, located.commit, path, offset, limit)
    return json_answer(catalog_json.tensors_json(located.repo, located.commit, path, page, offset, limit))


async def search_hits(request: web.Request) -> list[dict]:
    """``GET /v1/search``'s body: ``mreg search`` with the same filters, over what the caller may see."""
    mirror = request.app[MIRROR]
    given = params(request, SEARCH_PARAMS)
    query = Query.parse(given.get("text"), given.get("arch"), given.get("format"), given.get("quant"),
                        given.get("min_params"), given.get("max_params"))
    hits = await visibility.visible(mirror, await search(mirror.catalog, query), lambda hit: (hit.repo, hit.commit),
                                    bearer_token(request))
    return [hit_json(hit) for hit in hits]


@json_errors
async def search_route(request: web.Request) -> web.Response:
    return json_answer(await search_hits(request))
