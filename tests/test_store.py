"""The content-addressed store, on real files in a temp folder."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import multiprocessing
import os
import subprocess
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mreg.registry.errors import StoreError, UnsafePathError, UsageError
from mreg.registry.exports import Placed
from mreg.registry.repo import RepoRef
from mreg.registry.blobs.local import os_errors
from mreg.registry.store import GcResult, Store

REPO = RepoRef.parse("org/model")
OTHER = RepoRef.parse("other/model")
DATASET = RepoRef.parse("org/data", "dataset")
C1 = "1" * 40
C2 = "2" * 40


def tree(root: Path) -> set[str]:
    """Every path below ``root`` (without following symlinks), relative."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*")} if root.exists() else set()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "home")


def put(store: Store, data: bytes) -> str:
    """Publish ``data`` as a blob the way the downloader does (partial file, then publish)."""
    sha = hashlib.sha256(data).hexdigest()
    tmp, _ = store.partial_paths(f"test-{sha[:12]}")
    tmp.write_bytes(data)
    store.publish_blob(tmp, sha)
    return sha


def age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past), follow_symlinks=False)


def test_layout_and_validation(store: Store) -> None:
    sha = "ab" + "0" * 62
    assert store.blob_path(sha) == store.home / "blobs" / "sha256" / "ab" / sha
    assert store.repo_dir(REPO) == store.home / "hub" / "models--org--model"
    assert store.repo_dir(DATASET) == store.home / "hub" / "datasets--org--data"
    assert store.snapshot_dir(REPO, C1) == store.repo_dir(REPO) / "snapshots" / C1
    for bad in ("AB" + "0" * 62, "ab", "g" * 64, "0" * 65, ""):
        with pytest.raises(UsageError):
            store.blob_path(bad)
    for bad in ("A" * 40, "1" * 39, "main", "../" + "1" * 37):
        with pytest.raises(UsageError):
            store.snapshot_dir(REPO, bad)


def test_partial_paths(store: Store) -> None:
    data, state = store.partial_paths("abc-1.2_3")
    assert data == store.home / "partial" / "abc-1.2_3"
    assert state == store.home / "partial" / "abc-1.2_3.state.json"
    assert data.parent.is_dir()
    for bad in ("", ".", "..", "a/b", "../x", "a b", "x.state.json", "a\0b"):
        with pytest.raises(UsageError):
            store.partial_paths(bad)


def test_publish_makes_a_read_only_blob_and_has_blob(store: Store) -> None:
    assert not store.has_blob("0" * 64)
    sha = put(store, b"hello")
    blob = store.blob_path(sha)
    assert blob.read_bytes() == b"hello"
    assert stat.S_IMODE(blob.stat().st_mode) == 0o444
    assert store.has_blob(sha) and store.has_blob(sha, 5) and not store.has_blob(sha, 6)
    assert tree(store.home / "blobs") == {"sha256", f"sha256/{sha[:2]}", f"sha256/{sha[:2]}/{sha}"}
    assert list((store.home / "partial").iterdir()) == []


def test_publish_keeps_an_existing_blob_and_drops_tmp(store: Store, tmp_path: Path) -> None:
    sha = put(store, b"same bytes")
    before = store.blob_path(sha).stat()
    tmp = store.home / "partial" / "second"
    tmp.write_bytes(b"same bytes")
    assert store.publish_blob(tmp, sha) == store.blob_path(sha)
    after = store.blob_path(sha).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not tmp.exists()


def test_publish_failure_leaves_nothing_under_blobs(store: Store) -> None:
    sha = hashlib.sha256(b"x").hexdigest()
    with pytest.raises(StoreError):
        store.publish_blob(store.home / "partial" / "missing", sha)
    assert not store.blob_path(sha).exists()
    assert not any(p.is_file() for p in (store.home / "blobs").rglob("*"))


def test_dedup_across_repos_and_revisions(store: Store) -> None:
    sha = put(store, b"weights")
    paths = [
        store.link_file(REPO, C1, "model.bin", sha),
        store.link_file(REPO, C2, "sub/dir/model.bin", sha),
        store.link_file(OTHER, C1, "model.bin", sha),
    ]
    blobs = [p for p in (store.home / "blobs").rglob("*") if p.is_file()]
    assert blobs == [store.blob_path(sha)]
    assert all(p.resolve() == store.blob_path(sha) for p in paths)
    assert store.snapshot_files(REPO, C1) == {"model.bin": sha}
    assert store.snapshot_files(REPO, C2) == {"sub/dir/model.bin": sha}
    assert store.referenced_blobs() == {sha}


def test_links_are_relative_and_readable_with_plain_open(store: Store, tmp_path: Path) -> None:
    sha = put(store, b'{"a": 1}')
    link = store.link_file(REPO, C1, "nested/config.json", sha)
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    with open(store.snapshot_dir(REPO, C1) / "nested" / "config.json", "rb") as f:
        assert f.read() == b'{"a": 1}'
    moved = tmp_path / "moved-home"
    store.home.rename(moved)  # relative links survive moving the whole store
    assert (Store(moved).snapshot_dir(REPO, C1) / "nested" / "config.json").read_bytes() == b'{"a": 1}'


def test_relink_replaces_the_file(store: Store) -> None:
    old, new = put(store, b"v1"), put(store, b"v2")
    store.link_file(REPO, C1, "a.txt", old)
    link = store.link_file(REPO, C1, "a.txt", new)
    assert link.read_bytes() == b"v2"
    assert store.snapshot_files(REPO, C1) == {"a.txt": new}


def test_link_requires_the_blob(store: Store) -> None:
    with pytest.raises(StoreError):
        store.link_file(REPO, C1, "a.txt", "0" * 64)


@pytest.mark.parametrize("name", ["../x", "/abs", "a/../../b", "a\\b", "a\0b", "", "a//b", "./a", "C:x"])
def test_traversal_names_are_refused(store: Store, tmp_path: Path, name: str) -> None:
    sha = put(store, b"data")
    before = tree(tmp_path)
    with pytest.raises(UnsafePathError):
        store.link_file(REPO, C1, name, sha)
    assert tree(tmp_path) == before


def test_a_symlinked_parent_cannot_redirect_outside(store: Store, tmp_path: Path) -> None:
    sha = put(store, b"data")
    outside = tmp_path / "outside"
    outside.mkdir()
    snap = store.snapshot_dir(REPO, C1)
    snap.mkdir(parents=True)
    (snap / "evil").symlink_to(outside)
    for name in ("evil/x", "evil/deeper/x"):
        with pytest.raises(UnsafePathError):
            store.link_file(REPO, C1, name, sha)
    assert list(outside.iterdir()) == []


def test_refs_with_slashes(store: Store) -> None:
    assert store.read_ref(REPO, "main") is None
    store.write_ref(REPO, "main", C1)
    store.write_ref(REPO, "refs/pr/1", C2)
    assert (store.repo_dir(REPO) / "refs" / "main").read_bytes() == C1.encode()
    assert (store.repo_dir(REPO) / "refs" / "refs" / "pr" / "1").read_text() == C2
    assert store.read_ref(REPO, "refs/pr/1") == C2
    assert store.read_ref(REPO, "refs") is None  # a folder of refs is not a ref
    store.write_ref(REPO, "main", C2)
    assert store.read_ref(REPO, "main") == C2
    with pytest.raises(UnsafePathError):
        store.write_ref(REPO, "../escape", C1)
    with pytest.raises(UsageError):
        store.write_ref(REPO, "main", "not-a-commit")
    assert not (store.home / "tmp").exists() or list((store.home / "tmp").iterdir()) == []


def test_huggingface_hub_finds_the_snapshot(store: Store) -> None:
    hf = pytest.importorskip("huggingface_hub")
    sha = put(store, b'{"model_type": "test"}')
    store.link_file(REPO, C1, "config.json", sha)
    store.write_ref(REPO, "main", C1)
    found = hf.hf_hub_download(REPO.repo_id, "config.json", cache_dir=store.home / "hub", local_files_only=True)
    assert Path(found) == store.snapshot_dir(REPO, C1) / "config.json"
    snapshot = hf.snapshot_download(REPO.repo_id, cache_dir=store.home / "hub", local_files_only=True)
    assert Path(snapshot) == store.snapshot_dir(REPO, C1)
    scanned = hf.scan_cache_dir(store.home / "hub")
    assert [(r.repo_id, r.nb_files, r.size_on_disk) for r in scanned.repos] == [(REPO.repo_id, 1, 22)]
    assert scanned.warnings == []


def test_snapshot_files_of_a_missing_snapshot(store: Store) -> None:
    with pytest.raises(StoreError):
        store.snapshot_files(REPO, C1)


def test_export_file_is_one_write_and_a_copy_only_when_asked(store: Store, tmp_path: Path) -> None:
    sha = put(store, b"tensor bytes")
    blob = store.blob_path(sha)
    dest = tmp_path / "local" / "deep" / "model.bin"
    how = store.export_file(sha, dest)
    assert how in (Placed.CLONE, Placed.LINK) and dest.is_file() and not dest.is_symlink()
    assert dest.read_bytes() == b"tensor bytes"
    assert (dest.stat().st_ino == blob.stat().st_ino) == (how is Placed.LINK)  # a link shares the read-only inode
    assert stat.S_IMODE(dest.stat().st_mode) == (0o444 if how is Placed.LINK else 0o644)
    dest.unlink()
    dest.symlink_to(blob)  # an old symlink export is replaced by a plain file
    assert store.export_file(sha, dest) is how
    assert dest.is_file() and not dest.is_symlink()
    assert store.export_file(sha, dest, copy=True) in (Placed.CLONE, Placed.COPY)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o644 and dest.stat().st_ino != blob.stat().st_ino
    dest.write_bytes(b"edited")  # editing a copy never touches the store
    assert blob.read_bytes() == b"tensor bytes" and stat.S_IMODE(blob.stat().st_mode) == 0o444
    assert sorted(p.name for p in dest.parent.iterdir()) == ["model.bin"]


async def test_gc_removes_only_unreferenced_blobs(store: Store) -> None:
    used, kept, orphan = put(store, b"used"), put(store, b"kept"), put(store, b"orphan!")
    store.link_file(REPO, C1, "a", used)
    assert (await store.gc(keep={kept}, min_blob_age=3600)).removed_blobs == 0  # all too new
    result = await store.gc(keep={kept})
    assert result == GcResult(removed_blobs=1, freed_bytes=len(b"orphan!"), removed_partials=0)
    assert store.has_blob(used) and store.has_blob(kept) and not store.has_blob(orphan)
    assert (await store.gc(keep={kept})).removed_blobs == 0  # a second gc finds nothing


def _gc_in_process(home: Path, barrier, results) -> None:  # type: ignore[no-untyped-def]
    barrier.wait()
    results.put(asyncio.run(Store(home).gc()))


def test_two_concurrent_gcs(store: Store) -> None:
    orphans = {put(store, b"orphan %d" % i) for i in range(200)}
    used = put(store, b"used")
    store.link_file(REPO, C1, "a", used)
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_gc_in_process, args=(store.home, barrier, results)) for _ in range(2)]
    for proc in procs:
        proc.start()
    got = [results.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(60)
    assert [proc.exitcode for proc in procs] == [0, 0]
    assert sum(r.removed_blobs for r in got) == len(orphans)
    assert not any(store.has_blob(sha) for sha in orphans) and store.has_blob(used)


async def test_gc_removes_old_partials_only(store: Store) -> None:
    old_data, old_state = store.partial_paths("old")
    new_data, new_state = store.partial_paths("new")
    lone, _ = store.partial_paths("lone")
    for path in (old_data, old_state, new_data, new_state, lone):
        path.write_text("x")
    age(old_state, 7200)
    age(old_data, 7200)
    age(lone, 7200)
    age(new_data, 7200)  # an old data file whose state file is fresh is still in progress
    assert (await store.gc()).removed_partials == 0  # partials only go when asked
    result = await store.gc(partial_older_than=3600)
    assert result.removed_partials == 2
    assert sorted(p.name for p in (store.home / "partial").iterdir()) == ["new", "new.state.json"]


async def test_gc_frees_the_partials_nobody_holds_the_lock_of(store: Store) -> None:
    """A partial whose data file is flocked (as the downloader holds it while it writes) stays, however old;
    one nobody holds goes, however fresh; so does a state file without its data; a BlobStore fill
    (no owner lock) is left to the age rule."""
    busy_data, busy_state = store.partial_paths("busy")
    idle_data, idle_state = store.partial_paths("idle")
    _, lone_state = store.partial_paths("lone")
    fill = await store.blobs.open_fill("0" * 64, 10)
    for path in (busy_data, busy_state, idle_data, idle_state, lone_state):
        path.write_text("x")
    age(busy_state, 30 * 24 * 3600)
    age(busy_data, 30 * 24 * 3600)
    fd = os.open(busy_data, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert (await store.gc(partial_older_than=3600)).removed_partials == 0  # nothing old but the held one
        result = await store.gc(partial_older_than=3600, unowned_partials=True)
        assert result.removed_partials == 2
        assert sorted(p.name for p in store.partial_dir.iterdir()) == sorted(
            ["busy", "busy.state.json", fill.data_path.name, fill.state_path.name])
    finally:
        os.close(fd)
    assert (await store.gc(unowned_partials=True)).removed_partials == 1  # its writer is gone
    assert sorted(p.name for p in store.partial_dir.iterdir()) == sorted([fill.data_path.name, fill.state_path.name])


def test_no_link_is_made_while_a_gc_scans_and_deletes(store: Store) -> None:
    """A link waits for a gc holding links.lock; made after the gc deleted its blob, it says so and leaves nothing."""
    sha = put(store, b"unlinked")
    fd = os.open(store.home / "links.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as a gc does between its scan and its deletes
    outcome: list[BaseException | Path] = []
    linker = threading.Thread(target=lambda: outcome.append(_outcome(lambda: store.link_file(REPO, C1, "f", sha))))
    linker.start()
    linker.join(0.5)
    assert linker.is_alive() and outcome == []  # waiting for the gc
    store.blob_path(sha).unlink()  # the gc deletes the blob it found unlinked
    os.close(fd)
    linker.join(30)
    assert len(outcome) == 1 and isinstance(outcome[0], StoreError) and "not in the store" in str(outcome[0])
    assert not (store.snapshot_dir(REPO, C1) / "f").is_symlink()


def _outcome(call: Callable[[], Path]) -> BaseException | Path:
    try:
        return call()
    except BaseException as exc:  # noqa: BLE001 (handed to the test thread)
        return exc


async def test_gc_drops_quarantined_blobs_set_aside_long_ago(store: Store) -> None:
    old, recent = put(store, b"rotted long ago"), put(store, b"rotted today")
    for sha in (old, recent):
        age(store.blobs.path(sha), 7200)  # written long ago: set aside is what dates it
        assert store.blobs.quarantine_now(sha, store.blobs.path(sha).stat().st_size) is True
    age(store.blobs.quarantine_dir / old, 7200)
    assert sorted(p.name for p in store.blobs.quarantine_dir.iterdir()) == sorted([old, recent])
    await store.gc(partial_older_than=3600)
    assert [p.name for p in store.blobs.quarantine_dir.iterdir()] == [recent]


async def test_remove_repo_keeps_blobs_used_by_others(store: Store) -> None:
    shared, own = put(store, b"shared"), put(store, b"own")
    store.link_file(REPO, C1, "shared", shared)
    store.link_file(REPO, C1, "own", own)
    store.write_ref(REPO, "main", C1)
    store.link_file(OTHER, C2, "shared", shared)
    assert store.remove_repo(REPO) is True
    assert not store.repo_dir(REPO).exists()
    assert store.remove_repo(REPO) is False
    assert store.has_blob(shared) and store.has_blob(own)  # remove_repo never touches blobs
    assert (await store.gc()).removed_blobs == 1
    assert store.has_blob(shared) and not store.has_blob(own)
    assert store.snapshot_files(OTHER, C2) == {"shared": shared}


def test_os_errors_become_one_line_store_errors(tmp_path: Path) -> None:
    where = tmp_path / "x"
    with pytest.raises(StoreError, match=rf"^disk full while writing blob abc: {where}$"):
        with os_errors("blob abc", where):
            raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(StoreError, match="^permission denied for ref main: /p$"):
        with os_errors("ref main", where):
            raise PermissionError(errno.EACCES, "Permission denied", "/p")
    home = tmp_path / "a-file"
    home.write_text("not a folder")
    with pytest.raises(StoreError) as info:
        Store(home).partial_paths("k")
    assert "\n" not in str(info.value)


def test_unwritable_store_gives_store_error(tmp_path: Path) -> None:
    """A store it may not write to is a one-line StoreError (as root: a read-only mount)."""
    home = tmp_path / "home"
    home.mkdir()
    if os.geteuid() == 0:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(home)], check=True)
        undo = ["umount", str(home)]
    else:
        home.chmod(0o555)
        undo = ["chmod", "755", str(home)]
    try:
        with pytest.raises(StoreError, match="(?i)permission denied|read-only file system") as err:
            Store(home).partial_paths("k")
        assert "\n" not in str(err.value)
    finally:
        subprocess.run(undo, check=True)
