"""#14.7: damaged blobs. `mreg verify` quarantines a blob whose bytes changed on disk, `--repair` fetches the
file again from the test hub, verified, and `mreg pull` fetches a quarantined file again. Real files, the
real CLI in process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mreg.registry.blobs import LocalBlobStore
from tests.mreg_cli import mreg
from tests.testhub import TestHub, small_repo

pytest_plugins = ("tests.mreg_env",)

REPO = "org/tiny"


def flip_a_byte(blob: Path, offset: int = 10) -> None:
    """Change one byte of a stored blob in place (the size stays: only a re-hash sees it)."""
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[offset] ^= 0x01
    blob.write_bytes(bytes(data))


@pytest.fixture
def pulled(test_hub: TestHub, mreg_env: dict[str, str]) -> Path:
    """org/tiny pulled without its README (a file never downloaded); its snapshot folder."""
    test_hub.add_repo(small_repo(REPO))
    code, out, err = mreg("pull", REPO, "--exclude", "README.md")
    assert code == 0, err
    return Path(out.strip().splitlines()[-1])


def test_verify_quarantines_and_repair_fetches_again(pulled: Path, test_hub: TestHub, mreg_env: dict[str, str]) -> None:
    weights = pulled / "weights.bin"
    blob, good = weights.resolve(), weights.read_bytes()
    flip_a_byte(blob)

    code, out, err = mreg("verify", REPO)
    assert code == 4 and "BAD weights.bin: hash mismatch" in err and "quarantined" in err
    assert "README.md" not in err and "(1 not downloaded)" in out  # never downloaded: not BAD
    aside = LocalBlobStore(Path(mreg_env["MREG_HOME"])).quarantine_dir / blob.name
    assert not blob.exists() and aside.exists()  # no one serves it any more

    cdn_before = test_hub.stats.cdn_bytes
    code, out, err = mreg("verify", REPO, "--repair", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["ok"] is True and data["repaired"] == ["weights.bin"]
    states = {f["path"]: f["state"] for f in data["files"]}
    assert states == {"README.md": "not downloaded", "config.json": "verified",
                      "nested/dir/notes.txt": "verified", "weights.bin": "verified"}
    assert test_hub.stats.cdn_bytes - cdn_before == len(good)  # that file only, the README still left out
    assert weights.read_bytes() == good and not aside.exists()

    code, out, err = mreg("verify", REPO)
    assert code == 0 and "BAD" not in err and "3 of 4 files verified (1 not downloaded)" in out


def test_repair_of_a_small_file_and_of_a_clean_repo(pulled: Path, mreg_env: dict[str, str]) -> None:
    config = pulled / "config.json"
    good = config.read_bytes()
    flip_a_byte(config.resolve(), 2)
    code, out, err = mreg("verify", REPO, "--repair")
    assert code == 0, err
    assert "repaired config.json" in err and "BAD" not in err and "1 repaired" in out
    assert config.read_bytes() == good
    code, out, err = mreg("verify", REPO, "--repair")
    assert code == 0 and "0 repaired" in out


def test_pull_fetches_a_quarantined_file_again(pulled: Path, test_hub: TestHub, mreg_env: dict[str, str]) -> None:
    weights = pulled / "weights.bin"
    good = weights.read_bytes()
    flip_a_byte(weights.resolve())
    assert mreg("verify", REPO)[0] == 4
    code, out, err = mreg("pull", REPO, "--exclude", "README.md")
    assert code == 0, err
    assert f"fetched {len(good) / 1000:.1f} KB for 3 files" in err
    assert weights.read_bytes() == good
    assert mreg("verify", REPO)[0] == 0


def test_an_offline_pull_does_not_pass_off_a_quarantined_file(pulled: Path, monkeypatch: pytest.MonkeyPatch,
                                                              mreg_env: dict[str, str]) -> None:
    flip_a_byte((pulled / "weights.bin").resolve())
    assert mreg("verify", REPO)[0] == 4
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, err = mreg("pull", REPO, "--exclude", "README.md")
    assert code != 0 and "1 selected file(s)" in err and "(first: weights.bin)" in err
    code, out, err = mreg("verify", REPO, "--repair")
    assert code == 4 and "fetching it again failed: offline" in err


def test_repair_that_cannot_fetch_exits_4(pulled: Path, test_hub: TestHub, mreg_env: dict[str, str]) -> None:
    flip_a_byte((pulled / "weights.bin").resolve())
    del test_hub.repos[("model", REPO)]  # upstream lost it: nothing to fetch again
    code, out, err = mreg("verify", REPO, "--repair", "--json")
    assert code == 4
    data = json.loads(out)
    bad = [f for f in data["files"] if f["state"] == "bad"]
    assert data["ok"] is False and data["repaired"] == [] and [f["path"] for f in bad] == ["weights.bin"]
    assert "fetching it again failed" in bad[0]["problem"]
