"""Putting a stored file at a path outside the store in one write at most (``--local-dir``, ``convert -o``,
Ollama's blobs).

In order: a copy-on-write clone (FICLONE: btrfs, XFS, bcachefs…), a file of its own that shares the
stored extents until either is written; else a hard link, the stored read-only (0o444) inode under a
second name, no byte written; else (another filesystem, another owner's store, or a copy asked for)
a byte copy. Clones and copies are plain writable (0o644) files. The file is built under a temp name
beside ``dest`` and renamed over it, so an existing ``dest`` (or a symlink there) is replaced, never
written through.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import shutil
from enum import Enum
from pathlib import Path

FICLONE = 0x40049409
"""Linux ioctl: copy-on-write clone of a whole file."""
_NO_LINK = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP})
"""Why a hard link cannot be made where a copy still can: another filesystem, another owner
(``fs.protected_hardlinks``), too many links, a filesystem without them."""


class Placed(Enum):
    """How a file was put in place."""

    CLONE = "clone"
    LINK = "link"
    COPY = "copy"


def place(source: Path, dest: Path, *, copy: bool = False) -> Placed:
    """Put ``source``'s bytes at ``dest`` (a clone, else a hard link unless ``copy``, else a copy); say how.

    A ``dest`` that already is ``source``'s inode is left as it is (when a link would do). Raises
    ``OSError`` (callers translate it).
    """
    if not copy and _same_inode(source, dest):
        return Placed.LINK
    tmp = dest.parent / f".{dest.name}.{secrets.token_hex(8)}.mreg-tmp"
    try:
        if _clone(source, tmp):
            how = Placed.CLONE
        elif not copy and _hard_link(source, tmp):
            how = Placed.LINK
        else:
            _copy(source, tmp)
            how = Placed.COPY
        if how is not Placed.LINK:
            os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return how


def _same_inode(a: Path, b: Path) -> bool:
    try:
        sa, sb = os.stat(a), os.stat(b, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _clone(source: Path, tmp: Path) -> bool:
    """Make ``tmp`` a copy-on-write clone of ``source``; False (and no ``tmp``) where the filesystem has none."""
    with source.open("rb") as fin, tmp.open("xb") as fout:
        try:
            fcntl.ioctl(fout.fileno(), FICLONE, fin.fileno())
        except OSError:
            cloned = False
        else:
            os.fsync(fout.fileno())
            cloned = True
    if not cloned:
        tmp.unlink()
    return cloned


def _hard_link(source: Path, tmp: Path) -> bool:
    try:
        os.link(source, tmp)
    except OSError as exc:
        if exc.errno not in _NO_LINK:
            raise
        return False
    return True


def _copy(source: Path, tmp: Path) -> None:
    with source.open("rb") as fin, tmp.open("xb") as fout:
        shutil.copyfileobj(fin, fout, 4 * 1024 * 1024)
        fout.flush()
        os.fsync(fout.fileno())
