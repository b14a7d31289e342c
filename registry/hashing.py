"""The two content hashes the Hub uses: sha256 for LFS files, git's blob sha1 for the rest."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the downloader imports this module
    from mreg.registry.download.throttle import TokenBucket


def git_blob_header(size: int) -> bytes:
    """The prefix git hashes before a blob's content."""
    return b"blob %d\0" % size


def git_sha1_bytes(data: bytes) -> str:
    """git's object id of a blob holding ``data``."""
    return hashlib.sha1(git_blob_header(len(data)) + data).hexdigest()


async def stream_sha256(chunks: AsyncIterator[bytes], throttle: TokenBucket | None = None) -> str:
    """The sha256 of the bytes arriving as ``chunks`` (a blob's ``read``); see ``_digest``."""
    sha256 = hashlib.sha256()
    await _digest([sha256], chunks, throttle)
    return sha256.hexdigest()


async def stream_digests(chunks: AsyncIterator[bytes], size: int,
                         throttle: TokenBucket | None = None) -> tuple[str, str]:
    """``(sha256, git_sha1)`` of ``size`` bytes arriving as ``chunks``; see ``_digest``."""
    sha256, sha1 = hashlib.sha256(), hashlib.sha1(git_blob_header(size))
    await _digest([sha256, sha1], chunks, throttle)
    return sha256.hexdigest(), sha1.hexdigest()


async def _digest(hashers: Sequence[Any], chunks: AsyncIterator[bytes], throttle: TokenBucket | None) -> None:
    """Feed every chunk to ``hashers`` in a worker thread (hashing gigabytes never holds the event loop),
    no faster than ``throttle`` lets bytes through when one is given."""
    async for chunk in chunks:
        if throttle is not None:
            await throttle.take(len(chunk))
        await asyncio.to_thread(_update, hashers, chunk)


def _update(hashers: Sequence[Any], chunk: bytes) -> None:
    for hasher in hashers:
        hasher.update(chunk)
