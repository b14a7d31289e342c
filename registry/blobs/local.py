"""``LocalBlobStore``: the ``BlobStore`` on a local filesystem, the layout mreg always used.

    <home>/blobs/sha256/<hex[:2]>/<hex>                       each blob once, read-only (0o444)
    <home>/partial/fill-<hex>, fill-<hex>.state.json           partial fills and their committed offset
    <home>/tmp/                                               temp names for atomic renames
    <home>/quarantine/<hex>                                   blobs found damaged, set aside (see below)

A blob appears by a hard link (create-if-absent) or, where the filesystem has none, a rename; both
after an fsync. ``path`` is the local view the snapshot symlinks and the daemon's sendfile use.

A blob whose bytes no longer hash to its name (bit rot, a stray write) is renamed into quarantine/: it
is then simply absent, for pulls, the daemon and snapshot readers alike, so the next fetch of its
content publishes a good copy, and that drops the damaged one. A readable folder beside the store,
not a mark in the catalog, because every reader already asks the store whether a blob is there and
none has to learn to ask the catalog too (the daemon streams from the file it finds).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

from mreg.registry.blobs.interface import BlobInfo
from mreg.registry.errors import StoreError, UsageError

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
READ_CHUNK = 1024 * 1024
STATE_SUFFIX = ".state.json"
FILL_PREFIX = "fill-"


@contextmanager
def os_errors(what: str, where: Path) -> Iterator[None]:
    """Translate ``OSError`` into a one-line ``StoreError`` naming ``what`` and ``where``."""
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise StoreError(f"disk full while writing {what}: {where}") from exc
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise StoreError(f"permission denied for {what}: {exc.filename or where}") from exc
        raise StoreError(f"cannot access {what} in {where}: {exc.strerror or exc}") from exc


def fsync_dir(path: Path) -> None:
    """Make the entries of folder ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_sha256(sha256: str) -> str:
    """``sha256`` if it is 64 lowercase hex digits, else a UsageError."""
    if not _SHA256.match(sha256):
        raise UsageError(f"invalid sha256 {sha256!r}: expected 64 lowercase hex digits")
    return sha256


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to the new file ``path`` and fsync it."""
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


class LocalBlobStore:
    """Blobs, partial fills and temp files below ``home``."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.blobs_dir = self.home / "blobs" / "sha256"
        self.partial_dir = self.home / "partial"
        self.tmp_dir = self.home / "tmp"
        self.quarantine_dir = self.home / "quarantine"

    def path(self, sha256: str) -> Path:
        """Where the blob lives on disk (whether or not it is stored)."""
        return self.blobs_dir / check_sha256(sha256)[:2] / sha256

    # -- the BlobStore interface ---------------------------------------------------------------

    async def stat(self, sha256: str) -> BlobInfo | None:
        return self.stat_now(sha256)

    async def read(self, sha256: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        path = self.path(sha256)
        try:
            f = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise StoreError(f"blob {sha256} is not in the store") from None
        except OSError as exc:
            raise StoreError(f"cannot read blob {sha256}: {exc.strerror or exc}") from exc
        try:
            f.seek(start)
            left = None if end is None else max(0, end - start)
            while left is None or left > 0:
                chunk = await asyncio.to_thread(f.read, READ_CHUNK if left is None else min(READ_CHUNK, left))
                if not chunk:
                    break
                if left is not None:
                    left -= len(chunk)
                yield chunk
        finally:
            f.close()

    async def publish(self, sha256: str, source: Path) -> bool:
        return await asyncio.to_thread(self.publish_now, source, sha256)

    async def delete(self, sha256: str) -> bool:
        path = self.path(sha256)
        with os_errors("blob store", path.parent):
            try:
                path.unlink()
            except FileNotFoundError:
                return False
        return True

    async def list(self) -> AsyncIterator[BlobInfo]:
        for folder in await asyncio.to_thread(lambda: sorted(self.blobs_dir.glob("*")) if self.blobs_dir.is_dir() else []):
            for info in await asyncio.to_thread(self._infos, folder):
                yield info

    async def quarantine(self, sha256: str, size: int) -> bool:
        return await asyncio.to_thread(self.quarantine_now, sha256, size)

    async def open_fill(self, sha256: str, size: int) -> "LocalFill":
        return await asyncio.to_thread(LocalFill.open, self, check_sha256(sha256), size)

    # -- synchronous local helpers (for code that works on local files) ------------------------

    async def read_fill(self, sha256: str, size: int, start: int = 0) -> AsyncIterator[bytes]:
        fill = LocalFill(self, check_sha256(sha256), size, 0)
        try:
            state = json.loads(fill.state_path.read_bytes())
            committed = int(state["committed"]) if state.get("size") == size else 0
            f = fill.data_path.open("rb")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return
        with f:
            f.seek(start)
            pos = start
            while pos < committed and (chunk := await asyncio.to_thread(f.read, min(READ_CHUNK, committed - pos))):
                pos += len(chunk)
                yield chunk

    def stat_now(self, sha256: str) -> BlobInfo | None:
        """``stat`` without awaiting."""
        try:
            st = self.path(sha256).stat()
        except FileNotFoundError:
            return None
        return BlobInfo(sha256, st.st_size, st.st_ctime)

    def publish_now(self, source: Path, sha256: str) -> bool:
        """``publish`` without awaiting; ``source`` must be on the store's filesystem."""
        dest = self.path(sha256)
        with os_errors(f"blob {sha256}", dest.parent):
            dest.parent.mkdir(parents=True, exist_ok=True)
            damaged = dest.exists() and dest.stat().st_size != source.stat().st_size
            if dest.exists() and not damaged:
                source.unlink(missing_ok=True)
                return False
            fd = os.open(source, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.fchmod(fd, 0o444)
            finally:
                os.close(fd)
            if damaged:  # a blob of the wrong size is not a good object: the verified bytes replace it
                os.replace(source, dest)
                created = True
            else:
                created = self._create(source, dest)
            fsync_dir(dest.parent)
            (self.quarantine_dir / sha256).unlink(missing_ok=True)  # the damaged copy is no longer needed
        return created

    @staticmethod
    def _create(source: Path, dest: Path) -> bool:
        """Give ``source``'s inode the name ``dest`` unless it exists: a hard link, else a rename."""
        try:
            os.link(source, dest)
        except FileExistsError:
            source.unlink(missing_ok=True)
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            os.replace(source, dest)
            return True
        source.unlink(missing_ok=True)
        return True

    def quarantine_now(self, sha256: str, size: int) -> bool:
        """``quarantine`` without awaiting."""
        path, aside = self.path(sha256), self.quarantine_dir / sha256
        with os_errors(f"blob {sha256}", path.parent):
            self.quarantine_dir.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(path, aside)
            except FileNotFoundError:
                return False
            if aside.stat().st_size != size:  # a good copy replaced the damaged one meanwhile: put it back
                self._create(aside, path)
                return False
            os.utime(aside)  # dated by when it was set aside (a gc drops week-old ones)
            fsync_dir(path.parent)
        return True

    def _infos(self, folder: Path) -> list[BlobInfo]:
        found = []
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return []
        for entry in entries:
            if not _SHA256.match(entry.name):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            found.append(BlobInfo(entry.name, st.st_size, st.st_ctime))
        return found


class LocalFill:
    """A partial fill as a data file plus a state file holding its size and committed offset."""

    def __init__(self, store: LocalBlobStore, sha256: str, size: int, committed: int) -> None:
        self.sha256, self.size, self._store = sha256, size, store
        self._committed = self._written = committed
        self.data_path = store.partial_dir / f"{FILL_PREFIX}{sha256}"
        self.state_path = store.partial_dir / f"{FILL_PREFIX}{sha256}{STATE_SUFFIX}"

    @classmethod
    def open(cls, store: LocalBlobStore, sha256: str, size: int) -> "LocalFill":
        """Resume the fill at its committed offset (dropping later bytes), or start it empty."""
        if size < 0:
            raise UsageError(f"invalid size {size} for blob {sha256}")
        fill = cls(store, sha256, size, 0)
        with os_errors("partial fill", store.partial_dir):
            store.partial_dir.mkdir(parents=True, exist_ok=True)
            try:
                state = json.loads(fill.state_path.read_bytes())
                committed = int(state["committed"]) if state.get("size") == size else 0
            except (FileNotFoundError, ValueError, KeyError, TypeError, AttributeError):
                committed = 0
            if not (0 <= committed <= size and fill.data_path.exists()
                    and fill.data_path.stat().st_size >= committed):
                committed = 0
            with fill.data_path.open("ab") as f:
                f.truncate(committed)
            fill._committed = fill._written = committed
            fill._save_state()
        return fill

    @property
    def committed(self) -> int:
        return self._committed

    async def append(self, data: bytes) -> None:
        if self._written + len(data) > self.size:
            raise StoreError(f"more bytes than the {self.size} of blob {self.sha256}")
        offset = self._written
        self._written += len(data)
        await asyncio.to_thread(self._write_at, offset, data)

    async def commit(self) -> int:
        await asyncio.to_thread(self._commit_now)
        return self._committed

    async def publish(self) -> bool:
        if self._written != self.size:
            raise StoreError(f"blob {self.sha256} is incomplete: {self._written} of {self.size} bytes")
        await self.commit()
        got = await asyncio.to_thread(self._sha256)
        if got != self.sha256:
            await self.discard()
            raise StoreError(f"partial fill of blob {self.sha256} holds other bytes (sha256 {got})")
        created = await self._store.publish(self.sha256, self.data_path)
        self.state_path.unlink(missing_ok=True)
        return created

    async def discard(self) -> None:
        with os_errors("partial fill", self.data_path.parent):
            self.data_path.unlink(missing_ok=True)
            self.state_path.unlink(missing_ok=True)

    def _write_at(self, offset: int, data: bytes) -> None:
        with os_errors(f"partial fill of blob {self.sha256}", self.data_path.parent):
            fd = os.open(self.data_path, os.O_WRONLY)
            try:
                os.pwrite(fd, data, offset)
            finally:
                os.close(fd)

    def _commit_now(self) -> None:
        with os_errors(f"partial fill of blob {self.sha256}", self.data_path.parent):
            fd = os.open(self.data_path, os.O_WRONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            self._committed = self._written
            self._save_state()

    def _save_state(self) -> None:
        tmp = self.state_path.with_name(f".{self.state_path.name}.{secrets.token_hex(6)}")
        write_durably(tmp, json.dumps({"size": self.size, "committed": self._committed}).encode())
        os.replace(tmp, self.state_path)

    def _sha256(self) -> str:
        with self.data_path.open("rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
