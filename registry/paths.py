"""File names from upstream are untrusted: this is the one place that decides whether one is safe."""

from __future__ import annotations

from pathlib import PurePosixPath

from mreg.registry.errors import UnsafePathError


def safe_relpath(name: str) -> PurePosixPath:
    """Return ``name`` as a relative POSIX path that stays inside its folder, or raise UnsafePathError.

    Refuses absolute paths, ``..`` and ``.`` segments, empty segments, backslashes, NUL and other
    control characters, and Windows drive prefixes.
    """
    if not name or len(name) > 4096:
        raise UnsafePathError(f"unsafe file name from upstream: {name[:80]!r}")
    if any(ord(c) < 32 or c == "\\" for c in name) or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafePathError(f"unsafe file name from upstream: {name!r}")
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise UnsafePathError(f"unsafe file name from upstream: {name!r}")
    return PurePosixPath(*parts)
