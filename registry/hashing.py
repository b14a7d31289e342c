"""The two content hashes the Hub uses: sha256 for LFS files, git's blob sha1 for the rest."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator


def git_blob_header(size: int) -> bytes:
    """The prefix git hashes before a blob's content."""
    return b"blob %d\0" % size


def git_sha1_bytes(data: bytes) -> str:
    """git's object id of a blob holding ``data``."""
    return hashlib.sha1(git_blob_header(len(data)) + data).hexdigest()


async def stream_digests(chunks: AsyncIterator[bytes], size: int) -> tuple[str, str]:
    """Return ``(sha256, git_sha1)`` of ``size`` bytes arriving as ``chunks`` (a blob's ``read``)."""
    sha256, sha1 = hashlib.sha256(), hashlib.sha1(git_blob_header(size))
    async for chunk in chunks:
        sha256.update(chunk)
        sha1.update(chunk)
    return sha256.hexdigest(), sha1.hexdigest()
