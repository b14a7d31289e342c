"""Pure pieces: repo ids, safe paths, globs, token lookup, download state, readers of a download, the prefix
hasher."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

from mreg.registry.config import Settings, resolve_token
from mreg.registry.download import hasher as hasher_module
from mreg.registry.download.hasher import Hashed, PrefixHasher
from mreg.registry.download.readers import Readers
from mreg.registry.download.state import Part, TransferState
from mreg.registry.errors import UnsafePathError, UsageError
from mreg.registry.hashing import git_sha1_bytes
from mreg.registry.paths import safe_relpath
from mreg.registry.repo import RepoRef
from mreg.registry.selection import selected


@pytest.mark.parametrize("name", ["bert-base", "org/name", "Org.x/Name_1-2"])
def test_repo_ids_accepted(name: str) -> None:
    assert RepoRef.parse(name).repo_id == name


@pytest.mark.parametrize("name", ["", "a/b/c", "../x", "a/..", "org/na--me", "/abs", "a b", "org/-x"])
def test_repo_ids_refused(name: str) -> None:
    with pytest.raises(UsageError):
        RepoRef.parse(name)


def test_repo_cache_names() -> None:
    assert RepoRef.parse("org/name").cache_name == "models--org--name"
    assert RepoRef.parse("org/data", "dataset").cache_name == "datasets--org--data"
    with pytest.raises(UsageError):
        RepoRef.parse("org/name", "space")


@pytest.mark.parametrize("name", ["../evil", "/etc/passwd", "a/../../b", "a\\b", "a\0b", "C:/x", "a//b", "./a",
                                  "", "a/./b", "x/.."])
def test_unsafe_paths_refused(name: str) -> None:
    with pytest.raises(UnsafePathError):
        safe_relpath(name)


def test_safe_paths_kept() -> None:
    assert str(safe_relpath("1_Pooling/config.json")) == "1_Pooling/config.json"
    assert str(safe_relpath("..hidden/x..y")) == "..hidden/x..y"


def test_globs_follow_huggingface_hub() -> None:
    assert selected("model.safetensors", include=["*.safetensors"])
    assert not selected("model.bin", include=["*.safetensors"])
    assert selected("sub/x.json", include=["sub/"])
    assert not selected("sub/x.json", exclude=["sub/"])
    assert selected("a.txt")


def test_token_precedence(tmp_path) -> None:
    saved = tmp_path / "hf" / "token"
    saved.parent.mkdir()
    saved.write_text("hf_saved\n")
    env = {"HF_HOME": str(tmp_path / "hf")}
    assert resolve_token(None, env) == "hf_saved"
    assert resolve_token(None, {**env, "HF_TOKEN": "hf_env"}) == "hf_env"
    assert resolve_token("hf_flag", {**env, "HF_TOKEN": "hf_env"}) == "hf_flag"
    assert resolve_token(None, {"HF_TOKEN_PATH": str(tmp_path / "none")}) is None


def test_settings_from_env(tmp_path) -> None:
    s = Settings.from_env({"XDG_CACHE_HOME": str(tmp_path), "HF_ENDPOINT": "http://hub/", "HF_HUB_OFFLINE": "1"})
    assert s.home == tmp_path / "mreg"
    assert s.database_url == f"sqlite+aiosqlite:///{tmp_path / 'mreg' / 'catalog.db'}"
    assert s.endpoint == "http://hub" and s.offline
    s = Settings.from_env({"MREG_HOME": str(tmp_path / "h"), "MREG_DATABASE_URL": "sqlite+aiosqlite:///x.db"})
    assert s.home == tmp_path / "h" and s.database_url == "sqlite+aiosqlite:///x.db" and not s.offline


def test_state_plan_and_prefix() -> None:
    state = TransferState.plan(100, "k", 30)
    assert [(p.offset, p.size) for p in state.parts] == [(0, 30), (30, 30), (60, 30), (90, 10)]
    state.parts[0].done = 30
    state.parts[1].done = 5
    state.parts[2].done = 30
    assert state.contiguous_prefix() == 35 and state.completed == 65
    assert TransferState.plan(0, "k", 30).parts == [Part(0, 0)]


def test_state_forgets_written_bytes_the_file_no_longer_holds() -> None:
    """A hole at [40, 70) (freed bytes) takes back what the parts over it claimed; below ``checked_from`` nothing."""
    def data_end(pos: int) -> int:
        return pos if 40 <= pos < 70 else (40 if pos < 40 else 100)

    state = TransferState.plan(100, "k", 30)
    for part in state.parts:
        part.done = part.size
    state.parts[3].done = 4
    state.trim_to_data(data_end)
    assert [p.done for p in state.parts] == [30, 10, 0, 4]
    state = TransferState.plan(100, "k", 30)
    for part in state.parts:
        part.done = part.size
    state.trim_to_data(data_end, checked_from=65)  # [0, 65) was hashed from elsewhere: its holes are expected
    assert [p.done for p in state.parts] == [30, 30, 5, 10]


def test_readers_see_every_written_run_and_ask_for_bytes_once_bound() -> None:
    changes, wanted = [], []
    readers = Readers(lambda: changes.append(1))
    readers.want(25)  # before the download runs: kept for it
    assert readers.written_from(0) == 0 and wanted == []
    parts = [Part(0, 10, 10), Part(10, 10, 3), Part(20, 10, 10), Part(30, 5, 0)]
    readers.bind(parts, wanted.append)
    assert wanted == [25] and changes == [1]
    assert [readers.written_from(pos) for pos in (0, 5, 13, 15, 20, 25, 30, 34)] == [13, 13, 13, 15, 30, 30, 30, 34]
    readers.want(31)
    assert wanted == [25, 31]


def test_state_roundtrip_and_rejects_foreign(tmp_path) -> None:
    path = tmp_path / "s.json"
    state = TransferState.plan(100, "k", 30)
    state.parts[1].done = 7
    state.save(path)
    assert TransferState.load(path, 100, "k") == state
    assert TransferState.load(path, 101, "k") is None
    assert TransferState.load(path, 100, "other") is None
    path.write_text('{"size": 100, "key": "k", "parts": [{"offset": 0, "size": 100, "done": 101}]}')
    assert TransferState.load(path, 100, "k") is None
    path.write_text("not json")
    assert TransferState.load(path, 100, "k") is None


@pytest.mark.parametrize("step", [hasher_module.HASH_STEP, 64 * 1024])
def test_prefix_hasher_matches_hashlib(tmp_path, monkeypatch, step) -> None:
    """Hashed from the page cache in windows (here also many small ones, starting mid-page) as the prefix grows."""
    monkeypatch.setattr(hasher_module, "HASH_STEP", step)
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "f"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        hasher = PrefixHasher(fd, len(data), git_sha1=True)

        async def feed() -> None:
            for upto in (0, 10, 1_000_000, 1_000_000, 1_065_537, len(data)):
                await hasher.advance(upto)

        asyncio.run(feed())
    finally:
        os.close(fd)
    assert hasher.sha256 == hashlib.sha256(data).hexdigest()
    assert hasher.git_sha1 == git_sha1_bytes(data)


def test_prefix_hasher_from_a_prefix_hashed_elsewhere_reads_only_the_rest(tmp_path) -> None:
    """A taken-over fill's first bytes stay in the shared store (#13): the file holds zeros there."""
    data = os.urandom(1_000_003)
    path = tmp_path / "f"
    path.write_bytes(bytes(400_000) + data[400_000:])
    fd = os.open(path, os.O_RDONLY)
    try:
        hasher = PrefixHasher(fd, len(data), git_sha1=False, from_=Hashed(400_000, hashlib.sha256(data[:400_000])))
        asyncio.run(hasher.advance(len(data)))
    finally:
        os.close(fd)
    assert hasher.sha256 == hashlib.sha256(data).hexdigest()


def test_prefix_hasher_past_the_files_end_is_an_os_error(tmp_path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 5000)
    fd = os.open(path, os.O_RDONLY)
    try:
        hasher = PrefixHasher(fd, 10_000, git_sha1=False)
        with pytest.raises(OSError, match="partial file ended"):
            asyncio.run(hasher.advance(10_000))
    finally:
        os.close(fd)
