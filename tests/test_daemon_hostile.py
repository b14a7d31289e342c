"""Hostile requests to the daemon's own API get 4xx answers in the JSON error shape, never a 500, a dropped
connection or an action: cross-site POSTs (#14.5), schedules out of bounds (#14.11), JSON nested past Python's
stack, text no Modelfile can quote, and control characters in upstream's error messages (#14.12).
The daemon runs in process (aiohttp's test server, on a real socket) in front of the test hub."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from mreg.daemon.app import build_app
from mreg.daemon.config import ServeConfig
from mreg.daemon.serving.upstream import header_text
from mreg.daemon.serving.upstream import Answer
from mreg.registry.config import Settings
from tests.testhub import TestHub, small_repo

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
SMOLLM = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
EVIL = "http://evil.example"


@pytest.fixture
async def client(test_hub: TestHub, tmp_path: Path) -> AsyncIterator[TestClient]:
    config = ServeConfig(upstream=test_hub.endpoint, port=0)
    app = build_app(config, Settings.from_env({"MREG_HOME": str(tmp_path / "home")}))
    async with TestClient(TestServer(app, host="127.0.0.1")) as running:
        yield running


async def _error(response: ClientResponse) -> str:
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error"} and response.headers["X-Error-Message"] == body["error"]
    return body["error"]


async def _jobs(client: TestClient) -> list[str]:
    async with client.get("/v1/jobs") as response:
        return [job["repo"] for job in await response.json()]


async def test_cross_site_requests_change_nothing(client: TestClient) -> None:
    own = f"http://127.0.0.1:{client.port}"
    body = json.dumps({"repo": MINILM})
    # a drive-by page: a "simple" request (text/plain, no preflight), with its Origin
    async with client.post("/v1/jobs", data=body, headers={"Content-Type": "text/plain", "Origin": EVIL}) as r:
        assert r.status == 403 and "another origin" in await _error(r)
    async with client.post("/v1/jobs", data=body, headers={"Content-Type": "application/json", "Origin": EVIL}) as r:
        assert r.status == 403
    async with client.post("/v1/jobs", data=body, headers={"Content-Type": "application/json", "Origin": "null"}) as r:
        assert r.status == 403
    async with client.post("/v1/convert", data=json.dumps({"repo": MINILM, "quant": "q8_0"}),
                           headers={"Content-Type": "text/plain", "Origin": EVIL}) as r:
        assert r.status == 403
    # no Origin (not a browser) but not JSON either: still refused
    async with client.post("/v1/jobs", data=body, headers={"Content-Type": "text/plain"}) as r:
        assert r.status == 415 and "application/json" in await _error(r)
    async with client.post("/v1/jobs", data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
        assert r.status == 415
    assert await _jobs(client) == []
    # the daemon's own page, and clients that are not browsers, are served
    async with client.post("/v1/jobs", data=body, headers={"Content-Type": "application/json", "Origin": own}) as r:
        assert r.status == 201
    async with client.delete(f"/v1/jobs/{MINILM}", headers={"Origin": EVIL}) as r:
        assert r.status == 403
    assert await _jobs(client) == [MINILM]
    async with client.delete(f"/v1/jobs/{MINILM}") as r:
        assert r.status == 200
    # reads stay open to any page (the catalog is public on loopback), and the Hub's form POST still works
    async with client.get("/v1/jobs", headers={"Origin": EVIL}) as r:
        assert r.status == 200


@pytest.mark.parametrize("every", [1e-9, 0.5, 59, 1e308, -60, "0.000000001s", "59s", "367d", "1000w"])
async def test_schedules_out_of_bounds_are_refused(client: TestClient, every: float | str) -> None:
    async with client.post("/v1/jobs", json={"repo": MINILM, "every": every}) as r:
        assert r.status == 400 and "between 1m and a year" in await _error(r)
    assert await _jobs(client) == []


@pytest.mark.parametrize("every, seconds", [(60, 60.0), ("1m", 60.0), ("6h", 21600.0), ("366d", 366 * 86400.0)])
async def test_schedules_in_bounds_are_kept(client: TestClient, every: float | str, seconds: float) -> None:
    async with client.post("/v1/jobs", json={"repo": MINILM, "every": every}) as r:
        assert r.status == 201 and (await r.json())["every"] == seconds


@pytest.mark.parametrize("route", ["/v1/jobs", "/v1/convert"])
async def test_json_nested_past_the_stack_is_a_400(client: TestClient, route: str) -> None:
    for body in ("[" * 30_000 + "]" * 30_000, '{"a":' * 10_000 + "1" + "}" * 10_000):  # within 64 KiB
        async with client.post(route, data=body, headers={"Content-Type": "application/json"}) as r:
            assert r.status == 400 and "JSON" in await _error(r)


async def test_a_licence_no_modelfile_can_quote_is_a_clean_error(client: TestClient, test_hub: TestHub) -> None:
    gguf = next(e for name, e in test_hub.repo(SMOLLM).head.files.items() if name.endswith("Q4_1.gguf")).blob
    test_hub.add_repo(small_repo("org/odd-licence", files={"model-Q4_1.gguf": gguf,
                                                           "LICENSE": "All rights \x07 reserved"}))
    async with client.get("/v1/repos/org/odd-licence/modelfile") as r:
        assert 400 <= r.status < 500 and "cannot be written in a Modelfile" in await _error(r)


def test_control_characters_never_reach_a_header() -> None:
    hostile = "gated\r\nSet-Cookie: a=b\x00\x7f end"
    assert header_text(hostile) == "gated Set-Cookie: a=b  end"
    answer = Answer(401, {"X-Error-Code": "GatedRepo\r\n", "X-Error-Message": hostile}, None, b"")
    response = answer.response()
    assert response.headers["X-Error-Message"] == "gated Set-Cookie: a=b  end"
    assert response.headers["X-Error-Code"] == "GatedRepo "
    assert json.loads(response.body)["error"] == hostile  # the body keeps the text, JSON-escaped


async def test_gated_repos_jobs_are_listed_only_to_who_may_read_them(test_hub: TestHub, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """#14.14: the job list (and the page built from it) shows a gated repo's job, with its commit and size,
    only to the admin and to callers upstream lets read the repo."""
    test_hub.add_repo(small_repo("org/gated-job", gated="manual", allowed_users={"alice"},
                                 files={"config.json": "{}\n", "weights.bin": b"w" * 4096}))
    monkeypatch.setenv("HF_TOKEN", "hf_test_alice")  # the daemon's own token: its jobs may sync the gated repo
    config = ServeConfig(upstream=test_hub.endpoint, port=0, admin_token="s3cret")
    app = build_app(config, Settings.from_env({"MREG_HOME": str(tmp_path / "home")}))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        admin = {"Authorization": "Bearer s3cret"}
        for repo in ("org/gated-job", MINILM):
            async with client.post("/v1/jobs", json={"repo": repo, "include": ["*.json"]}, headers=admin) as r:
                assert r.status == 201
        for _ in range(600):  # until both jobs ran (a condition, polled)
            async with client.get("/v1/jobs", headers=admin) as r:
                listed = {job["repo"]: job for job in await r.json()}
            if all(job["status"] == "done" for job in listed.values()):
                break
            await asyncio.sleep(0.05)
        assert listed["org/gated-job"]["commit"] == test_hub.repo("org/gated-job").head.sha
        for headers in ({}, {"Authorization": "Bearer hf_test_bob"}, {"Authorization": "Bearer wrong"}):
            assert await _jobs_as(client, headers) == [MINILM]
        assert await _jobs_as(client, {"Authorization": "Bearer hf_test_alice"}) == ["org/gated-job", MINILM]
        async with client.get("/") as r:
            page = await r.text()
        assert MINILM in page and "org/gated-job" not in page


async def _jobs_as(client: TestClient, headers: dict[str, str]) -> list[str]:
    async with client.get("/v1/jobs", headers=headers) as response:
        assert response.status == 200
        return sorted(job["repo"] for job in await response.json())
