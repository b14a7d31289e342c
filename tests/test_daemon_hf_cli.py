"""The `hf download` command line, with default settings (xet included), through the mirror."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backends import Backend
from tests.daemons import Daemon, running_daemon
from tests.test_daemon import MINILM
from tests.testhub import TestHub

HF = Path(sys.executable).parent / "hf"


@pytest.fixture
def daemon(test_hub: TestHub, tmp_path: Path, backend: Backend) -> Iterator[Daemon]:
    yield from running_daemon(test_hub, tmp_path, backend=backend)


def test_hf_download_through_the_mirror(daemon: Daemon, test_hub: TestHub, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(HF_ENDPOINT=daemon.url, HF_HOME=str(tmp_path / "hf-home"))
    out = tmp_path / "out"
    done = subprocess.run([str(HF), "download", MINILM, "--local-dir", str(out)], env=env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    head = test_hub.repo(MINILM).head
    for path, entry in head.files.items():
        assert (out / path).read_bytes() == entry.blob.read(0, entry.blob.size), path
    assert test_hub.stats.cdn_authorization_seen == []
