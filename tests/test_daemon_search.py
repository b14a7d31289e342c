"""The daemon's `GET /api/models` search: passed upstream with the caller's query and token, its
pages linked through the mirror, judged by the real `HfApi.list_models`; with the daemon's catalog on
SQLite and on PostgreSQL (the `catalog_url` fixture)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from tests.daemons import Daemon, running_daemon, start_daemon
from tests.testhub import TestHub, api as testhub_api, small_repo

SMOLLM = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
NAMES = ("alpha", "beta", "gamma")


@pytest.fixture
def daemon(test_hub: TestHub, tmp_path: Path, catalog_url: str) -> Iterator[Daemon]:
    yield from running_daemon(test_hub, tmp_path, database_url=catalog_url)


def test_model_search_pages_through_the_mirror_with_the_callers_token(daemon: Daemon, test_hub: TestHub,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(testhub_api, "SEARCH_PAGE_MAX", 2)
    for name in NAMES:
        test_hub.add_repo(small_repo(f"searchorg/{name}", info={"tags": ["gguf"] if name != "beta" else []}))
    test_hub.add_repo(small_repo("searchorg/secret", private=True, info={"tags": ["gguf"]}))
    status, headers, _ = daemon.get("/api/models?author=searchorg")
    assert status == 200 and headers["Link"].startswith(f"<{daemon.url}/api/models?")
    test_hub.stats.reset()
    anonymous = HfApi(endpoint=daemon.url, token=False)
    assert [m.id for m in anonymous.list_models(author="searchorg")] == [f"searchorg/{n}" for n in NAMES]
    assert len(test_hub.stats.find(method="GET", path_contains="/api/models")) == 2  # two pages, upstream
    owner = HfApi(endpoint=daemon.url, token="hf_test_owner")
    assert [m.id for m in owner.list_models(author="searchorg", filter="gguf")] == [
        "searchorg/alpha", "searchorg/gamma", "searchorg/secret"]
    assert [m.id for m in anonymous.list_models(search="smollm2", sort="downloads")] == [SMOLLM]
    status, headers, _ = daemon.get("/api/models?sort=nonsense")
    assert status == 400 and headers["X-Error-Message"]


def test_search_offline_is_a_504_that_says_why(daemon: Daemon, test_hub: TestHub) -> None:
    offline = start_daemon(daemon.home.parent / "offline-home", test_hub.endpoint, "--offline")
    try:
        for route in ("/api/models?search=smol", "/api/datasets"):
            status, headers, _ = offline.get(route)
            assert status == 504 and "offline" in headers["X-Error-Message"]
    finally:
        assert offline.stop() == 0
