"""What a repo's indexed headers add up to: parameters, formats, quants, and memory to run it.

Pure functions over catalog records, shared by ``mreg inspect``, ``mreg search`` and the catalog API.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mreg.registry.catalog import HeaderRecord

_SPLIT = re.compile(r"-\d{5}-of-\d{5}(?=\.gguf$)")
# Bits per weight when the whole model is stored in that type (Q4_K_M mixes Q4_K and Q6_K).
BITS_PER_WEIGHT = {"F16": 16.0, "Q8_0": 8.5, "Q4_K_M": 4.85}
KV_BYTES_PER_VALUE = 2  # an F16 KV cache, llama.cpp's default


def repo_parameters(headers: Sequence[HeaderRecord], indexed: Sequence[str] = ()) -> tuple[int, dict[str, int]]:
    """The model's parameter count and its split by dtype.

    safetensors files add up (only those the shard index names, when there is one); GGUF files are
    alternatives (one per quant, split sets summed): the largest counts.
    """
    good = [h for h in headers if h.error is None and h.parameters is not None]
    shards = [h for h in good if h.format == "safetensors" and (not indexed or h.path in indexed)]
    if shards:
        return _sum(shards)
    sets: dict[str, list[HeaderRecord]] = {}
    for h in good:
        if h.format == "gguf":
            sets.setdefault(_SPLIT.sub("", h.path), []).append(h)
    return max((_sum(group) for group in sets.values()), default=(0, {}), key=lambda pair: pair[0])


def _sum(headers: Sequence[HeaderRecord]) -> tuple[int, dict[str, int]]:
    by_dtype: dict[str, int] = {}
    for h in headers:
        for dtype, n in h.dtypes.items():
            by_dtype[dtype] = by_dtype.get(dtype, 0) + n
    return sum(h.parameters or 0 for h in headers), dict(sorted(by_dtype.items()))


def formats(headers: Sequence[HeaderRecord]) -> list[str]:
    return sorted({h.format for h in headers if h.error is None})


def quants(headers: Sequence[HeaderRecord]) -> list[str]:
    """The GGUF file types available (Q4_K_M, Q8_0…), from the headers themselves."""
    return sorted({h.gguf["file_type"] for h in headers if h.gguf and h.gguf.get("file_type")})


def architecture_from_config(config: Mapping[str, Any]) -> str | None:
    archs = config.get("architectures")
    if isinstance(archs, list) and archs and isinstance(archs[0], str):
        return archs[0]
    model_type = config.get("model_type")
    return model_type if isinstance(model_type, str) else None


def parse_config(data: bytes) -> dict[str, Any]:
    """config.json as a dict ({} when it is not a JSON object)."""
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class ModelShape:
    """What sizes the KV cache: layers, KV heads, head size, and the context length."""

    layers: int
    kv_heads: int
    head_dim: int
    context_length: int

    @classmethod
    def from_gguf(cls, gguf: Mapping[str, Any]) -> "ModelShape | None":
        return cls._build(gguf.get("block_count"), gguf.get("embedding_length"), gguf.get("head_count"),
                          gguf.get("head_count_kv"), gguf.get("context_length"))

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "ModelShape | None":
        text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
        return cls._build(text.get("num_hidden_layers"), text.get("hidden_size"), text.get("num_attention_heads"),
                          text.get("num_key_value_heads"), text.get("max_position_embeddings"),
                          text.get("head_dim"))

    @classmethod
    def _build(cls, layers: Any, hidden: Any, heads: Any, kv_heads: Any, context: Any,
               head_dim: Any = None) -> "ModelShape | None":
        values = (layers, hidden, heads, context)
        if not all(isinstance(v, int) and v > 0 for v in values):
            return None
        kv = kv_heads if isinstance(kv_heads, int) and kv_heads > 0 else heads
        dim = head_dim if isinstance(head_dim, int) and head_dim > 0 else hidden // heads
        return cls(layers=layers, kv_heads=kv, head_dim=dim, context_length=context)

    @property
    def kv_cache_bytes(self) -> int:
        """K and V for every layer and position, in F16."""
        return 2 * self.layers * self.context_length * self.kv_heads * self.head_dim * KV_BYTES_PER_VALUE


def memory_estimates(parameters: int, shape: ModelShape | None) -> dict[str, int]:
    """Bytes to run the model at F16 / Q8_0 / Q4_K_M: the weights plus the KV cache at full context."""
    kv = shape.kv_cache_bytes if shape else 0
    return {name: int(parameters * bits / 8) + kv for name, bits in BITS_PER_WEIGHT.items()}
