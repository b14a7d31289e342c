"""Reading headers from the test hub with ranged GETs: requests and bytes per file, one file's
failure not stopping the others, broken bodies and refused signed URLs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from gguf import GGUFWriter
from safetensors.numpy import save_file

from mreg.registry.errors import EntryNotFoundError, FormatError
from mreg.registry.formats import GGUFArray, HeaderParsed, parse_index
from mreg.registry.upstream.hub import HubClient
from mreg.registry.inspect.reading import FIRST_READ, FetchStats, parse_local, parse_remote, parse_remote_many
from mreg.registry.repo import RepoRef
from tests.pulling import FAST_RETRY
from tests.test_formats import MINILM, SMOLLM, write_gguf
from tests.testhub import HubRepo, TestHub

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
SMOLLM_ID = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
MiB = 1024 * 1024


@pytest.fixture
async def client(test_hub: TestHub) -> AsyncIterator[HubClient]:
    async with aiohttp.ClientSession() as session:
        yield HubClient(session, test_hub.endpoint, None, FAST_RETRY)


def within_budget(header: HeaderParsed, stats: FetchStats) -> bool:
    """The bytes budget: 1.5x the header plus 1 MB."""
    return stats.bytes <= 1.5 * header.header_end + 1_000_000


def served(hub: TestHub) -> tuple[int, int, int]:
    """(resolve HEADs, CDN GETs, CDN bytes) the hub saw."""
    return hub.stats.requests["resolve"], hub.stats.requests["cdn"], hub.stats.cdn_bytes


def add_repo(hub: TestHub, repo_id: str, files: dict[str, Any]) -> tuple[RepoRef, str]:
    repo = hub.add_repo(HubRepo(repo_id))
    return RepoRef.parse(repo_id), repo.commit(files)


@pytest.fixture(scope="module")
def big_vocab_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GGUF whose ~7 MB header is mostly a 262,144-token vocabulary (with scores and types)."""
    path = tmp_path_factory.mktemp("gguf") / "big-vocab-F16.gguf"
    w = GGUFWriter(path, "llama")
    w.add_context_length(4096)
    w.add_tokenizer_model("llama")
    lengths = np.random.default_rng(0).integers(1, 10, 262_144)
    w.add_token_list([f"{i:x}_" + "x" * int(n) for i, n in enumerate(lengths)])
    w.add_token_scores([0.0] * 262_144)
    w.add_token_types([1] * 262_144)
    w.add_bos_token_id(2)
    w.add_eos_token_id(200_000)
    w.add_chat_template("{% for m in messages %}{{ m.content }}{% endfor %}")
    w.add_tensor("token_embd.weight", np.zeros((8, 64), np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def many_keys_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GGUF with a 7 MB header of 7,000 one-kilobyte strings: no array to estimate from."""
    path = tmp_path_factory.mktemp("gguf") / "many-keys.gguf"
    w = GGUFWriter(path, "llama")
    for i in range(7000):
        w.add_string(f"test.key.{i}", chr(65 + i % 26) * 1000)
    w.add_tensor("t", np.zeros(64, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


async def test_minilm_header_in_one_request(test_hub: TestHub, client: HubClient) -> None:
    repo, commit = RepoRef.parse(MINILM_ID), test_hub.repo(MINILM_ID).head.sha
    header, stats = await parse_remote(client, repo, commit, "model.safetensors")
    assert header == parse_local(MINILM)
    assert stats == FetchStats(1, FIRST_READ) and served(test_hub) == (1, 1, FIRST_READ)
    assert within_budget(header, stats)


async def test_smollm_gguf_header(test_hub: TestHub, client: HubClient) -> None:
    repo, commit = RepoRef.parse(SMOLLM_ID), test_hub.repo(SMOLLM_ID).head.sha
    header, stats = await parse_remote(client, repo, commit, SMOLLM.name)
    assert header == parse_local(SMOLLM) and header.header_end == 1_785_664
    assert stats.requests == 2 and within_budget(header, stats)  # 256 KiB, then the rest sized from the vocabulary
    assert served(test_hub) == (1, stats.requests, stats.bytes)


@pytest.mark.parametrize("first_read", [FIRST_READ, MiB], ids=["default first read", "1 MiB first read"])
@pytest.mark.parametrize("fixture", ["big_vocab_gguf", "many_keys_gguf"])
async def test_7mb_gguf_header_in_at_most_8_requests(test_hub: TestHub, client: HubClient, fixture: str,
                                                     first_read: int, request: pytest.FixtureRequest) -> None:
    path: Path = request.getfixturevalue(fixture)
    repo, commit = add_repo(test_hub, "testorg/big-header", {path.name: path})
    header, stats = await parse_remote(client, repo, commit, path.name, first_read=first_read)
    assert header == parse_local(path) and header.header_end > 6_500_000
    assert stats.requests <= 8 and within_budget(header, stats)
    assert served(test_hub) == (1, stats.requests, stats.bytes)
    assert stats.bytes < path.stat().st_size or header.header_end + MiB > path.stat().st_size
    if fixture == "big_vocab_gguf":
        tokens = header.metadata["tokenizer.ggml.tokens"]
        assert isinstance(tokens, GGUFArray) and tokens.count == 262_144
        assert tokens.picked[200_000].startswith(f"{200_000:x}_")


def many_tensors(n: int) -> dict[str, np.ndarray]:
    """`n` one-float tensors with MoE-like long names (about 130 header bytes each)."""
    name = "model.layers.{}.block_sparse_moe.experts.{}.w{}.weight.with.a.long.name"
    return {name.format(i, i % 128, i % 3): np.ones(1, np.float32) for i in range(n)}


async def test_safetensors_one_request_under_the_first_read_two_over(test_hub: TestHub, client: HubClient,
                                                                      tmp_path: Path) -> None:
    save_file(many_tensors(100), tmp_path / "small.safetensors")
    save_file(many_tensors(4000), tmp_path / "large.safetensors")
    repo, commit = add_repo(test_hub, "testorg/headers", {p.name: p for p in tmp_path.iterdir()})
    small, small_stats = await parse_remote(client, repo, commit, "small.safetensors")
    assert small.header_end < FIRST_READ  # the file is smaller than the first read: read whole
    assert small_stats == FetchStats(1, (tmp_path / "small.safetensors").stat().st_size)
    large, large_stats = await parse_remote(client, repo, commit, "large.safetensors")
    assert large.header_end > FIRST_READ and large_stats == FetchStats(2, large.header_end)
    assert len(large.tensors) == 4000 and within_budget(large, large_stats)
    assert served(test_hub) == (2, 3, small_stats.bytes + large_stats.bytes)


async def test_parse_remote_many_collects_per_file_errors(test_hub: TestHub, client: HubClient, tmp_path: Path) -> None:
    save_file({"a": np.ones((2, 2), np.float32)}, tmp_path / "model-00001-of-00002.safetensors")
    save_file({"b": np.ones(3, np.float16)}, tmp_path / "model-00002-of-00002.safetensors")
    index = {"metadata": {"total_size": 22}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                                                            "b": "model-00002-of-00002.safetensors"}}
    good_gguf = write_gguf(tmp_path / "m-Q8_0.gguf").read_bytes()
    files: dict[str, Any] = {p.name: p for p in tmp_path.glob("*.safetensors")}
    files.update({"model.safetensors.index.json": json.dumps(index), "README.md": "# hi\n", "m-Q8_0.gguf": good_gguf,
                  "broken/model.safetensors": b"\x10\0\0\0\0\0\0\0{not json at all", "cut.gguf": good_gguf[:300]})
    repo, commit = add_repo(test_hub, "testorg/mixed", files)
    results = await parse_remote_many(client, repo, commit, concurrency=2)
    assert sorted(results) == ["broken/model.safetensors", "cut.gguf", "m-Q8_0.gguf",
                               "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    shards = parse_index(json.dumps(index).encode())
    found = {t.name: path for path in shards.shards for t in results[path].header.tensors}  # type: ignore[union-attr]
    assert found == dict(shards.weight_map)
    assert results["m-Q8_0.gguf"].header == parse_local(tmp_path / "m-Q8_0.gguf")
    for path, message in (("broken/model.safetensors", "not valid JSON"), ("cut.gguf", "truncated")):
        error = results[path].error
        assert isinstance(error, FormatError) and str(error).startswith(f"{path}: ") and message in str(error)
        assert results[path].header is None and results[path].stats.requests == 1
    missing = await parse_remote_many(client, repo, commit, ["nope.gguf", "m-Q8_0.gguf"])
    assert isinstance(missing["nope.gguf"].error, EntryNotFoundError) and missing["m-Q8_0.gguf"].error is None


async def test_parse_remote_many_bounds_concurrency(test_hub: TestHub, client: HubClient, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(6):
        save_file({"x": np.full(4, i, np.float32)}, tmp_path / f"shard-{i}.safetensors")
    repo, commit = add_repo(test_hub, "testorg/six", {p.name: p for p in tmp_path.iterdir()})
    in_flight, peak = 0, 0
    open_range = client.open_range

    async def counting(*args: Any, **kwargs: Any) -> aiohttp.ClientResponse:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await open_range(*args, **kwargs)
        finally:
            in_flight -= 1

    monkeypatch.setattr(client, "open_range", counting)
    results = await parse_remote_many(client, repo, commit, concurrency=2)
    assert len(results) == 6 and all(r.error is None for r in results.values()) and peak <= 2


async def test_broken_body_is_retried(test_hub: TestHub, client: HubClient) -> None:
    repo, commit = RepoRef.parse(MINILM_ID), test_hub.repo(MINILM_ID).head.sha
    test_hub.faults.cut_body(1000)
    header, stats = await parse_remote(client, repo, commit, "model.safetensors")
    assert header == parse_local(MINILM) and stats.requests == 2 and served(test_hub)[:2] == (1, 2)


async def test_refused_signed_url_is_located_again(test_hub: TestHub, client: HubClient) -> None:
    repo, commit = RepoRef.parse(MINILM_ID), test_hub.repo(MINILM_ID).head.sha
    test_hub.faults.fail(403, route="cdn")
    header, stats = await parse_remote(client, repo, commit, "model.safetensors")
    assert header == parse_local(MINILM) and stats.requests == 2 and served(test_hub)[:2] == (2, 2)
