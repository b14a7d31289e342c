"""The ``BlobStore`` interface on both implementations, the local disk and S3 (a real SeaweedFS):
publish-if-absent, stat, range reads, delete, list, quarantine, and partial fills that resume at their
committed offset after a restart (locally) or on another replica (S3). Then what only S3 has: conditional
creates that never overwrite, multipart assembly from chunk objects, errors, the janitor and lifecycle rule."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from mreg.registry.blobs import BlobStore, LocalBlobStore
from mreg.registry.errors import StoreError, StoreUnavailableError, UsageError
from tests.seaweed import SeaweedServer

DATA = bytes(range(256)) * 5000  # 1.28 MB: more than one read chunk
SHA = hashlib.sha256(DATA).hexdigest()
MIB = 1024 * 1024


class LocalCase:
    """The local store in a temp folder, and what the tests look at beside the interface."""

    name = "local"

    def __init__(self, home: Path) -> None:
        self.store = LocalBlobStore(home)

    def source(self, data: bytes) -> Path:
        """A verified file on the store's filesystem, ready to publish."""
        self.store.tmp_dir.mkdir(parents=True, exist_ok=True)
        path = self.store.tmp_dir / os.urandom(6).hex()
        path.write_bytes(data)
        return path

    async def another(self) -> LocalBlobStore:
        """A new store object over the same blobs (a new process)."""
        return LocalBlobStore(self.store.home)

    async def elsewhere(self) -> LocalBlobStore:
        """An empty store."""
        return LocalBlobStore(self.store.home / "empty")

    async def leftovers(self) -> list[str]:
        """What partial fills and temp files left behind."""
        return [p.name for d in (self.store.partial_dir, self.store.tmp_dir) if d.is_dir() for p in d.iterdir()]

    async def put_junk(self) -> None:
        (self.store.blobs_dir / SHA[:2] / "not-a-blob").write_text("ignored")

    async def rot(self, sha256: str, data: bytes) -> None:
        """Replace the stored blob's bytes behind the store's back."""
        path = self.store.path(sha256)
        path.chmod(0o644)
        path.write_bytes(data)

    async def aside(self, sha256: str) -> bytes | None:
        path = self.store.quarantine_dir / sha256
        return path.read_bytes() if path.exists() else None

    async def close(self) -> None:
        pass


class S3Case:
    """An ``S3BlobStore`` below a fresh prefix of the session's SeaweedFS bucket."""

    name = "s3"

    def __init__(self, server: SeaweedServer, url: str, tmp: Path) -> None:
        from mreg.registry.blobs.s3 import S3BlobStore
        from mreg.registry.blobs.s3location import parse_s3_url

        self.server, self.url, self.tmp = server, url, tmp
        self.bucket, self.prefix = parse_s3_url(url).bucket, parse_s3_url(url).prefix
        self.store = S3BlobStore(url)
        self.raw = server.client()
        self._opened: list[Any] = [self.store]

    def source(self, data: bytes) -> Path:
        path = self.tmp / os.urandom(6).hex()
        path.write_bytes(data)
        return path

    async def open(self, url: str | None = None, **options: Any) -> Any:
        from mreg.registry.blobs.s3 import S3BlobStore

        store = await S3BlobStore(url or self.url, **options).open()
        self._opened.append(store)
        return store

    async def another(self) -> Any:
        """Another replica: a new store object, client and session over the same bucket and prefix."""
        return await self.open()

    async def elsewhere(self) -> Any:
        return await self.open(f"{self.url}-elsewhere")

    def keys(self, below: str = "") -> list[str]:
        """Every object key below the store's prefix + ``below``."""
        pages = self.raw.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=f"{self.prefix}/{below}")
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def uploads(self) -> list[str]:
        """The keys of the multipart uploads in progress below the store's prefix."""
        found = self.raw.list_multipart_uploads(Bucket=self.bucket, Prefix=f"{self.prefix}/").get("Uploads", [])
        return [u["Key"] for u in found]

    async def leftovers(self) -> list[str]:
        return self.keys("fills/") + self.uploads()

    async def put_junk(self) -> None:
        self.raw.put_object(Bucket=self.bucket, Key=f"{self.prefix}/blobs/not-a-blob", Body=b"ignored")

    async def rot(self, sha256: str, data: bytes) -> None:
        self.raw.put_object(Bucket=self.bucket, Key=f"{self.prefix}/blobs/{sha256}", Body=data)

    async def aside(self, sha256: str) -> bytes | None:
        key = f"{self.prefix}/quarantine/{sha256}"
        return self.raw.get_object(Bucket=self.bucket, Key=key)["Body"].read() if key in self.keys() else None

    async def close(self) -> None:
        for store in self._opened:
            await store.close()


@pytest_asyncio.fixture(params=["local", "s3"])
async def case(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LocalCase | S3Case]:
    """Each store in turn, empty."""
    if request.param == "local":
        yield LocalCase(tmp_path / "home")
        return
    made = S3Case(request.getfixturevalue("seaweed"), request.getfixturevalue("s3_url"), tmp_path)
    await made.store.open()
    try:
        yield made
    finally:
        await made.close()


@pytest_asyncio.fixture
async def s3(seaweed: SeaweedServer, s3_url: str, tmp_path: Path) -> AsyncIterator[S3Case]:
    """The S3 store alone."""
    made = S3Case(seaweed, s3_url, tmp_path)
    await made.store.open()
    try:
        yield made
    finally:
        await made.close()


async def read_all(store: BlobStore, sha256: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.read(sha256, start, end)])


# -- the contract, on both stores ------------------------------------------------------------------------------


async def test_publish_is_create_if_absent(case: LocalCase | S3Case) -> None:
    blobs = case.store
    assert await blobs.stat(SHA) is None
    first = case.source(DATA)
    assert await blobs.publish(SHA, first) is True
    assert not first.exists()
    info = await blobs.stat(SHA)
    assert info is not None and (info.sha256, info.size) == (SHA, len(DATA))
    if isinstance(blobs, LocalBlobStore):
        assert stat.S_IMODE(blobs.path(SHA).stat().st_mode) == 0o444
        inode = blobs.path(SHA).stat().st_ino
    second = case.source(DATA[::-1])  # other bytes of the same size: never written over the blob
    assert await blobs.publish(SHA, second) is False  # never overwritten; the source is dropped
    assert not second.exists() and await read_all(blobs, SHA) == DATA
    if isinstance(blobs, LocalBlobStore):
        assert blobs.path(SHA).stat().st_ino == inode
    assert await case.leftovers() == []


async def test_range_reads_stream_the_asked_bytes(case: LocalCase | S3Case) -> None:
    blobs = case.store
    await blobs.publish(SHA, case.source(DATA))
    assert await read_all(blobs, SHA) == DATA
    assert len([chunk async for chunk in blobs.read(SHA)]) > 1  # a stream, not one buffer
    assert await read_all(blobs, SHA, 1000, 2000) == DATA[1000:2000]
    assert await read_all(blobs, SHA, len(DATA) - 7) == DATA[-7:]
    assert await read_all(blobs, SHA, 5, 5) == b""
    assert await read_all(blobs, SHA, 10, 10 ** 9) == DATA[10:]
    assert await read_all(blobs, SHA, len(DATA)) == b""
    with pytest.raises(StoreError, match="is not in the store"):
        await read_all(blobs, "0" * 64)


async def test_list_and_delete(case: LocalCase | S3Case) -> None:
    blobs = case.store
    other = b"other bytes"
    other_sha = hashlib.sha256(other).hexdigest()
    await blobs.publish(SHA, case.source(DATA))
    await blobs.publish(other_sha, case.source(other))
    await case.put_junk()
    assert sorted((i.sha256, i.size) for i in [i async for i in blobs.list()]) == sorted(
        [(SHA, len(DATA)), (other_sha, len(other))])
    assert await blobs.delete(SHA) is True
    assert await blobs.delete(SHA) is False
    assert [i.sha256 async for i in blobs.list()] == [other_sha]
    assert [i async for i in (await case.elsewhere()).list()] == []


async def test_a_quarantined_blob_is_absent_until_a_good_copy_is_published(case: LocalCase | S3Case) -> None:
    blobs = case.store
    await blobs.publish(SHA, case.source(DATA))
    await case.rot(SHA, DATA[:-1] + b"!")  # bit rot: same size, other bytes
    assert await blobs.quarantine(SHA, len(DATA) + 1) is False  # not the bytes that were found damaged
    assert await blobs.stat(SHA) is not None and await case.aside(SHA) is None
    assert await blobs.quarantine(SHA, len(DATA)) is True
    assert await blobs.stat(SHA) is None and await case.aside(SHA) == DATA[:-1] + b"!"
    assert [i async for i in blobs.list()] == []
    assert await blobs.quarantine(SHA, len(DATA)) is False
    assert await blobs.publish(SHA, case.source(DATA)) is True
    assert await read_all(blobs, SHA) == DATA and await case.aside(SHA) is None


async def test_malformed_digests_are_usage_errors(case: LocalCase | S3Case) -> None:
    for bad in ("abc", SHA.upper(), "../" + SHA[3:]):
        with pytest.raises(UsageError):
            await case.store.stat(bad)
        with pytest.raises(UsageError):
            await case.store.open_fill(bad, 10)


async def test_a_fill_resumes_at_its_committed_offset_in_a_new_store_object(case: LocalCase | S3Case) -> None:
    blobs = case.store
    fill = await blobs.open_fill(SHA, len(DATA))
    assert fill.committed == 0
    await fill.append(DATA[:400_000])
    assert await fill.commit() == 400_000
    await fill.append(DATA[400_000:500_000])  # appended, never committed: lost in the "crash"
    resumed = await (await case.another()).open_fill(SHA, len(DATA))  # a new process, or another replica
    assert resumed.committed == 400_000
    await resumed.append(DATA[400_000:])
    assert await resumed.publish() is True
    assert await read_all(blobs, SHA) == DATA
    assert await case.leftovers() == []
    again = await blobs.open_fill(SHA, len(DATA))  # a fill of a blob already stored just finds it there
    await again.append(DATA)
    assert await again.publish() is False
    assert await case.leftovers() == []


async def test_a_fill_of_other_bytes_or_size_is_refused(case: LocalCase | S3Case) -> None:
    blobs = case.store
    fill = await blobs.open_fill(SHA, len(DATA))
    with pytest.raises(StoreError, match="incomplete"):
        await fill.publish()
    with pytest.raises(StoreError, match="more bytes"):
        await fill.append(DATA + b"x")
    await fill.append(DATA[:600_000])
    await fill.commit()
    await fill.append(DATA[600_000:-1] + b"x")
    with pytest.raises(StoreError, match="holds other bytes"):
        await fill.publish()
    assert await blobs.stat(SHA) is None and [i async for i in blobs.list()] == []
    assert await case.leftovers() == []
    fill = await blobs.open_fill(SHA, len(DATA))
    await fill.append(DATA[:10])
    await fill.commit()
    assert (await blobs.open_fill(SHA, len(DATA) + 1)).committed == 0  # another size starts anew
    await fill.discard()
    assert await case.leftovers() == []
