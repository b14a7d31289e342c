"""Gemma 2 and Gemma 3 (text): their keys and tensors as llama.cpp's Gemma2Model / Gemma3Model
converters write them.

Norm weights are stored plus one (Gemma's RMSNorm scales by ``1 + weight``), added in the source's
float type as llama.cpp's converter adds it; embeddings are tied (an `lm_head.weight` is left out
for Gemma 2); the vocabulary is the SentencePiece `tokenizer.model`, with `add_space_prefix` false.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from gguf import GGUFWriter

from mreg.registry.convert import architectures as hf
from mreg.registry.convert.vocab import add_sentencepiece
from mreg.registry.errors import FormatError


def _common(writer: GGUFWriter, config: Mapping[str, Any]) -> None:
    writer.add_context_length(hf.config_value(config, "max_position_embeddings"))
    writer.add_embedding_length(hf.config_value(config, "hidden_size"))
    writer.add_block_count(hf.config_value(config, "num_hidden_layers"))
    writer.add_feed_forward_length(hf.config_value(config, "intermediate_size"))
    writer.add_head_count(hf.config_value(config, "num_attention_heads"))
    writer.add_head_count_kv(config.get("num_key_value_heads") or config["num_attention_heads"])
    writer.add_layer_norm_rms_eps(hf.config_value(config, "rms_norm_eps"))
    writer.add_key_length(hf.config_value(config, "head_dim"))
    writer.add_value_length(config["head_dim"])


@dataclass(frozen=True)
class Gemma:
    """Gemma 2 (``version`` 2) or Gemma 3 (``version`` 3)."""

    version: int

    def add_hparams(self, writer: GGUFWriter, config: Mapping[str, Any]) -> None:
        _common(writer, config)
        if self.version == 2:
            writer.add_attn_logit_softcapping(hf.config_value(config, "attn_logit_softcapping"))
            writer.add_final_logit_softcapping(hf.config_value(config, "final_logit_softcapping"))
            writer.add_sliding_window(hf.config_value(config, "sliding_window"))
            return
        rope = hf.rope_parameters(config)
        full = rope.get("full_attention", rope)
        rope_type, factor = full.get("rope_type"), full.get("factor")
        if rope_type == "linear" and factor is not None:
            writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            writer.add_rope_scaling_factor(factor)
        elif rope_type not in (None, "default"):
            raise FormatError(f"cannot convert Gemma 3 RoPE scaling {rope_type!r} (mreg converts linear)")
        writer.add_rope_freq_base(full.get("rope_theta") or 1_000_000.0)
        local = rope.get("sliding_attention", {}).get("rope_theta") or config.get("rope_local_base_freq")
        if local is not None:
            writer.add_rope_freq_base_swa(local)
        if softcap := config.get("final_logit_softcapping"):
            writer.add_final_logit_softcapping(softcap)
        if config.get("sliding_window_pattern") != 1:
            writer.add_sliding_window(hf.config_value(config, "sliding_window"))

    def add_vocab(self, writer: GGUFWriter, folder: Path, config: Mapping[str, Any]) -> None:
        if not (folder / "tokenizer.model").is_file():
            raise FormatError(f"{folder.name} has no tokenizer.model; mreg converts Gemma with its SentencePiece "
                              f"tokenizer")
        add_sentencepiece(writer, folder, config.get("vocab_size"))
        writer.add_add_space_prefix(False)

    def skips(self, hf_name: str) -> bool:
        return self.version == 2 and hf_name == "lm_head.weight"

    def norm_shift(self, gguf_name: str) -> float:
        return 1.0 if gguf_name.endswith("norm.weight") else 0.0

    def extra_tensors(self, config: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return {}
