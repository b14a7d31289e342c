"""Byte and request budgets of header reads (issue #16), counted by the test hub: sharded safetensors
repos of 4, 20 and 100 shards with and without an index, and GGUFs with small and 262k-token
vocabularies. Every shard is larger than a 256 KiB first read, so over-reads are not cut short."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from mreg.registry.formats.safetensors import estimate_header_length
from mreg.registry.inspect.reading import parse_local, parse_remote
from mreg.registry.inspect.repo import read_headers
from mreg.registry.repo import RepoRef
from mreg.registry.upstream.hub import HubClient
from tests.pulling import FAST_RETRY
from tests.sharded_repos import Layout, write_checkpoint, write_vocab_gguf
from tests.testhub import HubRepo, TestHub

PER_FILE = 16_000
"""The issue's slack per safetensors file: bytes read <= 1.5 x the headers + 16 kB per file."""
LAYOUTS = {4: Layout("llama-8-layers", layers=8, shards=4), 20: Layout("llama-40-layers", layers=40, shards=20),
           100: Layout("llama-126-layers", layers=126, shards=100)}


@pytest.fixture
async def client(test_hub: TestHub) -> AsyncIterator[HubClient]:
    async with aiohttp.ClientSession() as session:
        yield HubClient(session, test_hub.endpoint, None, FAST_RETRY)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("checkpoints")


@pytest.mark.parametrize("with_index", [True, False], ids=["index", "no index"])
@pytest.mark.parametrize("shards", sorted(LAYOUTS))
async def test_sharded_safetensors_budget(test_hub: TestHub, client: HubClient, checkpoints: Path,
                                          shards: int, with_index: bool) -> None:
    layout = LAYOUTS[shards]
    files = write_checkpoint(layout, checkpoints / layout.name, with_index)
    repo = test_hub.add_repo(HubRepo(layout.repo_id))
    commit = repo.commit(files)
    remote = await client.list_files(RepoRef.parse(layout.repo_id), commit)
    read = await read_headers(client, RepoRef.parse(layout.repo_id), commit, remote)
    assert sorted(read.headers) == layout.shard_names() and bool(read.indexes) == with_index
    header_bytes = 0
    for path, result in read.headers.items():
        assert result.header == parse_local(checkpoints / layout.name / path)
        header_bytes += result.header.header_end
    moved = sum(r.stats.bytes for r in read.headers.values())
    assert moved <= 1.5 * header_bytes + PER_FILE * shards, (moved, header_bytes)
    assert all(r.stats.requests == 1 for r in read.headers.values())  # one ranged GET per shard
    small = 1 + with_index  # config.json and the index: a HEAD and a GET on the hub each
    assert test_hub.stats.requests["cdn"] == shards and test_hub.stats.cdn_bytes == moved
    assert test_hub.stats.requests["resolve"] == shards + 2 * small


def test_index_estimate_is_close(checkpoints: Path) -> None:
    """The estimate from an index's names and a shard's size is within 6% of the real header."""
    layout = LAYOUTS[20]
    write_checkpoint(layout, checkpoints / layout.name)
    names: dict[str, list[str]] = {}
    for tensor, shard in layout.weight_map().items():
        names.setdefault(shard, []).append(tensor)
    for shard, tensors in names.items():
        path = checkpoints / layout.name / shard
        real = parse_local(path).header_end
        assert 0.94 * real <= estimate_header_length(tensors, path.stat().st_size) <= 1.06 * real, shard


@pytest.mark.parametrize(("vocab", "tokenizer"), [(32_000, "llama"), (49_152, "gpt2"), (262_144, "llama"),
                                                  (262_144, "gpt2")])
async def test_gguf_budget(test_hub: TestHub, client: HubClient, tmp_path_factory: pytest.TempPathFactory,
                           vocab: int, tokenizer: str) -> None:
    path = write_vocab_gguf(tmp_path_factory.getbasetemp() / f"vocab-{vocab}-{tokenizer}.gguf", vocab, tokenizer)
    repo = test_hub.add_repo(HubRepo("testorg/vocab"))
    commit = repo.commit({path.name: path})
    header, stats = await parse_remote(client, RepoRef.parse("testorg/vocab"), commit, path.name)
    assert header == parse_local(path)
    assert stats.requests == 2  # the first window shows the vocabulary's size; the second reads the rest
    assert stats.bytes <= 1.5 * header.header_end + 1_000_000, (stats.bytes, header.header_end)
    assert header.header_end < stats.bytes < path.stat().st_size
