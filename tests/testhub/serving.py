"""Serving blob bytes: Range parsing, signed CDN URLs, and the body pump that applies faults.

The pump reads at most one piece at a time (never a whole file), counts bytes in `Stats` before
handing them to the transport, and paces them when `faults.throttle` (per response) or
`faults.bandwidth` (every response together) is set.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from aiohttp import web

from .content import PIECE, Blob
from .faults import CorruptRule, CutRule, Faults, StallRule, Stats

_THROTTLE_PIECE_MIN = 16 << 10
_THROTTLE_PIECE_MAX = 256 << 10
_LINK_PIECE = 64 << 10
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ByteRange:
    """Bytes [start, end) of a blob."""

    start: int
    end: int


class RangeNotSatisfiable(Exception):
    """The Range header names no byte of the blob (answer 416)."""


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single range a `Range` header asks for, or None to serve the whole blob.

    Handles `bytes=a-b`, `bytes=a-` and `bytes=-n`; an unparseable header or a multi-range is
    ignored (as S3 does). Raises RangeNotSatisfiable when the range starts past the end.
    """
    if not header:
        return None
    unit, _, spec = header.partition("=")
    first, dash, last = spec.strip().partition("-")
    if unit.strip().lower() != "bytes" or not dash or "," in spec:
        return None
    if not (first.isdigit() or first == "") or not (last.isdigit() or last == "") or first == last == "":
        return None
    if first == "":
        if int(last) == 0 or size == 0:
            raise RangeNotSatisfiable
        return ByteRange(max(0, size - int(last)), size)
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable
    return ByteRange(start, size if not last else min(int(last) + 1, size))


def url_signature(secret: bytes, sha256: str, expires: int) -> str:
    """HMAC-SHA256 of a blob's sha256 and the URL's expiry time."""
    return hmac.new(secret, f"{sha256}:{expires}".encode(), hashlib.sha256).hexdigest()


def signature_valid(secret: bytes, sha256: str, expires: str, signature: str) -> bool:
    """Whether `signature` was made by `url_signature` for this blob and expiry."""
    return expires.lstrip("-").isdigit() and hmac.compare_digest(signature, url_signature(secret, sha256, int(expires)))


def xet_hash(blob: Blob) -> str:
    """A stand-in xet content hash (64 hex, deterministic; not a real xet merkle hash)."""
    return hashlib.sha256(b"xet:" + bytes.fromhex(blob.sha256)).hexdigest()


class _Pacer:
    """Keeps one response's body at or below `faults.throttle` bytes per second."""

    def __init__(self, faults: Faults) -> None:
        self._faults = faults
        self._rate: int | None = None
        self._t0 = 0.0
        self._sent = 0

    def piece(self) -> int:
        """How many bytes to send next (restarts the schedule if the throttle changed)."""
        rate = self._faults.throttle
        if rate != self._rate:
            self._rate, self._t0, self._sent = rate, time.monotonic(), 0
        if not rate:
            return PIECE
        return max(_THROTTLE_PIECE_MIN, min(_THROTTLE_PIECE_MAX, rate // 20))

    async def sent(self, n: int) -> None:
        """Sleep until `n` more bytes are due."""
        if self._rate:
            self._sent += n
            delay = self._t0 + self._sent / self._rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)


async def _flush(request: web.Request) -> None:
    """Wait until the transport handed everything written so far to the kernel."""
    transport = request.transport
    while transport is not None and not transport.is_closing() and transport.get_write_buffer_size() > 0:
        await asyncio.sleep(0.001)


def _flip(chunk: bytes) -> bytes:
    return bytes([chunk[0] ^ 0xFF]) + chunk[1:] if chunk else chunk


async def send_blob(
    request: web.Request,
    headers: Mapping[str, str],
    blob: Blob,
    rng: ByteRange | None,
    *,
    kind: str,
    names: Collection[str],
    faults: Faults,
    stats: Stats,
) -> web.StreamResponse:
    """Answer 200 (or 206 for `rng`) with the blob's bytes, applying cut/stall/corrupt/throttle faults."""
    start, end = (rng.start, rng.end) if rng else (0, blob.size)
    response = web.StreamResponse(status=206 if rng else 200, headers=headers)
    if rng:
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{blob.size}"
    response.content_length = end - start
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    cut = faults.take(CutRule, kind)
    stall = faults.take(StallRule, kind)
    corrupt = faults.take(CorruptRule, kind, names) is not None
    pacer, sent, pos = _Pacer(faults), 0, start
    while True:
        if isinstance(stall, StallRule) and sent >= stall.after_bytes:
            await _flush(request)
            await asyncio.sleep(stall.seconds)
            stall = None
        if isinstance(cut, CutRule) and sent >= cut.after_bytes:
            await _flush(request)
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError  # the connection is gone: nothing more to send or finish
        if pos >= end:
            return response
        limits = [pacer.piece(), end - pos] + ([_LINK_PIECE] if faults.bandwidth else [])
        limits += [rule.after_bytes - sent for rule in (cut, stall) if isinstance(rule, (CutRule, StallRule))]
        chunk = blob.read(pos, pos + min(limits))
        if corrupt:
            chunk = _flip(chunk)
        if faults.bandwidth:
            await asyncio.sleep(faults.link_delay(len(chunk)))
        stats.body_bytes(kind, blob.sha256, len(chunk))
        await response.write(chunk)
        pos += len(chunk)
        sent += len(chunk)
        await pacer.sent(len(chunk))


def xml_error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """An S3/CloudFront-style XML error."""
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>'
    return web.Response(status=status, text=body, content_type="application/xml", headers=headers)


async def serve_cdn(
    request: web.Request,
    secret: bytes,
    find_blob: Callable[[str], tuple[Blob, frozenset[str]] | None],
    faults: Faults,
    stats: Stats,
) -> web.StreamResponse:
    """`GET|HEAD /…/<sha256>?Expires=&Signature=`: a blob's bytes if the signed URL is valid and live."""
    if request.method not in ("GET", "HEAD"):
        return xml_error(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")
    sha256 = request.raw_path.partition("?")[0].rpartition("/")[2]
    expires, signature = request.query.get("Expires", ""), request.query.get("Signature", "")
    if not _SHA256_RE.fullmatch(sha256) or not signature_valid(secret, sha256, expires, signature):
        return xml_error(403, "AccessDenied", "Access denied")
    if int(expires) < time.time():
        return xml_error(403, "AccessDenied", "Request has expired")
    found = find_blob(sha256)
    if found is None:
        return xml_error(404, "NoSuchKey", "The specified key does not exist.")
    blob, paths = found
    try:
        rng = parse_range(request.headers.get("Range"), blob.size)
    except RangeNotSatisfiable:
        headers = {"Content-Range": f"bytes */{blob.size}"}
        return xml_error(416, "InvalidRange", "The requested range is not satisfiable", headers)
    headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
    if disposition := request.query.get("response-content-disposition"):
        headers["Content-Disposition"] = disposition
    return await send_blob(
        request, headers, blob, rng, kind="cdn", names=paths | {sha256}, faults=faults, stats=stats
    )
