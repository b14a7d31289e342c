"""Discovery of a GGUF repo quantized from a safetensors repo, against the test hub's `/api/models`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from mreg.registry.gguf.discovery import discover, find_candidates
from mreg.registry.errors import NoGGUFError, QuantNotFoundError, UpstreamError
from mreg.registry.upstream.hub import HubClient
from mreg.registry.upstream.hub import client as client_module
from mreg.registry.repo import RepoRef
from tests.ggufs import gguf_repo, quant_files
from tests.mreg_cli import mreg
from tests.pulling import FAST_RETRY
from tests.testhub import HubRepo, TestHub, small_repo
from tests.testhub.fixtures import HfEnv

pytest_plugins = ("tests.mreg_env",)

BASE = "acme/Widget-7B"
QUANTIZED = f"base_model:quantized:{BASE}"


@pytest.fixture
async def client(test_hub: TestHub) -> AsyncIterator[HubClient]:
    async with aiohttp.ClientSession() as session:
        yield HubClient(session, test_hub.endpoint, retry=FAST_RETRY)


def add_family(hub: TestHub) -> None:
    """BASE (safetensors) and the GGUF repos around it, as the Hub has them."""
    hub.add_repo(small_repo(BASE, {"model.safetensors": b"\0" * 64, "config.json": "{}"}, owner="acme",
                            info={"tags": ["safetensors", "llama"], "downloads": 9000}))
    hub.add_repo(gguf_repo("acme/Widget-7B-GGUF", quant_files("Widget-7B", ["Q4_K_M", "Q8_0"]), base_model=BASE,
                           downloads=10))
    hub.add_repo(gguf_repo("bartowski/Widget-7B-GGUF", quant_files("Widget-7B", ["Q2_K", "Q3_K_L", "Q4_K_M"]),
                           base_model=BASE, downloads=1000))
    hub.add_repo(gguf_repo("someone/widget-7b-gguf", quant_files("w", ["Q5_K_M", "IQ4_XS"]), downloads=50))
    hub.add_repo(gguf_repo("other/Widget-7B-GGUF-old", quant_files("w", ["IQ1_S"]), downloads=5000))
    hub.add_repo(gguf_repo("other/Widget-7B-Instruct-GGUF", quant_files("w", ["IQ1_S"]),
                           base_model=f"{BASE}-Instruct", downloads=7000))
    private = gguf_repo("secret/Widget-7B-GGUF", quant_files("w", ["IQ1_M"]), base_model=BASE, downloads=99999)
    private.private = True
    hub.add_repo(private)


def test_model_search_speaks_the_hub_protocol(hf_env: HfEnv) -> None:
    from huggingface_hub import HfApi

    add_family(hf_env.hub)
    api = HfApi(endpoint=hf_env.hub.endpoint)
    found = [m.id for m in api.list_models(filter=["gguf", QUANTIZED], sort="downloads")]
    assert found == ["bartowski/Widget-7B-GGUF", "acme/Widget-7B-GGUF"]
    assert [m.id for m in api.list_models(author="acme", sort="downloads")] == [BASE, "acme/Widget-7B-GGUF"]
    assert {m.id for m in api.list_models(search="widget-7b-gguf")} == {
        "acme/Widget-7B-GGUF", "bartowski/Widget-7B-GGUF", "someone/widget-7b-gguf", "other/Widget-7B-GGUF-old"}
    assert len(list(api.list_models(search="Widget", limit=3))) == 3
    assert [m.downloads for m in api.list_models(filter="gguf", sort="downloads", limit=2)] == [7000, 5000]


async def test_search_follows_link_pagination(test_hub: TestHub, client: HubClient,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    add_family(test_hub)
    monkeypatch.setattr(client_module, "SEARCH_PAGE_SIZE", 2)
    hits = await client.search_models(filters=("gguf",), limit=5)
    assert [h.repo_id for h in hits] == ["other/Widget-7B-Instruct-GGUF", "other/Widget-7B-GGUF-old",
                                         "bartowski/Widget-7B-GGUF", "someone/widget-7b-gguf",
                                         "acme/Widget-7B-GGUF"]
    assert len(test_hub.stats.find(path_contains="/api/models?")) == 3
    assert [h.downloads for h in await client.search_models(filters=("gguf", QUANTIZED))] == [1000, 10]
    assert await client.search_models(search="no-such-model") == []
    test_hub.add_repo(HubRepo("../evil", info={"tags": ["gguf"]}))
    with pytest.raises(UpstreamError, match="malformed model id in a search answer: '../evil'"):
        await client.search_models(filters=("gguf",))


async def test_candidates_are_ranked_same_organisation_first(test_hub: TestHub, client: HubClient) -> None:
    add_family(test_hub)
    ranked = await find_candidates(client, RepoRef.parse(BASE))
    assert [(c.repo.repo_id, c.tagged, c.named) for c in ranked] == [
        ("acme/Widget-7B-GGUF", True, True), ("bartowski/Widget-7B-GGUF", True, True),
        ("someone/widget-7b-gguf", False, True)]


async def test_discovery_picks_a_repo_with_the_quant_and_says_why(test_hub: TestHub, client: HubClient) -> None:
    add_family(test_hub)
    base = RepoRef.parse(BASE)
    found = await discover(client, base, None)
    assert found.repo.repo_id == "acme/Widget-7B-GGUF" and found.choice.quant.label == "Q4_K_M"
    assert found.reason == (f"{BASE} has no GGUF files; using acme/Widget-7B-GGUF (same organisation, tagged "
                            f"{QUANTIZED}, named Widget-7B-GGUF, 10 downloads) for Q4_K_M")
    found = await discover(client, base, "Q3_K_L")
    assert found.repo.repo_id == "bartowski/Widget-7B-GGUF" and found.choice.file_type == "Q3_K_L"
    assert found.reason.endswith("for Q3_K_L; passed over acme/Widget-7B-GGUF has Q4_K_M, Q8_0")
    found = await discover(client, base, "IQ4_XS")
    assert found.repo.repo_id == "someone/widget-7b-gguf" and "named Widget-7B-GGUF, 50 downloads" in found.reason


async def test_discovery_failures_list_what_there_is(test_hub: TestHub, client: HubClient) -> None:
    add_family(test_hub)
    with pytest.raises(QuantNotFoundError) as caught:
        await discover(client, RepoRef.parse(BASE), "IQ1_M")
    assert str(caught.value) == (
        f"no GGUF repo quantized from {BASE} has IQ1_M: acme/Widget-7B-GGUF has Q4_K_M, Q8_0; "
        "bartowski/Widget-7B-GGUF has Q2_K, Q3_K_L, Q4_K_M; someone/widget-7b-gguf has IQ4_XS, Q5_K_M")
    test_hub.add_repo(small_repo("lonely/Model-1B", {"model.safetensors": b"\0" * 8}))
    with pytest.raises(NoGGUFError, match="lonely/Model-1B has no GGUF files and no GGUF repo quantized from it"):
        await discover(client, RepoRef.parse("lonely/Model-1B"), None)


async def test_a_gated_or_broken_candidate_is_passed_over(test_hub: TestHub, client: HubClient) -> None:
    add_family(test_hub)
    acme = test_hub.repo("acme/Widget-7B-GGUF")
    acme.commit({"Widget-7B-Q4_K_M.gguf": b"not a gguf"}, message="break it")
    found = await discover(client, RepoRef.parse(BASE), "Q4_K_M")
    assert found.repo.repo_id == "bartowski/Widget-7B-GGUF"
    assert "passed over acme/Widget-7B-GGUF: Widget-7B-Q4_K_M.gguf:" in found.reason


def test_pull_and_modelfile_of_a_safetensors_repo_use_the_discovered_gguf(test_hub: TestHub,
                                                                         mreg_env: dict[str, str]) -> None:
    add_family(test_hub)
    code, out, err = mreg("pull", BASE, "--quant", "q8_0", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["repo"] == "acme/Widget-7B-GGUF" and data["gguf"] == ["Widget-7B-Q8_0.gguf"]
    assert f"mreg: {BASE} has no GGUF files; using acme/Widget-7B-GGUF (same organisation" in err
    assert Path(data["path"], "Widget-7B-Q8_0.gguf").is_file()
    code, out, err = mreg("modelfile", BASE, "--quant", "Q2_K", "--json")
    assert code == 0, err
    assert json.loads(out)["repo"] == "bartowski/Widget-7B-GGUF" and json.loads(out)["quant"] == "Q2_K"
    code, out, err = mreg("pull", BASE, "--json")  # no --quant: the repo itself, as before
    assert code == 0 and {f["path"] for f in json.loads(out)["files"]} == {"model.safetensors", "config.json"}


def test_no_gguf_anywhere_is_one_line(test_hub: TestHub, mreg_env: dict[str, str]) -> None:
    test_hub.add_repo(HubRepo("lonely/Model-1B"))
    code, out, err = mreg("modelfile", "lonely/Model-1B")
    assert code == 3 and out == "" and err.count("\n") == 1
    assert "no GGUF repo quantized from it was found" in err
