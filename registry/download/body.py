"""A response body as the socket delivers it, without aiohttp's copy of every piece.

aiohttp's HTTP parser copies each body piece it parses into a new ``bytes`` for its StreamReader: a
``memmove`` into freshly faulted-in pages for every byte of a download. A plain body (a Content-Length,
no transfer or content coding) needs no parsing, so ``body_chunks`` takes the connection's bytes as they
arrive instead, through the hook aiohttp's ``ResponseHandler`` has for its own WebSocket reader
(``set_parser``), and hands the connection back to aiohttp's pool once exactly Content-Length bytes came.
aiohttp's read timeout, connection-lost and TLS handling stay as they are. Any other body, or one aiohttp
has already read whole, is read through aiohttp (``iter_any``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

import aiohttp
from aiohttp.client_proto import ResponseHandler

MAX_QUEUED = 1024 * 1024
"""Bytes received but not yet taken by the reader at which the socket stops being read (flow control)."""


async def body_chunks(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The body of ``resp`` in the pieces the connection receives them.

    Raises ``aiohttp.ClientPayloadError`` when the connection closes before the Content-Length is
    complete, and ``TimeoutError`` (aiohttp's) when the read timeout passes without a byte; bytes past the
    Content-Length are dropped and the connection is closed on release. Close the iterator when
    leaving it early (``contextlib.aclosing``): the connection is then closed too.
    """
    length = _plain_length(resp)
    protocol = resp.connection.protocol if resp.connection is not None else None
    if length is None or not isinstance(protocol, ResponseHandler) or not _detachable(protocol):
        async for chunk in resp.content.iter_any():
            yield chunk
        return
    first = []
    while piece := resp.content.read_nowait():  # reading may resume the parser, which may feed more
        first.append(piece)
    if resp.content.is_eof():  # aiohttp read it whole (and released the connection)
        for piece in first:
            yield piece
        return
    body = _RawBody(protocol, length - resp.content.total_bytes)
    protocol.set_parser(body, body)  # from here on the socket's bytes come to ``body``
    protocol.start_timeout()  # set_parser stopped the read timeout; it restarts with every receive
    try:
        for piece in first:
            yield piece
        while True:
            chunk = await body.next()
            if body.complete:  # before the last piece is yielded: its reader may stop there
                body.close()
                resp.content.feed_eof()  # resumes reading and releases the connection to the pool
                yield chunk
                return
            yield chunk
    finally:
        body.close()


_SET_BY_SET_PARSER = ("_payload_parser", "_payload", "_data_received_cb")
"""What ``ResponseHandler.set_parser`` sets and ``_RawBody.close`` clears (aiohttp has no public way back)."""


def _detachable(protocol: ResponseHandler) -> bool:
    """Whether this aiohttp's connection handler has what ``_RawBody.close`` clears to hand the connection back
    (an aiohttp whose internals moved is read through its own parser instead)."""
    return all(hasattr(protocol, name) for name in _SET_BY_SET_PARSER) and hasattr(protocol, "set_parser")


def _plain_length(resp: aiohttp.ClientResponse) -> int | None:
    """The Content-Length of a body sent as is (no chunked transfer, no compression); else None."""
    coded = (resp.headers.get(name, "identity").strip().lower() != "identity"
             for name in ("Transfer-Encoding", "Content-Encoding"))
    return None if any(coded) else resp.content_length


class _RawBody:
    """Takes the connection's bytes from a ``ResponseHandler`` (the interface of its ``set_parser`` reader:
    ``feed_data``, ``feed_eof``, ``set_exception``) and queues them for ``next``."""

    def __init__(self, protocol: ResponseHandler, remaining: int) -> None:
        self._protocol = protocol
        self._remaining = remaining
        self._chunks: deque[bytes] = deque()
        self._queued = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._closed = False

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        """A piece from the socket; never reports a protocol error (that would keep the connection pooled)."""
        if self._error is not None or not data:
            return False, b""
        if len(data) > self._remaining:  # more than it announced: keep what it announced, then hang up
            self._protocol.force_close()
            data = data[: self._remaining]
            if not data:
                return False, b""
        self._remaining -= len(data)
        self._chunks.append(data)
        self._queued += len(data)
        if not self._paused and (self._queued >= MAX_QUEUED or not self._remaining):
            self._paused = True  # at the end too: nothing more is due, and the reader may be slow to take the rest
            self._protocol.pause_reading()  # which stops aiohttp's read timeout: the wait is the reader's
        self._wake()
        return False, b""

    def feed_eof(self) -> None:
        """The connection closed."""
        if self._remaining:
            self.set_exception(aiohttp.ClientPayloadError(
                f"the connection closed with {self._remaining:,} bytes of the body still to come"))

    def set_exception(self, exc: BaseException) -> None:
        """The read timed out or the connection broke (aiohttp tells the payload this way)."""
        if self._error is None:
            self._error = exc
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next(self) -> bytes:
        """The next piece; ``b""`` once the Content-Length is complete and every piece was taken."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if not self._remaining:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunk = self._chunks.popleft()
        self._queued -= len(chunk)
        if self._paused and self._remaining and self._queued < MAX_QUEUED:
            self._paused = False
            self._protocol.resume_reading()
        return chunk

    @property
    def complete(self) -> bool:
        """Every byte of the Content-Length came and was taken."""
        return not self._remaining and not self._chunks

    def close(self) -> None:
        """Detach from the connection (again: nothing). A body not read to its end, or broken, leaves the
        connection to be closed on release; a complete one leaves it ready for the next request."""
        if self._closed:  # the connection may serve another response by now
            return
        self._closed = True
        if not self.complete or self._error is not None:
            self._protocol.force_close()
            return
        for name in _SET_BY_SET_PARSER:
            setattr(self._protocol, name, None)
