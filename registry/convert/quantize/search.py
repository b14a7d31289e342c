"""ggml's per-group scale searches, run on every group of a tensor at once.

A group is a column of an (n, groups) float32 array: element ``i`` of every group is row ``i``, so each
sum over a group is a chain of row additions in ggml's order (not ``np.sum``, whose pairwise summation
rounds differently). Every product is written in ggml's operand order, since float32 rounding depends on it.

The searches try a fixed list of inverse scales and keep, per group, the best one; they remember which
(inverse scale and offset) won and round the levels once at the end, rather than copying levels per try.
"""

from __future__ import annotations

import numpy as np

GROUP_MAX_EPS = np.float32(1e-15)
_F32 = np.float32


class _Rounder:
    """``clamp(nearest_int(v), low, high)`` into a float32 buffer, for |v| < 2²² (as the searches' values are).

    ``np.rint`` rounds half to even as ggml's ``nearest_int`` does. ``fmax`` turns a NaN (an input range
    that overflows float32) into ``low``: ggml's level 0 when ``low`` is 0. Bounds are full arrays because
    numpy's min/max against a scalar is several times slower than against an array.
    """

    def __init__(self, shape: tuple[int, ...], low: int, high: int) -> None:
        self.low = np.full(shape, low, dtype=_F32)
        self.high = np.full(shape, high, dtype=_F32)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        np.rint(values, out=values)
        np.fmax(values, self.low, out=values)
        np.minimum(values, self.high, out=values)
        return values


def _ordered_sum(a: np.ndarray) -> np.ndarray:
    """Σ over axis 0 of an (n, groups) array, as ggml's ``s = 0; for i: s += a[i]``."""
    total = a[0] + _F32(0)
    for row in a[1:]:
        total += row
    return total


def fit_scale_min(x: np.ndarray, weights: np.ndarray, nmax: int, rmin: float, rdelta: float,
                  nstep: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ggml's ``make_qkx2_quants`` (squared error) for every group: (scale, -min, levels 0..nmax as float32)."""
    rounder = _Rounder(x.shape, 0, nmax)
    trial = np.empty_like(x)
    wl = np.empty_like(x)
    scratch = np.empty_like(x)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        low = np.minimum(np.minimum.reduce(x, axis=0), _F32(0))
        high = np.maximum.reduce(x, axis=0)
        flat = high == low
        sum_w = _ordered_sum(weights)
        sum_x = _ordered_sum(np.multiply(weights, x, out=scratch))

        iscale = _F32(nmax) / (high - low)
        scale = _F32(1) / iscale
        best_iscale = _finite(iscale)
        best_offset = low
        rounder(np.multiply(np.subtract(x, low, out=trial), best_iscale, out=trial))
        best_error = _error(scale, low, trial, x, weights, scratch)

        for step in range(nstep + 1):
            factor = (_F32(rmin) + _F32(rdelta) * _F32(step)) + _F32(nmax)
            iscale = _finite(factor / (high - low))
            rounder(np.multiply(np.subtract(x, low, out=trial), iscale, out=trial))
            np.multiply(weights, trial, out=wl)
            sum_l = _ordered_sum(wl)
            sum_l2 = _ordered_sum(np.multiply(wl, trial, out=scratch))
            sum_xl = _ordered_sum(np.multiply(wl, x, out=scratch))
            det = sum_w * sum_l2 - sum_l * sum_l
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / det
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det
            clamp = this_min > 0
            this_min[clamp] = 0
            this_scale = np.where(clamp, sum_xl / sum_l2, this_scale)
            error = _error(this_scale, this_min, trial, x, weights, scratch)
            better = (det > 0) & (error < best_error)
            best_iscale = np.where(better, iscale, best_iscale)
            best_offset = np.where(better, low, best_offset)
            best_error = np.where(better, error, best_error)
            scale = np.where(better, this_scale, scale)
            low = np.where(better, this_min, low)

        levels = rounder(np.multiply(np.subtract(x, best_offset, out=trial), best_iscale, out=trial))
    scale[flat] = 0
    levels[:, flat] = 0
    return scale, -low, levels


def _finite(iscale: np.ndarray) -> np.ndarray:
    """An infinite inverse scale (a range of subnormals) as 0: ggml's ``nearest_int(inf)`` clamps to level 0 too."""
    return np.where(np.isfinite(iscale), iscale, _F32(0))


def _error(scale: np.ndarray, low: np.ndarray, levels: np.ndarray, x: np.ndarray, weights: np.ndarray,
           scratch: np.ndarray) -> np.ndarray:
    """Σ w·(scale·level + low − x)² per group, in ggml's order."""
    diff = np.multiply(levels, scale, out=scratch)
    diff += low
    diff -= x
    diff *= diff
    diff *= weights
    return _ordered_sum(diff)


def fit_symmetric(x: np.ndarray, nmax: int) -> tuple[np.ndarray, np.ndarray]:
    """ggml's ``make_qx_quants`` with ``rmse_type`` 1 and no weights for every group: (scale, levels 0..2·nmax-1)."""
    groups = np.arange(x.shape[1])
    first_max = np.argmax(np.abs(x), axis=0)
    signed_max = x[first_max, groups]
    zero = np.abs(signed_max) < GROUP_MAX_EPS
    rounder = _Rounder(x.shape, -nmax, nmax - 1)
    trial = np.empty_like(x)
    scratch = np.empty_like(x)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        weights = x * x
        wx = weights * x
        best_iscale = _F32(-nmax) / signed_max
        sum_lx, sum_l2 = _symmetric_sums(rounder(np.multiply(best_iscale, x, out=trial)), weights, wx, scratch)
        scale = np.where(sum_l2 != 0, sum_lx / sum_l2, _F32(0))
        best = scale * sum_lx
        for step in range(-9, 10):
            if step == 0:
                continue
            iscale = -(_F32(nmax) + _F32(0.1) * _F32(step)) / signed_max
            sum_lx, sum_l2 = _symmetric_sums(rounder(np.multiply(iscale, x, out=trial)), weights, wx, scratch)
            better = (sum_l2 > 0) & (sum_lx * sum_lx > best * sum_l2)
            best_iscale = np.where(better, iscale, best_iscale)
            scale = np.where(better, sum_lx / sum_l2, scale)
            best = np.where(better, scale * sum_lx, best)
        levels = rounder(np.multiply(best_iscale, x, out=trial))
    levels += _F32(nmax)
    scale[zero] = 0
    levels[:, zero] = 0
    return scale, levels


def _symmetric_sums(levels: np.ndarray, weights: np.ndarray, wx: np.ndarray,
                    scratch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Σ w·x·l, Σ w·l·l) per group, in ggml's order."""
    sum_lx = _ordered_sum(np.multiply(wx, levels, out=scratch))
    np.multiply(weights, levels, out=scratch)
    scratch *= levels
    return sum_lx, _ordered_sum(scratch)
