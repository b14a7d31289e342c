"""Tensors quantized exactly as ggml's ``ggml_quantize_chunk`` does with no importance matrix.

``quantize(data, qtype)`` is the one entry point: float32 rows in, the GGUF tensor bytes out. F32, F16
and BF16 are conversions (``floats``); Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1 are in ``legacy``, Q2_K, Q3_K,
Q4_K, Q5_K and Q6_K in ``kquants``. Work is vectorised over all blocks, ``CHUNK_WEIGHTS`` weights at a time.

Byte identity holds for every finite float32 weight (subnormals and ±float32 max included) and, for
F32/F16/BF16, for NaN and ±inf too. The block types refuse NaN and ±inf with a ValueError, as
llama-quantize does ("quantized data validation failed"): ggml's blocks for them are garbage.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from mreg.registry.convert.quantize.floats import bf16_bits, fp16_bits
from mreg.registry.convert.quantize.kquants import (
    quantize_q2_k,
    quantize_q3_k,
    quantize_q4_k,
    quantize_q5_k,
    quantize_q6_k,
)
from mreg.registry.convert.quantize.legacy import quantize_q4_0, quantize_q4_1, quantize_q5_0, quantize_q5_1, quantize_q8_0

CHUNK_WEIGHTS = 512 * 256
"""Weights converted per numpy pass: enough to amortise Python, few enough that temporaries stay in cache
(and memory stays at the input plus the output, whatever the tensor's size)."""

_BLOCKS: dict[GGMLQuantizationType, Callable[[np.ndarray], np.ndarray]] = {
    GGMLQuantizationType.F16: lambda values: fp16_bits(values).view(np.uint8),
    GGMLQuantizationType.BF16: lambda values: bf16_bits(values).view(np.uint8),
    GGMLQuantizationType.Q8_0: quantize_q8_0,
    GGMLQuantizationType.Q4_0: quantize_q4_0,
    GGMLQuantizationType.Q4_1: quantize_q4_1,
    GGMLQuantizationType.Q5_0: quantize_q5_0,
    GGMLQuantizationType.Q5_1: quantize_q5_1,
    GGMLQuantizationType.Q2_K: quantize_q2_k,
    GGMLQuantizationType.Q3_K: quantize_q3_k,
    GGMLQuantizationType.Q4_K: quantize_q4_k,
    GGMLQuantizationType.Q5_K: quantize_q5_k,
    GGMLQuantizationType.Q6_K: quantize_q6_k,
}
"""Each type's function of (blocks, block size) float32 → (blocks, type size) uint8."""
_CHUNK_SCALE = {GGMLQuantizationType.Q3_K: 16}
"""Types quantized ``CHUNK_WEIGHTS`` × this many weights at a time: Q3_K works through a chunk in cache-sized
slices (``search.SLICE_GROUPS``) but runs the last, short rounds of its level refinement once for the whole
chunk, sharing out their Python overhead."""
_FLOAT_TYPES = frozenset({GGMLQuantizationType.F16, GGMLQuantizationType.BF16})
SUPPORTED = frozenset({GGMLQuantizationType.F32, *_BLOCKS})
"""The types ``quantize`` writes."""


def quantize(data: np.ndarray, qtype: GGMLQuantizationType, *, threads: int = 1) -> np.ndarray:
    """float32 (..., n) → uint8 (..., n // block size * type size), the bytes ggml writes for ``qtype``.

    Other float dtypes (a memory-mapped float16 tensor) are converted to float32 a chunk at a time.
    With ``threads`` > 1, chunks are quantized on that many threads (numpy releases the GIL inside
    its loops); the bytes are the same.

    Raises ValueError for a type not in ``SUPPORTED``, a row length that is not a multiple of the
    type's block size (the caller picks a fallback type for those tensors), or NaN or ±inf weights
    for a block type.
    """
    if qtype not in SUPPORTED:
        raise ValueError(f"cannot quantize to {qtype.name}")
    if np.ndim(data) == 0:
        raise ValueError("cannot quantize a scalar: quantize takes rows of weights")
    data = np.asarray(data)
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    if data.shape[-1] % block_size:
        raise ValueError(f"row length {data.shape[-1]} is not a multiple of {qtype.name}'s block size {block_size}")
    out_shape = (*data.shape[:-1], data.shape[-1] // block_size * type_size)
    if qtype == GGMLQuantizationType.F32:
        return np.ascontiguousarray(data, dtype=np.float32).view(np.uint8).reshape(out_shape)
    blocks = data.reshape(-1, block_size)
    out = np.empty((blocks.shape[0], type_size), dtype=np.uint8)
    step = CHUNK_WEIGHTS * _CHUNK_SCALE.get(qtype, 1) // block_size
    check_finite = qtype not in _FLOAT_TYPES

    def quantize_chunk(start: int) -> None:
        chunk = np.ascontiguousarray(blocks[start:start + step], dtype=np.float32)
        if check_finite and not np.isfinite(chunk).all():
            raise ValueError(f"cannot quantize NaN or infinite weights to {qtype.name}")
        out[start:start + step] = _BLOCKS[qtype](chunk)

    starts = range(0, blocks.shape[0], step)
    if threads > 1 and len(starts) > 1:
        with ThreadPoolExecutor(min(threads, len(starts))) as pool:
            for _ in pool.map(quantize_chunk, starts):
                pass
    else:
        for start in starts:
            quantize_chunk(start)
    return out.reshape(out_shape)
