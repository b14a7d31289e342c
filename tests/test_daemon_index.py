"""What the daemon caches is indexed like `mreg pull` does: `mreg search` / `mreg inspect` (offline,
same MREG_HOME) see repos that clients filled through the mirror."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import hf_hub_download

from tests.daemons import ROOT, Daemon, running_daemon, wait_for
from tests.testhub import TestHub

SMOLLM = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INDEX_DEADLINE = 30.0


@pytest.fixture
def daemon(test_hub: TestHub, tmp_path: Path) -> Iterator[Daemon]:
    yield from running_daemon(test_hub, tmp_path)


def mreg_json(home: Path, *args: str) -> Any:
    """`python -m cli.main ARGS --json` on ``home``, offline; its JSON output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MREG_"))}
    env.update(MREG_HOME=str(home), HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-m", "mreg.cli.main", *args, "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_a_gguf_served_through_the_mirror_is_searchable_and_inspectable(daemon: Daemon, test_hub: TestHub,
                                                                          tmp_path: Path) -> None:
    assert mreg_json(daemon.home, "search", "--format", "gguf") == []
    hf_hub_download(SMOLLM, GGUF, cache_dir=tmp_path / "hf", endpoint=daemon.url, token=False)
    hits: list[Any] = []

    def listed() -> bool:
        hits[:] = mreg_json(daemon.home, "search", "--format", "gguf")
        return bool(hits)

    wait_for(listed, INDEX_DEADLINE, "the GGUF in `mreg search`")
    commit = test_hub.repo(SMOLLM).head.sha
    assert [(h["repo"], h["commit"], h["architecture"], h["quants"]) for h in hits] == [(SMOLLM, commit, "llama",
                                                                                         ["Q4_1"])]
    report = mreg_json(daemon.home, "inspect", SMOLLM)
    assert report["commit"] == commit and report["parameters"]["total"] == 134515008
    assert [(f["path"], f["gguf"]["file_type"]) for f in report["files"]] == [(GGUF, "Q4_1")]
