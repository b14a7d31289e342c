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
    chunks = [len(chunk) async for chunk in blobs.read(SHA)]
    assert len(chunks) > 1 and max(chunks) <= 1024 * 1024  # a stream of bounded chunks, not one buffer
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


async def test_another_replica_reads_a_fills_committed_bytes_as_they_grow(case: LocalCase | S3Case) -> None:
    async def committed(start: int = 0) -> bytes:
        return b"".join([chunk async for chunk in other.read_fill(SHA, len(DATA), start)])

    other = await case.another()
    assert await committed() == b""
    fill = await case.store.open_fill(SHA, len(DATA))
    await fill.append(DATA[:300_000])
    await fill.commit()
    await fill.append(DATA[300_000:700_000])
    assert await committed() == DATA[:300_000]  # appended bytes are not committed yet
    await fill.commit()
    assert await committed() == DATA[:700_000]
    assert await committed(300_000) == DATA[300_000:700_000]
    assert await committed(123_456) == DATA[123_456:700_000]  # from within a chunk
    assert await committed(700_000) == b""
    await fill.append(DATA[700_000:])
    assert await fill.publish() is True
    assert await committed() == b""  # the fill is over: the blob holds the bytes


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


# -- what only the S3 store has ----------------------------------------------------------------------------------


def test_s3_locations_parse_or_say_what_is_wrong() -> None:
    from mreg.registry.blobs.s3location import S3Location, parse_s3_url

    assert parse_s3_url("s3://models") == S3Location("models", "")
    assert parse_s3_url("s3://my.models-1/team/mreg/") == S3Location("my.models-1", "team/mreg")
    assert parse_s3_url("s3://b12/p").key("blobs", SHA) == f"p/blobs/{SHA}"
    assert S3Location("b12").key("fills", "") == "fills/" and str(S3Location("b12", "p")) == "s3://b12/p"
    for bad, said in [("models", "expected s3://"), ("https://x/y", "expected s3://"), ("s3://", "bucket"),
                      ("s3://ab", "bucket"), ("s3://Models", "bucket"), ("s3://a..b", "bucket"),
                      ("s3://b12/a//b", "prefix"), ("s3://b12/a/../b", "prefix"), ("s3://b12/a b", "prefix")]:
        with pytest.raises(UsageError, match=said) as caught:
            parse_s3_url(bad)
        assert "\n" not in str(caught.value)


async def test_s3_conditional_creates_never_overwrite(s3: S3Case) -> None:
    store = await s3.open(part_size=5 * MIB)  # files over 5 MiB go as multipart uploads
    big = os.urandom(11 * MIB)
    big_sha = hashlib.sha256(big).hexdigest()
    assert await store.publish(big_sha, s3.source(big)) is True
    assert await read_all(store, big_sha) == big and s3.uploads() == []
    key = store.blob_key(big_sha)
    # Past the HEAD that spares the upload: the conditional create itself refuses, small or multipart.
    assert await store.put_if_absent(key, b"other bytes") is False

    async def other_parts(upload_id: str) -> AsyncIterator[str]:
        answer = await store.client.upload_part(Bucket=s3.bucket, Key=key, UploadId=upload_id, PartNumber=1,
                                                Body=b"x" * (6 * MIB))
        yield answer["ETag"]

    assert await store.upload_if_absent(key, other_parts) is False
    assert await read_all(store, big_sha) == big and s3.uploads() == []  # unchanged; the refused upload aborted
    assert s3.keys() == [key]


async def test_s3_fill_of_large_chunks_resumes_on_another_replica(s3: S3Case) -> None:
    data = os.urandom(12 * MIB)
    sha = hashlib.sha256(data).hexdigest()
    leader = await s3.open(chunk_size=5 * MIB)
    fill = await leader.open_fill(sha, len(data))
    for start in range(0, 11 * MIB, MIB):  # commits by itself at 5 and 10 MiB: 11 MiB appended, 10 durable
        await fill.append(data[start:start + MIB])
    assert fill.committed == 10 * MIB and len(s3.keys("fills/")) == 2 and s3.keys("blobs/") == []
    follower = await s3.open(chunk_size=5 * MIB)  # the leader "dies"; another replica takes over
    resumed = await follower.open_fill(sha, len(data))
    assert resumed.committed == 10 * MIB
    await resumed.append(data[10 * MIB:])
    assert s3.keys("blobs/") == []
    assert await resumed.publish() is True  # two parts copied server-side, the last 2 MiB sent
    assert await read_all(leader, sha) == data
    assert await s3.leftovers() == []


async def test_s3_two_replicas_finishing_one_blob_at_once_leave_one_good_object(s3: S3Case) -> None:
    import asyncio

    data = os.urandom(7 * MIB)
    sha = hashlib.sha256(data).hexdigest()
    fills = [await (await s3.open(chunk_size=5 * MIB)).open_fill(sha, len(data)) for _ in range(3)]
    for fill in fills:
        await fill.append(data)
    # Two at once: S3 makes the conditional completion atomic, so exactly one creates the object; SeaweedFS
    # checks If-None-Match before it writes, so both may, each with the same verified bytes. Either way one
    # good object and no upload left; a fill finishing after it never creates it again.
    created = await asyncio.gather(*(fill.publish() for fill in fills[:2]))
    assert True in created, created
    assert await read_all(s3.store, sha) == data and s3.uploads() == []
    assert await fills[2].publish() is False
    assert await read_all(s3.store, sha) == data and s3.uploads() == []


async def test_s3_fill_of_wrong_bytes_leaves_nothing_under_blobs(s3: S3Case) -> None:
    data = os.urandom(6 * MIB)
    store = await s3.open(chunk_size=5 * MIB)
    fill = await store.open_fill(hashlib.sha256(data).hexdigest(), len(data))
    await fill.append(data[:-1] + bytes([data[-1] ^ 1]))
    await fill.commit()
    with pytest.raises(StoreError, match="holds other bytes"):
        await fill.publish()
    assert s3.keys() == [] and s3.uploads() == []


async def test_s3_fill_whose_chunk_changed_meanwhile_is_refused(s3: S3Case) -> None:
    fill = await s3.store.open_fill(SHA, len(DATA))
    await fill.append(DATA[:1000])
    await fill.commit()
    await fill.append(DATA[1000:])
    s3.raw.put_object(Bucket=s3.bucket, Key=s3.keys("fills/")[0], Body=b"y" * 1000)  # not the bytes hashed
    with pytest.raises(StoreError, match="lost its chunk at offset 0"):
        await fill.publish()
    assert s3.keys("blobs/") == [] and s3.uploads() == []


async def test_s3_errors_are_one_line_store_errors(s3: S3Case, monkeypatch: pytest.MonkeyPatch) -> None:
    from mreg.registry.blobs.s3 import S3BlobStore

    with pytest.raises(StoreError, match="not open"):
        await S3BlobStore(s3.url).stat(SHA)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "tampered-secret")
    with pytest.raises(StoreError, match="refused to open .* check the AWS credentials") as caught:
        await s3.open()
    assert "\n" not in str(caught.value) and "tampered-secret" not in str(caught.value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.server.env()["AWS_SECRET_ACCESS_KEY"])
    with pytest.raises(StoreError, match="bucket of s3://no-such-bucket does not exist"):
        await s3.open("s3://no-such-bucket")
    bucket = s3.server.new_bucket()
    store = await s3.open(f"s3://{bucket}")
    s3.raw.delete_bucket(Bucket=bucket)  # gone after the store opened: each operation says so
    for attempt in (lambda: read_all(store, SHA), lambda: store.open_fill(SHA, len(DATA)),
                    lambda: store.sweep(older_than=0)):
        with pytest.raises(StoreError, match="NoSuchBucket") as caught:
            await attempt()
        assert "\n" not in str(caught.value)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(StoreError, match="no AWS credentials .*AWS_ACCESS_KEY_ID"):
        await s3.open()


async def test_s3_unreachable_is_store_unavailable(s3: S3Case, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # the standard variable: no retries
    with pytest.raises(StoreUnavailableError, match="cannot reach the S3 store") as caught:
        await s3.open()
    assert "\n" not in str(caught.value)


async def test_s3_janitor_removes_what_dead_replicas_left(s3: S3Case) -> None:
    fill = await s3.store.open_fill(SHA, len(DATA))
    await fill.append(DATA[:1000])
    await fill.commit()
    orphan = s3.raw.create_multipart_upload(Bucket=s3.bucket, Key=f"{s3.prefix}/blobs/{'1' * 64}")
    outside = s3.raw.create_multipart_upload(Bucket=s3.bucket, Key=f"{s3.prefix}-other/blobs/{'1' * 64}")
    assert await s3.store.sweep(older_than=3600) == (0, 0)  # all of it recent: a live fill's, maybe
    assert len(s3.keys("fills/")) == 1 and len(s3.uploads()) == 1
    assert await s3.store.sweep(older_than=0) == (1, 1)
    assert await s3.leftovers() == []
    assert (await s3.store.open_fill(SHA, len(DATA))).committed == 0
    s3.raw.abort_multipart_upload(Bucket=s3.bucket, Key=outside["Key"], UploadId=outside["UploadId"])
    assert orphan["Key"].startswith(s3.prefix)


async def test_s3_lifecycle_rule_aborts_incomplete_uploads(s3: S3Case) -> None:
    bucket = s3.server.new_bucket()  # bucket-wide settings: a bucket of its own
    theirs = {"ID": "theirs", "Status": "Enabled", "Filter": {"Prefix": "logs/"}, "Expiration": {"Days": 30}}
    s3.raw.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [theirs]})
    store = await s3.open(f"s3://{bucket}/mreg")
    await store.add_lifecycle_rule(days=2)
    await store.add_lifecycle_rule(days=2)  # once, however often it is added
    rules = s3.raw.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert sorted(r["ID"] for r in rules) == ["mreg-abort-incomplete-uploads", "theirs"]
    ours = next(r for r in rules if r["ID"] != "theirs")
    assert ours["Filter"] == {"Prefix": "mreg/"} and ours["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 2}
