"""The ModelScope routes (``mspath``), answered from the same commits, store and transfers as the
Hub routes, so the ``modelscope`` client (``MODELSCOPE_ENDPOINT=http://mirror``) downloads through
the mirror what Hub clients fill it with, and the other way round.

A ModelScope revision is mapped to a Hub one (``master`` → the default branch), pinned to a commit
and its metadata loaded as for ``resolve``; the caller's token (``Authorization: Bearer`` or the
``m_session_id`` cookie, which the client both sends) goes upstream as a Hub token, and gated or
private content is refused unless upstream accepts it (``access``). A file listing gives every
file's sha256 it can: the LFS oid, else the stored blob's, else the file is fetched into the store first
(non-LFS files are small), within a budget per listing (``SHA256_FILES_PER_LISTING``), so the client can
verify what it downloads; files beyond the budget are listed without one for now.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiohttp import web

from mreg.registry.errors import MregError, RangeNotSatisfiableError, TransferFailedError, UpstreamRefusedError

from mreg.daemon.hub.answers import error_message
from mreg.daemon.hub.metadata import refs_data
from mreg.daemon.serving.commits import CommitMeta
from mreg.daemon.modelscope.shapes import (
    envelope,
    epoch,
    error_envelope,
    files_view,
    hub_revision,
    listed_paths,
    model_view,
    page,
    ref_targets,
    refusal_message,
    refusal_status,
    revisions_view,
)
from mreg.daemon.modelscope.paths import MsPath
from mreg.daemon.hub.resolve import fetch, serve_file
from mreg.daemon.state import MIRROR, Mirror
from mreg.daemon.serving.upstream import bearer_token

SHA256_FETCHES = 8
"""Files a listing fetches at once to learn their sha256."""
SHA256_FILES_PER_LISTING = 32
SHA256_BYTES_PER_LISTING = 16 * 2**20
"""The most files, and bytes, one listing fetches to learn sha256s: the upstream work one request can cause
is bounded; the files beyond it are listed with ``Sha256: ""`` (the client then checks their size), and a
later listing learns more. ``X-Mreg-Sha256-Pending`` says how many the answer leaves unknown."""
PENDING_HEADER = "X-Mreg-Sha256-Pending"
DATE_LOOKUPS = 8
"""Commits a revisions answer loads at once to date its branches and tags."""


def ms_token(request: web.Request) -> str | None:
    """The caller's token: the Bearer header, else the ``m_session_id`` cookie."""
    return bearer_token(request) or request.cookies.get("m_session_id") or None


def ms_answer(data: Any) -> web.Response:
    """A successful ModelScope answer."""
    return web.json_response(envelope(data, uuid.uuid4().hex))


def ms_error(status: int, message: str) -> web.Response:
    """A ModelScope refusal with ``status``."""
    return web.json_response(error_envelope(status, message, uuid.uuid4().hex), status=status)


def for_error(exc: MregError) -> web.Response:
    """An error raised before any body was sent: upstream's refusal as a ModelScope client understands
    it, else the error's status (``registry.errors``) and message."""
    if isinstance(exc, UpstreamRefusedError):
        return ms_error(refusal_status(exc.http_status, exc.code), refusal_message(exc.code, str(exc)))
    return ms_error(exc.http_status, error_message(exc))


async def _readable(mirror: Mirror, request: web.Request, ms: MsPath, token: str | None,
                    path: str = "") -> CommitMeta:
    """The commit ``Revision`` names, if the caller may read it (gated too: its commit and files are the
    repo's); else upstream's refusal (UpstreamRefusedError), or offline what a repo never seen gets."""
    assert ms.repo is not None
    revision = hub_revision(request.query.get("Revision"))
    meta = await mirror.commits.get(ms.repo, await mirror.refs.resolve(ms.repo, revision, token), token)
    refusal = await mirror.access.refusal(meta, path, token, revision)
    if refusal is not None:
        raise refusal.refused()
    return meta


async def acceleration(request: web.Request, ms: MsPath) -> web.Response:
    """No intra-cloud route: the client downloads from the mirror itself."""
    return ms_answer({"InternalRegionQueryAddress": ""})


async def info(request: web.Request, ms: MsPath) -> web.Response:
    """The model at its default branch (private models only for callers upstream shows them to)."""
    mirror, token = request.app[MIRROR], ms_token(request)
    meta = await _readable(mirror, request, ms, token)
    return ms_answer(model_view(meta))


async def revisions(request: web.Request, ms: MsPath) -> web.Response:
    """Branches (``main`` as ``master``) and tags, each dated by its commit (the client picks tags by
    date), tags only up to ``EndTime`` if given."""
    repo = ms.repo
    assert repo is not None
    end_time = request.query.get("EndTime")
    if end_time is not None and not end_time.isdigit():
        return ms_error(400, f"invalid EndTime {end_time!r}: expected seconds since the epoch")
    mirror, token = request.app[MIRROR], ms_token(request)
    await _readable(mirror, request, ms, token)  # no tags of a repo it may not read
    targets = ref_targets(await refs_data(mirror, repo, token))
    slots = asyncio.Semaphore(DATE_LOOKUPS)

    async def dated(commit: str) -> tuple[str, int]:
        async with slots:
            meta = await mirror.commits.get(repo, commit, token)
        return commit, epoch(meta.info.get("lastModified"))

    commits = {c for named in targets.values() for c in named.values()}
    dates = dict(await asyncio.gather(*(dated(c) for c in sorted(commits))))
    return ms_answer(revisions_view(targets, dates, int(end_time) if end_time is not None else None))


async def files(request: web.Request, ms: MsPath) -> web.Response:
    """The listing of a folder (``Root``) at ``Revision``, ``Recursive`` or not, paged if asked
    (``PageNumber``, ``PageSize``), every file with its sha256."""
    mirror, token = request.app[MIRROR], ms_token(request)
    meta = await _readable(mirror, request, ms, token)
    root = request.query.get("Root", "").strip("/")
    listed = listed_paths(meta, root, request.query.get("Recursive", "").lower() == "true")
    if listed is None:
        return ms_error(404, f"{root} does not exist in {meta.repo}@{meta.commit[:12]}")
    paths = page(listed, request.query.get("PageNumber"), request.query.get("PageSize"))
    if paths is None:
        return ms_error(400, "PageNumber and PageSize must be positive integers")
    sha256s = await _sha256s(mirror, meta, paths, token)
    answer = ms_answer(files_view(meta, paths, sha256s))
    answer.headers[PENDING_HEADER] = str(sum(1 for sha256 in sha256s.values() if not sha256))
    return answer


async def _sha256s(mirror: Mirror, meta: CommitMeta, paths: list[str], token: str | None) -> dict[str, str]:
    """The content sha256 of the non-LFS files among ``paths``: the stored ones, then the smallest others
    fetched into the store within this listing's budget; "" for the rest."""
    plain = [p for p in paths if p in meta.files and meta.files[p].sha256 is None]
    looked = mirror.transfers.records
    stored = dict(zip(plain, await asyncio.gather(*(mirror.commits.stored_blob(meta, p) for p in plain))))
    missing = sorted((p for p in plain if stored[p] is None), key=lambda p: meta.files[p].size)
    chosen, budget = [], SHA256_BYTES_PER_LISTING
    for path in missing[:SHA256_FILES_PER_LISTING] if mirror.upstream.member(meta.upstream).available else []:
        if meta.files[path].size > budget:
            break
        chosen.append(path)
        budget -= meta.files[path].size
    slots = asyncio.Semaphore(SHA256_FETCHES)

    async def fetched(path: str) -> tuple[str, str]:
        async with slots:
            try:
                return path, await fetch(mirror, meta, meta.files[path], token, looked).verified()
            except TransferFailedError as exc:
                raise TransferFailedError(f"{path}: {exc}") from None

    learned = dict(await asyncio.gather(*(fetched(p) for p in chosen)))
    return {p: stored[p] or learned.get(p, "") for p in plain}


async def file(request: web.Request, ms: MsPath) -> web.StreamResponse:
    """A file's bytes (Range → 206), from the store or from the transfer filling it."""
    mirror, token = request.app[MIRROR], ms_token(request)
    path = request.query.get("FilePath", "")
    meta = await _readable(mirror, request, ms, token, path)
    spec = meta.files.get(path)
    if spec is None:
        return ms_error(404, f"{path} does not exist in {meta.repo}@{meta.commit[:12]}")
    headers = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
    sha256 = spec.sha256 or meta.stored.get(path)
    if sha256 is not None:
        headers["X-Linked-ETag"] = f'"{sha256}"'
    try:
        # The client ranges a file only to resume or split its download: fill the store, never relay.
        return await serve_file(request, mirror, meta, spec, token, headers, relay_bounded=False)
    except RangeNotSatisfiableError as exc:
        refused = for_error(exc)
        refused.headers["Content-Range"] = f"bytes */{spec.size}"
        return refused
