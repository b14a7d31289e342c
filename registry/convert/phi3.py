"""Phi-3, Phi-3.5 and Phi-4 (`Phi3ForCausalLM`): keys and tensors as llama.cpp's Phi3MiniModel
converter writes them.

The fused `qkv_proj` and `gate_up_proj` weights stay fused (`attn_qkv`, and `ffn_up` with twice
the rows; llama.cpp splits them when it loads). A LongRoPE config adds `rope_factors_long` and
`rope_factors_short` tensors and an attention factor; the sliding window is 0 when the config has
none (Phi-4). Phi-4's GPT-2 tokenizer converts as byte-level BPE, the others' SentencePiece model
with Phi-3's own handling of added tokens.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from gguf import GGUFWriter

from mreg.registry.convert import architectures as hf
from mreg.registry.convert.source import read_json
from mreg.registry.convert.vocab import add_bpe, add_phi3_sentencepiece
from mreg.registry.errors import FormatError


def _rope(config: Mapping[str, Any]) -> dict[str, Any]:
    rope = hf.rope_parameters(config)
    for key in ("original_max_position_embeddings", "partial_rotary_factor"):
        if key not in rope and config.get(key) is not None:
            rope[key] = config[key]
    return rope


def _rope_dims(config: Mapping[str, Any]) -> int:
    rotary = _rope(config).get("partial_rotary_factor", 1.0)
    return int(rotary * hf.config_value(config, "hidden_size")) // hf.config_value(config, "num_attention_heads")


class Phi3:
    """The Phi-3 family."""

    def add_hparams(self, writer: GGUFWriter, config: Mapping[str, Any]) -> None:
        rope = _rope(config)
        writer.add_context_length(hf.config_value(config, "max_position_embeddings"))
        writer.add_rope_scaling_orig_ctx_len(hf.config_value(rope, "original_max_position_embeddings"))
        writer.add_embedding_length(hf.config_value(config, "hidden_size"))
        writer.add_feed_forward_length(hf.config_value(config, "intermediate_size"))
        writer.add_block_count(hf.config_value(config, "num_hidden_layers"))
        writer.add_head_count(hf.config_value(config, "num_attention_heads"))
        writer.add_head_count_kv(hf.config_value(config, "num_key_value_heads"))
        writer.add_layer_norm_rms_eps(hf.config_value(config, "rms_norm_eps"))
        writer.add_rope_dimension_count(_rope_dims(config))
        writer.add_rope_freq_base(hf.config_value(rope, "rope_theta"))
        writer.add_sliding_window(config.get("sliding_window") or 0)
        if (factor := self._attn_factor(config)) is not None:
            writer.add_rope_scaling_attn_factors(factor)

    @staticmethod
    def _attn_factor(config: Mapping[str, Any]) -> float | None:
        """LongRoPE's attention factor (None without long factors)."""
        rope = _rope(config)
        if not rope.get("long_factor"):
            return None
        original = hf.config_value(rope, "original_max_position_embeddings")
        scale = hf.config_value(config, "max_position_embeddings") / original
        kind = str(rope.get("rope_type") or "").lower()
        if kind in ("su", "longrope"):
            return math.sqrt(1 + math.log(scale) / math.log(original)) if scale > 1 else 1.0
        if kind == "yarn":
            return 0.1 * math.log(scale) + 1.0 if scale > 1 else 1.0
        raise FormatError(f"cannot convert Phi-3 RoPE scaling {kind or '(no type)'!r} (mreg converts longrope and yarn)")

    def add_vocab(self, writer: GGUFWriter, folder: Path, config: Mapping[str, Any]) -> None:
        tokenizer_config = folder / "tokenizer_config.json"
        if tokenizer_config.is_file() and read_json(tokenizer_config).get("tokenizer_class") == "GPT2Tokenizer":
            add_bpe(writer, folder, config.get("vocab_size"))
        else:
            add_phi3_sentencepiece(writer, folder, config.get("vocab_size"))

    def skips(self, hf_name: str) -> bool:
        return False

    def norm_shift(self, gguf_name: str) -> float:
        return 0.0

    def extra_tensors(self, config: Mapping[str, Any]) -> dict[str, np.ndarray]:
        rope = _rope(config)
        if self._attn_factor(config) is None:
            return {}
        long, short = rope.get("long_factor"), rope.get("short_factor")
        half = _rope_dims(config) / 2
        if not short or len(long) != half or len(short) != half:
            raise FormatError(f"config.json's RoPE long and short factors must both have {half:g} values")
        names = gguf.TENSOR_NAMES
        return {names[gguf.MODEL_TENSOR.ROPE_FACTORS_LONG] + ".weight": np.array(long, dtype=np.float32),
                names[gguf.MODEL_TENSOR.ROPE_FACTORS_SHORT] + ".weight": np.array(short, dtype=np.float32)}
