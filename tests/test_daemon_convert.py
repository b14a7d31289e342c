"""The daemon's `POST /v1/convert` job and `GET /v1/convert/{id}`."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import convert_fixtures as fx
from tests.daemons import Daemon, running_daemon, start_daemon, wait_for
from tests.gguf_file import GGUFFile
from tests.test_convert import _hub_repo
from tests.testhub import TestHub


@pytest.fixture
def daemon(test_hub: TestHub, tmp_path: Path) -> Iterator[Daemon]:
    yield from running_daemon(test_hub, tmp_path)


def _post(daemon: Daemon, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(daemon.url + "/v1/convert", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {"body": exc.read().decode()}


def _job(daemon: Daemon, job_id: str) -> dict:
    return json.loads(daemon.get(f"/v1/convert/{job_id}")[2])


def test_convert_job_runs_and_is_shared(daemon: Daemon, test_hub: TestHub, tmp_path: Path) -> None:
    folder = fx.random_repo(tmp_path / "tiny", "LlamaForCausalLM", "smollm", layers=2)
    test_hub.add_repo(_hub_repo("org/tiny", folder))
    status, job = _post(daemon, json.dumps({"repo": "org/tiny", "quant": "q8_0"}).encode())
    assert status in (200, 202), job
    assert job["commit"] == test_hub.repo("org/tiny").head.sha and job["quant"] == "Q8_0"
    again = _post(daemon, json.dumps({"repo": "org/tiny", "quant": "Q8_0"}).encode())[1]
    assert again["id"] == job["id"]

    def done() -> bool:
        return json.loads(daemon.get(f"/v1/convert/{job['id']}")[2])["status"] != "running"

    wait_for(done, 120, "the conversion")
    final = json.loads(daemon.get(f"/v1/convert/{job['id']}")[2])
    assert final["status"] == "complete", final
    assert GGUFFile(final["path"]).fields["general.file_type"].contents() == 7
    assert _post(daemon, b"not json")[0] == 400
    assert _post(daemon, json.dumps({"repo": "org/tiny", "quant": "iq1_s"}).encode())[0] == 400
    assert daemon.get("/v1/convert/nope")[0] == 404


def test_a_restarted_daemon_still_reports_its_jobs(test_hub: TestHub, tmp_path: Path) -> None:
    for name in ("org/tiny", "org/stuck"):
        test_hub.add_repo(_hub_repo(name, fx.random_repo(tmp_path / name, "LlamaForCausalLM", "smollm", layers=2)))
    first = start_daemon(tmp_path / "home", test_hub.endpoint)
    try:
        done = _post(first, json.dumps({"repo": "org/tiny", "quant": "q8_0"}).encode())[1]
        wait_for(lambda: _job(first, done["id"])["status"] != "running", 120, "the conversion")
        complete = _job(first, done["id"])
        assert complete["status"] == "complete", complete
        test_hub.faults.stall(0, 60, count=100)  # the second conversion's download hangs: it is still running
        status, stuck = _post(first, json.dumps({"repo": "org/stuck", "quant": "q8_0"}).encode())
        assert (status, stuck["status"]) == (202, "running")
        wait_for(lambda: test_hub.stats.find(path_contains="safetensors") != [], 30, "the stuck download")
    finally:
        assert first.stop() == 0, first.log.read_text()
    test_hub.faults.reset()
    second = start_daemon(tmp_path / "home", test_hub.endpoint)
    try:
        assert _job(second, done["id"]) == complete
        interrupted = _job(second, stuck["id"])
        assert interrupted["status"] == "failed" and "daemon stopped" in interrupted["error"], interrupted
        status, anew = _post(second, json.dumps({"repo": "org/stuck", "quant": "q8_0"}).encode())
        assert status == 202 and anew["id"] != stuck["id"]
        wait_for(lambda: _job(second, anew["id"])["status"] != "running", 120, "the conversion asked again")
        assert _job(second, anew["id"])["status"] == "complete"
        assert _post(second, json.dumps({"repo": "org/tiny", "quant": "Q8_0"}).encode()) == (200, complete)
    finally:
        assert second.stop() == 0, second.log.read_text()
