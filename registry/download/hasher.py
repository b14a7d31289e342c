"""Hashing a partial file's contiguous prefix while the rest of it is still arriving."""

from __future__ import annotations

import asyncio
import hashlib
import mmap
import os
from dataclasses import dataclass
from typing import Any

from mreg.registry.hashing import git_blob_header

HASH_STEP = 16 * 1024 * 1024


@dataclass(frozen=True)
class Hashed:
    """The sha256 of a file's first ``upto`` bytes, hashed elsewhere (``hashlib.sha256()`` state, copied on use):
    a hasher starting from it need not read them (they may not be on disk)."""

    upto: int
    sha256: Any


class PrefixHasher:
    """sha256 (and optionally git's blob sha1) of a file that is written out of order.

    ``advance(upto)`` hashes bytes ``[hashed, upto)`` in a worker thread; the caller passes the
    contiguous prefix that is known to be written. hashlib releases the GIL on large buffers, so this
    overlaps with the download. The bytes are hashed where they lie in the page cache (a read-only
    mapping of at most ``HASH_STEP`` at a time, populated in one call), not copied into a buffer first:
    the copy cost as much system time as the socket's. Hashed ranges are handed to the kernel for
    writeback right away (``POSIX_FADV_DONTNEED``), so the final fsync has little left to flush and the
    page cache is not filled with a multi-GB file. Started ``from_`` a ``Hashed`` prefix (sha256 only), it reads
    the file from there.
    """

    def __init__(self, fd: int, size: int, git_sha1: bool, from_: Hashed | None = None) -> None:
        assert from_ is None or not git_sha1, "a hashed prefix holds no git sha1"
        self._fd = fd
        self.size = size
        self.hashed = from_.upto if from_ is not None else 0
        self._sha256 = from_.sha256.copy() if from_ is not None else hashlib.sha256()
        self._sha1 = hashlib.sha1(git_blob_header(size)) if git_sha1 else None

    def _hash_range(self, upto: int) -> None:
        start = self.hashed
        while self.hashed < upto:
            base = self.hashed - self.hashed % mmap.ALLOCATIONGRANULARITY
            end = min(upto, base + HASH_STEP)
            try:
                window = mmap.mmap(self._fd, end - base, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE,
                                   prot=mmap.PROT_READ, offset=base)
            except ValueError:  # the file is shorter than the mapping
                raise OSError(f"partial file ended before {end} of {self.size} bytes") from None
            with window, memoryview(window)[self.hashed - base:] as data:
                self._sha256.update(data)
                if self._sha1 is not None:
                    self._sha1.update(data)
            self.hashed = end
        os.posix_fadvise(self._fd, start, upto - start, os.POSIX_FADV_DONTNEED)

    async def advance(self, upto: int) -> None:
        if upto > self.hashed:
            await asyncio.to_thread(self._hash_range, upto)

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    @property
    def git_sha1(self) -> str | None:
        return self._sha1.hexdigest() if self._sha1 is not None else None
