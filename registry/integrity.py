"""Stored blobs checked against their names (a blob is named by its sha256), and damaged ones set aside.

A blob whose bytes no longer hash to its name is quarantined (``BlobStore.quarantine``): from then on it
is absent, so ``mreg pull`` and the daemon fetch its content again, verified. ``mreg verify`` checks the
blobs of one revision; the daemon's scrub (``scrub``) walks the whole store at a bounded read rate.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mreg.registry.blobs import BlobInfo, BlobStore
from mreg.registry.errors import StoreError
from mreg.registry.hashing import stream_sha256

if TYPE_CHECKING:  # the package imports the downloader, and with it HTTP: `mreg verify` needs neither
    from mreg.registry.download.throttle import TokenBucket


@dataclass(frozen=True)
class BlobCheck:
    """One blob checked: ``found`` is the sha256 its bytes have (its name when intact)."""

    info: BlobInfo
    found: str

    @property
    def damaged(self) -> bool:
        return self.found != self.info.sha256


async def set_aside_if_damaged(blobs: BlobStore, info: BlobInfo, found: str) -> bool:
    """Quarantine the blob of ``info`` if the bytes hashed (``found``) are not its content; True if it was."""
    return found != info.sha256 and await blobs.quarantine(info.sha256, info.size)


async def scrub(blobs: BlobStore, throttle: TokenBucket | None = None) -> AsyncIterator[BlobCheck]:
    """Re-hash every stored blob (reading no faster than ``throttle`` allows), quarantine the damaged ones,
    and yield each check as it is done. Blobs removed while the scrub runs are passed over."""
    async for info in blobs.list():
        try:
            found = await stream_sha256(blobs.read(info.sha256), throttle)
        except StoreError:  # gone since it was listed (a gc, a verify's quarantine)
            continue
        check = BlobCheck(info, found)
        if check.damaged and not await set_aside_if_damaged(blobs, info, found):
            continue  # replaced by a good copy since it was read
        yield check
