"""The I/O around the sans-I/O header parsers of `registry.formats`: local files and the Hub.

Remote headers are read with ranged GETs: the file is located once (the resolve HEAD gives the
CDN URL of an LFS file, reused for every range), then each `NeedBytes` is served by one GET of
exactly the bytes asked for (the first one is widened to `first_read`). Tensor data is never read.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from dataclasses import dataclass

import aiohttp

from mreg.registry.errors import FormatError, LocationExpiredError, MregError, StoreError, UpstreamUnavailableError
from mreg.registry.formats.events import HeaderParsed, NeedBytes
from mreg.registry.formats.gguf import GGUFHeaderParser
from mreg.registry.formats.safetensors import SafetensorsHeaderParser
from mreg.registry.upstream.client import FileLocation
from mreg.registry.upstream.client import RepoClient
from mreg.registry.upstream.hub.urls import redacted
from mreg.registry.repo import RepoRef

FIRST_READ = 256 * 1024
"""Bytes of the first ranged GET, chosen by measuring headers of real architectures (HF names and
shapes, split as save_pretrained does): per file they are 2-75 KB for dense and DeepSeek-V3 shards,
16-32 KB for small single-file models, ~145 KB for Qwen3-30B-A3B shards, ~380 KB for a single-file
SD-style UNet. 256 KiB reads all but the last in one request, and beats 512 KiB and 1 MiB on
many-shard repos, where the over-read adds up (163 DeepSeek-V3 shards: 43 MB instead of 85/171 MB).
GGUF headers (0.05-10 MB) then grow by windows of at least 1 MiB."""
LOCAL_READ = 1024 * 1024
CONCURRENCY = 32
"""Files read at once: bench/inspect_bench.py on a 100-shard repo with 50 ms per request took 1.71 s
at 8, 0.81 s at 32 and 0.69-0.71 s at 64-100 (CPU-bound past 32 on 2 cores)."""
SHARD_PROBE_AFTER = 4
MIN_FIRST_READ = 16 * 1024
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


async def _parse(reader: _RangeReader, first_read: int) -> HeaderParsed:
    """Drive a parser over ranged GETs: one GET per NeedBytes, the first widened to `first_read`."""
    location = await reader.locate()
    try:
        parser = parser_for(reader.path, location.size)
        event = parser.next_event()
        while isinstance(event, NeedBytes):
            end = min(event.offset + max(event.length, first_read), location.size)
            first_read = 0
            parser.receive_data(event.offset, await reader.read(event.offset, end) if end > event.offset else b"")
            event = parser.next_event()
        return event
    except FormatError as exc:
        raise FormatError(f"{reader.path}: {exc}") from None


async def parse_remote(client: RepoClient, repo: RepoRef, commit: str, path: str,
                       first_read: int = FIRST_READ) -> tuple[HeaderParsed, FetchStats]:
    """Parse one remote file's header; return it with what the ranged GETs cost."""
    reader = _RangeReader(client, repo, commit, path)
    return await _parse(reader, first_read), reader.stats


async def parse_remote_many(client: RepoClient, repo: RepoRef, commit: str, paths: Iterable[str] | None = None,
                            *, first_read: int = FIRST_READ, concurrency: int = CONCURRENCY) -> dict[str, FileHeader]:
    """Parse many files' headers concurrently (at most `concurrency` at once), by path.

    `paths` defaults to every .safetensors and .gguf file of the repo at `commit`. A file that fails
    (a malformed header, a missing file, an unreachable CDN) gets its error; the others go on.
    Shards of one model have headers of about one size: with more than `SHARD_PROBE_AFTER`
    safetensors files, one is read first and the rest with a first read sized from its header.
    """
    if paths is None:
        paths = [f.path for f in await client.list_files(repo, commit) if is_model_file(f.path)]
    paths = list(paths)
    slots = asyncio.Semaphore(concurrency)

    async def one(path: str, window: int) -> FileHeader:
        reader = _RangeReader(client, repo, commit, path)
        async with slots:
            try:
                header = await _parse(reader, window)
            except MregError as exc:
                return FileHeader(path, None, reader.stats, exc)
        return FileHeader(path, header, reader.stats, None)

    results: list[FileHeader] = []
    shards = [p for p in paths if p.lower().endswith(".safetensors")]
    if len(shards) > SHARD_PROBE_AFTER:
        probe = await one(shards[0], first_read)
        results.append(probe)
        if probe.header is not None:
            first_read = min(first_read, max(MIN_FIRST_READ, 2 * probe.header.header_end))
        paths = [p for p in paths if p != shards[0]]
    results += await asyncio.gather(*(one(path, first_read) for path in paths))
    return {result.path: result for result in results}


async def read_remote_file(client: RepoClient, repo: RepoRef, commit: str, path: str, limit: int) -> bytes:
    """A small file's whole content (config.json, an index), refusing files above `limit` bytes."""
    reader = _RangeReader(client, repo, commit, path)
    location = await reader.locate()
    if location.size > limit:
        raise FormatError(f"{path}: {location.size} bytes is more than the {limit} expected of it")
    return await reader.read(0, location.size) if location.size else b""
