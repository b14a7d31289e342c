"""The two content hashes the Hub uses: sha256 for LFS files, git's blob sha1 for the rest."""

from __future__ import annotations

import hashlib
from pathlib import Path

READ_CHUNK = 4 * 1024 * 1024


def git_blob_header(size: int) -> bytes:
    """The prefix git hashes before a blob's content."""
    return b"blob %d\0" % size


def git_sha1_bytes(data: bytes) -> str:
    """git's object id of a blob holding ``data``."""
    return hashlib.sha1(git_blob_header(len(data)) + data).hexdigest()


def file_digests(path: Path) -> tuple[str, str]:
    """Return ``(sha256, git_sha1)`` of a local file, reading it once."""
    size = path.stat().st_size
    sha256, sha1 = hashlib.sha256(), hashlib.sha1(git_blob_header(size))
    with path.open("rb") as f:
        while chunk := f.read(READ_CHUNK):
            sha256.update(chunk)
            sha1.update(chunk)
    return sha256.hexdigest(), sha1.hexdigest()
