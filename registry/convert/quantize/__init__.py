"""Tensors quantized exactly as ggml's ``ggml_quantize_chunk`` does with no importance matrix.

``quantize(data, qtype)`` is the one entry point: float32 rows in, the GGUF tensor bytes out. F32, F16
and BF16 are conversions; Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1 are in ``legacy``, Q4_K, Q5_K and Q6_K in
``kquants``. Work is vectorised over all blocks, ``CHUNK_BLOCKS`` blocks at a time so temporaries stay
small.
"""

from __future__ import annotations

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from .floats import bf16_bits, fp16_bits
from .kquants import quantize_q4_k, quantize_q5_k, quantize_q6_k
from .legacy import quantize_q4_0, quantize_q4_1, quantize_q5_0, quantize_q5_1, quantize_q8_0

CHUNK_BLOCKS = 512
"""256-weight blocks (or as many weights in 32-weight blocks) per numpy pass: large enough to amortise
Python, small enough for the temporaries to stay in cache."""

_BLOCKS = {
    GGMLQuantizationType.Q8_0: quantize_q8_0,
    GGMLQuantizationType.Q4_0: quantize_q4_0,
    GGMLQuantizationType.Q4_1: quantize_q4_1,
    GGMLQuantizationType.Q5_0: quantize_q5_0,
    GGMLQuantizationType.Q5_1: quantize_q5_1,
    GGMLQuantizationType.Q4_K: quantize_q4_k,
    GGMLQuantizationType.Q5_K: quantize_q5_k,
    GGMLQuantizationType.Q6_K: quantize_q6_k,
}
SUPPORTED = frozenset({GGMLQuantizationType.F32, GGMLQuantizationType.F16, GGMLQuantizationType.BF16, *_BLOCKS})
"""The types ``quantize`` writes."""


def quantize(data: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    """float32 (..., n) → uint8 (..., n // block size * type size), the bytes ggml writes for ``qtype``.

    Raises ValueError for a type not in ``SUPPORTED`` or a row length that is not a multiple of the
    type's block size (the caller picks a fallback type for those tensors).
    """
    if qtype not in SUPPORTED:
        raise ValueError(f"cannot quantize to {qtype.name}")
    if np.ndim(data) == 0:
        raise ValueError("cannot quantize a scalar: quantize takes rows of weights")
    data = np.ascontiguousarray(data, dtype=np.float32)
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    if data.shape[-1] % block_size:
        raise ValueError(f"row length {data.shape[-1]} is not a multiple of {qtype.name}'s block size {block_size}")
    out_shape = (*data.shape[:-1], data.shape[-1] // block_size * type_size)
    if qtype == GGMLQuantizationType.F32:
        return data.view(np.uint8).reshape(out_shape)
    if qtype == GGMLQuantizationType.F16:
        return fp16_bits(data).view(np.uint8).reshape(out_shape)
    if qtype == GGMLQuantizationType.BF16:
        return bf16_bits(data).view(np.uint8).reshape(out_shape)
    blocks = data.reshape(-1, block_size)
    out = np.empty((blocks.shape[0], type_size), dtype=np.uint8)
    step = CHUNK_BLOCKS * 256 // block_size
    for start in range(0, blocks.shape[0], step):
        out[start:start + step] = _BLOCKS[qtype](blocks[start:start + step])
    return out.reshape(out_shape)
