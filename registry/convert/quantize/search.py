"""ggml's per-group scale searches, run on every group of a tensor at once.

A group is a column of an (n, groups) float32 array: element ``i`` of every group is row ``i``, so each
sum over a group is a chain of row additions in ggml's order (not ``np.sum``, whose pairwise summation
rounds differently). Every product is written in ggml's operand order, since float32 rounding depends on it.

The searches try a fixed list of inverse scales and keep, per group, the best one; they remember which
(inverse scale and offset) won and round the levels once at the end, rather than copying levels per try.
"""

from __future__ import annotations

import numpy as np

from mreg.registry.convert.quantize.floats import NEAREST_INT_MAGIC as _MAGIC

GROUP_MAX_EPS = np.float32(1e-15)
_F32 = np.float32
_CODE_MASK = np.int32(0x007FFFFF)
_CODE_ZERO = 0x00400000
"""The low 23 bits of ``v + _MAGIC`` are ``nearest_int(v) + _CODE_ZERO``."""


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


def fit_scale_min(x: np.ndarray, weights: np.ndarray, nmax: int, rmin: float, rdelta: float, nstep: int,
                  absolute: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ggml's ``make_qkx2_quants`` for every group: (scale, -min, levels 0..nmax as float32).

    The error is squared, or absolute with ``absolute`` (ggml's ``use_mad``, as Q2_K asks)."""
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
        best_error = _error(scale, low, trial, x, weights, scratch, absolute)

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
            error = _error(this_scale, this_min, trial, x, weights, scratch, absolute)
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
           scratch: np.ndarray, absolute: bool) -> np.ndarray:
    """Σ w·(scale·level + low − x)² (or Σ w·|…| if ``absolute``) per group, in ggml's order."""
    diff = np.multiply(levels, scale, out=scratch)
    diff += low
    diff -= x
    if absolute:
        np.abs(diff, out=diff)
    else:
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


def fit_symmetric_refined(groups: np.ndarray, nmax: int, tries: int = 5) -> np.ndarray:
    """ggml's ``make_q3_quants`` with ``do_rmse`` for every row of a (groups, n) float32 array: each group's
    scale. (A K-quant keeps a group's fitted levels only where its stored scale is 0: ``refined_levels``
    fits those few groups again.)

    Levels start at ``nearest_int(-nmax / signed max · x)``; then, in up to ``tries`` passes over the
    group, each level in turn moves to the one that best fits the others' least-squares scale (weights
    x²) if that raises (Σ w·x·l)² / Σ w·l², which ggml tries only while the others' Σ w·x·l is positive.
    A group stops after a pass that changed nothing. See ``_Rounds`` for how that runs vectorised.
    """
    return _fit_refined(groups, nmax, tries, None)


def refined_levels(groups: np.ndarray, nmax: int, tries: int = 5) -> np.ndarray:
    """The levels ``fit_symmetric_refined`` ends with for each row of a (groups, n) float32 array, as uint8
    0..2·nmax-1 (all 0 in a group of zeros, as ggml leaves them)."""
    levels = np.empty(groups.shape, dtype=_F32)
    _fit_refined(groups, nmax, tries, levels)
    return levels.astype(np.uint8)


SLICE_GROUPS = 1 << 15
"""Groups ``fit_symmetric_refined`` fits at a time: a slice's arrays stay in cache through the fit and the
first rounds of refinement; the groups still refining in every slice then run their last, small rounds
together, sharing those rounds' Python overhead."""


def _fit_refined(groups: np.ndarray, nmax: int, tries: int, levels: np.ndarray | None) -> np.ndarray:
    """``fit_symmetric_refined``'s scales; with ``levels`` (float32, the shape of ``groups``), its levels
    written there too."""
    count = groups.shape[0]
    sum_lx, sum_l2 = np.empty(count, dtype=_F32), np.empty(count, dtype=_F32)
    zero = np.empty(count, dtype=bool)
    left = []
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # as ggml's floats, for weights near ±max
        for start in range(0, count, SLICE_GROUPS):
            part = slice(start, start + SLICE_GROUPS)
            rounds = _fit_start(groups[part], nmax, sum_lx[part], sum_l2[part], zero[part],
                                None if levels is None else levels[part])
            rounds.active += start
            rounds.run(nmax, tries, sum_lx, sum_l2, levels, until=rounds.active.size // 4)
            left.append(rounds)
        _Rounds.joined(left).run(nmax, tries, sum_lx, sum_l2, levels, until=0)
        scale = np.where(sum_l2 > 0, sum_lx / sum_l2, _F32(0))
    scale[zero] = 0
    if levels is not None:
        levels += _F32(nmax)
        levels[zero] = 0
    return scale


def _fit_start(groups: np.ndarray, nmax: int, sum_lx: np.ndarray, sum_l2: np.ndarray, zero: np.ndarray,
               levels: np.ndarray | None) -> _Rounds:
    """Every group's start levels and their Σ w·x·l and Σ w·l² (written to ``sum_lx``, ``sum_l2``, and the
    levels to ``levels`` if given), whether it is a group of zeros (``zero``), and the refinement of the
    groups that can move (their indices from 0 in ``active``). Float warnings are the caller's to silence."""
    n = groups.shape[1]
    # Groups as columns for the searches and in-order sums; a copy (one group's transpose is a view), as it
    # is overwritten below.
    x = groups.T.copy()
    signed_max = _signed_max(x)
    np.less(np.abs(signed_max), GROUP_MAX_EPS, out=zero)
    iscale = _F32(-nmax) / signed_max
    # |iscale · x| ≤ nmax (rounding aside) but in groups of zeros, whose levels are replaced: no NaN to
    # clamp, so a plain clip is nearest_int's clamp.
    start = _rounded(np.multiply(x, iscale), nmax)
    weights = x * x
    wx = np.multiply(weights, x, out=x)
    sum_lx[...] = _ordered_sum(np.multiply(wx, start, out=wx))
    np.multiply(weights, start, out=weights)
    sum_l2[...] = _ordered_sum(np.multiply(weights, start, out=weights))
    if levels is not None:
        levels[...] = start.T
    # With a positive signed max every level has the sign opposite to its weight: no partial
    # Σ w·x·l is ever positive, and the group keeps its start.
    active = np.flatnonzero((signed_max < 0) & ~zero)
    rows = np.take(groups, active, axis=0)
    # The active groups' start one group per row, computed again (cheaper than a transpose of 16-long rows).
    level = _rounded(rows.reshape(-1) * np.repeat(iscale[active], n), nmax)
    return _Rounds(rows, level, active, sum_lx[active], sum_l2[active])


def _rounded(values: np.ndarray, nmax: int) -> np.ndarray:
    """clamp(nearest_int(v), -nmax, nmax - 1) of finite float32 values |v| < 2²², in place."""
    np.rint(values, out=values)
    return np.clip(values, _F32(-nmax), _F32(nmax - 1), out=values)


def _signed_max(x: np.ndarray) -> np.ndarray:
    """Per column of an (n ≤ 255, groups) array, the first value of largest magnitude (ggml's
    ``if (ax > amax) { amax = ax; max = x[i]; }``): the column's max or min, whichever is larger in
    magnitude, looked up in order only where they tie."""
    high = np.maximum.reduce(x, axis=0)
    low = np.minimum.reduce(x, axis=0)
    signed = np.where(high >= -low, high, low)
    tied = np.flatnonzero(high == -low)
    if tied.size:
        column = np.abs(x[:, tied])
        signed[tied] = x[_first_max_row(column), tied]
    return signed


class _Rounds:
    """``make_q3_quants``'s passes for some groups, as rounds: ``x`` their weights and ``level`` their start
    levels (one group per row, flattened), ``active`` their indices, ``sum_lx`` and ``sum_l2`` their
    Σ w·x·l and Σ w·l².

    ggml visits levels one at a time, but moves few: each round here tries every remaining position of
    the current pass at once against the group's current sums, and takes the first that ggml would
    take (the ones before it saw the same sums and did not move). A group's pass ends when no later
    position moves; the group is done after a pass without a move or after ``tries`` passes. Only the
    few positions whose rounded level changes are carried through the rest of the test.

    Groups are rows, worked on as flat arrays (a group's values broadcast by ``np.repeat``: numpy is
    slow to broadcast along a 16-long axis), so finished groups are dropped by cheap row takes and each
    group's candidates come out together, in ggml's order. Each position's w·x·l and w·l² are kept and
    recomputed only where its level moves. Positions that may move are found with one float comparison
    (rounded value + 1.5·2²³ against level + 1.5·2²³); ``nearest_int``'s clamped bits decide for those few.
    """

    def __init__(self, x: np.ndarray, level: np.ndarray, active: np.ndarray, sum_lx: np.ndarray,
                 sum_l2: np.ndarray) -> None:
        self.n = x.shape[1]
        self.x = x.reshape(-1)
        weights = self.x * self.x
        self.wxl = weights * self.x
        self.wxl *= level
        self.wl2 = np.multiply(weights, level, out=weights)
        self.wl2 *= level
        # Equal to a rounded value + _MAGIC exactly when nearest_int gives this level.
        self.shifted = np.add(level, _MAGIC, out=level)
        self.active, self.sum_lx, self.sum_l2 = active, sum_lx, sum_l2
        self.position = np.zeros(active.size, dtype=np.intp)
        self.passes = np.zeros(active.size, dtype=np.intp)
        self.moved = np.zeros(active.size, dtype=bool)

    _ARRAYS = ("x", "wxl", "wl2", "shifted", "active", "sum_lx", "sum_l2", "position", "passes", "moved")

    @classmethod
    def joined(cls, parts: list[_Rounds]) -> _Rounds:
        """One state holding every part's groups."""
        joined = cls.__new__(cls)
        joined.n = parts[0].n
        for name in cls._ARRAYS:
            setattr(joined, name, np.concatenate([getattr(part, name) for part in parts]))
        return joined

    def run(self, nmax: int, tries: int, all_lx: np.ndarray, all_l2: np.ndarray, levels: np.ndarray | None,
            until: int) -> None:
        """Rounds until at most ``until`` groups are left; each finished group's sums are written to
        ``all_lx`` and ``all_l2`` (and its levels to ``levels``, if given) at its index."""
        n = self.n
        x, wxl, wl2, shifted = self.x, self.wxl, self.wl2, self.shifted
        active, sum_lx, sum_l2 = self.active, self.sum_lx, self.sum_l2
        position, passes, moved = self.position, self.passes, self.moved
        low, high = np.int32(_CODE_ZERO - nmax), np.int32(_CODE_ZERO + nmax - 1)
        while active.size > until:
            rounded = np.repeat(sum_l2, n)
            rounded -= wl2
            rounded *= x  # x · the others' Σ w·l²
            others_lx = np.repeat(sum_lx, n)
            others_lx -= wxl
            rounded /= others_lx
            rounded += _MAGIC
            # Every position whose rounded value may differ from its level (a superset: floats that differ
            # can share their low bits, beyond ±2²²); the few are checked on nearest_int's clamped bits below.
            flat = np.flatnonzero(rounded != shifted)
            group, at = np.divmod(flat, n)
            new_code = np.clip(rounded[flat].view(np.int32) & _CODE_MASK, low, high)
            old_code = shifted[flat].view(np.int32) & _CODE_MASK
            others_lx = others_lx[flat]
            keep = np.flatnonzero((new_code != old_code) & (others_lx > 0) & (at >= position[group]))
            flat, group, at, new_code, others_lx = (a[keep] for a in (flat, group, at, new_code, others_lx))
            others_l2 = sum_l2[group] - wl2[flat]
            new_level = (new_code - np.int32(_CODE_ZERO)).astype(_F32)
            x_at = x[flat]
            w_at = x_at * x_at
            wx_at = w_at * x_at
            new_lx = others_lx + wx_at * new_level
            new_l2 = others_l2 + w_at * new_level * new_level
            old_lx, old_l2 = sum_lx[group], sum_l2[group]
            better = np.flatnonzero((new_l2 > 0) & (new_lx * new_lx * old_l2 > old_lx * old_lx * new_l2))
            first = np.ones(better.size, dtype=bool)
            np.not_equal(group[better[1:]], group[better[:-1]], out=first[1:])
            taken = better[first]
            rows, flat, moving = group[taken], flat[taken], new_level[taken]
            shifted[flat] = moving + _MAGIC
            wxl[flat] = wx_at[taken] * moving
            wl2[flat] = w_at[taken] * moving * moving
            sum_lx[rows], sum_l2[rows] = new_lx[taken], new_l2[taken]
            found = np.zeros(active.size, dtype=bool)
            found[rows] = True
            moved |= found
            position[rows] = at[taken] + 1
            pass_over = ~found | (position == n)
            done = pass_over & (~moved | (passes + 1 >= tries))
            again = pass_over & ~done
            passes += again
            position *= ~again
            moved &= ~again
            if done.any():
                finished = np.flatnonzero(done)
                ids = active[finished]
                all_lx[ids], all_l2[ids] = sum_lx[finished], sum_l2[finished]
                if levels is not None:
                    levels[ids] = shifted.reshape(-1, n)[finished] - _MAGIC
                keep = np.flatnonzero(~done)
                active, position, passes, moved, sum_lx, sum_l2 = (
                    a[keep] for a in (active, position, passes, moved, sum_lx, sum_l2))
                x, wxl, wl2, shifted = (np.take(a.reshape(-1, n), keep, axis=0).reshape(-1)
                                        for a in (x, wxl, wl2, shifted))
        self.x, self.wxl, self.wl2, self.shifted = x, wxl, wl2, shifted
        self.active, self.sum_lx, self.sum_l2 = active, sum_lx, sum_l2
        self.position, self.passes, self.moved = position, passes, moved


def _first_true_row(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column of an (n ≤ 255, groups) bool array: whether any row is true, and the first true row."""
    n = mask.shape[0]
    codes = np.arange(n, 0, -1, dtype=np.uint8)[:, None]
    best = np.maximum.reduce(mask.view(np.uint8) * codes, axis=0)
    return best > 0, n - best.astype(np.intp)


def _first_max_row(values: np.ndarray) -> np.ndarray:
    """Per column of an (n ≤ 255, groups) array, the first row holding the column's max (``np.argmax``
    over axis 0, which numpy computes several times slower)."""
    return _first_true_row(values == np.maximum.reduce(values, axis=0))[1]
