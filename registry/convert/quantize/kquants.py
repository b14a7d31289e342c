"""K-quant super-blocks of 256 weights, as ggml's ``quantize_row_q{2,3,4,5,6}_K_ref`` write them.

Each function takes (blocks, 256) float32 and returns (blocks, bytes) uint8. Q2_K fits a scale and a min to
each group of 16 (weighted by |x|, absolute error) and stores them as 4-bit multiples of two fp16
super-scales; Q3_K fits a signed scale to each group of 16 (``make_q3_quants``) and stores it as a 6-bit
multiple of one fp16 super-scale. Q4_K and Q5_K fit a scale and
a min to each group of 32 (weighted by the group's rms plus |x|), store them as 6-bit multiples of two fp16
super-scales, then requantize every weight against the stored values; Q6_K fits a signed scale to each
group of 16 and stores it as an int8 multiple of one fp16 super-scale. A group whose stored scale is 0
keeps the levels of its fit, as ggml's does.
"""

from __future__ import annotations

import numpy as np

from mreg.registry.convert.quantize.floats import (
    NEAREST_INT_BIAS,
    biased_nearest_int,
    fp16_bits,
    fp16_value,
    nearest_int,
)
from mreg.registry.convert.quantize.search import (
    GROUP_MAX_EPS,
    SLICE_GROUPS,
    fit_scale_min,
    fit_symmetric,
    fit_symmetric_refined,
    refined_levels,
)

QK_K = 256
_F32 = np.float32


def quantize_q2_k(blocks: np.ndarray) -> np.ndarray:
    """Q2_K: 16 bytes of 4-bit scales and mins, 64 bytes of 2-bit levels, fp16 d, fp16 dmin."""
    count = blocks.shape[0]
    groups = _groups_of_16(blocks)
    fitted, fitted_mins, fit_levels = fit_scale_min(groups, np.abs(groups), 3, -0.5, 0.1, 15, absolute=True)
    scales = fitted.reshape(count, 16)
    mins = fitted_mins.reshape(count, 16)
    max_scale = _positive_max(scales)
    max_min = _positive_max(mins)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inv_scale = np.where(max_scale > 0, _F32(15) / max_scale, _F32(0))
        inv_min = np.where(max_min > 0, _F32(15) / max_min, _F32(0))
        ls = np.where((max_scale > 0)[:, None], nearest_int(inv_scale[:, None] * scales) & 0xFF, 0)
        lm = np.where((max_min > 0)[:, None], (nearest_int(inv_min[:, None] * mins) << 4) & 0xFF, 0)
        packed = (ls | lm).astype(np.uint8)
        d_bits = fp16_bits(max_scale / _F32(15))
        dmin_bits = fp16_bits(max_min / _F32(15))
        d = fp16_value(d_bits)[:, None] * (packed & np.uint8(0x0F)).astype(_F32)
        dm = fp16_value(dmin_bits)[:, None] * (packed >> 4).astype(_F32)
        x = blocks.reshape(count, 16, 16)
        requant = np.clip(nearest_int((x + dm[:, :, None]) / d[:, :, None]), 0, 3)
    fit_levels = fit_levels.T.reshape(count, 16, 16).astype(np.int32)
    levels = np.where((d != 0)[:, :, None], requant, fit_levels).astype(np.uint8)
    return np.concatenate([packed, _two_bit_levels(levels), d_bits.view(np.uint8).reshape(count, 2),
                           dmin_bits.view(np.uint8).reshape(count, 2)], axis=1)


def _groups_of_16(blocks: np.ndarray) -> np.ndarray:
    """The 16-weight groups of super-blocks, one group per column (the fits work along axis 0)."""
    return np.ascontiguousarray(blocks.reshape(blocks.shape[0] * 16, 16).T)


def _largest_scale(fitted: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each super-block's 16 group scales, their magnitudes (NaN as 0), the row indices and, per row, the
    index of the first largest magnitude (ggml's ``max_scale`` search)."""
    scales = fitted.reshape(count, 16)
    magnitude = np.abs(scales)
    magnitude[np.isnan(magnitude)] = 0
    return scales, magnitude, np.arange(count), np.argmax(magnitude, axis=1)


def quantize_q3_k(blocks: np.ndarray) -> np.ndarray:
    """Q3_K: 32 bytes of high bits, 64 bytes of 2-bit low parts, 12 bytes of 6-bit scales, fp16 d."""
    fitted = fit_symmetric_refined(blocks.reshape(-1, 16), nmax=4).reshape(-1, 16)
    out = np.empty((blocks.shape[0], QK_K // 8 + QK_K // 4 + 12 + 2), dtype=np.uint8)
    step = SLICE_GROUPS // 16  # as the fit, a slice at a time, for the cache
    for start in range(0, blocks.shape[0], step):
        out[start:start + step] = _q3_k_blocks(blocks[start:start + step], fitted[start:start + step])
    return out


def _q3_k_blocks(blocks: np.ndarray, fitted: np.ndarray) -> np.ndarray:
    """Q3_K's super-blocks from their weights and their groups' fitted scales (blocks, 16)."""
    count = blocks.shape[0]
    scales, magnitude, rows, first = _largest_scale(fitted, count)
    max_scale = np.where(magnitude[rows, first] > 0, scales[rows, first], _F32(0))
    stored = max_scale != 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        iscale = _F32(-32) / max_scale
        wrapped = nearest_int(iscale[:, None] * scales).astype(np.int8).astype(np.int32)
        six_bit = np.where(stored[:, None], np.clip(wrapped, -32, 31) + 32, 0).astype(np.uint8)
        d_bits = np.where(stored, fp16_bits(_F32(1) / iscale), np.uint16(0))
        d = fp16_value(d_bits)[:, None] * (six_bit.astype(_F32) - _F32(32))
        # Each group's d repeated, not broadcast: numpy is slow to broadcast along a 16-long axis.
        codes = biased_nearest_int(blocks.reshape(-1) / np.repeat(d.reshape(-1), 16))
    np.clip(codes, NEAREST_INT_BIAS - 4, NEAREST_INT_BIAS + 3, out=codes)
    levels = codes.astype(np.uint8).reshape(count * 16, 16)  # the low byte: -4..3 as a wrapped byte
    levels += np.uint8(4)  # 0..7
    kept = np.flatnonzero(d.ravel() == 0)  # a group whose stored scale is 0 keeps its fitted levels
    if kept.size:
        levels[kept] = refined_levels(blocks.reshape(count * 16, 16)[kept], nmax=4)
    levels = levels.reshape(count, QK_K)
    high = _bit_planes(levels.reshape(count, 8, 32) >> 2, width=1)
    low = levels & np.uint8(3)
    packed_scales = np.concatenate([
        (six_bit[:, :8] & np.uint8(0x0F)) | ((six_bit[:, 8:] & np.uint8(0x0F)) << 4),
        _bit_planes((six_bit >> 4).reshape(count, 4, 4), width=2),
    ], axis=1)
    return np.concatenate([high, _two_bit_levels(low), packed_scales, d_bits.view(np.uint8).reshape(count, 2)],
                          axis=1)


def quantize_q4_k(blocks: np.ndarray) -> np.ndarray:
    """Q4_K: fp16 d, fp16 dmin, 12 bytes of packed 6-bit scales and mins, 128 bytes of 4-bit levels."""
    head, levels = _scale_min_blocks(blocks, nmax=15, rmin=-1.0, rdelta=0.1, nstep=20)
    pairs = levels.reshape(-1, 4, 2, 32)
    qs = pairs[:, :, 0] | (pairs[:, :, 1] << 4)
    return np.concatenate([head, qs.reshape(-1, 128)], axis=1)


def quantize_q5_k(blocks: np.ndarray) -> np.ndarray:
    """Q5_K: as Q4_K, then 32 bytes holding each level's fifth bit, then 128 bytes of low nibbles."""
    head, levels = _scale_min_blocks(blocks, nmax=31, rmin=-0.5, rdelta=0.1, nstep=15)
    pairs = levels.reshape(-1, 4, 2, 32) & np.uint8(0x0F)
    qs = pairs[:, :, 0] | (pairs[:, :, 1] << 4)
    qh = _bit_planes(levels.reshape(-1, 8, 32) >> 4, width=1)
    return np.concatenate([head, qh, qs.reshape(-1, 128)], axis=1)


def quantize_q6_k(blocks: np.ndarray) -> np.ndarray:
    """Q6_K: 128 bytes of low nibbles, 64 bytes of 2-bit high parts, 16 int8 scales, fp16 d."""
    count = blocks.shape[0]
    fitted, fit_levels = fit_symmetric(_groups_of_16(blocks), nmax=32)
    scales, magnitude, rows, first = _largest_scale(fitted, count)
    empty = magnitude[rows, first] < GROUP_MAX_EPS
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        iscale = _F32(-128) / scales[rows, first]
        d_bits = fp16_bits(_F32(1) / iscale)
        quant_scales = np.minimum(nearest_int(iscale[:, None] * scales), 127).astype(np.int8)
        d = fp16_value(d_bits)[:, None] * quant_scales.astype(_F32)
        x = blocks.reshape(count, 16, 16)
        requant = np.clip(nearest_int(x / d[:, :, None]), -32, 31) + 32
    fit_levels = fit_levels.T.reshape(count, 16, 16).astype(np.int32)
    levels = np.where((d != 0)[:, :, None], requant, fit_levels).astype(np.uint8).reshape(count, 2, 4, 32)

    low = levels & np.uint8(0x0F)
    ql = np.concatenate([low[:, :, 0] | (low[:, :, 2] << 4), low[:, :, 1] | (low[:, :, 3] << 4)], axis=2)
    qh = _bit_planes(levels.reshape(count * 2, 4, 32) >> 4, width=2).reshape(count, 64)
    out = np.concatenate([ql.reshape(count, 128), qh, quant_scales.view(np.uint8),
                          d_bits.view(np.uint8).reshape(count, 2)], axis=1)
    out[empty] = 0
    return out


def _scale_min_blocks(blocks: np.ndarray, nmax: int, rmin: float, rdelta: float,
                      nstep: int) -> tuple[np.ndarray, np.ndarray]:
    """The shared part of Q4_K and Q5_K: (d, dmin and packed scales as 16 bytes, levels (blocks, 256) uint8)."""
    count = blocks.shape[0]
    groups = np.ascontiguousarray(blocks.reshape(count * 8, 32).T)
    with np.errstate(over="ignore", invalid="ignore"):
        sum_x2 = groups[0] * groups[0]
        for row in groups[1:]:
            sum_x2 += row * row
        weights = np.sqrt(sum_x2 / _F32(32)) + np.abs(groups)
    fitted, fitted_mins, fit_levels = fit_scale_min(groups, weights, nmax, rmin, rdelta, nstep)
    scales = fitted.reshape(count, 8)
    mins = fitted_mins.reshape(count, 8)

    max_scale = _positive_max(scales)
    max_min = _positive_max(mins)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inv_scale = np.where(max_scale > 0, _F32(63) / max_scale, _F32(0))
        inv_min = np.where(max_min > 0, _F32(63) / max_min, _F32(0))
        ls = np.minimum(nearest_int(inv_scale[:, None] * scales) & 0xFF, 63).astype(np.uint8)
        lm = np.minimum(nearest_int(inv_min[:, None] * mins) & 0xFF, 63).astype(np.uint8)
        d_bits = fp16_bits(max_scale / _F32(63))
        dmin_bits = fp16_bits(max_min / _F32(63))
        d = fp16_value(d_bits)[:, None] * ls.astype(_F32)
        dm = fp16_value(dmin_bits)[:, None] * lm.astype(_F32)
        x = blocks.reshape(count, 8, 32)
        requant = np.clip(nearest_int((x + dm[:, :, None]) / d[:, :, None]), 0, nmax)
    fit_levels = fit_levels.T.reshape(count, 8, 32).astype(np.int32)
    levels = np.where((d != 0)[:, :, None], requant, fit_levels).astype(np.uint8).reshape(count, QK_K)

    packed = np.concatenate([
        ls[:, :4] | ((ls[:, 4:] >> 4) << 6),
        lm[:, :4] | ((lm[:, 4:] >> 4) << 6),
        (ls[:, 4:] & np.uint8(0x0F)) | ((lm[:, 4:] & np.uint8(0x0F)) << 4),
    ], axis=1)
    head = np.concatenate([d_bits.view(np.uint8).reshape(count, 2), dmin_bits.view(np.uint8).reshape(count, 2),
                           packed], axis=1)
    return head, levels


def _positive_max(values: np.ndarray) -> np.ndarray:
    """Largest value of each row if positive, else +0 (ggml's running ``if (v > best) best = v`` from 0)."""
    best = np.fmax.reduce(values, axis=1)
    return np.where(best > 0, best, _F32(0))


def _two_bit_levels(levels: np.ndarray) -> np.ndarray:
    """(blocks, 256) levels 0..3 → (blocks, 64) bytes: in each half, byte ``l`` holds levels l, l+32, l+64, l+96."""
    count = levels.shape[0]
    return _bit_planes(levels.reshape(count * 2, 4, 32), width=2).reshape(count, 64)


def _bit_planes(parts: np.ndarray, width: int) -> np.ndarray:
    """(..., k, m) values below ``2**width`` (k · width ≤ 8, m a multiple of 4) → (..., m) bytes with part
    ``i`` at bit ``i * width``.

    The parts are combined as 8-byte words (4-byte when m is not a multiple of 8): no value's bits cross
    into the next byte, so shifting a word shifts each of its bytes alike."""
    m = parts.shape[-1]
    word = np.uint64 if m % 8 == 0 else np.uint32
    words = np.ascontiguousarray(parts, dtype=np.uint8).view(word)
    out = words[..., 0, :].copy()
    for i in range(1, parts.shape[-2]):
        out |= words[..., i, :] << word(i * width)
    return out.view(np.uint8)
