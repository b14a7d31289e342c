"""`mreg pull --local-dir` in one write (issue #16): a clone or a hard link to the read-only blob, a copy across
filesystems or with --local-dir-copy; edits refused, caught by verify; safe with rm, gc and re-pulls. Real files,
the real CLI in process against the test hub."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from mreg.registry.exports import FICLONE
from mreg.registry.store import Store
from tests.mreg_cli import mreg
from tests.testhub import TestHub, small_repo

pytest_plugins = ("tests.mreg_env",)

REPO = "org/tiny"
WEIGHTS = bytes(range(256)) * 64  # small_repo's weights.bin


def local_files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def blob_of(home: Path, data: bytes) -> Path:
    return Store(home).blob_path(hashlib.sha256(data).hexdigest())


def pull_into(local: Path, *extra: str) -> None:
    code, out, err = mreg("pull", REPO, "--local-dir", str(local), *extra)
    assert code == 0, err
    assert out.strip().splitlines()[-1] == str(local)


def clones_in(folder: Path) -> bool:
    """Whether ``folder``'s filesystem makes copy-on-write clones (btrfs, XFS: yes; ext4, tmpfs: no)."""
    source, clone = folder / "clone-probe-source", folder / "clone-probe"
    source.write_bytes(b"probe")
    try:
        with source.open("rb") as fin, clone.open("wb") as fout:
            fcntl.ioctl(fout.fileno(), FICLONE, fin.fileno())
        return True
    except OSError:
        return False
    finally:
        source.unlink()
        clone.unlink(missing_ok=True)


@pytest.fixture
def home(test_hub: TestHub, mreg_env: dict[str, str]) -> Path:
    test_hub.add_repo(small_repo(REPO))
    return Path(mreg_env["MREG_HOME"])


def as_normal_user(*command: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` as the files' owner without root's power to write any file: as root, with the
    capabilities that override permission bits dropped (setpriv); as anyone else, as is."""
    if os.geteuid() == 0:
        command = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", *command)
    return subprocess.run(command, capture_output=True, text=True, check=False)


def test_local_dir_costs_one_write_a_link_to_the_read_only_blob(home: Path, tmp_path: Path) -> None:
    local = tmp_path / "local"
    pull_into(local)
    files = local_files(local)
    assert sorted(files) == ["README.md", "config.json", "nested/dir/notes.txt", "weights.bin"]
    weights, blob = files["weights.bin"], blob_of(home, WEIGHTS)
    assert not weights.is_symlink() and weights.read_bytes() == WEIGHTS
    if clones_in(tmp_path):  # a clone (btrfs, XFS): a writable file of its own sharing the blob's extents
        assert weights.stat().st_ino != blob.stat().st_ino and weights.stat().st_nlink == 1
        assert stat.S_IMODE(weights.stat().st_mode) == 0o644
    else:  # no clones here (ext4, tmpfs): a hard link to the read-only blob
        assert weights.stat().st_ino == blob.stat().st_ino and weights.stat().st_nlink == 2
        assert stat.S_IMODE(weights.stat().st_mode) == 0o444
    assert not [p for p in local.rglob("*") if "mreg-tmp" in p.name]


def test_an_edit_through_the_local_dir_is_refused_and_verify_catches_a_forced_one(home: Path, tmp_path: Path) -> None:
    local = tmp_path / "local"
    pull_into(local)
    weights, blob = local / "weights.bin", blob_of(home, WEIGHTS)
    if clones_in(tmp_path):
        weights.write_bytes(b"edited")  # a clone is the local dir's own file
        assert blob.read_bytes() == WEIGHTS
        return
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.fail("running as root: setpriv (util-linux) is needed to try the edit as a normal user")
    refused = as_normal_user("sh", "-c", f"printf x >> '{weights}'")
    assert refused.returncode != 0 and "Permission denied" in refused.stderr
    assert blob.read_bytes() == WEIGHTS

    forced = as_normal_user("sh", "-c", f"chmod u+w '{weights}' && printf x >> '{weights}'")  # the owner may
    assert forced.returncode == 0, forced.stderr
    assert blob.read_bytes() == WEIGHTS + b"x"  # the same inode: the store's copy changed too
    code, out, err = mreg("verify", REPO)
    assert code == 4 and "weights.bin" in err

    code, out, err = mreg("verify", REPO, "--repair")  # the blob fetched again, good
    assert code == 0, err
    pull_into(local)  # and the local file linked to it again
    assert weights.read_bytes() == WEIGHTS and weights.stat().st_ino == blob_of(home, WEIGHTS).stat().st_ino


def test_rm_and_gc_leave_the_local_files_whole(home: Path, tmp_path: Path) -> None:
    local = tmp_path / "local"
    pull_into(local)
    before = {name: path.read_bytes() for name, path in local_files(local).items()}
    code, _, err = mreg("rm", REPO)
    assert code == 0, err
    code, _, err = mreg("gc")
    assert code == 0, err
    assert not blob_of(home, WEIGHTS).exists()
    assert {name: path.read_bytes() for name, path in local_files(local).items()} == before
    assert (local / "weights.bin").stat().st_nlink == 1  # the store's name went, the bytes stayed


def test_a_re_pull_is_idempotent_and_replaces_what_changed_atomically(home: Path, tmp_path: Path) -> None:
    local = tmp_path / "local"
    pull_into(local)
    weights = local / "weights.bin"
    first = weights.stat()
    pull_into(local)
    again = weights.stat()
    assert (again.st_ino, again.st_nlink, again.st_mtime_ns) == (first.st_ino, first.st_nlink, first.st_mtime_ns)

    (local / "config.json").unlink()
    (local / "config.json").write_text("mine\n")  # a file of the user's own under that name
    weights.unlink()
    weights.symlink_to(tmp_path / "elsewhere")  # a dangling symlink: replaced, never written through
    pull_into(local)
    assert (local / "config.json").read_text() == '{"model_type": "tiny", "hidden_size": 8}\n'
    assert not weights.is_symlink() and weights.read_bytes() == WEIGHTS
    assert not (tmp_path / "elsewhere").exists()
    assert blob_of(home, WEIGHTS).read_bytes() == WEIGHTS
    assert not [p for p in local.rglob("*") if "mreg-tmp" in p.name]


def test_across_filesystems_the_local_dir_gets_copies(home: Path, tmp_path: Path) -> None:
    other = Path("/dev/shm")
    if not other.is_dir() or os.stat(other).st_dev == os.stat(tmp_path).st_dev:
        pytest.fail("the test needs /dev/shm on another filesystem than the test's tmp_path")
    local = Path(tempfile.mkdtemp(dir=other, prefix="mreg-local-dir-"))
    try:
        pull_into(local)
        weights = local / "weights.bin"
        assert weights.read_bytes() == WEIGHTS and weights.stat().st_nlink == 1
        assert stat.S_IMODE(weights.stat().st_mode) == 0o644
        weights.write_bytes(b"edited")
        assert blob_of(home, WEIGHTS).read_bytes() == WEIGHTS
    finally:
        shutil.rmtree(local)


def test_local_dir_copy_gives_files_of_their_own(home: Path, tmp_path: Path) -> None:
    local = tmp_path / "local"
    pull_into(local)
    pull_into(local, "--local-dir-copy")  # replaces the links with copies
    weights, blob = local / "weights.bin", blob_of(home, WEIGHTS)
    assert weights.stat().st_ino != blob.stat().st_ino and blob.stat().st_nlink == 1
    assert stat.S_IMODE(weights.stat().st_mode) == 0o644
    weights.write_bytes(b"edited")
    assert blob.read_bytes() == WEIGHTS
    code, _, err = mreg("pull", REPO, "--local-dir-copy")
    assert code == 2 and "--local-dir-copy needs --local-dir" in err
