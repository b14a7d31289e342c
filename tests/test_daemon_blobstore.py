"""The real daemon app serving stored blobs through a ``BlobStore`` that has no local paths: every
body is then streamed by ``BlobStore.read``, byte-exact for whole files and ranges."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

from mreg.daemon.app import build_app
from mreg.daemon.config import ServeConfig
from mreg.daemon.state import MIRROR
from mreg.registry.blobs import BlobInfo, LocalBlobPaths, LocalBlobStore
from mreg.registry.config import Settings
from mreg.registry.errors import StoreError
from tests.testhub import TestHub, small_repo

DATA = bytes(range(251)) * 10_000  # 2.5 MB: several read chunks, a period that no chunk size divides
REPO = "testorg/blobs"


class MemoryBlobs:
    """A ``BlobStore`` in memory, in small chunks, with no local paths; it counts its reads."""

    CHUNK = 100_000

    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs = blobs
        self.reads = 0

    async def stat(self, sha256: str) -> BlobInfo | None:
        data = self.blobs.get(sha256)
        return None if data is None else BlobInfo(sha256, len(data), 0.0)

    async def read(self, sha256: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        if sha256 not in self.blobs:
            raise StoreError(f"blob {sha256} is not in the store")
        self.reads += 1
        data = self.blobs[sha256][start:end]
        for at in range(0, len(data), self.CHUNK):
            yield data[at:at + self.CHUNK]

    async def publish(self, sha256: str, source: Path) -> bool:
        created = sha256 not in self.blobs
        self.blobs.setdefault(sha256, source.read_bytes())
        source.unlink()
        return created

    async def delete(self, sha256: str) -> bool:
        return self.blobs.pop(sha256, None) is not None

    async def list(self) -> AsyncIterator[BlobInfo]:
        for sha256, data in list(self.blobs.items()):
            yield BlobInfo(sha256, len(data), 0.0)


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers=headers) as resp:
            return resp.status, dict(resp.headers), await resp.read()


def test_the_local_store_gives_local_paths_and_the_memory_store_none(tmp_path: Path) -> None:
    assert isinstance(LocalBlobStore(tmp_path), LocalBlobPaths)
    assert not isinstance(MemoryBlobs({}), LocalBlobPaths)


async def test_stored_blobs_are_served_byte_exact_through_blob_reads(tmp_path: Path) -> None:
    sha = hashlib.sha256(DATA).hexdigest()
    with TestHub() as hub:
        hub.add_repo(small_repo(REPO, {"weights.bin": DATA, "README.md": "# blobs\n"}))
        home = tmp_path / "home"
        settings = Settings(home=home, database_url=f"sqlite+aiosqlite:///{home / 'catalog.db'}",
                            endpoint=hub.endpoint, offline=False)
        server = TestServer(build_app(ServeConfig(upstream=hub.endpoint, port=0), settings), host="127.0.0.1")
        await server.start_server()
        try:
            url = str(server.make_url(f"/{REPO}/resolve/main/weights.bin"))
            assert (await get(url))[2] == DATA  # the first client fills the local store
            mirror = server.app[MIRROR]
            local = mirror.store.blobs
            memory = MemoryBlobs({sha: b"".join([chunk async for chunk in local.read(sha)])})
            local.path(sha).unlink()  # from here on, only the memory store has the bytes
            mirror.store.blobs = memory  # type: ignore[assignment]
            hits = mirror.metrics.cache_hits
            status, _, body = await get(url)
            assert (status, body) == (200, DATA)
            cases = {"bytes=0-0": DATA[:1], "bytes=10-20": DATA[10:21], "bytes=-7": DATA[-7:],
                     "bytes=1048570-1048585": DATA[1048570:1048586], "bytes=99999-": DATA[99999:],
                     f"bytes=5-{len(DATA) * 2}": DATA[5:]}
            for header, want in cases.items():
                status, headers, body = await get(url, {"Range": header})
                assert (status, body) == (206, want), header
                assert headers["Content-Length"] == str(len(want))
            assert memory.reads == 1 + len(cases)
            assert mirror.metrics.cache_hits == hits + 1 + len(cases)
            assert hub.stats.cdn_bytes == len(DATA)  # nothing fetched upstream again
        finally:
            await server.close()
