"""``S3BlobStore``: the ``BlobStore`` in an S3-compatible object store (aiobotocore), for replicas that share
their blobs. Keys are laid out in ``s3location``; fills in progress are ``s3fill.S3Fill``.

Credentials, region and endpoint come from where every AWS tool finds them (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, ``AWS_PROFILE``
and the config files): botocore reads them itself. One client (one connection pool) per store, from ``open``
to ``close`` (or ``async with``).

A blob is created only by a conditional create (``If-None-Match: *``: PutObject, or CompleteMultipartUpload for
large files), so a stored object is never overwritten and never seen incomplete. Unlike the local store, a blob
of the wrong size is not replaced by ``publish``: an object cannot be half-written, so one of the wrong size is
not a torn write but a damaged blob, which ``quarantine`` sets aside first.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path
from typing import Any

from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import ClientError

from mreg.registry.blobs.interface import BlobInfo
from mreg.registry.blobs.local import READ_CHUNK, check_sha256, os_errors
from mreg.registry.blobs.s3errors import code_of, s3_errors, status_of
from mreg.registry.blobs.s3fill import MIN_PART, S3Fill, committed_bytes
from mreg.registry.blobs.s3location import S3Location, parse_s3_url
from mreg.registry.errors import StoreError

PART_SIZE = 16 * 1024 * 1024
"""Part size of multipart uploads, and the largest file ``publish`` sends in one PutObject."""
CONFIG = Config(connect_timeout=10, read_timeout=60)
"""The client's timeouts; retries are botocore's (``AWS_MAX_ATTEMPTS``, ``AWS_RETRY_MODE``, the config file)."""
SIGNING = Config(signature_version="s3v4")
"""Presigned URLs are signed with Signature Version 4 (botocore's default for them may be version 2, which
neither covers the host nor is accepted in newer AWS regions)."""
LIFECYCLE_RULE = "mreg-abort-incomplete-uploads"
_SHA256_NAME = re.compile(r"^[0-9a-f]{64}$")

S3Client = Any  # aiobotocore's client class is generated at run time


async def aenumerate(items: AsyncIterator[str]) -> AsyncIterator[tuple[int, str]]:
    """``items`` numbered from 1 (S3's part numbers)."""
    number = 0
    async for item in items:
        number += 1
        yield number, item


class S3BlobStore:
    """Verified blobs as objects below ``location``; ``open`` it before use, ``close`` it after."""

    def __init__(self, location: S3Location | str, *, part_size: int = PART_SIZE, chunk_size: int | None = None) -> None:
        self.location = parse_s3_url(location) if isinstance(location, str) else location
        self.part_size = max(part_size, MIN_PART)
        self.chunk_size = chunk_size if chunk_size is not None else self.part_size
        self._stack: AsyncExitStack | None = None
        self._client: S3Client | None = None

    # -- lifetime ----------------------------------------------------------------------------------

    async def open(self) -> "S3BlobStore":
        """Create the client (credentials and endpoint as botocore finds them) and check that the bucket is
        there and answers these credentials: a StoreError saying which is wrong otherwise."""
        if self._client is not None:
            return self
        stack = AsyncExitStack()
        try:
            with s3_errors(f"to open {self.location}"):
                client = await stack.enter_async_context(get_session().create_client("s3", config=CONFIG))
                try:
                    await client.head_bucket(Bucket=self.bucket)
                except ClientError as exc:
                    if status_of(exc) == 404:
                        raise StoreError(f"the S3 bucket of {self.location} does not exist") from None
                    raise
        except BaseException:
            await stack.aclose()
            raise
        self._stack, self._client = stack, client
        return self

    async def close(self) -> None:
        """Close the client and its connections."""
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    async def __aenter__(self) -> "S3BlobStore":
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def client(self) -> S3Client:
        """The open client; StoreError if the store is not open."""
        if self._client is None:
            raise StoreError(f"the S3 store {self.location} is not open")
        return self._client

    @property
    def bucket(self) -> str:
        return self.location.bucket

    def blob_key(self, sha256: str) -> str:
        """The object key of blob ``sha256`` (UsageError for a malformed digest)."""
        return self.location.key("blobs", check_sha256(sha256))

    def quarantine_key(self, sha256: str) -> str:
        return self.location.key("quarantine", check_sha256(sha256))

    def where(self, sha256: str) -> str:
        """How messages name a blob."""
        return f"blob {sha256} in {self.location}"

    # -- presigned URLs: clients reading a blob from the store itself ----------------------------------------

    def signer(self, endpoint: str | None = None) -> AbstractAsyncContextManager[S3Client]:
        """A client for ``presign`` (it never sends a request): this store's credentials and settings, signing
        with Signature Version 4 (which covers the host) URLs that name ``endpoint``, the store as clients reach
        it (None: the endpoint this store uses)."""
        return get_session().create_client("s3", endpoint_url=endpoint, config=CONFIG.merge(SIGNING))

    async def presign(self, sha256: str, expires: int, signer: S3Client) -> str:
        """A URL that GETs blob ``sha256`` (a Range too) without credentials for ``expires`` seconds, signed here
        by ``signer`` (``signer()``'s): no request to the store."""
        key = self.blob_key(sha256)
        with s3_errors(f"to sign a URL of {self.where(sha256)}"):
            url: str = await signer.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires)
        return url

    # -- the BlobStore interface ---------------------------------------------------------------------

    async def stat(self, sha256: str) -> BlobInfo | None:
        key = self.blob_key(sha256)
        with s3_errors(f"to stat {self.where(sha256)}"):
            head = await self.head(key)
        return None if head is None else BlobInfo(sha256, int(head["ContentLength"]), head["LastModified"].timestamp())

    async def read(self, sha256: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        key, what = self.blob_key(sha256), f"to read {self.where(sha256)}"
        if end is not None and end <= start:
            if await self.stat(sha256) is None:
                raise StoreError(f"blob {sha256} is not in the store {self.location}")
            return
        with s3_errors(what):
            extra = {} if start == 0 and end is None else {"Range": f"bytes={start}-{'' if end is None else end - 1}"}
            try:
                answer = await self.client.get_object(Bucket=self.bucket, Key=key, **extra)
            except ClientError as exc:
                if status_of(exc) == 404 and code_of(exc) != "NoSuchBucket":
                    raise StoreError(f"blob {sha256} is not in the store {self.location}") from None
                if status_of(exc) == 416:  # ``start`` at or past the end: no bytes
                    return
                raise
            body = answer["Body"]
            try:
                while chunk := await body.read(READ_CHUNK):
                    yield chunk
            finally:
                body.close()

    async def publish(self, sha256: str, source: Path) -> bool:
        key, what = self.blob_key(sha256), f"to publish {self.where(sha256)}"
        with os_errors(f"the file to publish as blob {sha256}", source):
            size = (await asyncio.to_thread(source.stat)).st_size
        with s3_errors(what):
            if await self.head(key) is not None:
                created = False
            elif size <= self.part_size:
                with os_errors(f"the file to publish as blob {sha256}", source):
                    data = await asyncio.to_thread(source.read_bytes)
                created = await self.put_if_absent(key, data)
            else:
                created = await self.upload_if_absent(key, lambda upload_id: self.send_file(source, key, upload_id))
        await asyncio.to_thread(source.unlink, True)
        if created:
            await self.drop_quarantined(sha256)
        return created

    async def delete(self, sha256: str) -> bool:
        key = self.blob_key(sha256)
        with s3_errors(f"to delete {self.where(sha256)}"):
            if await self.head(key) is None:
                return False
            await self.client.delete_object(Bucket=self.bucket, Key=key)
        return True

    async def quarantine(self, sha256: str, size: int) -> bool:
        key, aside = self.blob_key(sha256), self.quarantine_key(sha256)
        with s3_errors(f"to quarantine {self.where(sha256)}"):
            head = await self.head(key)
            if head is None or int(head["ContentLength"]) != size:
                return False
            try:  # exactly the object looked at (its ETag), dated by when it was set aside
                await self.client.copy_object(Bucket=self.bucket, Key=aside, CopySourceIfMatch=head["ETag"],
                                              CopySource={"Bucket": self.bucket, "Key": key})
            except ClientError as exc:
                if status_of(exc) in (404, 412):  # deleted or set aside meanwhile
                    return False
                raise
            await self.client.delete_object(Bucket=self.bucket, Key=key)
        return True

    async def list(self) -> AsyncIterator[BlobInfo]:
        async for obj in self.objects(self.location.key("blobs", ""), f"to list the blobs in {self.location}"):
            name = obj["Key"].rsplit("/", 1)[-1]
            if _SHA256_NAME.match(name):
                yield BlobInfo(name, int(obj["Size"]), obj["LastModified"].timestamp())

    async def open_fill(self, sha256: str, size: int) -> S3Fill:
        return await S3Fill.open(self, check_sha256(sha256), size)

    def read_fill(self, sha256: str, size: int, start: int = 0) -> AsyncIterator[bytes]:
        return committed_bytes(self, check_sha256(sha256), size, start)

    # -- orphans: a janitor, and a lifecycle rule ------------------------------------------------------

    async def sweep(self, older_than: float) -> tuple[int, int]:
        """Abort this store's multipart uploads started more than ``older_than`` seconds ago, and delete the
        chunks of fills none of whose chunks were written within that time (a dead replica's leftovers).
        Returns (uploads aborted, chunk objects deleted)."""
        cutoff = time.time() - older_than
        aborted = 0
        with s3_errors(f"to sweep {self.location}"):
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self.location.key(""))
            async for page in pages:
                for upload in page.get("Uploads", []):
                    if upload["Initiated"].timestamp() <= cutoff:
                        await self.abort_upload(upload["Key"], upload["UploadId"])
                        aborted += 1
        fills: dict[str, list[dict[str, Any]]] = {}
        async for obj in self.objects(self.location.key("fills", ""), f"to sweep the fills in {self.location}"):
            fills.setdefault(obj["Key"].rsplit("/", 1)[0], []).append(obj)
        stale = [obj["Key"] for chunks in fills.values()
                 if max(c["LastModified"].timestamp() for c in chunks) <= cutoff for obj in chunks]
        await self.delete_keys(stale, f"to sweep the fills in {self.location}")
        return aborted, len(stale)

    async def add_lifecycle_rule(self, days: int = 1) -> None:
        """Have the bucket itself abort this store's multipart uploads ``days`` after they began (a rule of
        its own, beside the bucket's other rules)."""
        with s3_errors(f"to set the lifecycle of {self.location}"):
            try:
                rules = (await self.client.get_bucket_lifecycle_configuration(Bucket=self.bucket))["Rules"]
            except ClientError as exc:
                if code_of(exc) != "NoSuchLifecycleConfiguration":
                    raise
                rules = []
            rules = [r for r in rules if r.get("ID") != LIFECYCLE_RULE] + [{
                "ID": LIFECYCLE_RULE, "Status": "Enabled", "Filter": {"Prefix": self.location.key("")},
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": max(1, days)}}]
            await self.client.put_bucket_lifecycle_configuration(
                Bucket=self.bucket, LifecycleConfiguration={"Rules": rules})

    # -- helpers for this store and its fills (inside an ``s3_errors`` block) -----------------------------

    async def head(self, key: str) -> dict[str, Any] | None:
        """HeadObject's answer, or None if there is no such object."""
        try:
            return await self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if status_of(exc) == 404 and code_of(exc) != "NoSuchBucket":
                return None
            raise

    async def objects(self, prefix: str, what: str) -> AsyncIterator[dict[str, Any]]:
        """Every object below ``prefix`` (ListObjectsV2, page by page)."""
        with s3_errors(what):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            async for page in pages:
                for obj in page.get("Contents", []):
                    yield obj

    async def put_if_absent(self, key: str, data: bytes) -> bool:
        """PutObject with ``If-None-Match: *``; False if the key exists (412)."""
        try:
            await self.client.put_object(Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*")
        except ClientError as exc:
            if status_of(exc) == 412:
                return False
            raise
        return True

    async def upload_if_absent(self, key: str, send_parts: Callable[[str], AsyncIterator[str]]) -> bool:
        """A multipart upload whose parts ``send_parts(upload_id)`` sends (numbered from 1, yielding each part's
        ETag), completed with ``If-None-Match: *``; False if the key exists. The upload is aborted on failure,
        so no part outlives it (unless the process dies: see ``sweep``)."""
        upload_id = (await self.client.create_multipart_upload(Bucket=self.bucket, Key=key))["UploadId"]
        try:
            done = [{"PartNumber": number, "ETag": etag}
                    async for number, etag in aenumerate(send_parts(upload_id))]
            await self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, IfNoneMatch="*", MultipartUpload={"Parts": done})
        except ClientError as exc:
            await self.abort_upload(key, upload_id)
            if status_of(exc) == 412:
                return False
            raise
        except BaseException:
            await asyncio.shield(self.abort_upload(key, upload_id))
            raise
        return True

    async def abort_upload(self, key: str, upload_id: str) -> None:
        """Abort a multipart upload (already gone is fine)."""
        try:
            await self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if status_of(exc) != 404:
                raise

    async def delete_keys(self, keys: list[str], what: str) -> None:
        """Delete these objects, a thousand per request."""
        with s3_errors(what):
            for start in range(0, len(keys), 1000):
                batch = [{"Key": k} for k in keys[start:start + 1000]]
                answer = await self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
                if answer.get("Errors"):
                    first = answer["Errors"][0]
                    raise StoreError(f"the S3 store refused {what}: {first.get('Code')} for {first.get('Key')}")

    async def send_file(self, path: Path, key: str, upload_id: str) -> AsyncIterator[str]:
        """Send the local file ``path`` as the parts of an upload, ``part_size`` bytes (one part in memory) each."""
        with os_errors("the file to publish", path), path.open("rb") as f:
            number = 0
            while data := await asyncio.to_thread(f.read, self.part_size):
                number += 1
                answer = await self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                       PartNumber=number, Body=data)
                yield answer["ETag"]

    async def drop_quarantined(self, sha256: str) -> None:
        """Delete the damaged copy set aside, now that a good one is stored."""
        with s3_errors(f"to drop the quarantined copy of {self.where(sha256)}"):
            await self.client.delete_object(Bucket=self.bucket, Key=self.quarantine_key(sha256))
