"""`mreg inspect` and `mreg search` against the test hub, checked against the reference readers."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner
from safetensors import safe_open

from mreg.cli.main import main
from mreg.registry.errors import UsageError
from mreg.registry.catalog.search import parse_count
from tests.testhub import TestHub, small_repo

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
SMOLLM = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"


@pytest.fixture
def env(test_hub: TestHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("HF_TOKEN", "HF_HUB_OFFLINE", "MREG_DATABASE_URL", "HF_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", test_hub.endpoint)
    monkeypatch.setenv("MREG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    return tmp_path / "home"


def mreg(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def minilm_path(hub: TestHub) -> Path:
    blob = hub.repo(MINILM).head.files["model.safetensors"].blob
    assert blob.path is not None
    return Path(blob.path)


def test_inspect_json_matches_safetensors_and_reads_only_the_header(test_hub: TestHub, env: Path) -> None:
    code, out, err = mreg("inspect", MINILM, "--json", "--tensors")
    assert code == 0, err
    data = json.loads(out)
    assert set(data) >= {"repo", "commit", "architecture", "parameters", "files", "fetch"}
    assert data["architecture"] == "BertModel"
    [weights] = data["files"]
    with safe_open(minilm_path(test_hub), "np") as f:
        shapes = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
    assert {t["name"]: t["shape"] for t in weights["tensors"]} == shapes
    total = sum(math.prod(s) for s in shapes.values())
    assert data["parameters"]["total"] == total == weights["parameters"]
    header_bytes = weights["header_bytes"]
    assert header_bytes == 8 + struct.unpack("<Q", minilm_path(test_hub).read_bytes()[:8])[0]
    assert test_hub.stats.cdn_bytes <= 1.5 * header_bytes + 1_000_000
    assert data["fetch"]["requests"] <= 2


def test_inspect_gguf_text_and_json(test_hub: TestHub, env: Path) -> None:
    code, out, _ = mreg("inspect", SMOLLM)
    assert code == 0 and "architecture: llama" in out and "Q4_1" in out and "memory:" in out
    code, out, _ = mreg("inspect", SMOLLM, "--json")
    gguf = json.loads(out)["files"][0]["gguf"]
    assert gguf["file_type"] == "Q4_1" and gguf["context_length"] == 8192 and "im_start" in gguf["chat_template"]
    assert json.loads(out)["memory"]["weights_plus_kv_cache"]["F16"] > json.loads(out)["memory"]["weights_plus_kv_cache"]["Q4_K_M"]


def test_a_broken_file_does_not_stop_the_rest(test_hub: TestHub, env: Path) -> None:
    good = minilm_path(test_hub)
    test_hub.add_repo(small_repo("org/mixed", files={
        "good.safetensors": good, "bad.safetensors": struct.pack("<Q", 2**62) + b"{}" * 10,
        "trunc.gguf": b"GGUF\x03\x00\x00\x00" + struct.pack("<QQ", 2**60, 1)}))
    code, out, err = mreg("inspect", "org/mixed", "--json")
    assert code == 0, err
    files = {f["path"]: f for f in json.loads(out)["files"]}
    assert files["good.safetensors"]["tensor_count"] == 104
    assert "bad.safetensors" in files["bad.safetensors"]["error"]
    assert "trunc.gguf" in files["trunc.gguf"]["error"]


def test_pull_indexes_and_offline_inspect_and_search(test_hub: TestHub, env: Path, catalog_url: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """On either catalog database (MREG_DATABASE_URL): pulls and remote inspects index; offline, inspect
    and search read the index."""
    monkeypatch.setenv("MREG_DATABASE_URL", catalog_url)
    assert mreg("pull", SMOLLM)[0] == 0
    assert mreg("inspect", MINILM)[0] == 0
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    test_hub.stop()
    code, out, err = mreg("inspect", SMOLLM, "--json", "--tensors")
    assert code == 0, err
    data = json.loads(out)
    assert data["fetch"] == {"requests": 0, "bytes": 0} and len(data["files"][0]["tensors"]) == 272
    code, out, _ = mreg("search", "--json")
    assert {h["repo"] for h in json.loads(out)} == {SMOLLM, MINILM}
    for args, expected in [(["--format", "gguf"], {SMOLLM}), (["--quant", "q4_1"], {SMOLLM}),
                           (["--arch", "bert"], {MINILM}), (["--min-params", "100M"], {SMOLLM}),
                           (["--max-params", "22713728"], {MINILM}), (["minilm"], {MINILM}),
                           (["--quant", "Q4_K_M"], set())]:
        code, out, _ = mreg("search", *args, "--json")
        assert code == 0 and {h["repo"] for h in json.loads(out)} == expected, args
    code, _, err = mreg("search", "--min-params", "lots")
    assert code == 2 and "invalid parameter count" in err


@pytest.mark.parametrize("text, n", [("7B", 7 * 10**9), ("500M", 5 * 10**8), ("1.5b", 15 * 10**8),
                                     ("22713728", 22713728), ("2k", 2000)])
def test_parse_count(text: str, n: int) -> None:
    assert parse_count(text) == n


def test_parse_count_refuses_junk() -> None:
    with pytest.raises(UsageError):
        parse_count("7 bytes")


def test_sharded_repo_counts_the_indexed_shards_once(test_hub: TestHub, env: Path, tmp_path: Path) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    shards = {"model-00001-of-00002.safetensors": {"a.weight": np.zeros((4, 8), np.float16)},
              "model-00002-of-00002.safetensors": {"b.weight": np.zeros((8,), np.float32)}}
    files: dict[str, object] = {}
    for name, tensors in shards.items():
        save_file(tensors, str(tmp_path / name))
        files[name] = tmp_path / name
    save_file({"a.weight": np.zeros((4, 8), np.float16), "b.weight": np.zeros((8,), np.float32)},
              str(tmp_path / "consolidated.safetensors"))
    files["consolidated.safetensors"] = tmp_path / "consolidated.safetensors"
    files["model.safetensors.index.json"] = json.dumps(
        {"metadata": {"total_size": 96}, "weight_map": {"a.weight": "model-00001-of-00002.safetensors",
                                                        "b.weight": "model-00002-of-00002.safetensors"}})
    files["config.json"] = json.dumps({"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 2,
                                       "hidden_size": 8, "num_attention_heads": 2, "num_key_value_heads": 1,
                                       "max_position_embeddings": 16})
    test_hub.add_repo(small_repo("org/sharded", files=files))
    code, out, err = mreg("inspect", "org/sharded", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["parameters"] == {"total": 40, "by_dtype": {"F16": 32, "F32": 8}}
    assert data["architecture"] == "LlamaForCausalLM" and data["context_length"] == 16
    # KV cache: 2 (K, V) x 2 layers x 16 positions x 1 KV head x 4 dims x 2 bytes
    assert data["memory"]["kv_cache"] == 512
    assert data["memory"]["weights_plus_kv_cache"]["F16"] == 40 * 2 + 512
    assert len(data["files"]) == 3


def test_many_shards_are_read_with_a_first_read_sized_by_the_first_shard(test_hub: TestHub, env: Path,
                                                                         tmp_path: Path) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    files: dict[str, object] = {}
    for i in range(10):
        name = f"model-{i + 1:05d}-of-00010.safetensors"
        save_file({f"layers.{i}.weight": np.zeros((512, 512), np.float32)}, str(tmp_path / name))
        files[name] = tmp_path / name
    test_hub.add_repo(small_repo("org/ten-shards", files=files))
    code, out, err = mreg("inspect", "org/ten-shards", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["parameters"]["total"] == 10 * 512 * 512
    # One 256 KiB probe, then 16 KiB first reads: far below 10 x 256 KiB, and still one GET a shard.
    assert data["fetch"]["requests"] == 10
    assert data["fetch"]["bytes"] <= 256 * 1024 + 9 * 16 * 1024
