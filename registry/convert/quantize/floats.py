"""Float conversions and rounding exactly as ggml does them in float32.

ggml's fp16 conversion rounds to nearest-even like numpy's, but writes every NaN as a quiet NaN
(0x7E00) keeping only the sign; bf16 rounds to nearest-even by adding 0x7FFF plus the lowest kept bit,
and turns a NaN quiet by setting bit 6. ``nearest_int`` is ggml's float trick: adding 1.5·2²³ rounds to
nearest-even, and the low mantissa bits are the integer (NaN and ±inf give 0 and -2²², values beyond
±2²² wrap), so it is reproduced bit for bit rather than with ``np.rint``.
"""

from __future__ import annotations

import numpy as np

NEAREST_INT_MAGIC = np.float32(12582912.0)
"""1.5·2²³: the low 23 bits of ``v + NEAREST_INT_MAGIC`` are ``nearest_int(v) + 2²²``."""


def fp16_bits(x: np.ndarray) -> np.ndarray:
    """float32 → IEEE half bits (uint16), as ggml's ``GGML_FP32_TO_FP16``."""
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        bits = x.astype(np.float16).view(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        sign = (x.view(np.uint32) >> 16).astype(np.uint16) & np.uint16(0x8000)
        bits = np.where(nan, sign | np.uint16(0x7E00), bits)
    return bits


def fp16_value(bits: np.ndarray) -> np.ndarray:
    """IEEE half bits → float32."""
    return bits.view(np.float16).astype(np.float32)


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 → bfloat16 bits (uint16), as ggml's ``ggml_compute_fp32_to_bf16``."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = (u + (np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1)))) >> 16
    quiet_nan = (u >> 16) | np.uint32(64)
    return np.where((u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000), quiet_nan, rounded).astype(np.uint16)


NEAREST_INT_BIAS = np.int32(0x00400000)
"""2²²: what ``biased_nearest_int`` adds to ``nearest_int`` (its low bytes are zero)."""


def nearest_int(x: np.ndarray) -> np.ndarray:
    """ggml's ``nearest_int`` of float32 values, as int32."""
    return biased_nearest_int(np.array(x, dtype=np.float32)) - NEAREST_INT_BIAS


def biased_nearest_int(values: np.ndarray) -> np.ndarray:
    """``nearest_int`` + 2²² of a float32 array, computed in its place (it is overwritten): an int32 view."""
    with np.errstate(invalid="ignore", over="ignore"):
        values += NEAREST_INT_MAGIC
    codes = values.view(np.int32)
    codes &= np.int32(0x007FFFFF)
    return codes

