"""``mreg serve --redirect-to-store``: a stored LFS file is answered with a 302 to a presigned URL of its object,
so the client reads the bytes (a Range too) from the S3 store itself and the replica sends none.

The URL is signed here, with the store's credentials, by a client that never sends a request (no round trip
per answer); it names ``--store-public-url`` (the store as clients reach it; default the endpoint the daemon
uses) and is valid for ``--redirect-ttl`` seconds. It carries no caller's token: the access check is done before
(the caller's token stays with the daemon), so a URL goes only to callers who may read the file, and lasts
no longer than the TTL. Only an S3 store has such URLs: anything else is refused at start.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from mreg.registry.errors import StoreUnsupportedError
from mreg.registry.store import Store

from mreg.daemon.config import ServeConfig

if TYPE_CHECKING:
    from mreg.registry.blobs.s3 import S3BlobStore, S3Client  # aiobotocore is imported only by those who use S3


class StoreRedirects:
    """Presigned URLs of ``blobs``' objects, valid ``ttl`` seconds, signed by ``signer`` (``S3BlobStore.signer``)."""

    def __init__(self, blobs: S3BlobStore, signer: S3Client, ttl: int) -> None:
        self._blobs, self._signer, self._ttl = blobs, signer, ttl

    async def location(self, sha256: str) -> str:
        """Where a client GETs blob ``sha256`` from the store (StoreError if it cannot be signed)."""
        return await self._blobs.presign(sha256, self._ttl, self._signer)


@asynccontextmanager
async def store_redirects(store: Store, config: ServeConfig) -> AsyncIterator[StoreRedirects | None]:
    """The redirects ``config`` asks for on ``store`` (None without ``--redirect-to-store``), for the block;
    StoreUnsupportedError if ``store``'s blobs are not in S3."""
    if not config.redirect_to_store:
        yield None
        return
    from mreg.registry.blobs.s3 import S3BlobStore

    blobs = store.blobs
    if not isinstance(blobs, S3BlobStore):
        raise StoreUnsupportedError("--redirect-to-store needs an S3 store (--store s3://BUCKET[/PREFIX])")
    async with blobs.signer(config.store_public_url) as signer:
        yield StoreRedirects(blobs, signer, config.redirect_ttl)
