"""What a parsed header says about a model: parameter counts, GGUF facts, quant labels in file names."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from mreg.registry.formats.events import HeaderParsed
from mreg.registry.formats.gguf import FILE_TYPES, TOKENS, GGUFArray


@dataclass(frozen=True)
class GGUFInfo:
    """The GGUF metadata a registry shows; None where the file does not say (or says it oddly)."""

    architecture: str | None
    name: str | None
    file_type: str | None
    quantization_version: int | None
    context_length: int | None
    block_count: int | None
    embedding_length: int | None
    head_count: int | None
    head_count_kv: int | None
    tokenizer_model: str | None
    bos_token_id: int | None
    eos_token_id: int | None
    bos_token: str | None
    eos_token: str | None
    chat_template: str | None
    split_no: int | None
    split_count: int | None
    split_tensors_count: int | None


@dataclass(frozen=True)
class HeaderSummary:
    """Counts over a header's tensors (GGUF shapes count elements, whatever the block packing)."""

    format: str
    tensor_count: int
    parameters: int
    parameters_by_dtype: Mapping[str, int]
    header_bytes: int
    gguf: GGUFInfo | None


def summarize(parsed: HeaderParsed) -> HeaderSummary:
    """Parameter count (sum of prod(shape)) overall and by dtype, tensor count, header bytes, GGUF facts."""
    by_dtype: dict[str, int] = {}
    for tensor in parsed.tensors:
        by_dtype[tensor.dtype] = by_dtype.get(tensor.dtype, 0) + math.prod(tensor.shape)
    return HeaderSummary(
        format=parsed.format,
        tensor_count=len(parsed.tensors),
        parameters=sum(by_dtype.values()),
        parameters_by_dtype=MappingProxyType(dict(sorted(by_dtype.items()))),
        header_bytes=parsed.header_end,
        gguf=gguf_info(parsed.metadata) if parsed.format == "gguf" else None,
    )


def _int(value: Any) -> int | None:
    return value if type(value) is int else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _token(tokens: Any, token_id: int | None) -> str | None:
    """A token's text, when the parser kept it (a picked special token or one of the first few)."""
    if token_id is None:
        return None
    if isinstance(tokens, GGUFArray):
        if token_id in tokens.picked:
            return _str(tokens.picked[token_id])
        return _str(tokens.head[token_id]) if 0 <= token_id < len(tokens.head) else None
    if isinstance(tokens, tuple) and 0 <= token_id < len(tokens):
        return _str(tokens[token_id])
    return None


def gguf_info(metadata: Mapping[str, Any]) -> GGUFInfo:
    """The registry's view of GGUF metadata (`{arch}.*` keys under `general.architecture`)."""
    arch = _str(metadata.get("general.architecture"))

    def per_arch(key: str) -> int | None:
        return _int(metadata.get(f"{arch}.{key}")) if arch else None

    file_type = _int(metadata.get("general.file_type"))
    bos = _int(metadata.get("tokenizer.ggml.bos_token_id"))
    eos = _int(metadata.get("tokenizer.ggml.eos_token_id"))
    tokens = metadata.get(TOKENS)
    return GGUFInfo(
        architecture=arch,
        name=_str(metadata.get("general.name")),
        file_type=FILE_TYPES.get(file_type) if file_type is not None else None,
        quantization_version=_int(metadata.get("general.quantization_version")),
        context_length=per_arch("context_length"),
        block_count=per_arch("block_count"),
        embedding_length=per_arch("embedding_length"),
        head_count=per_arch("attention.head_count"),
        head_count_kv=per_arch("attention.head_count_kv"),
        tokenizer_model=_str(metadata.get("tokenizer.ggml.model")),
        bos_token_id=bos,
        eos_token_id=eos,
        bos_token=_token(tokens, bos),
        eos_token=_token(tokens, eos),
        chat_template=_str(metadata.get("tokenizer.chat_template")),
        split_no=_int(metadata.get("split.no")),
        split_count=_int(metadata.get("split.count")),
        split_tensors_count=_int(metadata.get("split.tensors.count")),
    )


_QUANT_NAMES = (
    "F32 F16 Q4_0 Q4_1 Q4_1_SOME_F16 Q4_2 Q4_3 Q8_0 Q5_0 Q5_1 Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M "
    "Q5_K_S Q5_K_M Q6_K IQ2_XXS IQ2_XS Q2_K_S IQ3_XS IQ3_XXS IQ1_S IQ4_NL IQ3_S IQ3_M IQ2_S IQ2_M IQ4_XS "
    "IQ1_M BF16 Q4_0_4_4 Q4_0_4_8 Q4_0_8_8 TQ1_0 TQ2_0 MXFP4_MOE NVFP4 Q1_0 "
    "Q2_K_XL Q3_K_XL Q4_K_XL Q5_K_XL Q6_K_XL Q8_K_XL"
).split()
_QUANT_RE = re.compile("(?:UD-)?(?:" + "|".join(_QUANT_NAMES) + ")(?:_[A-Z]+)?")
"""The Hub's GGUF_QUANT_RE (huggingface.js): llama_ftype names in enum order, then a size suffix."""


def quant_label_from_filename(name: str) -> str | None:
    """The last llama_ftype-like token of the upper-cased name, as the Hub labels GGUF files.

    ``Qwen3-8B-UD-Q4_K_XL.gguf`` -> ``UD-Q4_K_XL``; ``m-Q4_K_M-00001-of-00003.gguf`` -> ``Q4_K_M``.
    """
    matches = _QUANT_RE.findall(name.upper())
    return matches[-1] if matches else None
