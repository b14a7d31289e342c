"""Mixture-of-experts models: how their per-expert Hugging Face tensors become llama.cpp's 3-D expert
tensors, and their expert keys.

A Hugging Face MoE checkpoint stores each expert's FFN separately (`...experts.<e>.<kind>.weight`,
each `[rows, cols]`); llama.cpp stacks the experts of a layer into one `[n_expert, rows, cols]`
tensor per kind (`blk.<layer>.ffn_{gate,up,down}_exps`), expert 0 first. The router
(`...gate.weight`, `ffn_gate_inp`) maps through gguf's tensor name map like any other tensor.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gguf
from gguf import GGUFWriter, MODEL_TENSOR

from mreg.registry.errors import FormatError


@dataclass(frozen=True)
class ExpertLayout:
    """Where a family keeps its experts' tensors."""

    pattern: re.Pattern[str]
    """A per-expert tensor name; groups: layer, expert, kind."""
    kinds: Mapping[str, MODEL_TENSOR]
    """Each kind's stacked GGUF tensor."""
    expert_ffn_key: str | None = None
    """The config key of the experts' FFN width, written as `expert_feed_forward_length` (Qwen MoE)."""

    def stacked_name(self, hf_name: str) -> tuple[str, int] | None:
        """(GGUF name of the stacked tensor, expert index) of a per-expert tensor; None for any other."""
        match = self.pattern.fullmatch(hf_name)
        if match is None:
            return None
        layer, expert, kind = int(match[1]), int(match[2]), match[3]
        return gguf.TENSOR_NAMES[self.kinds[kind]].format(bid=layer) + ".weight", expert


MIXTRAL_EXPERTS = ExpertLayout(
    re.compile(r"model\.layers\.(\d+)\.block_sparse_moe\.experts\.(\d+)\.(w[123])\.weight"),
    {"w1": MODEL_TENSOR.FFN_GATE_EXP, "w2": MODEL_TENSOR.FFN_DOWN_EXP, "w3": MODEL_TENSOR.FFN_UP_EXP},
)
QWEN_MOE_EXPERTS = ExpertLayout(
    re.compile(r"model\.layers\.(\d+)\.mlp\.experts\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight"),
    {"gate_proj": MODEL_TENSOR.FFN_GATE_EXP, "up_proj": MODEL_TENSOR.FFN_UP_EXP,
     "down_proj": MODEL_TENSOR.FFN_DOWN_EXP},
    expert_ffn_key="moe_intermediate_size",
)

_COUNT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts")
_USED_KEYS = ("num_experts_per_tok", "num_experts_per_token", "top_k_experts")


def _first(config: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    return next((config[k] for k in keys if config.get(k) is not None), None)


def expert_count(config: Mapping[str, Any]) -> int:
    """The number of experts per layer the config declares (0 for a dense model)."""
    return int(_first(config, _COUNT_KEYS) or 0)


def add_expert_keys(writer: GGUFWriter, config: Mapping[str, Any], layout: ExpertLayout | None) -> None:
    """`expert_count` and `expert_used_count` when the config has them (llama.cpp writes them for any
    model), and the experts' FFN width for the families that have one."""
    if (count := _first(config, _COUNT_KEYS)) is not None:
        writer.add_expert_count(count)
    if (used := _first(config, _USED_KEYS)) is not None:
        writer.add_expert_used_count(used)
    if layout is not None and layout.expert_ffn_key is not None:
        if (width := config.get(layout.expert_ffn_key)) is not None:
            writer.add_expert_feed_forward_length(width)


def check_experts(name: str, experts: Mapping[int, object], config: Mapping[str, Any]) -> list[int]:
    """The expert indices of one stacked tensor in order; FormatError unless they are exactly
    0 … n_expert-1."""
    count = expert_count(config)
    if count == 0:
        raise FormatError(f"config.json declares no expert count, but the weights have experts ({name})")
    if sorted(experts) != list(range(count)):
        raise FormatError(f"{name}: the weights have {len(experts)} of the {count} experts config.json declares")
    return list(range(count))
