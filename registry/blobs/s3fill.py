"""``S3Fill``: a partial fill whose committed bytes are chunk objects, so a restart or another replica resumes it.

    PREFIX/fills/<sha256>/<size>/<offset:016x>   one object per commit: bytes [offset, offset + its size)

``append`` buffers in memory and hashes as it goes, committing by itself once ``chunk_size`` bytes are
buffered (so a fill holds at most about one chunk in memory). ``open`` resumes at the end of the chunks that
follow each other from offset 0, reading them back to hash them again.

``publish`` checks size and sha256 first; only then does the blob's key appear, by one multipart upload
completed with ``If-None-Match: *``: a chunk of at least S3's 5 MiB minimum becomes a part by UploadPartCopy
(server side), a run of smaller chunks is read back and sent as one part (at most 5 MiB plus one chunk in
memory). Every chunk is copied or read only if it still has the ETag it had when it was hashed. The chunks
are deleted after.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from mreg.registry.blobs.local import READ_CHUNK
from mreg.registry.blobs.s3errors import s3_errors, status_of
from mreg.registry.errors import StoreError, UsageError

if TYPE_CHECKING:
    from mreg.registry.blobs.s3 import S3BlobStore

MIN_PART = 5 * 1024 * 1024
"""S3's smallest part (every part but the last)."""
_OFFSET = re.compile(r"^[0-9a-f]{16}$")


@dataclass(frozen=True)
class Chunk:
    """One committed chunk object: bytes [offset, offset + size) of the blob, as ``etag`` had them."""

    offset: int
    size: int
    etag: str
    key: str


async def committed_bytes(store: S3BlobStore, sha256: str, size: int, start: int) -> AsyncIterator[bytes]:
    """The bytes of blob ``sha256``'s fill from ``start``, chunk after chunk, as long as they follow each other
    (``BlobStore.read_fill``): one listing, then each chunk read from where it is needed. A chunk gone meanwhile
    (the fill was published, or discarded) ends them."""
    prefix = store.location.key("fills", sha256, str(size), "")
    what = f"to read the fill of {store.where(sha256)}"
    found: dict[int, str] = {}
    async for obj in store.objects(prefix, what):
        name = obj["Key"][len(prefix):]
        if _OFFSET.match(name) and obj["Size"]:
            found[int(name, 16)] = obj["Key"]
    pos = max((offset for offset in found if offset <= start), default=None)
    while pos is not None and pos in found:
        with s3_errors(what):
            try:
                answer = await store.client.get_object(Bucket=store.bucket, Key=found[pos],
                                                       **({"Range": f"bytes={start - pos}-"} if start > pos else {}))
            except ClientError as exc:
                if status_of(exc) in (404, 416):
                    return
                raise
            body = answer["Body"]
            try:
                while data := await body.read(READ_CHUNK):
                    start += len(data)
                    yield data
            finally:
                body.close()
        pos = start  # the next chunk begins where this one ended


class S3Fill:
    """The fill of blob ``sha256`` of ``size`` bytes in ``store``; see the module docstring."""

    def __init__(self, store: S3BlobStore, sha256: str, size: int) -> None:
        self.sha256, self.size, self._store = sha256, size, store
        self.prefix = store.location.key("fills", sha256, str(size), "")
        self._chunks: list[Chunk] = []
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._hash = hashlib.sha256()

    @classmethod
    async def open(cls, store: S3BlobStore, sha256: str, size: int) -> S3Fill:
        """The fill resumed at the end of its contiguous committed chunks, or a new, empty one."""
        if size < 0:
            raise UsageError(f"invalid size {size} for blob {sha256}")
        fill = cls(store, sha256, size)
        await fill._resume()
        return fill

    @property
    def committed(self) -> int:
        last = self._chunks[-1] if self._chunks else None
        return last.offset + last.size if last else 0

    @property
    def what(self) -> str:
        return f"the fill of {self._store.where(self.sha256)}"

    async def append(self, data: bytes) -> None:
        if self.committed + self._buffered + len(data) > self.size:
            raise StoreError(f"more bytes than the {self.size} of blob {self.sha256}")
        self._buffer.append(bytes(data))
        self._buffered += len(data)
        self._hash.update(data)
        if self._buffered >= self._store.chunk_size:
            await self.commit()

    async def commit(self) -> int:
        if not self._buffered:
            return self.committed
        data, offset = b"".join(self._buffer), self.committed
        key = f"{self.prefix}{offset:016x}"
        with s3_errors(f"to commit {self.what}"):
            answer = await self._store.client.put_object(Bucket=self._store.bucket, Key=key, Body=data)
        self._chunks.append(Chunk(offset, len(data), answer["ETag"], key))
        self._buffer.clear()
        self._buffered = 0
        return self.committed

    async def publish(self) -> bool:
        written = self.committed + self._buffered
        if written != self.size:
            raise StoreError(f"blob {self.sha256} is incomplete: {written} of {self.size} bytes")
        got = self._hash.hexdigest()
        if got != self.sha256:
            await self.discard()
            raise StoreError(f"partial fill of blob {self.sha256} holds other bytes (sha256 {got})")
        await self.commit()
        store, key = self._store, self._store.blob_key(self.sha256)
        with s3_errors(f"to publish {store.where(self.sha256)}"):
            if await store.head(key) is not None:
                created = False
            elif not self._chunks:  # the empty blob
                created = await store.put_if_absent(key, b"")
            else:
                try:
                    created = await store.upload_if_absent(key, lambda upload_id: self._send_parts(key, upload_id))
                except StoreError:
                    if await store.head(key) is None:
                        raise
                    created = False  # another fill of the blob won, and cleaned up the chunks this one shared
        every_size = store.location.key("fills", self.sha256, "")
        await store.delete_keys([o["Key"] async for o in store.objects(every_size, f"to list {self.what}")],
                                f"to clean up {self.what}")
        self._reset()
        if created:
            await store.drop_quarantined(self.sha256)
        return created

    async def discard(self) -> None:
        keys = [o["Key"] async for o in self._store.objects(self.prefix, f"to list {self.what}")]
        await self._store.delete_keys(keys, f"to discard {self.what}")
        self._reset()

    # -- inside ------------------------------------------------------------------------------------------

    def _reset(self) -> None:
        self._chunks.clear()
        self._buffer.clear()
        self._buffered = 0
        self._hash = hashlib.sha256()

    async def _resume(self) -> None:
        """Take the chunks that follow each other from offset 0, hashing their bytes again."""
        found: dict[int, Chunk] = {}
        async for obj in self._store.objects(self.prefix, f"to resume {self.what}"):
            name = obj["Key"][len(self.prefix):]
            if _OFFSET.match(name):
                offset = int(name, 16)
                found[offset] = Chunk(offset, int(obj["Size"]), obj["ETag"], obj["Key"])
        while (chunk := found.get(self.committed)) and chunk.size and self.committed + chunk.size <= self.size:
            if not await self._read_chunk(chunk, self._hash.update):
                break
            self._chunks.append(chunk)

    async def _read_chunk(self, chunk: Chunk, take: Callable[[bytes], object]) -> bool:
        """Stream ``chunk``'s bytes into ``take``; False if it is gone or changed since it was listed."""
        with s3_errors(f"to read {self.what}"):
            try:
                answer = await self._store.client.get_object(Bucket=self._store.bucket, Key=chunk.key,
                                                             IfMatch=chunk.etag)
            except ClientError as exc:
                if status_of(exc) in (404, 412):
                    return False
                raise
            body = answer["Body"]
            try:
                while data := await body.read(READ_CHUNK):
                    take(data)
            finally:
                body.close()
        return True

    async def _send_parts(self, key: str, upload_id: str) -> AsyncIterator[str]:
        """The chunks as the parts of upload ``upload_id``, in order (see the module docstring); each part's ETag."""
        client, bucket = self._store.client, self._store.bucket
        group: list[bytes] = []
        grouped = number = 0
        for chunk in self._chunks:
            if not grouped and chunk.size >= MIN_PART:
                number += 1
                try:
                    answer = await client.upload_part_copy(
                        Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                        CopySource={"Bucket": bucket, "Key": chunk.key}, CopySourceIfMatch=chunk.etag)
                except ClientError as exc:
                    if status_of(exc) in (404, 412):
                        raise self._changed(chunk) from None
                    raise
                yield answer["CopyPartResult"]["ETag"]
                continue
            if not await self._read_chunk(chunk, group.append):
                raise self._changed(chunk)
            grouped += chunk.size
            if grouped >= MIN_PART or chunk is self._chunks[-1]:
                number += 1
                answer = await client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                                  Body=b"".join(group))
                group.clear()
                grouped = 0
                yield answer["ETag"]

    def _changed(self, chunk: Chunk) -> StoreError:
        self._reset()
        return StoreError(f"{self.what} lost its chunk at offset {chunk.offset} (deleted or rewritten meanwhile): "
                          "start it again")
