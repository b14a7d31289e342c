"""Sending file bytes to a client: a stored blob, a growing partial file, or a relayed upstream range.

Once a body has started, a failure cannot become an error answer any more: the connection is
aborted instead, so the client sees a short body (its Content-Length was announced) and never a
complete wrong one. A client that hangs up mid-body ends the sending quietly: nothing is wrong.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import aiohttp
from aiohttp import web

from mreg.registry.blobs import BlobStore, LocalBlobPaths
from mreg.registry.download.holes import READ
from mreg.registry.errors import RangeNotSatisfiableError, StoreError, TransferFailedError
from mreg.registry.fills.shared import shared_bytes

from mreg.daemon.metrics import Metrics
from mreg.daemon.serving.transfers import Transfer

CHUNK = 1024 * 1024
NOT_SATISFIABLE = "Requested Range Not Satisfiable"


@dataclass(frozen=True)
class ByteRange:
    """Bytes [start, end) of a file."""

    start: int
    end: int


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single range a ``Range`` header asks for, or None for the whole file.

    Handles ``bytes=a-b``, ``bytes=a-`` and ``bytes=-n``; an unparseable header or a multi-range is
    ignored (the whole file is sent). Raises RangeNotSatisfiableError when the range starts past the end.
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
            raise RangeNotSatisfiableError(NOT_SATISFIABLE)
        return ByteRange(max(0, size - int(last)), size)
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise RangeNotSatisfiableError(NOT_SATISFIABLE)
    return ByteRange(start, size if not last else min(int(last) + 1, size))


def abort(request: web.Request) -> NoReturn:
    """Cut the client's connection mid-body and end the handler."""
    if request.transport is not None:
        request.transport.abort()
    raise asyncio.CancelledError


async def _pump(request: web.Request, fd: int, start: int, end: int, metrics: Metrics) -> None:
    """Send bytes [start, end) of an open file, after the answer's headers: with ``sendfile`` (the kernel
    copies from the page cache to the socket; asyncio falls back to reads and writes where it cannot)."""
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("the client hung up")
    with open(fd, "rb", closefd=False) as file:
        sent = await asyncio.get_running_loop().sendfile(transport, file, start, end - start)
    metrics.bytes_served += sent
    if sent < end - start:
        raise StoreError(f"a stored file ended at byte {start + sent} of {end}")


def open_stored(blobs: BlobStore, sha256: str) -> int | None:
    """A descriptor of a stored blob the store keeps on this machine, opened before its answer starts: it
    stays readable if a gc removes the blob meanwhile. None for blobs that are not local files;
    FileNotFoundError if the blob is gone."""
    return os.open(blobs.path(sha256), os.O_RDONLY) if isinstance(blobs, LocalBlobPaths) else None


async def send_stored(request: web.Request, response: web.StreamResponse, blobs: BlobStore, sha256: str,
                      rng: ByteRange, metrics: Metrics, fd: int | None = None) -> None:
    """Send ``rng`` of a stored blob: from ``fd`` (``open_stored``'s), straight from its file where the store
    keeps blobs on this machine, else streamed through ``blobs.read``."""
    try:
        if fd is not None:
            await _pump(request, fd, rng.start, rng.end, metrics)
            return
        if isinstance(blobs, LocalBlobPaths):
            await _send_file(request, blobs.path(sha256), rng, metrics)
            return
        await _send_chunks(response, blobs.read(sha256, rng.start, rng.end), rng, metrics, f"blob {sha256}")
    except ConnectionError:  # reset, broken pipe
        return  # the client hung up
    except (StoreError, FileNotFoundError):
        abort(request)


async def _send_file(request: web.Request, path: Path, rng: ByteRange, metrics: Metrics) -> None:
    """Send ``rng`` of the local file ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        await _pump(request, fd, rng.start, rng.end, metrics)
    finally:
        os.close(fd)


async def send_growing(request: web.Request, response: web.StreamResponse, transfer: Transfer,
                       blobs: BlobStore, rng: ByteRange, metrics: Metrics, reader: int) -> None:
    """Send ``rng`` of a file while its transfer writes it, never the range's last byte before the file is
    verified.

    The transfer writes a partial file on this machine; once it is open, it stays the same inode when
    published into a local store. A transfer already verified before any byte was sent is a stored blob. A fill
    of the shared store frees the bytes it has in the bucket from the partial file (``Readers.local``): those
    are streamed from the bucket, the others copied from the file ``holes.READ`` at a time (never sendfile'd: see
    there), so a slow client keeps nothing on disk; ``reader`` is the reader's id there (``LocalBytes.reader``).
    """
    fd: int | None = None
    pos = rng.start
    local = transfer.readers.local
    try:
        while True:
            limit = await transfer.wait_past(pos, rng.end)
            if fd is None:
                if transfer.sha256 is not None:
                    await send_stored(request, response, blobs, transfer.sha256, ByteRange(pos, rng.end), metrics)
                    return
                fd = transfer.open_data()
            upto = min(limit, rng.end)
            if not local.attached:
                await _pump(request, fd, pos, upto, metrics)
            elif not local.on_disk(pos):
                upto = min(upto, local.freed)
                await _send_chunks(response, shared_bytes(blobs, transfer.spec, pos, upto), ByteRange(pos, upto),
                                   metrics, f"the shared store's bytes of {transfer.spec.path}")
                local.move(reader, upto)
            else:
                upto = min(upto, pos + READ)
                data = await local.read(reader, fd, pos, upto)
                if len(data) != upto - pos:
                    raise StoreError(f"a partial file ended at byte {pos + len(data)} of {upto}")
                await response.write(data)
                metrics.bytes_served += len(data)
            pos = upto
            if pos >= rng.end:
                return
    except ConnectionError:  # reset, broken pipe
        return  # the client hung up
    except (TransferFailedError, StoreError, FileNotFoundError):
        abort(request)
    finally:
        if fd is not None:
            os.close(fd)


async def _send_chunks(response: web.StreamResponse, chunks: AsyncIterator[bytes], rng: ByteRange, metrics: Metrics,
                       what: str) -> None:
    """Send ``chunks``, the bytes ``rng`` of ``what`` read from the store (StoreError if they end short)."""
    pos = rng.start
    async for chunk in chunks:
        await response.write(chunk)
        pos += len(chunk)
        metrics.bytes_served += len(chunk)
    if pos != rng.end:
        raise StoreError(f"{what} ended at byte {pos} of {rng.end}")


async def send_relayed(request: web.Request, response: web.StreamResponse, upstream: aiohttp.ClientResponse,
                       length: int, metrics: Metrics) -> None:
    """Send an upstream body of ``length`` bytes as it arrives (cut the client off if it comes short)."""
    sent = 0
    try:
        async for chunk in upstream.content.iter_chunked(CHUNK):
            await response.write(chunk)
            sent += len(chunk)
            metrics.bytes_upstream += len(chunk)
            metrics.bytes_served += len(chunk)
    except (TimeoutError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
        abort(request)
    if sent != length:
        abort(request)
