"""The ``BlobStore`` interface on its local-disk implementation: publish-if-absent, stat, range reads,
delete, list, and partial fills that resume at their committed offset after a restart."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from mreg.registry.blobs import BlobStore, LocalBlobStore
from mreg.registry.errors import StoreError, UsageError

DATA = bytes(range(256)) * 5000  # 1.28 MB: more than one read chunk
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def blobs(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "home")


def source(blobs: LocalBlobStore, data: bytes) -> Path:
    """A verified file on the store's filesystem, ready to publish."""
    blobs.tmp_dir.mkdir(parents=True, exist_ok=True)
    path = blobs.tmp_dir / os.urandom(6).hex()
    path.write_bytes(data)
    return path


async def read_all(store: BlobStore, sha256: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.read(sha256, start, end)])


async def test_publish_is_create_if_absent(blobs: LocalBlobStore) -> None:
    assert await blobs.stat(SHA) is None
    first = source(blobs, DATA)
    assert await blobs.publish(SHA, first) is True
    assert not first.exists()
    info = await blobs.stat(SHA)
    assert info is not None and (info.sha256, info.size) == (SHA, len(DATA))
    assert stat.S_IMODE(blobs.path(SHA).stat().st_mode) == 0o444
    second = source(blobs, DATA)
    assert await blobs.publish(SHA, second) is False  # never overwritten; the source is dropped
    assert not second.exists() and blobs.path(SHA).stat().st_ino == os.stat(blobs.path(SHA)).st_ino
    assert [p.name for p in blobs.tmp_dir.iterdir()] == []


async def test_range_reads_stream_the_asked_bytes(blobs: LocalBlobStore) -> None:
    await blobs.publish(SHA, source(blobs, DATA))
    assert await read_all(blobs, SHA) == DATA
    assert len([chunk async for chunk in blobs.read(SHA)]) > 1  # a stream, not one buffer
    assert await read_all(blobs, SHA, 1000, 2000) == DATA[1000:2000]
    assert await read_all(blobs, SHA, len(DATA) - 7) == DATA[-7:]
    assert await read_all(blobs, SHA, 5, 5) == b""
    assert await read_all(blobs, SHA, 10, 10 ** 9) == DATA[10:]
    with pytest.raises(StoreError, match="is not in the store"):
        await read_all(blobs, "0" * 64)


async def test_list_and_delete(blobs: LocalBlobStore) -> None:
    other = b"other bytes"
    other_sha = hashlib.sha256(other).hexdigest()
    await blobs.publish(SHA, source(blobs, DATA))
    await blobs.publish(other_sha, source(blobs, other))
    (blobs.blobs_dir / SHA[:2] / "not-a-blob").write_text("ignored")
    assert sorted((i.sha256, i.size) for i in [i async for i in blobs.list()]) == sorted(
        [(SHA, len(DATA)), (other_sha, len(other))])
    assert await blobs.delete(SHA) is True
    assert await blobs.delete(SHA) is False
    assert [i.sha256 async for i in blobs.list()] == [other_sha]
    assert [i async for i in LocalBlobStore(blobs.home / "empty").list()] == []


async def test_a_quarantined_blob_is_absent_until_a_good_copy_is_published(blobs: LocalBlobStore) -> None:
    await blobs.publish(SHA, source(blobs, DATA))
    path, aside = blobs.path(SHA), blobs.quarantine_dir / SHA
    path.chmod(0o644)
    path.write_bytes(DATA[:-1] + b"!")  # bit rot: same size, other bytes
    assert await blobs.quarantine(SHA, len(DATA) + 1) is False  # not the bytes that were found damaged
    assert path.exists() and not aside.exists()
    assert await blobs.quarantine(SHA, len(DATA)) is True
    assert await blobs.stat(SHA) is None and aside.read_bytes() == DATA[:-1] + b"!"
    assert [i async for i in blobs.list()] == []
    assert await blobs.quarantine(SHA, len(DATA)) is False
    assert await blobs.publish(SHA, source(blobs, DATA)) is True
    assert await read_all(blobs, SHA) == DATA and not aside.exists()


async def test_malformed_digests_are_usage_errors(blobs: LocalBlobStore) -> None:
    for bad in ("abc", SHA.upper(), "../" + SHA[3:]):
        with pytest.raises(UsageError):
            await blobs.stat(bad)
        with pytest.raises(UsageError):
            await blobs.open_fill(bad, 10)


async def test_a_fill_resumes_at_its_committed_offset_after_a_restart(blobs: LocalBlobStore) -> None:
    fill = await blobs.open_fill(SHA, len(DATA))
    assert fill.committed == 0
    await fill.append(DATA[:400_000])
    assert await fill.commit() == 400_000
    await fill.append(DATA[400_000:500_000])  # appended, never committed: lost in the "crash"
    resumed = await LocalBlobStore(blobs.home).open_fill(SHA, len(DATA))  # a new process
    assert resumed.committed == 400_000
    await resumed.append(DATA[400_000:])
    assert await resumed.publish() is True
    assert await read_all(blobs, SHA) == DATA
    assert sorted(p.name for p in blobs.partial_dir.iterdir()) == []
    again = await blobs.open_fill(SHA, len(DATA))  # a fill of a blob already stored just finds it there
    await again.append(DATA)
    assert await again.publish() is False


async def test_a_fill_of_other_bytes_or_size_is_refused(blobs: LocalBlobStore) -> None:
    fill = await blobs.open_fill(SHA, len(DATA))
    with pytest.raises(StoreError, match="incomplete"):
        await fill.publish()
    with pytest.raises(StoreError, match="more bytes"):
        await fill.append(DATA + b"x")
    await fill.append(DATA[:-1] + b"x")
    with pytest.raises(StoreError, match="holds other bytes"):
        await fill.publish()
    assert await blobs.stat(SHA) is None and list(blobs.partial_dir.iterdir()) == []
    fill = await blobs.open_fill(SHA, len(DATA))
    await fill.append(DATA[:10])
    await fill.commit()
    assert (await blobs.open_fill(SHA, len(DATA) + 1)).committed == 0  # another size starts anew
    await fill.discard()
    assert list(blobs.partial_dir.iterdir()) == []
