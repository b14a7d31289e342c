"""Freeing a partial file's bytes on local disk as a ``Freeable`` says (#13): the I/O around it.

``punch_hole`` punches a range out of a file (``fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)``: the
file keeps its size, the range reads as zeros and takes no disk space). ``LocalBytes`` holds one partial file's
``Freeable``; the fill tells it how far the bytes are safe in the bucket, the readers tell it where they read (and
``read`` copies of the bytes through it), and it punches what may go. Where the filesystem cannot punch holes, it
logs that once and frees nothing more (the bytes stay on disk, as they did before); readers still read below
``freed`` from the bucket, so no reader ever reads a punched range.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import functools
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from mreg.registry.download.freeable import Freeable, Range

log = logging.getLogger("mreg.fills")

MiB = 1024 * 1024
KEEP = 8 * MiB
"""How far behind the bytes safe in the bucket a partial file keeps them for readers close behind."""
READ = MiB
"""The most a reader reads from the partial file at once (what it pins on disk meanwhile). Readers copy the bytes
(``pread``), never ``sendfile`` them: a socket holds sendfile's pages by reference until the peer has them, and
a punched range zeroes them in place."""
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 0x01, 0x02



@functools.cache
def _fallocate() -> Callable[[int, int, int, int], int]:
    """libc's ``fallocate``, found at the first punch: only fills of the shared store punch, and every download
    imports this module (the process's own symbols hold libc: no ``find_library``, which runs ``ldconfig``)."""
    fallocate = ctypes.CDLL(None, use_errno=True).fallocate
    fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    return fallocate


def punch_hole(fd: int, offset: int, length: int) -> None:
    """Free bytes [offset, offset + length) of the file open (for writing) as ``fd``; OSError if it cannot."""
    if _fallocate()(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def data_end(fd: int, pos: int) -> int:
    """Where the data of the file open as ``fd`` that starts at ``pos`` ends: its next hole (a punched or never
    written range; ``pos`` itself when it lies in one), else the file's end. A filesystem that cannot tell
    (no ``SEEK_HOLE``) has no holes."""
    try:
        return os.lseek(fd, pos, os.SEEK_HOLE)
    except OSError:
        return os.fstat(fd).st_size


class LocalBytes:
    """The local bytes of a partial file, with its readers' positions; it frees bytes once a fill of the shared
    store ``attach``es it to the file (until then, and for a lone download, all stay: ``freed`` is 0). See the
    module docstring."""

    def __init__(self, keep: int = KEEP) -> None:
        self.freeable = Freeable(keep)
        self.path: Path | None = None
        self._punching = False
        self._fd: int | None = None

    def attach(self, path: Path) -> None:
        """A fill of the shared store writes the partial file ``path``: free its bytes as they are safe."""
        self.path, self._punching = path, True

    @property
    def attached(self) -> bool:
        """Whether it frees bytes of its file (readers then copy them, never ``sendfile`` them)."""
        return self.path is not None

    def on_disk(self, pos: int) -> bool:
        """Whether a reader may read byte ``pos`` from the partial file (else from the bucket, below ``freed``)."""
        return self.freeable.on_disk(pos)

    @property
    def freed(self) -> int:
        return self.freeable.freed

    def safe(self, upto: int) -> None:
        """The bytes below ``upto`` are committed to the bucket and no part of the fill reads them here any more."""
        self._free(self.freeable.safe(upto))

    def gone(self, upto: int) -> None:
        """The bytes below ``upto`` are committed to the bucket, and not (all) in the partial file."""
        self._free(self.freeable.gone(upto))

    @contextlib.contextmanager
    def reader(self, pos: int) -> Iterator[int]:
        """A reader from ``pos`` on, while the context lasts; its id."""
        reader = self.freeable.enter(pos)
        try:
            yield reader
        finally:
            self._free(self.freeable.leave(reader))

    def move(self, reader: int, pos: int) -> None:
        """``reader`` goes on from ``pos`` (it read the bytes before from the bucket)."""
        self._free(self.freeable.move(reader, pos))

    async def read(self, reader: int, fd: int, start: int, end: int) -> bytes:
        """Bytes [start, end) of the partial file open as ``fd``, for ``reader`` (``start`` must be ``on_disk``):
        a copy, pinned on disk while it is read."""
        self.freeable.pin(reader, start, end)
        try:
            return await asyncio.to_thread(os.pread, fd, end - start, start)
        finally:
            self._free(self.freeable.unpin(reader, end))

    def close(self) -> None:
        """Free nothing more (the fill ended: the partial file goes, or is another's from now on)."""
        self._punching = False
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _free(self, ranges: list[Range]) -> None:
        if not ranges or not self._punching:
            return
        assert self.path is not None
        try:
            if self._fd is None:  # opened once, while the fill holds the file's lock: this fill's file, whatever
                self._fd = os.open(self.path, os.O_WRONLY)  # becomes of its name later
            for start, end in ranges:
                punch_hole(self._fd, start, end - start)
        except FileNotFoundError:
            return
        except OSError as exc:
            self._punching = False
            how = "not supported by its filesystem" if exc.errno in (errno.EOPNOTSUPP, errno.ENOSYS) else exc.strerror
            log.warning("cannot free the bytes of %s already in the shared store (%s): it keeps them on disk",
                        self.path, how)
