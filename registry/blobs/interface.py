"""``BlobStore``: where verified, content-addressed blobs live, as the rest of mreg sees them.

Every method is async, so an object store (S3: conditional create, multipart parts, ranged GETs)
fits the same seams as today's local disk (``LocalBlobStore``):

- ``publish`` is publish-if-absent: a blob is created once and never overwritten.
- ``read`` streams a byte range as an async iterator of chunks.
- A ``PartialFill`` is an upload in progress, named by the sha256 it must end up with. Bytes are
  appended, and ``commit`` makes everything appended so far durable: after a restart (or on another
  replica) ``open_fill`` resumes at ``committed``, dropping anything appended after it. ``publish``
  checks size and sha256 before the blob appears.

Snapshot folders, ``--local-dir`` exports and refs are not blobs: they stay local-disk views
(``registry.store.Store``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class BlobInfo:
    """One stored blob: its size and when it was last published or linked (epoch seconds), which
    lets a gc spare blobs a running pull may be about to link."""

    sha256: str
    size: int
    touched: float


class PartialFill(Protocol):
    """An in-progress blob, identified by its sha256; see the module docstring."""

    sha256: str
    size: int

    @property
    def committed(self) -> int:
        """How many leading bytes are durable (where a resumed fill goes on)."""
        ...

    async def append(self, data: bytes) -> None:
        """Add ``data`` after what was appended so far (not durable until ``commit``)."""
        ...

    async def commit(self) -> int:
        """Make every appended byte durable; return the new committed offset."""
        ...

    async def publish(self) -> bool:
        """Check size and sha256, then publish the blob if absent and end the fill; True if this fill
        created it. StoreError (the fill is discarded) if the bytes are not the blob."""
        ...

    async def discard(self) -> None:
        """Drop the fill and its bytes."""
        ...


class BlobStore(Protocol):
    """Verified blobs by sha256 (64 lowercase hex digits; anything else is a UsageError)."""

    async def stat(self, sha256: str) -> BlobInfo | None:
        """The blob's info, or None if it is not stored."""
        ...

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Bytes ``[start, end)`` of the blob (to its end if ``end`` is None), in chunks; StoreError if
        it is not stored."""
        ...

    async def publish(self, sha256: str, source: Path) -> bool:
        """Publish the verified local file ``source`` as blob ``sha256`` unless it exists; ``source``
        is consumed either way. True if this call created the blob."""
        ...

    async def delete(self, sha256: str) -> bool:
        """Remove the blob; False if it was not there."""
        ...

    async def quarantine(self, sha256: str, size: int) -> bool:
        """Set the blob aside, out of the store, if it still has ``size`` bytes (the bytes found damaged): no
        one serves it any more, and the next fetch of its content publishes a good copy (which drops the
        one set aside). False if it was not there, or was replaced by a copy of another size meanwhile."""
        ...

    def list(self) -> AsyncIterator[BlobInfo]:
        """Every stored blob, in no particular order."""
        ...

    async def open_fill(self, sha256: str, size: int) -> PartialFill:
        """The partial fill of this blob, resumed at its committed offset, or a new, empty one."""
        ...

    def read_fill(self, sha256: str, size: int, start: int = 0) -> AsyncIterator[bytes]:
        """The committed bytes of this blob's fill from ``start`` on, as far as they follow each other (none if
        nothing is committed there): what another replica's fill has made durable so far."""
        ...


async def holds(blobs: BlobStore, sha256: str, size: int) -> bool:
    """Whether ``blobs`` stores blob ``sha256`` with ``size`` bytes."""
    info = await blobs.stat(sha256)
    return info is not None and info.size == size


@runtime_checkable
class LocalBlobPaths(Protocol):
    """A ``BlobStore`` whose blobs are also files on this machine (``LocalBlobStore``): where a caller
    can use one (a zero-copy send, a snapshot symlink), it asks ``isinstance(blobs, LocalBlobPaths)``."""

    def path(self, sha256: str) -> Path:
        """Where the blob lives on disk (whether or not it is stored)."""
        ...
