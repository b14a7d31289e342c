"""``GET|HEAD /{datasets/}{repo}/resolve/{rev}/{path}``: file bytes, served by the mirror itself.

The revision is pinned to a commit, the caller's access checked (gated/private repos), then the
answer carries the Hub's headers (X-Repo-Commit; ETag = git sha1, or the sha256 with
X-Linked-Etag/X-Linked-Size for LFS files) and the bytes come from the store (a hit), from the
shared transfer filling the store (a miss; a Range too, however many split the file between them),
or, for a header read (a small bounded Range), relayed from upstream: it neither fetches the whole
file nor waits for a transfer's verification. Never an xet header. With ``--redirect-to-store`` a stored LFS
file is instead a 302 to a presigned URL of its object (``store_redirect``), with the same Hub headers.
``serve_file`` and ``fetch`` are also how the ModelScope routes (``modelscope_api``) send and
fetch files.
"""

from __future__ import annotations

import os

from aiohttp import web

from mreg.registry.download import FileSpec
from mreg.registry.errors import RangeNotSatisfiableError, UpstreamUnavailableError
from mreg.registry.files import checked_locator

from mreg.daemon.hub.answers import for_error, hub_error
from mreg.daemon.serving.bodies import (
    ByteRange,
    open_stored,
    parse_range,
    send_growing,
    send_relayed,
    send_stored,
)
from mreg.daemon.serving.commits import CommitMeta
from mreg.daemon.hub.paths import HubPath
from mreg.daemon.state import MIRROR, Mirror
from mreg.daemon.serving.transfers import Target, Transfer
from mreg.daemon.serving.upstream import TIMEOUT, bearer_token

HEADER_READ_MAX = 8 * 1024 * 1024
"""A header read lies within the file's first this many bytes (a GGUF header with a 262k-token vocabulary is
about 6 MB; hf_transfer asks for 10 MiB pieces)."""
HEADER_READ_SHARE = 16
"""A header read is shorter than this fraction of the file (a download split 16 ways is not)."""
REDIRECT_HEADERS = ("X-Repo-Commit", "ETag", "X-Linked-Etag", "X-Linked-Size")
"""The Hub headers of an LFS file a redirect to the store carries (the 302's own body is empty; ``Cache-Control:
no-store`` keeps shared caches from handing its short-lived URL to others)."""


def file_headers(spec: FileSpec, commit: str) -> dict[str, str]:
    """The headers the Hub sends with a file (its 200 form, also for LFS files)."""
    headers = {"X-Repo-Commit": commit, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
    if spec.sha256 is not None:
        etag = f'"{spec.sha256}"'
        headers.update({"ETag": etag, "X-Linked-Etag": etag, "X-Linked-Size": str(spec.size)})
    else:
        headers["ETag"] = f'"{spec.git_oid}"'
    return headers


async def resolve(request: web.Request, hub: HubPath) -> web.StreamResponse:
    """Answer a resolve request (see the module docstring)."""
    assert hub.repo is not None and hub.revision is not None
    mirror = request.app[MIRROR]
    token = bearer_token(request)
    commit = await mirror.refs.resolve(hub.repo, hub.revision, token)
    meta = await mirror.commits.get(hub.repo, commit, token)
    refusal = await mirror.access.refusal(meta, hub.path, token, hub.revision)
    if refusal is not None:
        return refusal.response(head=request.method == "HEAD")
    spec = meta.files.get(hub.path)
    if spec is None:
        return hub_error(404, "EntryNotFound", "Entry not found", commit)
    headers = file_headers(spec, commit)
    try:
        redirect = await store_redirect(request, mirror, meta, spec, headers)
        if redirect is not None:
            return redirect
        return await serve_file(request, mirror, meta, spec, token, headers)
    except RangeNotSatisfiableError as exc:
        refused = for_error(exc, commit=commit)
        refused.headers["Content-Range"] = f"bytes */{spec.size}"
        return refused


async def serve_file(request: web.Request, mirror: Mirror, meta: CommitMeta, spec: FileSpec, token: str | None,
                     headers: dict[str, str], relay_bounded: bool = True) -> web.StreamResponse:
    """Answer a HEAD, or a GET (Range honoured, 206), of a file the caller may read, with ``headers``.

    A header read (``header_read``) of a file not stored is relayed from upstream when ``relay_bounded``;
    any other range is served from the transfer filling the store. Raises
    RangeNotSatisfiableError (nothing sent) for a range past the end.
    """
    if request.method == "HEAD":
        response = web.StreamResponse(status=200, headers=headers)
        response.content_length = spec.size
        await response.prepare(request)
        return response
    rng = parse_range(request.headers.get("Range"), spec.size)
    if await continues_failed(mirror, spec, rng):
        rng = None  # the whole file, from its first byte
        mirror.metrics.restarted_ranges += 1
    response = web.StreamResponse(status=200 if rng is None else 206, headers=headers)
    whole = rng or ByteRange(0, spec.size)
    if rng is not None:
        response.headers["Content-Range"] = f"bytes {rng.start}-{rng.end - 1}/{spec.size}"
    response.content_length = whole.end - whole.start
    with mirror.budget.using(meta.repo, meta.commit, spec.sha256):
        await _send(request, response, mirror, meta, spec, whole, token, relay_bounded)
    return response


async def store_redirect(request: web.Request, mirror: Mirror, meta: CommitMeta, spec: FileSpec,
                         headers: dict[str, str]) -> web.Response | None:
    """With ``--redirect-to-store``, the answer to a HEAD or GET of an LFS file already stored: a 302 to a presigned
    URL of its object with the Hub's ``headers`` (``REDIRECT_HEADERS``; huggingface_hub reads them from this
    answer). None when the file is streamed instead: no redirects, not LFS, not stored, or a Range that may
    continue bytes of a transfer that failed (``serve_file`` sends the whole file). RangeNotSatisfiableError for
    a range past the end, as ``serve_file``."""
    if mirror.redirects is None or spec.sha256 is None:
        return None
    if request.method == "GET" and await continues_failed(mirror, spec, parse_range(request.headers.get("Range"),
                                                                                    spec.size)):
        return None
    sha256 = await mirror.commits.stored_blob(meta, spec.path)
    if sha256 is None:
        return None
    location = await mirror.redirects.location(sha256)
    mirror.metrics.store_redirects += 1
    if request.method == "GET":
        mirror.metrics.cache_hits += 1
        mirror.budget.uses.note(meta.repo, meta.commit)
    return web.Response(status=302, headers={**{name: headers[name] for name in REDIRECT_HEADERS},
                                             "Location": location, "Cache-Control": "no-store"})


async def continues_failed(mirror: Mirror, spec: FileSpec, rng: ByteRange | None) -> bool:
    """Whether ``rng`` may continue bytes of a transfer of ``spec`` that failed: the client may hold wrong bytes
    before it, so it gets the whole file."""
    return rng is not None and rng.start > 0 and await mirror.transfers.failed.recent(spec.key)


def header_read(rng: ByteRange, size: int) -> bool:
    """Whether ``rng`` looks like a read of a file's header (or a 1-byte probe), not a piece of a download
    split between connections: it ends before the file does, lies within the file's first
    ``HEADER_READ_MAX`` bytes (where headers are), and is shorter than 1/``HEADER_READ_SHARE`` of the file.
    Served from a transfer, its last byte would wait for the whole file's verification (the rule for every
    range a transfer serves), longer than clients wait. A download split into pieces smaller than that
    relays at most its pieces in the head; the others join the one transfer."""
    return rng.end < size and rng.end <= HEADER_READ_MAX and (rng.end - rng.start) * HEADER_READ_SHARE < size


def fetch(mirror: Mirror, meta: CommitMeta, spec: FileSpec, token: str | None, looked: int) -> Transfer:
    """The shared transfer bringing ``spec`` of ``meta`` into the store (started with the caller's token), for a
    caller that did not find it there, having noted ``mirror.transfers.records`` before it looked."""
    client = mirror.upstream.client(token, meta.upstream)
    return mirror.transfers.join(spec, Target(meta, spec.path), client,
                                 checked_locator(client, meta.repo, meta.commit, spec), looked)


async def _send(request: web.Request, response: web.StreamResponse, mirror: Mirror, meta: CommitMeta,
                spec: FileSpec, rng: ByteRange, token: str | None, relay_bounded: bool) -> None:
    looked = mirror.transfers.records
    sha256 = await mirror.commits.stored_blob(meta, spec.path)
    if sha256 is not None:
        try:
            fd = open_stored(mirror.store.blobs, sha256)
        except FileNotFoundError:  # removed by a gc since it was found: fetched again
            sha256, looked = None, mirror.transfers.records
    if sha256 is not None:
        mirror.metrics.cache_hits += 1
        try:
            await response.prepare(request)
            await send_stored(request, response, mirror.store.blobs, sha256, rng, mirror.metrics, fd)
        finally:
            if fd is not None:
                os.close(fd)
        return
    source = mirror.upstream.member(meta.upstream)
    if not source.available:
        raise UpstreamUnavailableError(f"{source.unavailable_reason}, and {spec.path} of "
                                       f"{meta.repo}@{meta.commit[:12]} is not in the mirror")
    mirror.metrics.cache_misses += 1
    if relay_bounded and header_read(rng, spec.size):
        client = mirror.upstream.client(token, meta.upstream)
        mirror.metrics.active_transfers += 1
        try:
            upstream = await client.open_range(await checked_locator(client, meta.repo, meta.commit, spec)(), rng.start, rng.end, TIMEOUT)
            try:
                await response.prepare(request)
                await send_relayed(request, response, upstream, rng.end - rng.start, mirror.metrics)
            finally:
                upstream.release()
        finally:
            mirror.metrics.active_transfers -= 1
        return
    transfer = fetch(mirror, meta, spec, token, looked)
    with transfer.readers.local.reader(rng.start) as reader:  # from now on: its next bytes stay on disk for it
        await transfer.wait_past(rng.start, rng.end)  # the answer starts with the first byte (or says why not)
        await response.prepare(request)
        await send_growing(request, response, transfer, mirror.store.blobs, rng, mirror.metrics, reader)
