"""`mreg rm` and `mreg gc` next to a running `mreg serve` on the same store (#14.6)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import hf_hub_download, snapshot_download

from tests.daemons import Daemon, running_daemon
from tests.mreg_cli import mreg
from tests.testhub import TestHub, small_repo

pytestmark = pytest.mark.timeout(120)
pytest_plugins = ("tests.mreg_env",)

REPO = "testorg/tiny-model"


@pytest.fixture
def daemon(test_hub: TestHub, tmp_path: Path, mreg_env: dict[str, str]) -> Iterator[Daemon]:
    """The mirror in this process, on the same MREG_HOME as `mreg` (tests.mreg_cli)."""
    yield from running_daemon(test_hub, tmp_path)


def listed() -> list[tuple[str, bool]]:
    code, out, err = mreg("ls", "--json")
    assert code == 0, err
    return [(r["repo"], r["complete"]) for r in json.loads(out)]


def test_rm_then_the_daemon_fetches_stores_and_catalogs_the_repo_again(daemon: Daemon, test_hub: TestHub,
                                                                       tmp_path: Path) -> None:
    test_hub.add_repo(small_repo(REPO))
    snapshot_download(REPO, cache_dir=tmp_path / "c1", endpoint=daemon.url, token=False)
    assert listed() == [(REPO, True)]
    code, out, err = mreg("rm", REPO)
    assert code == 0, err
    assert listed() == []
    folder = Path(snapshot_download(REPO, cache_dir=tmp_path / "c2", endpoint=daemon.url, token=False))
    assert listed() == [(REPO, True)]
