"""The content-addressed store: sha256 blobs plus Hugging-Face-cache-like snapshot views.

    home/blobs/sha256/<hex[:2]>/<hex>             each blob once, read-only
    home/hub/<cache_name>/refs/<ref>              the commit a ref points to (no newline)
    home/hub/<cache_name>/snapshots/<commit>/...  relative symlinks to blobs
    home/hub/<cache_name>/derived/<commit>/...    the same, for files mreg made (local conversions)
    home/partial/<key>, <key>.state.json          in-progress downloads (flocked by the downloader)
    home/tmp/                                     temp names for atomic renames
    home/pulls.lock                               shared by pulls and daemon transfers, taken by gc
    home/links.lock                               shared while a link is made, exclusive while gc deletes
    home/removals                                 replaced by every ``mreg rm`` (``registry.removals``)
    home/quarantine/<hex>                         blobs found damaged, set aside (``LocalBlobStore``)

``HF_HUB_CACHE=<home>/hub HF_HUB_OFFLINE=1`` lets huggingface_hub find the snapshots. Every write
goes through a temp name and ``os.replace``; ``OSError`` is translated into ``StoreError`` here.
The blobs themselves are ``blobs``, a ``LocalBlobStore``: code that needs no local file reaches them
through its ``BlobStore`` interface; snapshots, derived folders and exports are local views of them.

Several processes share one store (pulls, daemons, ``rm``/``gc``). What keeps a gc off what others are
doing: a partial download is removed only when its writer's flock is free (``_remove_partials``); no link
is made between gc's scan of the snapshots and its deletes (``links.lock``: a link made before is seen, one
made after finds the blob gone and says so); a blob published but not linked yet is spared while any pull
or transfer holds ``pulls.lock`` shared, if it was published or linked in the last ``min_blob_age``
seconds (``gc``); a gc that finds nobody holding that keeps every new holder waiting until it is done
(``quiet``).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator, Set
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from mreg.registry.blobs.local import FILL_PREFIX, STATE_SUFFIX, LocalBlobStore, fsync_dir, os_errors, write_durably
from mreg.registry.errors import StoreError, UnsafePathError, UsageError
from mreg.registry.exports import Placed, place
from mreg.registry.paths import safe_relpath
from mreg.registry.repo import RepoRef

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")
LOCK_POLL = 0.05
"""How often a daemon waiting for a running gc tries the store lock again (seconds)."""
PULLS_LOCK = "pulls.lock"
LINKS_LOCK = "links.lock"


@dataclass(frozen=True)
class GcResult:
    """What one ``Store.gc`` run removed."""

    removed_blobs: int
    freed_bytes: int
    removed_partials: int


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path`` resolves to ``root`` or below it."""
    return path.resolve().is_relative_to(root.resolve())


def _check_commit(commit: str) -> str:
    if not _COMMIT.match(commit):
        raise UsageError(f"invalid commit {commit!r}: expected 40 lowercase hex digits")
    return commit


class Store:
    """One content-addressed blob store with snapshot views, rooted at ``home``."""

    shared_blobs = False
    """Whether other processes' stores hold the same blobs (replicas on one bucket: ``ObjectStore``)."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.blobs = LocalBlobStore(self.home)
        self.blobs_dir = self.blobs.blobs_dir
        self.hub_dir = self.home / "hub"
        self.partial_dir = self.blobs.partial_dir
        self.tmp_dir = self.blobs.tmp_dir

    # -- pulls and gc ------------------------------------------------------------------------

    @asynccontextmanager
    async def pulling_async(self) -> AsyncIterator[None]:
        """Held (shared) by every pull while it publishes and links blobs (see ``quiet``); waits for a running
        gc without blocking the event loop, which may be the gc's own (a daemon's)."""
        async with self._shared_async(PULLS_LOCK):
            yield

    @asynccontextmanager
    async def linking(self) -> AsyncIterator[None]:
        """Held around ``link_file`` calls made on an event loop: waits for a running gc without blocking
        it (``link_file`` takes the same lock itself, which then never waits)."""
        async with self._shared_async(LINKS_LOCK):
            yield

    @asynccontextmanager
    async def _shared_async(self, name: str) -> AsyncIterator[None]:
        async with self._held_async(name, fcntl.LOCK_SH):
            yield

    @asynccontextmanager
    async def _held_async(self, name: str, mode: int) -> AsyncIterator[None]:
        """Hold the lock file ``name`` in ``mode``, polling for it so that an event loop keeps running (a
        blocking wait could never end if a task of the same loop holds the lock)."""
        with self._lock_file(name) as fd:
            while True:
                try:
                    fcntl.flock(fd, mode | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(LOCK_POLL)
            yield

    @contextmanager
    def quiet(self) -> Iterator[bool]:
        """Yield True, holding off new pulls, when no pull is running; else yield False at once.

        A gc that gets True may remove any unlinked blob; one that gets False must spare recent
        blobs, which a running pull may be about to link.
        """
        with self._lock_file(PULLS_LOCK) as fd:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
            else:
                yield True

    @contextmanager
    def _locked(self, name: str, mode: int) -> Iterator[None]:
        """Hold the lock file ``name`` in ``mode`` (``fcntl.LOCK_SH`` or ``LOCK_EX``), waiting for it."""
        with self._lock_file(name) as fd:
            fcntl.flock(fd, mode)
            yield

    @contextmanager
    def _lock_file(self, name: str) -> Iterator[int]:
        with os_errors("store lock", self.home):
            self.home.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.home / name, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            yield fd
        finally:
            os.close(fd)

    # -- blobs ---------------------------------------------------------------------------------

    def blob_path(self, sha256: str) -> Path:
        """Where the blob with this sha256 (64 lowercase hex digits) lives; UsageError if malformed."""
        return self.blobs.path(sha256)

    def has_blob(self, sha256: str, size: int | None = None) -> bool:
        """Whether the blob is stored (and, if ``size`` is given, has that size)."""
        info = self.blobs.stat_now(sha256)
        return info is not None and (size is None or info.size == size)

    def publish_blob(self, tmp: Path, sha256: str) -> Path:
        """Move verified bytes at ``tmp`` into the store as blob ``sha256``, durably; return its path.

        ``tmp`` must be on the store's filesystem. If the blob already exists it is kept and ``tmp``
        is dropped.
        """
        self.blobs.publish_now(tmp, sha256)
        return self.blob_path(sha256)

    # -- partial downloads ---------------------------------------------------------------------

    def partial_paths(self, key: str) -> tuple[Path, Path]:
        """The data file and state file of the in-progress download ``key`` (``[A-Za-z0-9_.-]+``)."""
        if not _KEY.match(key) or key.strip(".") == "" or key.endswith(STATE_SUFFIX):
            raise UsageError(f"invalid partial download key {key!r}")
        with os_errors("partial download", self.partial_dir):
            self.partial_dir.mkdir(parents=True, exist_ok=True)
        return self.partial_dir / key, self.partial_dir / (key + STATE_SUFFIX)

    # -- snapshots and refs --------------------------------------------------------------------

    def repo_dir(self, repo: RepoRef) -> Path:
        """The repo's folder in the Hugging-Face-style cache: ``hub/models--org--name``."""
        return self.hub_dir / repo.cache_name

    def snapshot_dir(self, repo: RepoRef, commit: str) -> Path:
        """The folder holding the files of ``repo`` at ``commit`` (40 hex digits)."""
        return self.repo_dir(repo) / "snapshots" / _check_commit(commit)

    def open_snapshot(self, repo: RepoRef, commit: str) -> None:
        """Make the (maybe empty) snapshot folder of ``repo`` at ``commit``: the revision is in the store."""
        path = self.snapshot_dir(repo, commit)
        with os_errors(f"snapshot of {repo}", path):
            path.mkdir(parents=True, exist_ok=True)

    def needs_local_files(self, what: str) -> None:
        """Refuse ``what`` (StoreError) where blobs and snapshots are not files on this machine; here they are."""

    def link_file(self, repo: RepoRef, commit: str, relpath: str, sha256: str) -> Path:
        """Make ``snapshots/<commit>/<relpath>`` a relative symlink to the blob; return its path.

        Refuses (UnsafePathError) names that would escape the snapshot, also through a symlinked parent.
        """
        return self._link(self.snapshot_dir(repo, commit), relpath, sha256, "snapshot")

    def derived_dir(self, repo: RepoRef, commit: str) -> Path:
        """The folder of files mreg made from ``repo`` at ``commit`` (local conversions)."""
        return self.repo_dir(repo) / "derived" / _check_commit(commit)

    def link_derived(self, repo: RepoRef, commit: str, name: str, sha256: str) -> Path:
        """Make ``derived/<commit>/<name>`` a relative symlink to the blob; return its path."""
        return self._link(self.derived_dir(repo, commit), name, sha256, "derived")

    def _link(self, root: Path, relpath: str, sha256: str, what: str) -> Path:
        rel = safe_relpath(relpath)
        blob = self.blob_path(sha256)
        with self._locked(LINKS_LOCK, fcntl.LOCK_SH), os_errors(f"{what} file {relpath}", root):
            try:
                os.utime(blob)  # a fresh ctime makes a gc with ``min_blob_age`` spare it
            except FileNotFoundError:
                raise StoreError(f"cannot link {relpath}: blob {sha256} is not in the store") from None
            except PermissionError:
                pass  # another user's blob: still linkable, only not refreshed
            parent = self._make_dirs(root, rel.parts[:-1])
            dest = parent / rel.name
            self._replace_with(dest, lambda tmp: os.symlink(os.path.relpath(blob, parent), tmp))
        if not _inside(dest.parent, root):
            dest.unlink(missing_ok=True)
            raise UnsafePathError(f"unsafe file name from upstream: {relpath!r} leaves its {what} folder")
        if not blob.exists():  # removed meanwhile by something that does not take links.lock
            dest.unlink(missing_ok=True)
            raise StoreError(f"cannot link {relpath}: blob {sha256} was removed by a concurrent gc")
        return dest

    def write_ref(self, repo: RepoRef, ref: str, commit: str) -> None:
        """Point ``refs/<ref>`` (which may contain ``/``, like ``refs/pr/1``) at ``commit``, atomically."""
        rel = safe_relpath(ref)
        _check_commit(commit)
        refs = self.repo_dir(repo) / "refs"
        with os_errors(f"ref {ref}", refs):
            dest = self._make_dirs(refs, rel.parts[:-1]) / rel.name
            self._replace_with(dest, lambda tmp: write_durably(tmp, commit.encode()))

    def read_ref(self, repo: RepoRef, ref: str) -> str | None:
        """The commit ``ref`` points to, or None if the ref is not stored."""
        path = self.repo_dir(repo) / "refs" / safe_relpath(ref)
        try:
            return path.read_text().strip()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as exc:
            raise StoreError(f"cannot read ref {ref} of {repo}: {exc.strerror or exc}") from exc

    def snapshot_files(self, repo: RepoRef, commit: str) -> dict[str, str]:
        """``relpath -> sha256`` of every file linked in the snapshot; StoreError if there is none."""
        snap = self.snapshot_dir(repo, commit)
        if not snap.is_dir():
            raise StoreError(f"no snapshot of {repo} at {commit} in {self.hub_dir}")
        return dict(self._walk_links(snap))

    def export_file(self, sha256: str, dest: Path, *, copy: bool = False) -> Placed:
        """Put the blob at ``dest`` as a plain file, never a symlink, in one write at most; say how.

        A copy-on-write clone where the filesystem has one, else a hard link to the blob (its read-only
        inode: edits through ``dest`` are refused, and ``mreg verify`` or the scrub catch any made anyway),
        else, across filesystems or with ``copy``, a byte copy (``exports.place``).
        """
        blob = self.blob_path(sha256)
        if not blob.exists():
            raise StoreError(f"cannot export {dest}: blob {sha256} is not in the store")
        dest = Path(dest)
        with os_errors(str(dest), dest.parent):
            dest.parent.mkdir(parents=True, exist_ok=True)
            return place(blob, dest, copy=copy)

    # -- removal -------------------------------------------------------------------------------

    def remove_repo(self, repo: RepoRef) -> bool:
        """Remove the repo's refs and snapshots (not its blobs); False if nothing was stored."""
        path = self.repo_dir(repo)
        with os_errors(f"repo {repo}", path):
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            doomed = self.tmp_dir / f"removed-{secrets.token_hex(8)}"
            try:
                os.replace(path, doomed)  # the repo vanishes at once, even if rmtree is interrupted
            except FileNotFoundError:
                return False
            shutil.rmtree(doomed, ignore_errors=True)  # leftovers in tmp/ go at the next gc
        return True

    def remove_revision(self, repo: RepoRef, commit: str) -> bool:
        """Remove one revision's refs, snapshot and derived folder (not its blobs); False if none was stored.

        The refs pointing at ``commit`` go first, then each folder is renamed away in one step, so a
        reader never finds a snapshot with some of its links gone.
        """
        _check_commit(commit)
        refs = self.repo_dir(repo) / "refs"
        found = False
        with os_errors(f"repo {repo}", self.repo_dir(repo)):
            for ref in [p for p in refs.rglob("*") if p.is_file() and not p.is_symlink()] if refs.is_dir() else []:
                if ref.read_text().strip() == commit:
                    ref.unlink(missing_ok=True)
                    found = True
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            for folder in (self.snapshot_dir(repo, commit), self.derived_dir(repo, commit)):
                doomed = self.tmp_dir / f"removed-{secrets.token_hex(8)}"
                try:
                    os.replace(folder, doomed)
                except FileNotFoundError:
                    continue
                found = True
                shutil.rmtree(doomed, ignore_errors=True)  # leftovers in tmp/ go at the next gc
        return found

    def referenced_blobs(self) -> set[str]:
        """The sha256 of every blob some snapshot (or derived folder) links to."""
        found: set[str] = set()
        for snap in [*self.hub_dir.glob("*/snapshots/*"), *self.hub_dir.glob("*/derived/*")]:
            found.update(sha for _, sha in self._walk_links(snap))
        return found

    async def gc(
        self,
        keep: Set[str] = frozenset(),
        partial_older_than: float | None = None,
        min_blob_age: float = 0.0,
        unowned_partials: bool = False,
    ) -> GcResult:
        """Remove blobs no snapshot links to, except ``keep``; and partial downloads no process is writing
        (``_remove_partials``): with ``unowned_partials`` all of them, else, if ``partial_older_than`` is
        given, those untouched for that many seconds (and leftovers in tmp/ and damaged blobs set aside
        as old).

        Safe next to another gc: blobs vanishing underneath are skipped. A download running at the
        same time may have published a blob it has not linked yet; a gc that can overlap downloads
        (a daemon's periodic one) should pass ``min_blob_age`` (e.g. 3600) to spare blobs published
        or linked that recently (``link_file`` refuses to link a blob gc removed meanwhile).
        """
        async with self._held_async(LINKS_LOCK, fcntl.LOCK_EX):  # no link is made between the scan and the deletes
            live = self.referenced_blobs() | set(keep)
            now = time.time()
            removed = freed = 0
            async for blob in self.blobs.list():
                if blob.sha256 in live or now - blob.touched < min_blob_age:
                    continue
                if await self.blobs.delete(blob.sha256):
                    removed, freed = removed + 1, freed + blob.size
        cutoff = None if partial_older_than is None else now - partial_older_than
        partials = _remove_partials(self.partial_dir, cutoff, unowned_partials)
        if cutoff is not None:
            _remove_old(self.tmp_dir, cutoff)
            _remove_old(self.blobs.quarantine_dir, cutoff)
        return GcResult(removed_blobs=removed, freed_bytes=freed, removed_partials=partials)

    # -- helpers -------------------------------------------------------------------------------

    def _make_dirs(self, root: Path, parts: tuple[str, ...]) -> Path:
        """Create ``root/parts...`` refusing any existing component that is a symlink; return it."""
        root.mkdir(parents=True, exist_ok=True)
        path = root
        for part in parts:
            path = path / part
            if path.is_symlink():
                raise UnsafePathError(f"unsafe path: {path} is a symlink, refusing to write through it")
            path.mkdir(exist_ok=True)
        return path

    def _replace_with(self, dest: Path, make: Callable[[Path], None]) -> None:
        """Build a temp entry with ``make(tmp)`` and rename it over ``dest`` atomically."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.tmp_dir / secrets.token_hex(12)
        try:
            make(tmp)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(dest.parent)

    def _walk_links(self, snap: Path) -> Iterator[tuple[str, str]]:
        """``(relpath, sha256)`` for every symlink to a blob below ``snap``."""
        for dirpath, _, filenames in os.walk(snap):
            for name in filenames:
                path = Path(dirpath, name)
                try:
                    target = os.readlink(path)
                except OSError:  # not a symlink, or gone
                    continue
                sha = os.path.basename(target)
                if _SHA256.match(sha):
                    yield path.relative_to(snap).as_posix(), sha


def _remove_partials(folder: Path, cutoff: float | None, unowned: bool) -> int:
    """Remove partial downloads of ``folder`` no process is writing: all of them if ``unowned``, else those
    last touched before ``cutoff`` (if given; dated by the state file when there is one). Return how many.

    The downloader (``download.transfer``) holds an exclusive ``flock`` on a partial's data file for as
    long as it writes it or its state, so a data file whose lock can be taken belongs to nobody (a pull
    that was killed, a transfer that failed); it is removed with its state while the lock is held, and a
    writer opening it meanwhile notices that the name now leads to another file and starts a new one. A
    state without its data file is a leftover. Partial fills (``fill-*``, the BlobStore's) have no owner
    lock: only the age rule removes them.
    """
    if not folder.is_dir():
        return 0
    groups: dict[str, list[Path]] = {}
    for entry in folder.iterdir():
        groups.setdefault(entry.name.removesuffix(".tmp").removesuffix(STATE_SUFFIX), []).append(entry)
    removed = 0
    for key, entries in groups.items():
        locked = not key.startswith(FILL_PREFIX)
        if not (unowned and locked) and not (cutoff is not None and _touched(folder, key, entries) < cutoff):
            continue
        with os_errors("partial downloads", folder):
            try:
                fd = os.open(folder / key, os.O_RDWR | os.O_NOFOLLOW) if locked else None
            except FileNotFoundError:
                fd = None  # a state without its data: nobody is writing it
            except OSError:
                continue  # not a data file (a folder, a symlink): left alone
            try:
                if fd is not None and not _lock_if_live(fd, folder / key):
                    continue  # being written
                for entry in sorted(entries, key=lambda e: e.name == key):  # the data file last
                    entry.unlink(missing_ok=True)
            finally:
                if fd is not None:
                    os.close(fd)
        removed += 1
    return removed


def _touched(folder: Path, key: str, entries: list[Path]) -> float:
    """When the partial download ``key`` was last written: its state file's mtime, else its first entry's."""
    state = folder / (key + STATE_SUFFIX)
    for path in (state, *entries) if state in entries else entries:
        try:
            return path.lstat().st_mtime
        except FileNotFoundError:
            continue
    return time.time()


def _remove_old(folder: Path, cutoff: float) -> None:
    """Remove the entries of ``folder`` (temp names) last modified before ``cutoff``."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        try:
            if entry.lstat().st_mtime >= cutoff:
                continue
        except FileNotFoundError:
            continue
        with os_errors("temp files", folder):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _lock_if_live(fd: int, path: Path) -> bool:
    """Take the exclusive flock of ``fd`` without waiting; True if taken and ``path`` still names that file."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except (BlockingIOError, FileNotFoundError):
        return False
