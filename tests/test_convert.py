"""`mreg convert`: safetensors → GGUF as llama.cpp converts and quantizes them.

The fast tests convert a small Llama from the test hub through the CLI and check the result with
llama.cpp itself (llama-cpp-python loads and runs it). The slow ones compare against llama.cpp's
own pipeline (`convert_hf_to_gguf.py` from its sources, then `llama_model_quantize`): the same
tensor names, types and bytes, and the same greedy tokens.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from mreg.registry.catalog import Catalog
from mreg.registry.config import Settings
from mreg.registry.convert.mixes import MIXES, parse_mix, tensor_types
from mreg.registry.convert.plan import plan_conversion
from mreg.registry.convert.vocab import CHECK_TEXT, pre_tokenizer_name
from mreg.registry.errors import UsageError
from mreg.registry.repo import RepoRef
from tests import chat_templates
from tests import convert_fixtures as fx
from tests.gguf_file import GGUFFile
from tests.modelfile_parser import load
from tests.mreg_cli import mreg
from tests.testhub import TestHub
from tests.testhub.repos import HubRepo

pytest_plugins = ("tests.mreg_env",)

K_MIXES = ("Q4_K_M", "Q4_K_S", "Q5_K_M", "Q5_K_S", "Q6_K")
LOW_BIT_MIXES = ("Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L")
LOW_BIT_MODELS = ("smollm2", "qwen2", "llama-spm")
"""The slow comparisons' models for the low-bit mixes (CI's time): rows that fall back (SmolLM2's 576), an
untied output (Qwen2) and 256-wide rows with a SentencePiece vocabulary (llama-spm)."""
PROMPT = "The capital of France is"


def _hub_repo(repo_id: str, folder: Path) -> HubRepo:
    repo = HubRepo(repo_id, owner=repo_id.partition("/")[0], info={"library_name": "transformers"})
    repo.commit({p.name: p for p in sorted(folder.iterdir())}, message="add model")
    return repo


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two layers, hidden 256, SmolLM2's vocabulary (no download needed)."""
    return fx.random_repo(tmp_path_factory.mktemp("tiny") / "tiny", "LlamaForCausalLM", "smollm", layers=2)


def _tensors(path: Path) -> dict[str, tuple[str, tuple[int, ...], bytes]]:
    return {t.name: (t.tensor_type.name, tuple(int(n) for n in t.shape), t.data.tobytes())
            for t in GGUFFile(path).tensors}


# -- per-tensor types --------------------------------------------------------------------------

def _layered(n_layer: int, row: int = 256) -> list[tuple[str, tuple[int, ...]]]:
    tensors: list[tuple[str, tuple[int, ...]]] = [("token_embd.weight", (row, 1000)), ("output_norm.weight", (row,))]
    for i in range(n_layer):
        for kind in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up"):
            tensors.append((f"blk.{i}.{kind}.weight", (row, row)))
        tensors += [(f"blk.{i}.ffn_down.weight", (row, row)), (f"blk.{i}.attn_norm.weight", (row,))]
    return tensors


def test_q4_k_m_gives_more_bits_to_first_last_and_every_third_layer() -> None:
    types = tensor_types(_layered(16), MIXES["Q4_K_M"], 16)
    more = {i for i in range(16) if types[f"blk.{i}.attn_v.weight"] == T.Q6_K}
    assert more == {0, 1, 4, 7, 10, 13, 14, 15}
    assert {i for i in range(16) if types[f"blk.{i}.ffn_down.weight"] == T.Q6_K} == more
    assert types["token_embd.weight"] == T.Q6_K  # tied: quantized as the output
    assert types["blk.3.attn_q.weight"] == T.Q4_K and types["output_norm.weight"] == T.F32


def test_q4_k_s_and_row_length_fallbacks() -> None:
    types = tensor_types(_layered(16), MIXES["Q4_K_S"], 16)
    assert [types[f"blk.{i}.attn_v.weight"] for i in range(6)] == [T.Q5_K] * 4 + [T.Q4_K] * 2
    assert [types[f"blk.{i}.ffn_down.weight"] for i in range(3)] == [T.Q5_K, T.Q5_K, T.Q4_K]
    odd = tensor_types(_layered(8, row=576), MIXES["Q4_K_M"], 8)  # 576 is not a multiple of 256
    assert odd["blk.2.attn_q.weight"] == T.Q5_0 and odd["blk.0.attn_v.weight"] == T.Q8_0
    assert odd["token_embd.weight"] == T.Q8_0
    assert tensor_types(_layered(8, row=80), MIXES["Q4_K_M"], 8)["blk.2.attn_q.weight"] == T.F16


def test_q3_k_mixes_move_attn_v_ffn_down_and_attn_output_up() -> None:
    m = tensor_types(_layered(32), MIXES["Q3_K_M"], 32)
    assert [m[f"blk.{i}.attn_v.weight"] for i in range(4)] == [T.Q5_K, T.Q5_K, T.Q4_K, T.Q4_K]
    assert [m[f"blk.{i}.ffn_down.weight"] for i in range(4)] == [T.Q5_K, T.Q5_K, T.Q4_K, T.Q4_K]  # 32 // 16 = 2
    assert m["blk.31.ffn_down.weight"] == T.Q4_K and m["blk.5.attn_output.weight"] == T.Q4_K
    assert m["blk.5.attn_q.weight"] == m["blk.5.ffn_up.weight"] == m["blk.5.attn_k.weight"] == T.Q3_K
    assert m["token_embd.weight"] == T.Q6_K and m["output_norm.weight"] == T.F32
    large = tensor_types(_layered(32), MIXES["Q3_K_L"], 32)
    assert {large[f"blk.{i}.{kind}.weight"] for i in range(32) for kind in ("attn_v", "ffn_down", "attn_output")} \
        == {T.Q5_K}
    assert large["blk.7.ffn_gate.weight"] == T.Q3_K
    small = tensor_types(_layered(32), MIXES["Q3_K_S"], 32)
    assert {small[f"blk.{i}.{kind}.weight"] for i in range(32) for kind in ("attn_v", "ffn_down", "attn_output")} \
        == {T.Q3_K}
    assert tensor_types(_layered(8), MIXES["Q3_K_S"], 8, is_70b=True)["blk.0.attn_v.weight"] == T.Q5_K


def test_q2_k_mix_and_its_attn_v_by_grouped_query_heads() -> None:
    types = tensor_types(_layered(8), MIXES["Q2_K"], 8)
    assert {types[f"blk.{i}.attn_v.weight"] for i in range(8)} == {T.Q3_K}
    assert types["blk.3.ffn_down.weight"] == types["blk.3.attn_output.weight"] == T.Q3_K
    assert types["blk.3.attn_q.weight"] == types["blk.3.ffn_gate.weight"] == T.Q2_K
    assert types["token_embd.weight"] == T.Q6_K
    assert tensor_types(_layered(8), MIXES["Q2_K"], 8, n_gqa=4)["blk.0.attn_v.weight"] == T.Q4_K
    assert tensor_types(_layered(8), MIXES["Q2_K"], 8, n_gqa=3)["blk.0.attn_v.weight"] == T.Q3_K
    assert tensor_types(_layered(8), MIXES["Q2_K"], 8, is_70b=True, n_gqa=8)["blk.0.attn_v.weight"] == T.Q5_K
    untied = _layered(8) + [("output.weight", (256, 1000))]
    assert tensor_types(untied, MIXES["Q2_K"], 8)["output.weight"] == T.Q6_K
    assert tensor_types(untied, MIXES["Q2_K"], 8)["token_embd.weight"] == T.Q2_K


def test_low_bit_row_length_fallbacks() -> None:
    odd = tensor_types(_layered(8, row=576), MIXES["Q3_K_M"], 8)  # 576 is not a multiple of 256
    assert odd["blk.2.attn_q.weight"] == T.Q4_0 and odd["blk.0.attn_v.weight"] == T.Q5_1
    assert odd["blk.2.attn_v.weight"] == T.Q5_0 and odd["blk.2.attn_output.weight"] == T.Q5_0
    assert odd["token_embd.weight"] == T.Q8_0
    q2 = tensor_types(_layered(8, row=576), MIXES["Q2_K"], 8)
    assert q2["blk.2.attn_q.weight"] == q2["blk.2.ffn_down.weight"] == T.Q4_0
    assert tensor_types(_layered(8, row=80), MIXES["Q2_K"], 8)["blk.2.attn_q.weight"] == T.F16


def test_quant_names() -> None:
    assert parse_mix("q4_k").label == "Q4_K_M" and parse_mix("Q5_K").label == "Q5_K_M"
    assert parse_mix("q3_k").label == "Q3_K_M" and parse_mix("Q2_k").ftype == 10
    assert parse_mix("bf16").ftype == 32
    from mreg.cli.convert_command import QUANTS

    assert QUANTS == ", ".join(label.lower() for label in MIXES)  # the CLI's help names every quant
    with pytest.raises(UsageError, match="q4_k_m"):
        parse_mix("iq2_xs")


def test_pre_tokenizer_is_identified_by_hashing_the_check_text(tiny_llama: Path) -> None:
    from tokenizers import Tokenizer

    ids = Tokenizer.from_file(str(tiny_llama / "tokenizer.json")).encode(CHECK_TEXT).ids
    assert pre_tokenizer_name(ids) == "smollm"
    assert pre_tokenizer_name(ids[:-1]) is None


def test_unsupported_architecture_names_the_supported_ones(tmp_path: Path, tiny_llama: Path) -> None:
    folder = tmp_path / "gpt2"
    folder.mkdir()
    for p in tiny_llama.iterdir():
        (folder / p.name).symlink_to(p)
    (folder / "config.json").unlink()
    (folder / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
    from mreg.registry.errors import FormatError

    with pytest.raises(FormatError, match="GPT2LMHeadModel.*LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM"):
        plan_conversion(folder, MIXES["F16"], "gpt2")


# -- the CLI, end to end -----------------------------------------------------------------------

def test_convert_pulls_converts_records_and_reuses(test_hub: TestHub, mreg_env: dict[str, str], tiny_llama: Path,
                                                   tmp_path: Path) -> None:
    test_hub.add_repo(_hub_repo("org/tiny", tiny_llama))
    code, out, err = mreg("convert", "org/tiny", "--quant", "q8_0")
    assert code == 0, err
    path = Path(out.strip().splitlines()[-1])
    assert path.name == "tiny-Q8_0.gguf" and path.is_file()
    assert "/derived/" in str(path)
    reader = GGUFFile(path)
    types = {t.name: t.tensor_type for t in reader.tensors}
    assert types["blk.0.attn_q.weight"] == T.Q8_0 and types["blk.1.ffn_norm.weight"] == T.F32
    fields = {key: reader.fields[key].contents() for key in ("general.file_type", "tokenizer.ggml.pre",
                                                             "general.source.repo_url")}
    assert fields["general.file_type"] == 7 and fields["tokenizer.ggml.pre"] == "smollm"
    assert fields["general.source.repo_url"].endswith("/org/tiny")

    async def recorded() -> object:
        catalog = await Catalog.open(Settings.from_env().database_url)
        try:
            commit = await catalog.resolve_revision(RepoRef.parse("org/tiny"), "main")
            return await catalog.find_derived(RepoRef.parse("org/tiny"), commit, "Q8_0")
        finally:
            await catalog.close()

    record = asyncio.run(recorded())
    assert record is not None and record.size == path.stat().st_size and record.mreg_version

    code, out, err = mreg("convert", "org/tiny", "--quant", "Q8_0", "-o", str(tmp_path / "copy.gguf"), "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["reused"] is True and data["sha256"] == record.sha256
    assert (tmp_path / "copy.gguf").read_bytes() == path.read_bytes()

    code, _, err = mreg("gc")
    assert code == 0 and path.is_file(), "gc must keep derived artifacts"


def test_llama_cpp_runs_the_converted_model(test_hub: TestHub, mreg_env: dict[str, str], tiny_llama: Path) -> None:
    test_hub.add_repo(_hub_repo("org/tiny", tiny_llama))
    code, out, err = mreg("convert", "org/tiny", "--quant", "f16")
    assert code == 0, err
    tokens = fx.greedy_tokens(Path(out.strip().splitlines()[-1]), PROMPT, n=4)
    assert len(tokens) == 4 and all(0 <= t < 49152 for t in tokens)


def test_mistral_converts_as_llama_and_runs(tmp_path: Path) -> None:
    from mreg.registry.convert.convert import convert_folder

    made = {arch: fx.random_repo(tmp_path / arch, arch, "smollm", layers=2, seed=3)
            for arch in ("LlamaForCausalLM", "MistralForCausalLM")}
    out = {arch: convert_folder(folder, MIXES["Q8_0"], tmp_path / f"{arch}.gguf", name="tiny")
           for arch, folder in made.items()}
    assert _tensors(out["MistralForCausalLM"]) == _tensors(out["LlamaForCausalLM"])
    assert GGUFFile(out["MistralForCausalLM"]).fields["general.architecture"].contents() == "llama"
    assert len(fx.greedy_tokens(out["MistralForCausalLM"], PROMPT, n=4)) == 4


@pytest.mark.parametrize("arch", ["MixtralForCausalLM", "Qwen3MoeForCausalLM"])
def test_moe_experts_are_stacked_in_order_and_llama_cpp_runs_them(arch: str, tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    from mreg.registry.convert.convert import convert_folder

    folder = fx.random_repo(tmp_path / "moe", arch, "spm", layers=2, dtype="F32")
    path = convert_folder(folder, MIXES["F32"], tmp_path / "moe.gguf", name="moe")
    reader = GGUFFile(path)
    name = reader.fields["general.architecture"].contents()
    assert name == {"MixtralForCausalLM": "llama", "Qwen3MoeForCausalLM": "qwen3moe"}[arch]
    keys = {key: field.contents() for key, field in reader.fields.items() if key.startswith(f"{name}.expert")}
    assert keys.pop(f"{name}.expert_count") == 4 and keys.pop(f"{name}.expert_used_count") == 2
    assert keys == ({f"{name}.expert_feed_forward_length": 256} if arch == "Qwen3MoeForCausalLM" else {})
    tensors = {t.name: t for t in reader.tensors}
    source = load_file(folder / "model.safetensors")
    block, kinds = (("block_sparse_moe", {"gate": "w1", "up": "w3", "down": "w2"}) if arch == "MixtralForCausalLM"
                    else ("mlp", {"gate": "gate_proj", "up": "up_proj", "down": "down_proj"}))
    for kind, hf_kind in kinds.items():
        stacked = tensors[f"blk.1.ffn_{kind}_exps.weight"]
        expected = np.stack([source[f"model.layers.1.{block}.experts.{e}.{hf_kind}.weight"] for e in range(4)])
        assert np.array_equal(np.asarray(stacked.data), expected), kind
    router = tensors["blk.0.ffn_gate_inp.weight"]
    assert router.tensor_type == T.F32
    assert np.array_equal(np.asarray(router.data), source[f"model.layers.0.{block}.gate.weight"])
    assert "blk.0.ffn_gate.weight" not in tensors
    assert len(fx.greedy_tokens(path, "mreg pulls models", n=3)) == 3


def test_eight_experts_get_llama_cpps_attention_types(tmp_path: Path) -> None:
    """Mixtral 8x7B's rules (attn_k and attn_v Q8_0, attn_output Q5_K in Q4_K_M), as llama-quantize picks them
    from mreg's own F32 conversion."""
    from mreg.registry.convert.convert import convert_folder

    folder = fx.random_repo(tmp_path / "mx8", "MixtralForCausalLM", "spm", experts=8)
    f32 = convert_folder(folder, MIXES["F32"], tmp_path / "mx8-F32.gguf", name="mx8")
    types = {}
    for label in ("Q4_K_M", "Q5_K_M", "Q4_0"):
        expected = {t.name: t.tensor_type for t in GGUFFile(_reference_quant(f32, label)).tensors}
        planned = plan_conversion(folder, MIXES[label], "mx8")
        assert [t.name for t in planned.tensors] == list(expected), label
        types[label] = {t.name: t.qtype for t in planned.tensors}
        assert types[label] == expected, label
    assert all(types[label]["blk.3.attn_k.weight"] == types[label]["blk.3.attn_v.weight"] == T.Q8_0 for label in types)
    assert [types[label]["blk.3.attn_output.weight"] for label in types] == [T.Q5_K, T.Q5_K, T.Q4_0]


def test_missing_expert_is_a_format_error(tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    from mreg.registry.errors import FormatError

    folder = fx.random_repo(tmp_path / "moe", "Qwen3MoeForCausalLM", "spm", layers=2)
    tensors = load_file(folder / "model.safetensors")
    del tensors["model.layers.1.mlp.experts.3.up_proj.weight"]
    fx.write_safetensors(folder / "model.safetensors", tensors, "F16")
    with pytest.raises(FormatError, match=r"blk\.1\.ffn_up_exps\.weight: the weights have 3 of the 4 experts"):
        plan_conversion(folder, MIXES["Q8_0"], "moe")


def test_unsupported_architecture_is_refused_before_any_weights_are_pulled(
        test_hub: TestHub, mreg_env: dict[str, str], tiny_llama: Path, tmp_path: Path) -> None:
    folder = tmp_path / "gpt2"
    folder.mkdir()
    for name in ("model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        (folder / name).symlink_to(tiny_llama / name)
    (folder / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}))
    weights = test_hub.add_repo(_hub_repo("org/gpt2", folder)).head.files["model.safetensors"].blob.sha256
    assert test_hub.stats.bytes_by_sha256[weights] == 0
    supported = "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, MixtralForCausalLM"
    for command in (("convert", "org/gpt2", "--quant", "q8_0"), ("pull", "org/gpt2", "--quant", "q8_0"),
                    ("modelfile", "org/gpt2", "--quant", "q4_k_m")):
        code, _, err = mreg(*command)
        last = err.strip().splitlines()[-1]
        assert code == 4 and last.startswith("mreg: error: cannot convert architecture GPT2LMHeadModel: "), err
        assert supported in last and "Qwen3MoeForCausalLM" in last
    assert test_hub.stats.bytes_by_sha256[weights] == 0


def test_bad_requests_are_one_line_errors(test_hub: TestHub, mreg_env: dict[str, str], tmp_path: Path,
                                          tiny_llama: Path) -> None:
    code, _, err = mreg("convert", "org/tiny", "--quant", "iq1_s")
    assert code == 2 and "cannot convert to 'iq1_s'" in err
    folder = tmp_path / "noweights"
    folder.mkdir()
    (folder / "config.json").write_bytes((tiny_llama / "config.json").read_bytes())
    test_hub.add_repo(_hub_repo("org/noweights", folder))
    code, _, err = mreg("convert", "org/noweights", "--quant", "f16")
    assert code == 4 and err.strip().splitlines()[-1].startswith("mreg: error: ") and "no safetensors" in err


def test_streaming_keeps_memory_near_one_slab(tiny_llama: Path, tmp_path: Path) -> None:
    """The peak RSS (VmHWM, the process's own) of a conversion stays under 2x the largest tensor + 300 MB."""
    import subprocess
    import sys

    peak = "print(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')))"
    script = ("import sys; from pathlib import Path; from mreg.registry.convert.convert import convert_folder;"
              "from mreg.registry.convert.mixes import parse_mix;"
              f"convert_folder(Path(sys.argv[1]), parse_mix('f32'), Path(sys.argv[2]), name='t'); {peak}")
    base = subprocess.run([sys.executable, "-c", f"import mreg.registry.convert.convert, tokenizers; {peak}"],
                          capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1])
    run = subprocess.run([sys.executable, "-c", script, str(tiny_llama), str(tmp_path / "t.gguf")],
                         capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1])
    largest = 49152 * 256 * 4
    assert (int(run.stdout) - int(base.stdout)) * 1024 < 2 * largest + 300 * 2**20


# -- against llama.cpp's pipeline (slow: runs convert_hf_to_gguf.py) ---------------------------

MODELS = {
    "smollm2": lambda d: fx.smollm2_repo(d),
    "llama": lambda d: fx.random_repo(d, "LlamaForCausalLM", "llama-bpe"),
    "qwen2": lambda d: fx.random_repo(d, "Qwen2ForCausalLM", "qwen2", tied=False),
    "qwen3": lambda d: fx.random_repo(d, "Qwen3ForCausalLM", "qwen2", dtype="BF16"),
    "llama-spm": lambda d: fx.random_repo(d, "LlamaForCausalLM", "spm", layers=4),
}


MOE_MODELS = {  # built and saved by transformers' own classes: 4 experts, 2 used per token
    "qwen3moe": lambda d: fx.moe_repo(d, "Qwen3MoeForCausalLM", "gpt-2", dtype="BF16"),
    "mixtral": lambda d: fx.moe_repo(d, "MixtralForCausalLM", "spm", tied=False),
}
MOE_QUANTS = ("F16", "Q8_0", "Q4_K_M", "Q3_K_M", "Q2_K")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory):
    """Model folders and llama.cpp's F32 conversion of each, made once per module."""
    root = tmp_path_factory.mktemp("reference")
    made: dict[str, tuple[Path, Path]] = {}

    def get(model: str) -> tuple[Path, Path]:
        if model not in made:
            folder = {**MODELS, **MOE_MODELS}[model](root / model)
            made[model] = folder, fx.reference_convert(folder, root / f"{model}-F32.gguf", "f32")
        return made[model]

    return get


def _reference_quant(f32: Path, label: str) -> Path:
    out = f32.with_name(f32.name.replace("-F32", f"-{label}"))
    if label == "F32":
        return f32
    if not out.exists():
        fx.reference_quantize(f32, out, int(MIXES[label].ftype))
    return out


@pytest.mark.slow
@pytest.mark.timeout(1200)  # llama.cpp's conversion and twelve llama-quantize runs, on 2 CPUs
@pytest.mark.parametrize("model", list(MODELS))
def test_tensor_types_equal_llama_quantize(model: str, reference) -> None:
    folder, f32 = reference(model)
    for label in ("F16", "Q8_0", "Q4_0", "Q5_1", *K_MIXES, *(LOW_BIT_MIXES if model in LOW_BIT_MODELS else ())):
        expected = {t.name: t.tensor_type for t in GGUFFile(_reference_quant(f32, label)).tensors}
        planned = plan_conversion(folder, MIXES[label], model)
        assert [t.name for t in planned.tensors] == list(expected), label
        assert {t.name: t.qtype for t in planned.tensors} == expected, label


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize(("model", "label"), [
    *((model, label) for label in ("F16", "Q8_0", "Q4_1", "Q4_K_M", "Q5_K_S") for model in MODELS),
    *((model, label) for label in ("Q3_K_M", "Q2_K") for model in LOW_BIT_MODELS)])
def test_gguf_equals_llama_cpp_pipeline(model: str, label: str, reference, tmp_path: Path) -> None:
    from mreg.registry.convert.convert import convert_folder

    folder, f32 = reference(model)
    ours = convert_folder(folder, MIXES[label], tmp_path / f"{model}.gguf", name=model)
    theirs = _reference_quant(f32, label)
    assert _tensors(ours) == _tensors(theirs)
    assert fx.key_differences(ours, theirs) == []  # every key llama.cpp writes, but fx.KEY_DIFFERENCES
    if label in ("Q8_0", "Q4_K_M"):
        assert fx.greedy_tokens(ours, PROMPT) == fx.greedy_tokens(theirs, PROMPT)




@pytest.mark.slow
@pytest.mark.timeout(900)  # transformers builds the model, llama.cpp converts it once and quantizes it per quant
@pytest.mark.parametrize("model", list(MOE_MODELS))
def test_moe_gguf_equals_llama_cpp_pipeline(model: str, reference, tmp_path: Path) -> None:
    """Every quant: the same tensors (names, types, order, bytes) and keys as llama.cpp's pipeline,
    and llama.cpp runs it; Q4_K_M: the same greedy tokens as llama.cpp's own file."""
    from mreg.registry.convert.convert import convert_folder

    folder, f32 = reference(model)
    for label in MOE_QUANTS:
        ours = convert_folder(folder, MIXES[label], tmp_path / f"{model}-{label}.gguf", name=model)
        theirs = _reference_quant(f32, label)
        ours_tensors, theirs_tensors = _tensors(ours), _tensors(theirs)
        assert list(ours_tensors) == list(theirs_tensors) and ours_tensors == theirs_tensors, label
        assert fx.key_differences(ours, theirs) == [], label  # every key, expert counts included
        if label == "Q4_K_M":
            assert fx.greedy_tokens(ours, PROMPT) == fx.greedy_tokens(theirs, PROMPT)
        else:
            assert len(fx.greedy_tokens(ours, PROMPT, n=2)) == 2


def test_sentencepiece_tokenizer_converts_and_runs(tmp_path: Path) -> None:
    from mreg.registry.convert.convert import convert_folder

    folder = fx.random_repo(tmp_path / "spm", "LlamaForCausalLM", "spm", layers=2)
    path = convert_folder(folder, MIXES["Q8_0"], tmp_path / "spm.gguf", name="spm")
    fields = GGUFFile(path).fields
    assert fields["tokenizer.ggml.model"].contents() == "llama" and fields["tokenizer.ggml.pre"].contents() == "default"
    assert len(fields["tokenizer.ggml.scores"].contents()) == 400
    assert fields["tokenizer.ggml.bos_token_id"].contents() == 1 and fields["tokenizer.ggml.add_bos_token"].contents()
    assert len(fx.greedy_tokens(path, "mreg pulls models", n=3)) == 3


def test_bf16_reads_exactly(tmp_path: Path) -> None:
    from mreg.registry.convert.source import TensorReader, list_tensors, to_float32

    values = np.array([[1.0, -2.5, 3.140625, 65280.0]], dtype=np.float32)
    fx.write_safetensors(tmp_path / "m.safetensors", {"w": values}, "BF16")
    source = list_tensors(tmp_path)["w"]
    with TensorReader() as reader:
        assert np.array_equal(to_float32(reader.rows(source), "BF16"), values)


def test_pull_and_modelfile_convert_when_no_gguf_exists(test_hub: TestHub, mreg_env: dict[str, str],
                                                        tiny_llama: Path, tmp_path: Path) -> None:
    test_hub.add_repo(_hub_repo("org/tiny", tiny_llama))
    code, out, err = mreg("pull", "org/tiny", "--quant", "q8_0", "--json")
    assert code == 0, err
    assert "converting its safetensors to Q8_0 locally" in err
    data = json.loads(out)
    assert data["quant"] == "Q8_0" and data["gguf"] == ["tiny-Q8_0.gguf"]
    assert GGUFFile(Path(data["path"], "tiny-Q8_0.gguf")).fields["general.file_type"].contents() == 7
    code, out, err = mreg("modelfile", "org/tiny", "--quant", "q8_0", "--json")
    assert code == 0, err
    assert "converting its safetensors to Q8_0 locally" in err and json.loads(out)["quant"] == "Q8_0"
    code, _, err = mreg("pull", "org/tiny", "--quant", "iq4_xs")
    assert code == 3 and "IQ4_XS is not a quant mreg converts to" in err


@pytest.mark.parametrize(("arch", "template"), [("MixtralForCausalLM", chat_templates.MIXTRAL),
                                                ("Qwen3MoeForCausalLM", chat_templates.QWEN3)])
def test_modelfiles_of_converted_moe_models_use_their_chat_templates(
        arch: str, template: chat_templates.JinjaTemplate, test_hub: TestHub, mreg_env: dict[str, str],
        tmp_path: Path) -> None:
    from mreg.registry.ollama.modelfile import FAMILIES

    folder = fx.random_repo(tmp_path / "moe", arch, "spm", layers=2)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": template.source}))
    test_hub.add_repo(_hub_repo("org/moe", folder))
    code, out, err = mreg("modelfile", "org/moe", "--quant", "q8_0", "--json")
    assert code == 0 and "converting its safetensors to Q8_0 locally" in err, err
    data = json.loads(out)
    family = next(f for f in FAMILIES if f.name == template.family)
    parsed = load(data["modelfile"])
    assert data["family"] == template.family and parsed.template == family.template
    assert parsed.parameters["stop"] == list(family.stop)
