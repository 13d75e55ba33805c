"""An exact multiply-shift for a threshold activation: the same levels as the thresholds, from one DSP48.

Thresholds T[c, 1..N] (non-decreasing) map an accumulator a to `count_k(a >= T[c, k])`. When the activation
behind them is affine (a scale, a bias, a batch-norm, then a uniform quantizer: almost always), the same
function over the accumulator's whole range [lo, hi] is

    clip(floor((a * M[c] + O[c]) / 2**S), 0, N)

for integers M[c] > 0, O[c] and S. This module finds them, or says there are none, exactly: a monotone
function equals the count everywhere in [lo, hi] iff it is right on both sides of every threshold inside the
range (and at the range ends), so the conditions are, for every k with lo < T[c, k] <= hi,

    M*T_k + O >= k * 2**S          (level k reached at T_k)
    M*(T_k - 1) + O <= k * 2**S - 1  (not reached one below)

plus `M*lo + O >= n_lo * 2**S` when n_lo > 0 thresholds are always reached, and `M*hi + O <= (n_hi + 1) * 2**S
- 1` when only n_hi < N are reached at the top. Each is `M*a + O >= L` or `M*b + O <= U`; an O exists iff
`M*(b - a) <= U - L` for every pair, which bounds M from both sides. Feasibility only grows with S (scale M and
O by 2), so the smallest S is found by bisection. Ties and rounding modes need no special care: they are in the
thresholds already.

A channel whose top thresholds are all equal (the count jumps from n to N at one accumulator value V, as some
exported activations do: seen in RadioML VGG10) is fitted below V, and saturates at V (`saturate_at`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .requantize import ROUNDING_MODES, Requantization, requantize_reference

__all__ = ["fit_affine_thresholds", "AffineFit", "MAX_SHIFT", "fit_rounded_shift"]

MAX_SHIFT = 40  # keeps every bound below 2**50: exact in int64


def _constraints(t: np.ndarray, lo: int, hi: int, shift: int):
    """(a, L) for `M*a + O >= L` and (b, U) for `M*b + O <= U`, as int64 arrays, for one channel."""
    n = len(t)
    k = np.arange(1, n + 1, dtype=np.int64)
    inside = (t > lo) & (t <= hi)
    step = np.int64(1) << shift
    a, low = list(t[inside]), list(k[inside] * step)
    b, high = list(t[inside] - 1), list(k[inside] * step - 1)
    n_lo, n_hi = int(np.sum(t <= lo)), int(np.sum(t <= hi))
    if n_lo > 0:
        a.append(lo)
        low.append(n_lo * step)
    if n_hi < n:
        b.append(hi)
        high.append((n_hi + 1) * step - 1)
    as_array = lambda v: np.array(v, dtype=np.int64)
    return as_array(a), as_array(low), as_array(b), as_array(high)


def _mult_range(t: np.ndarray, lo: int, hi: int, shift: int) -> tuple[int, int] | None:
    """The integers M >= 1 for which an O exists at `shift`, as (M_min, M_max), or None."""
    a, low, b, high = _constraints(t, lo, hi, shift)
    if len(a) == 0 or len(b) == 0:
        return 1, 1 << 62  # one side unconstrained: any slope works (the other side is met by O alone)
    d = b[None, :] - a[:, None]  # M * d <= U - L for every pair
    r = high[None, :] - low[:, None]
    if np.any((d == 0) & (r < 0)):
        return None
    m_min, m_max = 1, 1 << 62
    pos, neg = d > 0, d < 0
    if pos.any():
        m_max = min(m_max, int((r[pos] // d[pos]).min()))
    if neg.any():
        m_min = max(m_min, int((-((-r[neg]) // d[neg])).max()))  # ceil(r / d) for d < 0
    return (m_min, m_max) if m_min <= m_max else None


def _offset(t: np.ndarray, lo: int, hi: int, shift: int, mult: int) -> int:
    """The smallest O that meets every lower bound (or the largest that meets the upper ones, when none)."""
    a, low, b, high = _constraints(t, lo, hi, shift)
    return int((low - mult * a).max()) if len(a) else int((high - mult * b).min())


@dataclass(frozen=True)
class AffineFit:
    mult: tuple[int, ...]
    offset: tuple[int, ...]
    shift: int
    saturate_at: tuple[int | None, ...]  # per channel: the accumulator value from which the count is N, or None


def _channel_problem(t: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, int, int, int | None] | None:
    """The thresholds and range to fit for one channel, and its saturation value: the whole row, or the row
    below a final run of equal thresholds (kept once, as the level not reached below it)."""
    if _mult_range(t, lo, hi, MAX_SHIFT) is not None:
        return t, lo, hi, None
    run = 1
    while run < len(t) and t[-1 - run] == t[-1]:
        run += 1
    top = int(t[-1])
    if run < 2 or not lo < top <= hi:
        return None
    head = t[:len(t) - run + 1]
    if _mult_range(head, lo, top - 1, MAX_SHIFT) is None:
        return None
    return head, lo, top - 1, top


_FITS: dict = {}  # (thresholds, range) -> fit: the folding search builds the same layer many times
_FITS_KEPT = 64


def fit_affine_thresholds(thresholds, acc_lo: int, acc_hi: int) -> AffineFit | None:
    """Integers with clip(floor((a*M + O) / 2**S), 0, N) == count_k(a >= T[c, k]) for every a in
    [acc_lo, acc_hi] below the channel's saturation value (from which the count is N), M as small as the common
    S allows; None when no such integers exist up to S = MAX_SHIFT (a non-affine activation)."""
    t_all = np.asarray(thresholds, dtype=np.int64)
    key = (t_all.shape, t_all.tobytes(), int(acc_lo), int(acc_hi))
    if key not in _FITS:
        if len(_FITS) >= _FITS_KEPT:
            _FITS.pop(next(iter(_FITS)))
        _FITS[key] = _fit(t_all, acc_lo, acc_hi)
    return _FITS[key]


def _fit(t_all: np.ndarray, acc_lo: int, acc_hi: int) -> AffineFit | None:
    problems = [_channel_problem(t, int(acc_lo), int(acc_hi)) for t in t_all]
    if any(p is None for p in problems):
        return None
    shifts = []
    for t, lo, hi, _ in problems:
        low, high = 0, MAX_SHIFT
        while low < high:  # smallest feasible shift (feasibility only grows with the shift)
            mid = (low + high) // 2
            if _mult_range(t, lo, hi, mid) is None:
                low = mid + 1
            else:
                high = mid
        shifts.append(low)
    shift = max(shifts)
    mults, offsets = [], []
    for t, lo, hi, _ in problems:
        m_min, _ = _mult_range(t, lo, hi, shift)
        mults.append(m_min)
        offsets.append(_offset(t, lo, hi, shift, m_min))
    return AffineFit(tuple(mults), tuple(offsets), shift, tuple(p[3] for p in problems))


def fit_rounded_shift(thresholds, ranges, out_offset: int = 0) -> tuple[Requantization, tuple] | None:
    """A requantization with multiplier 1 equal to the threshold activation over each channel's accumulator
    range: `clip(R((a + O[c]) / 2**S), out_offset, out_offset + N) == out_offset + count_k(a >= T[c, k])`,
    R one of qonnx's rounding modes, below the channel's saturation value (from which the count is N, as in
    `fit_affine_thresholds`). Returns (requantization, saturate_at per channel or None), or None.

    This is what a quantizer after a power-of-two scale gives: uniform steps of 2**S, except that a rounding
    to nearest puts every tie on one side (HALF_EVEN alternates steps of 2**S - 1 and 2**S + 1, which
    `fit_affine_thresholds`' floor cannot express). Checking both sides of every threshold inside the range
    and the range's ends proves equality everywhere (both sides are monotone step functions). `ranges` is
    one (lo, hi) per channel, or one pair for all.
    """
    t_all = np.asarray(thresholds, dtype=np.int64)
    if t_all.ndim != 2 or t_all.shape[1] < 2:
        return None
    if len(ranges) == 2 and np.ndim(ranges[0]) == 0:
        ranges = [ranges] * len(t_all)
    n = t_all.shape[1]
    steps = np.diff(t_all, axis=1)
    positive = steps[steps > 0]
    if positive.size == 0:
        return None
    shifts = [s for s in range(MAX_SHIFT) if np.median(positive) - 1 <= (1 << s) <= np.median(positive) + 1]
    for shift in shifts:
        for mode in ROUNDING_MODES[1:]:  # ROUND is HALF_EVEN
            fits = [_rounded_shift_channel(t, int(lo), int(hi), shift, mode, int(out_offset))
                    for t, (lo, hi) in zip(t_all, ranges)]
            if all(f is not None for f in fits):
                rq = Requantization((1,) * len(fits), tuple(f[0] for f in fits), shift, mode, out_offset, out_offset + n)
                return rq, tuple(f[1] for f in fits)
    return None


def _rounded_shift_channel(t, lo: int, hi: int, shift: int, mode: str, out_offset: int):
    """(O, saturate_at) of `fit_rounded_shift` for one channel's thresholds t, or None: the whole row, or the
    row below a final run of equal thresholds (the count jumps to N there)."""
    o = _rounded_shift_offset(t, lo, hi, shift, mode, out_offset)
    if o is not None:
        return o, None
    top = int(t[-1])
    if len(t) < 2 or t[-2] != top or not lo < top <= hi:
        return None
    o = _rounded_shift_offset(t, lo, top - 1, shift, mode, out_offset)
    return None if o is None else (o, top)


def _rounded_shift_offset(t: np.ndarray, lo: int, hi: int, shift: int, mode: str, out_offset: int) -> int | None:
    """The offset O with clip(R((a + O) / 2**shift)) == out_offset + count for every a in [lo, hi], or None."""
    n, step, half = len(t), 1 << shift, (1 << shift) >> 1
    inside = np.flatnonzero((t > lo) & (t <= hi))
    points = np.unique(np.concatenate([t[inside], t[inside] - 1, [lo, hi]]))
    expected = (points[:, None] >= t[None, :]).sum(axis=1) + out_offset
    if len(inside):
        k, first = int(inside[0]) + 1 + out_offset, int(t[inside[0]])  # the level reached first inside, and where
        bases = {k * step - first, k * step - half - first, (k - 1) * step + 1 - first}
    else:  # constant over the range: below the lowest level or above the highest
        bases = {out_offset * step - hi - 2 * step, (out_offset + n) * step - lo + 2 * step}
    for base in sorted(bases):
        for o in range(base - 2, base + 3):
            rq = Requantization((1,), (o,), shift, mode, out_offset, out_offset + n)
            if np.array_equal(requantize_reference(points[:, None], rq)[:, 0], expected):
                return o
    return None
