"""Blob sources for the test hub: bytes in memory or files on disk, hashed once, read by range.

A `Blob` never loads a file whole: reads are `os.pread` calls of at most `PIECE` bytes. Digests of
files are computed in one pass (sha256 and git sha1 together) and cached per process, keyed by
(path, size, mtime); `generated_file` also writes them next to the file so later processes skip
the hashing of big generated files.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path

PIECE = 1 << 20
"""Largest single read from a file-backed blob."""

_GEN_BLOCK = 64 << 20
_GEN_STRIDE = 7919 * 4096  # rotation step between blocks; coprime with the block's 4 KiB granules

_digest_lock = threading.Lock()
_digest_cache: dict[tuple[str, int, int], tuple[str, str]] = {}


def _git_header(size: int) -> bytes:
    return b"blob %d\0" % size


def _digests_of_file(path: Path, size: int) -> tuple[str, str]:
    sha256, sha1 = hashlib.sha256(), hashlib.sha1(_git_header(size))
    with path.open("rb", buffering=0) as f:
        while piece := f.read(8 * PIECE):
            sha256.update(piece)
            sha1.update(piece)
    return sha256.hexdigest(), sha1.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".digests.json")


def _read_sidecar(path: Path, key: tuple[str, int, int]) -> tuple[str, str] | None:
    try:
        saved = json.loads(_sidecar(path).read_text())
    except (OSError, ValueError):
        return None
    if [saved.get("size"), saved.get("mtime_ns")] != [key[1], key[2]]:
        return None
    return saved["sha256"], saved["git_sha1"]


class Blob:
    """Immutable content with its size, sha256 and git blob sha1; readable by byte range."""

    def __init__(self, *, data: bytes | None = None, path: Path | str | None = None) -> None:
        if (data is None) == (path is None):
            raise ValueError("give exactly one of data= or path=")
        self._data = data
        self.path = Path(path) if path is not None else None
        if data is not None:
            self.size = len(data)
            self.sha256 = hashlib.sha256(data).hexdigest()
            self.git_sha1 = hashlib.sha1(_git_header(self.size) + data).hexdigest()
        else:
            self.size, self.sha256, self.git_sha1 = self._file_digests()

    @classmethod
    def from_bytes(cls, data: bytes) -> Blob:
        """A blob held in memory."""
        return cls(data=bytes(data))

    @classmethod
    def from_file(cls, path: Path | str) -> Blob:
        """A blob read from disk on demand (the file must not change while served)."""
        return cls(path=path)

    def _file_digests(self) -> tuple[int, str, str]:
        assert self.path is not None
        st = self.path.stat()
        key = (str(self.path.resolve()), st.st_size, st.st_mtime_ns)
        with _digest_lock:
            digests = _digest_cache.get(key) or _read_sidecar(self.path, key)
            if digests is None:
                digests = _digests_of_file(self.path, st.st_size)
            _digest_cache[key] = digests
        return st.st_size, digests[0], digests[1]

    def read(self, start: int = 0, end: int | None = None) -> bytes:
        """Bytes [start, end) of the content (end defaults to the size)."""
        return b"".join(self.iter_range(start, self.size if end is None else end))

    def iter_range(self, start: int, end: int, piece: int = PIECE) -> Iterator[bytes]:
        """Bytes [start, end) in pieces of at most `piece` bytes."""
        end = min(end, self.size)
        if self._data is not None:
            view = memoryview(self._data)
            for pos in range(start, end, piece):
                yield bytes(view[pos : min(pos + piece, end)])
            return
        assert self.path is not None
        fd = os.open(self.path, os.O_RDONLY)
        try:
            pos = start
            while pos < end:
                chunk = os.pread(fd, min(piece, end - pos), pos)
                if not chunk:
                    raise OSError(f"{self.path} shrank while being served")
                pos += len(chunk)
                yield chunk
        finally:
            os.close(fd)

    def __repr__(self) -> str:
        where = str(self.path) if self.path is not None else "memory"
        return f"Blob({where}, size={self.size}, sha256={self.sha256[:12]}…)"


def lfs_pointer(blob: Blob) -> str:
    """The git-lfs pointer text stored in git in place of an LFS file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{blob.sha256}\nsize {blob.size}\n"


def generated_file(path: Path | str, size: int, seed: int = 0) -> Path:
    """Write (or reuse) a deterministic pseudo-random file of `size` bytes at `path`.

    One 64 MiB random buffer is written rotated by a different offset per block, so blocks differ
    without generating fresh randomness. An existing file of the right size is reused as is (its
    digests sidecar, if any, still has to match its size and mtime).
    """
    path = Path(path)
    if path.exists() and path.stat().st_size == size:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    base = memoryview(random.Random(seed).randbytes(min(size, _GEN_BLOCK)))
    sha256, sha1 = hashlib.sha256(), hashlib.sha1(_git_header(size))
    tmp = path.with_name(path.name + ".partial")
    with tmp.open("wb") as f:
        written, block = 0, 0
        while written < size:
            shift = (block * _GEN_STRIDE) % len(base)
            for part in (base[shift:], base[:shift]):
                part = part[: size - written]
                f.write(part)
                sha256.update(part)
                sha1.update(part)
                written += len(part)
            block += 1
    tmp.replace(path)
    st = path.stat()
    digests = {"size": size, "mtime_ns": st.st_mtime_ns, "sha256": sha256.hexdigest(), "git_sha1": sha1.hexdigest()}
    _sidecar(path).write_text(json.dumps(digests))
    return path
