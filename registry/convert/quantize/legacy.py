"""Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1 blocks of 32 weights, as ggml's ``quantize_row_*_ref`` write them.

Each function takes (blocks, 32) float32 and returns (blocks, bytes) uint8. Written here rather than taken
from ``gguf.quants``, which differs from ggml on blocks of zeros that start with -0.0 (ggml's scale search
starts from +0.0 and never replaces it). The casts are ggml's: ``(int8_t)(v + 8.5f)`` truncates toward
zero through int32 (numpy's ``astype`` does the same on x86, wrapping to the low byte), and Q8_0 rounds
with ``roundf`` (half away from zero).
"""

from __future__ import annotations

import numpy as np

from mreg.registry.convert.quantize.floats import fp16_bits

_F32 = np.float32


def quantize_q8_0(blocks: np.ndarray) -> np.ndarray:
    """Q8_0: fp16 d = max|x| / 127, then 32 int8 ``roundf(x / d)``."""
    d = np.max(np.abs(blocks), axis=1) / _F32(127)
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = blocks * _inverse(d)[:, None]
        magnitude = np.abs(scaled)
        rounded = np.floor(magnitude)
        rounded += magnitude - rounded >= _F32(0.5)
    levels = _to_int8(np.copysign(rounded, scaled))
    return np.concatenate([_fp16_bytes(d), levels.view(np.uint8)], axis=1)


def quantize_q4_0(blocks: np.ndarray) -> np.ndarray:
    """Q4_0: fp16 d = signed max / -8, then 16 bytes of two 4-bit levels."""
    d = _signed_max(blocks) / _F32(-8)
    levels = np.minimum(_to_int8(_scaled(blocks, None, d, 8.5)), 15)
    return np.concatenate([_fp16_bytes(d), _nibbles(levels, mask=False)], axis=1)


def quantize_q4_1(blocks: np.ndarray) -> np.ndarray:
    """Q4_1: fp16 d = (max - min) / 15, fp16 min, then 16 bytes of two 4-bit levels."""
    low, d = _min_and_step(blocks, 15)
    levels = np.minimum(_to_int8(_scaled(blocks, low, d, 0.5)), 15)
    return np.concatenate([_fp16_bytes(d), _fp16_bytes(low), _nibbles(levels, mask=False)], axis=1)


def quantize_q5_0(blocks: np.ndarray) -> np.ndarray:
    """Q5_0: fp16 d = signed max / -16, 32 fifth bits (uint32), 16 bytes of low nibbles."""
    d = _signed_max(blocks) / _F32(-16)
    levels = np.minimum(_to_int8(_scaled(blocks, None, d, 16.5)), 31)
    return np.concatenate([_fp16_bytes(d), _fifth_bits(levels), _nibbles(levels)], axis=1)


def quantize_q5_1(blocks: np.ndarray) -> np.ndarray:
    """Q5_1: fp16 d = (max - min) / 31, fp16 min, 32 fifth bits (uint32), 16 bytes of low nibbles."""
    low, d = _min_and_step(blocks, 31)
    levels = _to_int8(_scaled(blocks, low, d, 0.5))
    return np.concatenate([_fp16_bytes(d), _fp16_bytes(low), _fifth_bits(levels), _nibbles(levels)], axis=1)


def _signed_max(blocks: np.ndarray) -> np.ndarray:
    """The first value of largest magnitude in each block, or +0.0 when every value is ±0."""
    magnitude = np.abs(blocks)
    first = np.argmax(magnitude, axis=1)
    rows = np.arange(blocks.shape[0])
    return np.where(magnitude[rows, first] > 0, blocks[rows, first], _F32(0))


def _min_and_step(blocks: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """(min, (max - min) / levels) per block, min and max being first occurrences (the sign of a zero counts)."""
    rows = np.arange(blocks.shape[0])
    low = blocks[rows, np.argmin(blocks, axis=1)]
    high = blocks[rows, np.argmax(blocks, axis=1)]
    with np.errstate(over="ignore", invalid="ignore"):
        return low, (high - low) / _F32(levels)


def _inverse(d: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", over="ignore"):
        return np.where(d != 0, _F32(1) / d, _F32(0))


def _to_int8(values: np.ndarray) -> np.ndarray:
    """C's float → int8_t conversion on x86: truncate toward zero to int32, keep the low byte."""
    with np.errstate(invalid="ignore", over="ignore"):
        return values.astype(np.int32).astype(np.int8)


def _scaled(blocks: np.ndarray, offset: np.ndarray | None, d: np.ndarray, bias: float) -> np.ndarray:
    """``(x - offset) * (1 / d) + bias`` per block (no offset: ``x * (1 / d) + bias``), as ggml computes it."""
    with np.errstate(over="ignore", invalid="ignore"):
        shifted = blocks if offset is None else blocks - offset[:, None]
        return shifted * _inverse(d)[:, None] + _F32(bias)


def _fp16_bytes(values: np.ndarray) -> np.ndarray:
    return fp16_bits(values).view(np.uint8).reshape(-1, 2)


def _nibbles(levels: np.ndarray, mask: bool = True) -> np.ndarray:
    """Levels of (blocks, 32) → 16 bytes: the first half in the low nibbles, the second in the high ones.

    Q4_0 and Q4_1 OR the whole first byte in (``mask=False``), as ggml does; levels are 0..15 for finite input.
    """
    low = levels.view(np.uint8)
    if mask:
        low = low & np.uint8(0x0F)
    return low[:, :16] | (low[:, 16:] << 4)


def _fifth_bits(levels: np.ndarray) -> np.ndarray:
    """Bit 4 of each of the 32 levels, level ``j`` at bit ``j`` of a little-endian uint32."""
    return np.packbits((levels.view(np.uint8) >> 4) & np.uint8(1), axis=1, bitorder="little")
