"""Gemma 2, Gemma 3 and Phi-3/3.5/4 convert as llama.cpp's pipeline converts them, with every key
llama.cpp writes, and their Modelfiles render the families' chat templates.

The slow test makes one reference conversion per family (llama.cpp's `convert_hf_to_gguf.py`,
then `llama_model_quantize` for each quant) and compares tensor names, types, order and bytes, all
keys, and the greedy tokens of one quant.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mreg.registry.convert.convert import convert_folder
from mreg.registry.convert.metadata import parameter_counts
from mreg.registry.convert.mixes import MIXES
from mreg.registry.convert.source import to_float32
from mreg.registry.convert.vocab import post_processor_flags
from mreg.registry.errors import FormatError
from mreg.registry.ollama.modelfile import build_modelfile
from mreg.registry.ollama.modelfile.facts import read_facts
from tests import chat_templates
from tests import convert_fixtures as fx
from tests import family_fixtures as ff
from tests.chat_templates import render_jinja
from tests.gguf_file import GGUFFile
from tests.gotemplate import ollama_messages, render_go

PROMPT = "The capital of France is"
LABELS = ("F16", "Q8_0", "Q4_K_M", "Q3_K_M", "Q2_K")
GREEDY_LABEL = "Q8_0"
needs_torch = pytest.mark.slow
"""Building models with transformers' classes needs torch, which CI installs for the slow step only."""


def _fields(path: Path) -> dict:
    return {key: field.contents() for key, field in GGUFFile(path).fields.items()}


def _tensors(path: Path) -> list[tuple[str, str, tuple[int, ...], bytes]]:
    return [(t.name, t.tensor_type.name, tuple(int(n) for n in t.shape), t.data.tobytes())
            for t in GGUFFile(path).tensors]


# -- pieces ------------------------------------------------------------------------------------

def test_norm_shift_adds_in_the_source_float_type() -> None:
    """F16 weights get +1 rounded to float16 (as torch adds it in llama.cpp's converter), BF16 and
    F32 weights in float32."""
    half = np.array([[0.0004883, -0.3, 1e-4]], dtype=np.float16)
    assert to_float32(half, "F16", 1.0).tolist() == (half + np.float16(1)).astype(np.float32).tolist()
    assert to_float32(half, "F16", 1.0)[0, 2] == np.float32(1.0)  # 1 + 1e-4 rounds to 1 in float16
    single = np.array([[1e-4]], dtype=np.float32)
    assert to_float32(single, "F32", 1.0)[0, 0] == np.float32(1) + np.float32(1e-4)


def test_post_processor_decides_add_bos_and_add_eos(tmp_path: Path) -> None:
    def flags(post: dict, config: dict) -> dict[str, bool]:
        (tmp_path / "tokenizer.json").write_text(json.dumps({"post_processor": post}))
        (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
        return post_processor_flags(tmp_path)

    byte_level = {"type": "ByteLevel"}
    assert flags(byte_level, {"add_bos_token": True}) == {"bos": False, "eos": False}
    template = {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": {"id": "A"}}]}
    assert flags({"type": "Sequence", "processors": [byte_level, template]}, {"bos_token": "<s>"}) == {
        "bos": True, "eos": False}
    assert flags(template, {"bos_token": "<bos>", "cls_token": "<cls>"}) == {"bos": False}


def test_size_label_counts_experts_once() -> None:
    dense = [("token_embd.weight", (1000, 256)), ("blk.0.ffn_up.weight", (768, 256))]
    assert parameter_counts(dense) == (452608, 452608, 0, 0)
    moe = dense + [("blk.0.ffn_up_exps.weight", (8, 768, 256))]
    assert parameter_counts(moe)[2:] == (768 * 256, 8)


# -- converting, fast ---------------------------------------------------------------------------

@needs_torch
def test_phi3_keeps_fused_weights_and_runs(tmp_path: Path) -> None:
    folder = ff.phi3_repo(tmp_path / "Phi-3-mini-4k-instruct", longrope=False, layers=2)
    out = convert_folder(folder, MIXES["Q8_0"], tmp_path / "phi3.gguf", name=folder.name)
    shapes = {t.name: tuple(int(n) for n in t.shape) for t in GGUFFile(out).tensors}
    assert shapes["blk.0.attn_qkv.weight"] == (256, 512) and shapes["blk.0.ffn_up.weight"] == (256, 1536)
    assert "rope_factors_long.weight" not in shapes and "output.weight" in shapes
    fields = _fields(out)
    assert fields["general.name"] == "Phi 3 Mini 4k Instruct" and fields["general.finetune"] == "4k-instruct"
    assert fields["phi3.attention.sliding_window"] == 2047 and fields["phi3.rope.dimension_count"] == 64
    tokens = fields["tokenizer.ggml.tokens"]
    assert tokens[ff.SPM_SIZE + 4] == "<|end|>" and tokens[-1] == f"[PAD{len(tokens) - 1}]"
    types = fields["tokenizer.ggml.token_type"]
    assert (types[ff.SPM_SIZE + 4], types[ff.SPM_SIZE + 2]) == (3, 4)  # <|end|> control, placeholder user-defined
    assert len(fx.greedy_tokens(out, PROMPT, n=3)) == 3


@needs_torch
def test_phi4_has_no_sliding_window_and_a_bpe_tokenizer(tmp_path: Path) -> None:
    folder = ff.phi4_repo(tmp_path / "phi-4")
    fields = _fields(convert_folder(folder, MIXES["Q8_0"], tmp_path / "phi4.gguf", name="phi-4"))
    assert fields["phi3.attention.sliding_window"] == 0
    assert fields["tokenizer.ggml.model"] == "gpt2" and fields["tokenizer.ggml.pre"] == "gpt-2"


@needs_torch
def test_gemma_needs_its_sentencepiece_model(tmp_path: Path) -> None:
    folder = ff.gemma_repo(tmp_path / "gemma", 2, layers=1)
    (folder / "tokenizer.model").unlink()
    with pytest.raises(FormatError, match="has no tokenizer.model"):
        convert_folder(folder, MIXES["F16"], tmp_path / "g.gguf", name="gemma")


@needs_torch
@pytest.mark.parametrize(("version", "template"), [(2, chat_templates.GEMMA), (3, chat_templates.GEMMA3)])
def test_gemma_converts_runs_and_its_modelfile_renders_the_template(tmp_path: Path, version: int,
                                                                    template: chat_templates.JinjaTemplate) -> None:
    folder = ff.gemma_repo(tmp_path / f"gemma-{version}", version, layers=2)
    out = convert_folder(folder, MIXES["Q8_0"], tmp_path / "gemma.gguf", name=folder.name)
    fields = _fields(out)
    arch = f"gemma{version}"
    assert fields["tokenizer.ggml.add_space_prefix"] is False and fields["tokenizer.chat_template"] == template.source
    assert fields[f"{arch}.attention.sliding_window"] == 64
    types = dict(zip(fields["tokenizer.ggml.tokens"], fields["tokenizer.ggml.token_type"]))
    assert [types[t] for t in ("<start_of_turn>", "<mask>", "<unused0>", "  ")] == [3, 3, 3, 4]
    names = [t.name for t in GGUFFile(out).tensors]
    assert "output.weight" not in names  # tied embeddings
    assert len(fx.greedy_tokens(out, PROMPT, n=3)) == 3
    modelfile, family, _ = build_modelfile(out, read_facts({"m.gguf": out}, ["m.gguf"]))
    assert family is not None and family.name == template.family
    assert ("stop", "<end_of_turn>") in modelfile.parameters
    for messages in ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                      {"role": "user", "content": "How are you?"}],):
        jinja = render_jinja(template, messages).removeprefix(template.bos)
        assert render_go(modelfile.template, ollama_messages(messages, None)) == jinja


@needs_torch
def test_phi3_modelfile_renders_the_template(tmp_path: Path) -> None:
    folder = ff.phi3_repo(tmp_path / "phi3", longrope=False, layers=1)
    out = convert_folder(folder, MIXES["F16"], tmp_path / "phi3.gguf", name="phi3")
    modelfile, family, _ = build_modelfile(out, read_facts({"m.gguf": out}, ["m.gguf"]))
    assert family is not None and family.name == "phi-3"
    assert ("stop", "<|end|>") in modelfile.parameters
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    jinja = render_jinja(chat_templates.PHI3, messages)
    assert render_go(modelfile.template, ollama_messages(messages, None)) == jinja


# -- against llama.cpp's pipeline (slow) --------------------------------------------------------

FAMILIES = {
    "gemma2": lambda d: ff.gemma_repo(d, 2),
    "gemma3": lambda d: ff.gemma_repo(d, 3, dtype="BF16"),
    "phi3.5": lambda d: ff.phi3_repo(d, longrope=True),
}


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_equals_llama_cpp_pipeline(family: str, tmp_path: Path) -> None:
    folder = FAMILIES[family](tmp_path / family)
    f32 = fx.reference_convert(folder, tmp_path / f"{family}-F32.gguf", "f32")
    for label in LABELS:
        theirs = fx.reference_quantize(f32, tmp_path / f"{family}-{label}.gguf", int(MIXES[label].ftype))
        ours = convert_folder(folder, MIXES[label], tmp_path / f"ours-{label}.gguf", name=family)
        assert _tensors(ours) == _tensors(theirs), label
        assert fx.key_differences(ours, theirs) == [], label
        if label == GREEDY_LABEL:
            assert fx.greedy_tokens(ours, PROMPT) == fx.greedy_tokens(theirs, PROMPT)
