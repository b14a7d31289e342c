"""What the catalog API is built on, on a real SQLite catalog and store: revisions with stored totals,
pages of tensors, tensors per dtype, and a repo's overview and detail (``registry.catalog.overview``)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mreg.registry.catalog import Catalog, FileRecord, HeaderRecord
from mreg.registry.formats.events import TensorInfo
from mreg.registry.catalog.overview import find_commit, overviews, repo_detail
from mreg.registry.repo import RepoRef
from mreg.registry.store import Store
from mreg.registry.units import human_count, human_size

REPO = RepoRef.parse("org/model")
OLD, NEW = "a" * 40, "b" * 40
CONFIG = json.dumps({"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 2, "hidden_size": 8,
                     "num_attention_heads": 2, "max_position_embeddings": 64}).encode()
CONFIG_SHA = hashlib.sha256(CONFIG).hexdigest()
FILES = [FileRecord("config.json", len(CONFIG), "c" * 40), FileRecord("a.safetensors", 1000, "d" * 40, "1" * 64),
         FileRecord("b.safetensors", 500, "e" * 40, "2" * 64), FileRecord("m-Q8_0.gguf", 300, "f" * 40, "3" * 64)]


def tensors(prefix: str, n: int, dtype: str, start: int = 100) -> list[TensorInfo]:
    return [TensorInfo(f"{prefix}.{i}", dtype, (2, 3), start + 24 * i, 24) for i in range(n)]


@pytest.fixture
async def catalog(tmp_path: Path):
    cat = await Catalog.open(f"sqlite+aiosqlite:///{tmp_path / 'catalog.db'}")
    await cat.record_revision(REPO, OLD, FILES[:2], ref="v1")
    await cat.mark_file_complete(REPO, OLD, "a.safetensors", "1" * 64, 1000)
    await cat.record_revision(REPO, NEW, FILES, ref="main")
    await cat.mark_file_complete(REPO, NEW, "config.json", CONFIG_SHA, len(CONFIG))
    await cat.record_header(REPO, NEW, HeaderRecord("a.safetensors", "safetensors", 100, 5, 30, {"F32": 24, "I64": 6}),
                            tensors("a.ids", 1, "I64", start=196) + tensors("a", 4, "F32"))
    await cat.record_header(REPO, NEW, HeaderRecord("b.safetensors", "safetensors", 100, 3, 18, {"F32": 18}),
                            tensors("b", 3, "F32"))
    await cat.set_architecture(REPO, NEW, "LlamaForCausalLM")
    yield cat
    await cat.close()


async def test_revisions_newest_first_with_stored_totals(catalog: Catalog) -> None:
    newest, old = await catalog.revisions(REPO)
    assert (newest.commit, newest.refs, newest.files, newest.size) == (NEW, ("main",), 4, sum(f.size for f in FILES))
    assert (newest.stored_files, newest.stored_size, newest.complete) == (1, len(CONFIG), False)
    assert (old.commit, old.refs, old.files, old.stored_files, old.stored_size) == (OLD, ("v1",), 2, 1, 1000)
    await catalog.mark_revision_complete(REPO, OLD)
    assert [r.commit for r in await catalog.revisions(REPO)] == [OLD, NEW]  # complete ones first
    assert [r.commit for r in await catalog.list_repos()] == [OLD]
    assert await catalog.revisions(RepoRef.parse("org/other")) == []


async def test_tensor_pages_and_counts(catalog: Catalog) -> None:
    everything = await catalog.tensor_page(REPO, NEW, None, 0, 100)
    assert everything.total == 8
    assert [(path, t.name) for path, t in everything.tensors][:6] == [
        ("a.safetensors", "a.0"), ("a.safetensors", "a.1"), ("a.safetensors", "a.2"), ("a.safetensors", "a.3"),
        ("a.safetensors", "a.ids.0"), ("b.safetensors", "b.0")]
    page = await catalog.tensor_page(REPO, NEW, None, 3, 3)
    assert page.total == 8 and [t.name for _, t in page.tensors] == ["a.3", "a.ids.0", "b.0"]
    one = await catalog.tensor_page(REPO, NEW, "b.safetensors", 1, 10)
    assert one.total == 3 and [t.name for _, t in one.tensors] == ["b.1", "b.2"]
    assert one.tensors[0][1] == TensorInfo("b.1", "F32", (2, 3), 124, 24)
    assert (await catalog.tensor_page(REPO, NEW, "nope", 0, 10)).total == 0
    assert (await catalog.tensor_page(REPO, OLD, None, 0, 10)).total == 0
    assert await catalog.tensor_counts(REPO, NEW) == {"F32": 7, "I64": 1}


async def test_overview_and_detail(catalog: Catalog, tmp_path: Path) -> None:
    (listed,) = await overviews(catalog)
    assert (listed.summary.commit, listed.architecture, listed.parameters, listed.formats, listed.quants) == (
        NEW, "LlamaForCausalLM", 48, ["safetensors"], [])
    assert listed.by_dtype == {"F32": 42, "I64": 6}
    assert await find_commit(catalog, REPO, None) == NEW
    assert await find_commit(catalog, REPO, "v1") == OLD and await find_commit(catalog, REPO, "bbbbbbb") == NEW
    assert await find_commit(catalog, REPO, "v2") is None
    store = Store(tmp_path / "store")
    without_config = await repo_detail(catalog, store, REPO, NEW)
    assert without_config is not None and without_config.shape is None  # config.json's blob is not stored
    blob = tmp_path / "store" / "config.tmp"
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(CONFIG)
    store.publish_blob(blob, CONFIG_SHA)
    detail = await repo_detail(catalog, store, REPO, NEW)
    assert detail is not None and [r.commit for r in detail.revisions] == [NEW, OLD]
    assert [f.path for f in detail.files] == sorted(f.path for f in FILES)
    assert detail.tensor_counts == {"F32": 7, "I64": 1}
    assert [(q.label, q.files) for q in detail.quant_sets] == [("Q8_0", ("m-Q8_0.gguf",))]
    assert detail.shape is not None and detail.shape.context_length == 64 and detail.memory["F16"] > 96
    assert await repo_detail(catalog, store, REPO, "c" * 40) is None


def test_units() -> None:
    assert [human_size(n) for n in (0, 999, 1000, 91_600_000, 2 * 10**15)] == [
        "0 B", "999 B", "1.0 KB", "91.6 MB", "2000.0 TB"]
    assert [human_count(n) for n in (0, 999, 1000, 22_713_728, 7 * 10**9)] == ["0", "999", "1.00K", "22.71M", "7.00B"]
