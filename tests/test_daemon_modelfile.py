"""The daemon's `GET /v1/repos/{repo}/modelfile`: the same Modelfile `mreg modelfile` writes, with
the file-level access check of gated repos."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.modelfile_parser import load
from tests.daemons import Daemon, running_daemon
from tests.testhub import TestHub, small_repo

SMOLLM = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"


@pytest.fixture
def daemon(test_hub: TestHub, tmp_path: Path) -> Iterator[Daemon]:
    yield from running_daemon(test_hub, tmp_path)


def test_modelfile_route_pulls_and_renders(daemon: Daemon, test_hub: TestHub) -> None:
    status, headers, body = daemon.get(f"/v1/repos/{SMOLLM}/modelfile?quant=q4_1")
    assert status == 200, body
    assert headers["X-Repo-Commit"] == test_hub.repo(SMOLLM).head.sha and headers["X-Mreg-Quant"] == "Q4_1"
    parsed = load(body.decode())
    assert parsed.model == "./SmolLM2-135M-Instruct.Q4_1.gguf"  # the path in the repo, never the daemon's disk
    assert str(daemon.home) not in body.decode()
    assert "<|im_start|>" in parsed.template and "<|im_end|>" in parsed.parameters["stop"]
    status, _, body = daemon.get(f"/v1/repos/{SMOLLM}/modelfile?quant=Q8_0")
    assert status == 404 and b"Q4_1" in body
    status, _, body = daemon.get(f"/v1/repos/{SMOLLM}/modelfile?quant=q9_z")
    assert status in (400, 404)


def test_gated_modelfile_needs_an_approved_token(daemon: Daemon, test_hub: TestHub) -> None:
    smollm = test_hub.repo(SMOLLM).head.files
    test_hub.add_repo(small_repo("org/gated-gguf", gated="manual", allowed_users={"alice"},
                                 files={name: entry.blob for name, entry in smollm.items()}))
    status, _, _ = daemon.get("/v1/repos/org/gated-gguf/modelfile", {"Authorization": "Bearer hf_test_alice"})
    assert status == 200
    status, headers, _ = daemon.get("/v1/repos/org/gated-gguf/modelfile")
    assert status == 401 and headers["X-Error-Code"] == "GatedRepo"
    status, headers, _ = daemon.get("/v1/repos/org/gated-gguf/modelfile", {"Authorization": "Bearer hf_test_bob"})
    assert status == 403 and headers["X-Error-Code"] == "GatedRepo"
