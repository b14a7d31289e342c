"""The I/O around the sans-I/O header parsers of `registry.formats`: local files and the Hub.

Remote headers are read with ranged GETs: the file is located once (the resolve HEAD gives the
CDN URL of an LFS file, reused for every range), then each `NeedBytes` is served by one GET of
exactly the bytes asked for (the first one is widened to `first_read`). Tensor data is never read.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

import aiohttp

from mreg.registry.blobs import BlobStore
from mreg.registry.errors import FormatError, LocationExpiredError, MregError, StoreError, UpstreamUnavailableError
from mreg.registry.formats.events import HeaderParsed, NeedBytes
from mreg.registry.formats.gguf import GGUFHeaderParser
from mreg.registry.formats.safetensors import SafetensorsHeaderParser
from mreg.registry.inspect.sizing import (
    FEW_SHARDS_READ,
    FIRST_READ,
    PROBE_AFTER,
    after_probe,
    probe_first_read,
    unindexed_groups,
)
from mreg.registry.upstream.client import FileLocation
from mreg.registry.upstream.client import RepoClient
from mreg.registry.upstream.hub.urls import redacted
from mreg.registry.repo import RepoRef

LOCAL_READ = 1024 * 1024
CONCURRENCY = 32
"""Files read at once: bench/inspect_bench.py on a 100-shard repo with 50 ms per request took 1.71 s
at 8, 0.81 s at 32 and 0.69-0.71 s at 64-100 (CPU-bound past 32 on 2 cores)."""
READ_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60)

Parser = SafetensorsHeaderParser | GGUFHeaderParser


@dataclass(frozen=True)
class FetchStats:
    """Ranged GETs sent (retries included) and body bytes received for one file."""

    requests: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class FileHeader:
    """One file's outcome in `parse_remote_many`: a header, or the error that stopped it."""

    path: str
    header: HeaderParsed | None
    stats: FetchStats
    error: MregError | None


def is_model_file(path: str) -> bool:
    """Whether `path` names a file whose header mreg parses."""
    return path.lower().endswith((".safetensors", ".gguf"))


def parser_for(path: str, file_size: int | None) -> Parser:
    """The parser for a file, chosen by its extension."""
    name = path.lower()
    if name.endswith(".safetensors"):
        return SafetensorsHeaderParser(file_size)
    if name.endswith(".gguf"):
        return GGUFHeaderParser(file_size)
    raise FormatError("not a .safetensors or .gguf file")


def parse_local(path: str | os.PathLike[str], first_read: int = LOCAL_READ, name: str | None = None) -> HeaderParsed:
    """Parse the header of a local safetensors or GGUF file (pread only what the parser asks for).

    ``name`` is the file's name in its repo, which says the format when ``path`` is a store blob.
    """
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            parser = parser_for(name or os.fspath(path), size)
            event = parser.next_event()
            while isinstance(event, NeedBytes):
                parser.receive_data(event.offset, os.pread(f.fileno(), max(event.length, first_read), event.offset))
                first_read = 0
                event = parser.next_event()
            return event
    except OSError as exc:
        raise StoreError(f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from None
    except FormatError as exc:
        raise FormatError(f"{name or os.fspath(path)}: {exc}") from None


class _RangeReader:
    """Locates one file, then serves byte ranges of it, counting what it costs."""

    def __init__(self, client: RepoClient, repo: RepoRef, commit: str, path: str) -> None:
        self.client, self.repo, self.commit, self.path = client, repo, commit, path
        self.location: FileLocation | None = None
        self.requests = self.bytes = 0

    async def locate(self) -> FileLocation:
        self.location = await self.client.locate(self.repo, self.commit, self.path)
        return self.location

    async def read(self, start: int, end: int) -> bytes:
        """Bytes [start, end), retrying broken bodies; a refused signed URL is located again once."""
        location = self.location
        assert location is not None, "locate() first"
        relocated, last = False, ""
        for attempt in range(self.client.retry.attempts):
            self.requests += 1
            try:
                resp = await self.client.open_range(location, start, end, READ_TIMEOUT)
                try:
                    data = await resp.content.readexactly(end - start)
                finally:
                    resp.release()
                self.bytes += len(data)
                return data
            except LocationExpiredError:
                if relocated:
                    raise
                location, relocated = await self.locate(), True
                continue
            except asyncio.IncompleteReadError as exc:
                self.bytes += len(exc.partial)
                last = f"body cut after {len(exc.partial)} of {end - start} bytes"
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = type(exc).__name__
            await asyncio.sleep(self.client.retry.delay(attempt))
        raise UpstreamUnavailableError(f"reading bytes {start}-{end - 1} of {redacted(location.url)} failed "
                                       f"after {self.client.retry.attempts} attempts ({last})")

    @property
    def stats(self) -> FetchStats:
        return FetchStats(self.requests, self.bytes)


async def drive(path: str, size: int, read: Callable[[int, int], Awaitable[bytes]], first_read: int) -> HeaderParsed:
    """Drive the parser of ``path`` (``size`` bytes) with ``read(start, end)``: one read per NeedBytes, the first
    widened to ``first_read`` (never past the end of the file)."""
    try:
        parser = parser_for(path, size)
        event = parser.next_event()
        while isinstance(event, NeedBytes):
            end = min(event.offset + max(event.length, first_read), size)
            first_read = 0
            parser.receive_data(event.offset, await read(event.offset, end) if end > event.offset else b"")
            event = parser.next_event()
        return event
    except FormatError as exc:
        raise FormatError(f"{path}: {exc}") from None


async def _parse(reader: _RangeReader, first_read: int) -> HeaderParsed:
    """Drive a parser over ranged GETs of a located file."""
    location = reader.location
    assert location is not None, "locate() first"
    return await drive(reader.path, location.size, reader.read, first_read)


async def read_blob(blobs: BlobStore, sha256: str, start: int = 0, end: int | None = None) -> bytes:
    """Bytes [start, end) of a stored blob, read through its store (StoreError if it is not stored)."""
    return b"".join([chunk async for chunk in blobs.read(sha256, start, end)])


async def parse_blob(blobs: BlobStore, sha256: str, size: int, name: str, first_read: int = LOCAL_READ) -> HeaderParsed:
    """Parse the header of the stored blob ``sha256`` (``size`` bytes) of the file ``name`` (which says its
    format), reading only what the parser asks for through the blob store (local or an object store)."""
    return await drive(name, size, lambda start, end: read_blob(blobs, sha256, start, end), first_read)


async def parse_remote(client: RepoClient, repo: RepoRef, commit: str, path: str,
                       first_read: int = FIRST_READ) -> tuple[HeaderParsed, FetchStats]:
    """Parse one remote file's header; return it with what the ranged GETs cost."""
    reader = _RangeReader(client, repo, commit, path)
    await reader.locate()
    return await _parse(reader, first_read), reader.stats


Window = int | asyncio.Future[int]
"""A file's first read, or the future one that its group's probe will size."""


def _windows(paths: list[str], first_reads: Mapping[str, int], first_read: int
             ) -> tuple[dict[str, Window], dict[str, list[asyncio.Future[int]]]]:
    """Each path's first read, and each probe's siblings' windows to size once it is read."""
    windows: dict[str, Window] = {p: first_reads.get(p, first_read) for p in paths}
    probes: dict[str, list[asyncio.Future[int]]] = {}
    loop = asyncio.get_running_loop()
    for group in unindexed_groups([p for p in paths if p not in first_reads]):
        if len(group) <= PROBE_AFTER:
            windows.update(dict.fromkeys(group, FEW_SHARDS_READ))
            continue
        probe = group[len(group) // 2]  # a middle shard: the first holds the embeddings, the last the head
        windows[probe] = probe_first_read(len(group))
        siblings = {p: loop.create_future() for p in group if p != probe}
        windows.update(siblings)
        probes[probe] = list(siblings.values())
    return windows, probes


async def parse_remote_many(client: RepoClient, repo: RepoRef, commit: str, paths: Iterable[str] | None = None,
                            *, first_reads: Mapping[str, int] | None = None, first_read: int = FIRST_READ,
                            concurrency: int = CONCURRENCY) -> dict[str, FileHeader]:
    """Parse many files' headers concurrently (at most `concurrency` requests at once), by path.

    `paths` defaults to every .safetensors and .gguf file of the repo at `commit`. A file that fails
    (a malformed header, a missing file, an unreachable CDN) gets its error; the others go on.
    First reads: `first_reads` where given (shards sized from their index), else for unindexed
    .safetensors files sharing a folder `FEW_SHARDS_READ` each when they are few, else one (the
    probe) is read first and the others sized from its header; else `first_read`. Every file is
    located (its resolve HEAD) at once, so a probe costs one round trip, not two.
    """
    if paths is None:
        paths = [f.path for f in await client.list_files(repo, commit) if is_model_file(f.path)]
    windows, probes = _windows(list(paths), first_reads or {}, first_read)
    slots = asyncio.Semaphore(concurrency)

    async def one(path: str) -> FileHeader:
        reader = _RangeReader(client, repo, commit, path)
        header: HeaderParsed | None = None
        error: MregError | None = None
        try:
            async with slots:
                await reader.locate()
            window = windows[path]
            window = await window if isinstance(window, asyncio.Future) else window
            async with slots:
                header = await _parse(reader, window)
        except MregError as exc:
            error = exc
        finally:
            for sibling in probes.get(path, ()):
                sibling.set_result(after_probe(header.header_end) if header else first_read)
        return FileHeader(path, header, reader.stats, error)

    return {result.path: result for result in await asyncio.gather(*(one(path) for path in windows))}


async def read_remote_file(client: RepoClient, repo: RepoRef, commit: str, path: str, limit: int) -> bytes:
    """A small file's whole content (config.json, an index), refusing files above `limit` bytes."""
    reader = _RangeReader(client, repo, commit, path)
    location = await reader.locate()
    if location.size > limit:
        raise FormatError(f"{path}: {location.size} bytes is more than the {limit} expected of it")
    return await reader.read(0, location.size) if location.size else b""
