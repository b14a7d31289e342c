"""The `mreg` command line, in process (click's runner) and as a real process for kill -9."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from mreg.cli.main import main
from tests.pulling import tree_bytes
from tests.testhub import TestHub, small_repo

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
SMOLLM = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def mreg_env(test_hub: TestHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {"HF_ENDPOINT": test_hub.endpoint, "MREG_HOME": str(tmp_path / "home"), "HF_HOME": str(tmp_path / "hf")}
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "MREG_DATABASE_URL", "HF_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def mreg(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_pull_json_then_path_ls_verify(test_hub: TestHub, mreg_env: dict[str, str]) -> None:
    code, out, err = mreg("pull", MINILM, "--json", "--exclude", "*.safetensors")
    assert code == 0, err
    data = json.loads(out)
    assert set(data) == {"repo", "commit", "path", "files", "upstream", "refetched"} and data["repo"] == MINILM
    assert data["refetched"] == []
    assert data["commit"] == test_hub.repo(MINILM).head.sha
    assert {"path", "size", "sha256"} == set(data["files"][0])
    assert "1_Pooling/config.json" in {f["path"] for f in data["files"]}

    code, out, _ = mreg("path", MINILM)
    assert code == 0 and out.strip() == data["path"]

    code, out, _ = mreg("ls", "--json")
    listed = json.loads(out)
    assert [r["repo"] for r in listed] == [MINILM] and listed[0]["complete"] is False

    code, out, err = mreg("verify", MINILM)  # #14.7: a file the pull left out is not "BAD"
    assert code == 0 and "BAD" not in err and "(1 not downloaded)" in out
    code, out, _ = mreg("verify", MINILM, "--json")
    states = {f["path"]: f["state"] for f in json.loads(out)["files"]}
    assert states["model.safetensors"] == "not downloaded" and states["config.json"] == "verified"


def test_ls_reads_the_catalog_at_database_url(test_hub: TestHub, mreg_env: dict[str, str], catalog_url: str) -> None:
    code, _, err = mreg("--database-url", catalog_url, "pull", MINILM, "--include", "*.json")
    assert code == 0, err
    assert "MREG_DATABASE_URL" not in os.environ  # the option held for that command only
    code, out, _ = mreg("--database-url", catalog_url, "ls", "--json")
    [listed] = json.loads(out)
    assert (code, listed["repo"], listed["commit"]) == (0, MINILM, test_hub.repo(MINILM).head.sha)
    code, out, _ = mreg("--database-url", catalog_url, "ls")
    assert code == 0 and out.startswith(MINILM) and "partial" in out
    assert mreg("ls", "--json")[1:] == ("[]\n", "")  # the default catalog (in MREG_HOME) knows nothing of it
    code, _, err = mreg("--database-url", "postgresql+asyncpg://nobody@127.0.0.1:1/none", "ls")
    assert code != 0 and err.startswith("mreg: error: catalog open failed") and err.count("\n") == 1


@pytest.mark.parametrize("url", ["sqlite:///{home}/catalog.db", "postgresql://reader:s3cret@127.0.0.1/mreg", "{home}/x.db"])
def test_pull_with_a_database_url_no_catalog_runs_on_fails_before_downloading(
        test_hub: TestHub, mreg_env: dict[str, str], url: str) -> None:
    """`mreg pull` opens its catalog after the weights' bytes are in (#16); a URL with a driver the catalog cannot
    use (a common slip: sqlite:// for sqlite+aiosqlite://) is still refused before anything is asked upstream,
    in one line that shows no password."""
    test_hub.stats.reset()
    code, out, err = mreg("--database-url", url.format(home=mreg_env["MREG_HOME"]), "pull", MINILM)
    assert code == 5 and out == "" and err.count("\n") == 1, err
    assert err.startswith("mreg: error: the catalog's database URL names ") and "sqlite+aiosqlite://" in err
    assert "s3cret" not in err
    assert sum(test_hub.stats.requests.values()) == 0 and test_hub.stats.cdn_bytes == 0
    assert not Path(mreg_env["MREG_HOME"]).exists()


def test_pull_fetches_again_a_blob_of_the_wrong_size(test_hub: TestHub, mreg_env: dict[str, str]) -> None:
    """#14.7: a stored blob that fails the cheap check (its size) is fetched again and replaced."""
    code, out, err = mreg("pull", MINILM, "--include", "config.json", "--include", "tokenizer.json")
    assert code == 0, err
    blob = (Path(out.strip().splitlines()[-1]) / "tokenizer.json").resolve()
    good = blob.read_bytes()
    blob.chmod(0o644)
    blob.write_bytes(good[: len(good) // 2])  # a stray write cut it short
    code, out, err = mreg("pull", MINILM, "--include", "config.json", "--include", "tokenizer.json")
    assert code == 0, err
    assert blob.read_bytes() == good
    code, out, _ = mreg("verify", MINILM)
    assert code == 0 and "BAD" not in out


def test_pull_names_a_file_fetched_again_after_failing_verification(test_hub: TestHub,
                                                                    mreg_env: dict[str, str]) -> None:
    """#14.9: the summary counts the refetch (a warning line, and --json's "refetched")."""
    test_hub.faults.corrupt("config.json", count=1)
    code, out, err = mreg("pull", MINILM, "--include", "config.json", "--json")
    assert code == 0, err
    assert json.loads(out)["refetched"] == ["config.json"]
    assert "mreg: warning: config.json failed verification and was fetched again" in err


def test_plain_pull_prints_the_snapshot_path_last(test_hub: TestHub, mreg_env: dict[str, str]) -> None:
    code, out, err = mreg("pull", MINILM)
    assert code == 0
    path = Path(out.strip().splitlines()[-1])
    assert (path / "model.safetensors").stat().st_size == 90868376
    assert "fetched" in err
    code, out, err = mreg("pull", MINILM)
    assert code == 0 and "fetched 0 B" in err
    code, out, _ = mreg("verify", MINILM, "--json")
    assert code == 0 and json.loads(out)["ok"] is True


def test_verify_detects_a_tampered_blob(test_hub: TestHub, mreg_env: dict[str, str]) -> None:
    code, out, _ = mreg("pull", MINILM, "--include", "config.json")
    blob = (Path(out.strip()) / "config.json").resolve()
    os.chmod(blob, 0o644)
    blob.write_text('{"tampered": true}')
    code, out, err = mreg("verify", MINILM)
    assert code == 4 and "BAD config.json: hash mismatch" in err


def test_rm_and_gc_free_space_safely(test_hub: TestHub, mreg_env: dict[str, str]) -> None:
    test_hub.add_repo(small_repo("org/a"))
    test_hub.add_repo(small_repo("org/b"))  # the same files: blobs shared with org/a
    assert mreg("pull", "org/a")[0] == 0
    code, out, _ = mreg("pull", "org/b")
    b_path = Path(out.strip())
    code, out, _ = mreg("rm", "org/a")
    assert code == 0 and "freed 0 B" in out
    assert tree_bytes(b_path)  # org/b's files still readable
    code, out, _ = mreg("rm", "org/b")
    assert code == 0 and "freed 0 B" not in out
    blobs = Path(mreg_env["MREG_HOME"]) / "blobs"
    assert not [p for p in blobs.rglob("*") if p.is_file()]
    code, out, _ = mreg("gc", "--json")
    assert code == 0 and json.loads(out)["removed_blobs"] == 0
    code, _, err = mreg("rm", "org/a")
    assert code == 2 and "not in the local store" in err


def test_errors_are_one_line_with_exit_codes(test_hub: TestHub, mreg_env: dict[str, str]) -> None:
    test_hub.add_repo(small_repo("org/gated", gated="manual", allowed_users={"alice"}))
    code, out, err = mreg("pull", "org/gated")
    assert code == 3 and err.startswith("mreg: error: org/gated is a gated repo") and err.count("\n") == 1
    code, _, err = mreg("pull", "org/missing")
    assert code == 3 and "not found" in err
    code, _, err = mreg("pull", "../etc")
    assert code == 2 and "invalid repo id" in err
    code, _, err = mreg("path", MINILM)
    assert code == 2 and "not in the local store" in err
    code, _, err = mreg("pull", "org/gated", "--token", "hf_test_alice")
    assert code == 0, err
    assert "hf_test_alice" not in err


def test_offline_env_uses_the_store(test_hub: TestHub, mreg_env: dict[str, str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    code, first, _ = mreg("pull", MINILM, "--include", "*.json")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    test_hub.stop()
    code, out, err = mreg("pull", MINILM, "--include", "*.json")
    assert code == 0 and out == first
    code, _, err = mreg("pull", MINILM)
    assert code == 5 and "not in the local store" in err


def _state_done(home: Path) -> tuple[int, int]:
    for state in (home / "partial").glob("*.state.json"):
        try:
            data = json.loads(state.read_text())
        except (OSError, ValueError):
            continue
        return sum(p["done"] for p in data["parts"]), data["size"]
    return 0, 1


def test_kill_9_then_resume_fetches_at_most_115_percent(test_hub: TestHub, mreg_env: dict[str, str]) -> None:
    """A pull killed at 40 % restarts where it stopped (counted at the CDN)."""
    gguf = test_hub.repo(SMOLLM).head.files["SmolLM2-135M-Instruct.Q4_1.gguf"].blob
    test_hub.faults.throttle = 8_000_000
    command = [sys.executable, "-m", "mreg.cli.main", "pull", SMOLLM, "--include", "*.gguf", "--connections", "4"]
    env = {**os.environ, **mreg_env}
    proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    home = Path(mreg_env["MREG_HOME"])
    deadline = time.monotonic() + 60
    while _state_done(home)[0] < 0.4 * gguf.size:
        assert proc.poll() is None and time.monotonic() < deadline, "pull ended before 40 %"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not list((home / "hub").rglob("*.gguf")), "nothing half-written may be published"
    test_hub.faults.throttle = None
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip().splitlines()[-1])
    assert (path / gguf_name(test_hub)).read_bytes() == gguf.read(0, gguf.size)
    assert test_hub.stats.cdn_bytes <= 1.15 * gguf.size


def gguf_name(hub: TestHub) -> str:
    return next(p for p in hub.repo(SMOLLM).head.files if p.endswith(".gguf"))


async def test_gc_spares_fresh_blobs_while_a_pull_runs(test_hub: TestHub, mreg_env: dict[str, str]) -> None:
    from mreg.registry.store import Store

    store = Store(Path(mreg_env["MREG_HOME"]))
    orphan = store.home / "tmp-orphan"
    store.home.mkdir(parents=True)
    orphan.write_bytes(b"published, not linked yet")
    sha = "0" * 63 + "1"
    store.publish_blob(orphan, sha)
    async with store.pulling_async():
        code, out, _ = await asyncio.to_thread(mreg, "gc", "--json")  # the CLI runs its own event loop
        assert code == 0 and json.loads(out)["removed_blobs"] == 0 and store.has_blob(sha)
    code, out, _ = await asyncio.to_thread(mreg, "gc", "--json")
    assert code == 0 and json.loads(out)["removed_blobs"] == 1 and not store.has_blob(sha)


def test_a_plain_pull_lists_the_repo_once(test_hub: TestHub, mreg_env: dict[str, str]) -> None:
    code, _, err = mreg("pull", MINILM)
    assert code == 0, err
    assert len(test_hub.stats.find(path_contains="/revision/")) == 1
    assert len(test_hub.stats.find(path_contains="/tree/")) == 1


def test_gc_frees_an_abandoned_partial_at_once_but_not_a_running_pulls(test_hub: TestHub,
                                                                      mreg_env: dict[str, str]) -> None:
    """#14.8: a partial download whose owner lock nobody holds (its pull was killed) is freed by the next gc,
    however fresh; one a running pull writes is not."""
    data = os.urandom(24 * 2**20)
    sha = hashlib.sha256(data).hexdigest()
    test_hub.add_repo(small_repo("org/big", {"big.bin": data}))
    test_hub.faults.throttle = 2_000_000
    command = [sys.executable, "-m", "mreg.cli.main", "pull", "org/big", "--connections", "2"]
    proc = subprocess.Popen(command, env={**os.environ, **mreg_env}, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    partial = Path(mreg_env["MREG_HOME"]) / "partial"
    deadline = time.monotonic() + 60
    while _state_done(Path(mreg_env["MREG_HOME"]))[0] == 0:
        assert proc.poll() is None and time.monotonic() < deadline, "the pull ended before it wrote anything"
        time.sleep(0.02)
    code, out, _ = mreg("gc", "--json")
    assert code == 0 and json.loads(out)["removed_partials"] == 0
    written = sorted(p.name for p in partial.iterdir() if not p.name.endswith(".tmp"))
    assert proc.poll() is None and written == [sha, f"{sha}.state.json"]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    code, out, _ = mreg("gc", "--json")
    assert code == 0 and json.loads(out)["removed_partials"] == 1
    assert list(partial.iterdir()) == []
