"""The model architectures mreg converts: their GGUF keys (with the types llama.cpp's loader reads)
and how their Hugging Face tensors become GGUF tensors.

Names come from `gguf.TensorNameMap` (stacked expert tensors: experts.py); Llama, Mistral and
Mixtral get llama.cpp's Q/K row permutation (rows of each head interleaved for its RoPE); Llama 3's
`rope_scaling` becomes a `rope_freqs` tensor.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gguf
import numpy as np
from gguf import GGUFWriter, MODEL_ARCH

from mreg.registry.convert.experts import (
    MIXTRAL_EXPERTS,
    QWEN_MOE_EXPERTS,
    ExpertLayout,
    add_expert_keys,
    expert_count,
)
from mreg.registry.errors import FormatError

if TYPE_CHECKING:
    from mreg.registry.convert.family import Family


@dataclass(frozen=True)
class Architecture:
    """How one Hugging Face architecture converts."""

    arch: MODEL_ARCH
    permute_qk: bool
    """Apply llama.cpp's Q/K row permutation (Llama, Mistral)."""
    sentencepiece_first: bool
    """A `tokenizer.model` wins over `tokenizer.json`."""
    llama_keys: bool
    """Write `vocab_size` and `rope.dimension_count` (llama.cpp's Llama converter does)."""
    family: Family | None = None
    """The family's own keys, tokenizer and tensor changes (None: Llama's, as above)."""
    experts: ExpertLayout | None = None
    """Where a mixture-of-experts family keeps its experts (None: a dense model)."""

    @property
    def name(self) -> str:
        return gguf.MODEL_ARCH_NAMES[self.arch]


ARCHITECTURES = {
    "LlamaForCausalLM": Architecture(MODEL_ARCH.LLAMA, True, True, True),
    "MistralForCausalLM": Architecture(MODEL_ARCH.LLAMA, True, True, True),
    "Qwen2ForCausalLM": Architecture(MODEL_ARCH.QWEN2, False, True, False),
    "Qwen3ForCausalLM": Architecture(MODEL_ARCH.QWEN3, False, True, False),
    "MixtralForCausalLM": Architecture(MODEL_ARCH.LLAMA, True, True, True, experts=MIXTRAL_EXPERTS),
    "Qwen3MoeForCausalLM": Architecture(MODEL_ARCH.QWEN3MOE, False, True, False, experts=QWEN_MOE_EXPERTS),
}
_SKIPPED = (".rotary_emb.inv_freq", ".attention.masked_bias", ".attention.bias")


def family_architectures() -> dict[str, Architecture]:
    """Gemma 2, Gemma 3 and Phi-3, which convert through their own `Family` hooks (imported when
    asked for: their modules use this one's helpers)."""
    from mreg.registry.convert.gemma import Gemma
    from mreg.registry.convert.phi3 import Phi3

    return {
        "Gemma2ForCausalLM": Architecture(MODEL_ARCH.GEMMA2, False, True, False, Gemma(2)),
        "Gemma3ForCausalLM": Architecture(MODEL_ARCH.GEMMA3, False, True, False, Gemma(3)),
        "Phi3ForCausalLM": Architecture(MODEL_ARCH.PHI3, False, False, False, Phi3()),
    }


def architecture_of(config: Mapping[str, Any]) -> tuple[str, Architecture]:
    """The config's architecture (its first `architectures` entry) if mreg converts it."""
    names = config.get("architectures") or []
    name = names[0] if isinstance(names, list) and names and isinstance(names[0], str) else None
    known = ARCHITECTURES | family_architectures()
    if name not in known:
        raise FormatError(f"cannot convert architecture {name or '(none in config.json)'}: mreg converts "
                          f"{', '.join(known)}")
    return name, known[name]


def config_value(config: Mapping[str, Any], key: str) -> Any:
    """``config[key]``; FormatError naming the key when config.json lacks it."""
    if key not in config:
        raise FormatError(f"config.json has no {key}")
    return config[key]


def head_dim(config: Mapping[str, Any]) -> int:
    return config.get("head_dim") or config_value(config, "hidden_size") // config_value(config, "num_attention_heads")


def rope_parameters(config: Mapping[str, Any]) -> dict[str, Any]:
    """The RoPE settings (newer configs: `rope_parameters`; older: `rope_scaling` and `rope_theta`)."""
    rope = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    rope.setdefault("rope_theta", config.get("rope_theta"))
    if "rope_type" not in rope and "type" in rope:
        rope["rope_type"] = rope["type"]
    return rope


def add_hparams(writer: GGUFWriter, config: Mapping[str, Any], spec: Architecture) -> None:
    """The model's hyperparameter keys."""
    writer.add_block_count(config_value(config, "num_hidden_layers"))
    if (n_ctx := config.get("max_position_embeddings")) is not None:
        writer.add_context_length(n_ctx)
    writer.add_embedding_length(config_value(config, "hidden_size"))
    writer.add_feed_forward_length(config_value(config, "intermediate_size"))
    writer.add_head_count(config_value(config, "num_attention_heads"))
    writer.add_head_count_kv(config.get("num_key_value_heads") or config["num_attention_heads"])
    rope = rope_parameters(config)
    rope_type, factor = rope.get("rope_type"), rope.get("factor")
    if rope_type == "linear" and factor is not None:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(factor)
    elif rope_type == "yarn" and factor is not None:
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(factor)
        writer.add_rope_scaling_orig_ctx_len(config_value(rope, "original_max_position_embeddings"))
    elif rope_type not in (None, "default", "llama3"):
        raise FormatError(f"cannot convert RoPE scaling {rope_type!r} (mreg converts linear, yarn and llama3)")
    if rope.get("rope_theta") is not None:
        writer.add_rope_freq_base(rope["rope_theta"])
    writer.add_layer_norm_rms_eps(config_value(config, "rms_norm_eps"))
    add_expert_keys(writer, config, spec.experts)
    # llama.cpp writes the head size when transformers' config class has one: Llama's and Qwen3's derive
    # it, Qwen2's and the MoE families' (Mixtral, Qwen3-MoE) only have the config.json's
    if (spec.arch != MODEL_ARCH.QWEN2 and spec.experts is None) or config.get("head_dim") is not None:
        writer.add_key_length(head_dim(config))
        writer.add_value_length(head_dim(config))
    if spec.llama_keys:
        writer.add_vocab_size(config_value(config, "vocab_size"))
        writer.add_rope_dimension_count(head_dim(config))


def is_70b(config: Mapping[str, Any], spec: Architecture) -> bool:
    """Whether llama.cpp classes the model as 70B, which gives its attn_v more bits (never with 8
    experts: llama.cpp's Llama with 8 experts is an 8x7B or 8x22B)."""
    if config.get("num_hidden_layers") != 80 or expert_count(config) == 8:
        return False
    if spec.arch == MODEL_ARCH.QWEN2:
        return True
    heads = config.get("num_attention_heads")
    return spec.arch == MODEL_ARCH.LLAMA and heads != (config.get("num_key_value_heads") or heads)


def query_heads_per_kv_head(config: Mapping[str, Any]) -> int:
    """llama.cpp's ``n_gqa()``: attention heads // KV heads (Q2_K gives attn_v more bits from 4 up)."""
    heads = config_value(config, "num_attention_heads")
    return heads // (config.get("num_key_value_heads") or heads)


def gguf_name(hf_name: str, names: gguf.TensorNameMap) -> str | None:
    """The GGUF name of a Hugging Face tensor (None for buffers llama.cpp drops); FormatError if unknown."""
    if hf_name.endswith(_SKIPPED):
        return None
    name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
    if name is None:
        raise FormatError(f"cannot map tensor {hf_name} to a GGUF tensor")
    return name


def qk_heads(hf_name: str, config: Mapping[str, Any], spec: Architecture) -> int | None:
    """The head count of the Q/K row permutation this tensor needs (None: no permutation)."""
    if not spec.permute_qk:
        return None
    if hf_name.endswith(("q_proj.weight", "q_proj.bias")):
        return config["num_attention_heads"]
    if hf_name.endswith(("k_proj.weight", "k_proj.bias")):
        return config.get("num_key_value_heads") or config["num_attention_heads"]
    return None


def qk_row_order(rows: int, heads: int) -> np.ndarray:
    """Source row of each output row under llama.cpp's permutation: within each head, the first and
    second halves of the rows are interleaved."""
    return np.arange(rows).reshape(heads, 2, rows // heads // 2).swapaxes(1, 2).reshape(rows)


def llama3_rope_factors(config: Mapping[str, Any]) -> np.ndarray | None:
    """The `rope_freqs` tensor of a Llama 3 RoPE scaling (None when the config has none)."""
    rope = rope_parameters(config)
    if str(rope.get("rope_type", "")).lower() != "llama3":
        return None
    base = rope.get("rope_theta") or 10000.0
    dim = head_dim(config)
    freqs = 1.0 / (np.float32(base) ** (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)))
    factor = rope.get("factor", 8.0)
    low, high = rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    old_context = rope.get("original_max_position_embeddings", 8192)
    low_wavelen, high_wavelen = old_context / low, old_context / high
    factors = []
    for freq in freqs.tolist():
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(factor)
        else:
            smooth = (old_context / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(factors, dtype=np.float32)

