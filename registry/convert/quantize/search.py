"""ggml's per-group scale searches, run on every group of a tensor at once.

A group is a column of an (n, groups) float32 array: element ``i`` of every group is row ``i``, so each
sum over a group is a chain of row additions in ggml's order (not ``np.sum``, whose pairwise summation
rounds differently). Every product is written in ggml's operand order, since float32 rounding depends on it.
"""

from __future__ import annotations

import numpy as np

from .floats import round_clipped

GROUP_MAX_EPS = np.float32(1e-15)
_F32 = np.float32


def _ordered_sum(a: np.ndarray) -> np.ndarray:
    """Σ over axis 0 of an (n, groups) array, as ggml's ``s = 0; for i: s += a[i]``."""
    total = a[0] + _F32(0)
    for row in a[1:]:
        total += row
    return total


def fit_scale_min(x: np.ndarray, weights: np.ndarray, nmax: int, rmin: float, rdelta: float,
                  nstep: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ggml's ``make_qkx2_quants`` (squared error) for every group: (scale, -min, levels 0..nmax as float32)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        low = np.minimum(np.minimum.reduce(x, axis=0), _F32(0))
        high = np.maximum.reduce(x, axis=0)
        flat = high == low
        sum_w = _ordered_sum(weights)
        sum_x = _ordered_sum(weights * x)

        iscale = _F32(nmax) / (high - low)
        scale = _F32(1) / iscale
        levels = round_clipped(_finite(iscale) * (x - low), 0, nmax)
        best_error = _error(scale, low, levels, x, weights)

        for step in range(nstep + 1):
            factor = (_F32(rmin) + _F32(rdelta) * _F32(step)) + _F32(nmax)
            trial = round_clipped(_finite(factor / (high - low)) * (x - low), 0, nmax)
            wl = weights * trial
            sum_l = _ordered_sum(wl)
            sum_l2 = _ordered_sum(wl * trial)
            sum_xl = _ordered_sum(wl * x)
            det = sum_w * sum_l2 - sum_l * sum_l
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / det
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det
            clamp = this_min > 0
            this_min[clamp] = 0
            this_scale = np.where(clamp, sum_xl / sum_l2, this_scale)
            error = _error(this_scale, this_min, trial, x, weights)
            better = (det > 0) & (error < best_error)
            if better.any():
                levels = np.where(better, trial, levels)
                best_error = np.where(better, error, best_error)
                scale = np.where(better, this_scale, scale)
                low = np.where(better, this_min, low)

    scale[flat] = 0
    levels[:, flat] = 0
    return scale, -low, levels


def _finite(iscale: np.ndarray) -> np.ndarray:
    """An infinite inverse scale (a range of subnormals) as 0: ggml's ``nearest_int(inf)`` clamps to level 0 too."""
    return np.where(np.isfinite(iscale), iscale, _F32(0))


def _error(scale: np.ndarray, low: np.ndarray, levels: np.ndarray, x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    diff = scale * levels
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
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        weights = x * x
        wx = weights * x
        levels = round_clipped((_F32(-nmax) / signed_max) * x, -nmax, nmax - 1)
        sum_lx, sum_l2 = _symmetric_sums(levels, weights, wx)
        scale = np.where(sum_l2 != 0, sum_lx / sum_l2, _F32(0))
        best = scale * sum_lx
        for step in range(-9, 10):
            if step == 0:
                continue
            iscale = -(_F32(nmax) + _F32(0.1) * _F32(step)) / signed_max
            trial = round_clipped(iscale * x, -nmax, nmax - 1)
            sum_lx, sum_l2 = _symmetric_sums(trial, weights, wx)
            better = (sum_l2 > 0) & (sum_lx * sum_lx > best * sum_l2)
            if better.any():
                levels = np.where(better, trial, levels)
                scale = np.where(better, sum_lx / sum_l2, scale)
                best = np.where(better, scale * sum_lx, best)
    levels += _F32(nmax)
    scale[zero] = 0
    levels[:, zero] = 0
    return scale, levels


def _symmetric_sums(levels: np.ndarray, weights: np.ndarray, wx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    wl = weights * levels
    wl *= levels
    return _ordered_sum(wx * levels), _ordered_sum(wl)
