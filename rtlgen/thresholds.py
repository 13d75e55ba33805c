"""Exact threshold derivation: integer accumulator -> quantizer level, found on the integers.

A quantized activation after a matrix layer is a per-channel map from the integer accumulator to a level
index n in 0..L-1. The map is monotone (a composition of affine ops, batch-norm, ReLU-like ops and a rounding
quantizer), so it is fully described by L-1 integer thresholds per channel: n(acc) = #{j : acc >= T[j]}.
We find each T[j] by binary search over the integers, evaluating the reference quantizer itself (float64),
never by solving the algebra in float32: this is what keeps rounding ties (ROUND is half-to-even) and
negative scales exact. Channels whose map decreases are flagged so the caller negates their weights.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ip_cores.requantize import Requantization, requantize_reference

from .errors import RtlgenError

SELF_CHECK_SAMPLES = 512


def derive_thresholds(level_index: Callable[[np.ndarray], np.ndarray], acc_lo: np.ndarray, acc_hi: np.ndarray,
                      n_levels: int, label: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Thresholds (MH, n_levels-1) in the accumulator domain and the per-channel `negated` mask.

    `level_index(acc)` maps a batch of accumulator vectors (B, MH) to level indices (B, MH). Thresholds of a
    negated channel c apply to -acc (the caller negates that channel's weights). Every threshold lies in
    [acc_lo, acc_hi + 1] of its (possibly negated) channel: acc_lo means "always reached", acc_hi + 1 "never".
    """
    acc_lo = np.asarray(acc_lo, dtype=np.int64)
    acc_hi = np.asarray(acc_hi, dtype=np.int64)
    n_at_lo = level_index(acc_lo[None, :])[0]
    n_at_hi = level_index(acc_hi[None, :])[0]
    negated = n_at_lo > n_at_hi
    sign = np.where(negated, -1, 1)
    lo = np.where(negated, -acc_hi, acc_lo)  # search domain in the (possibly negated) accumulator
    hi = np.where(negated, -acc_lo, acc_hi)

    def level_of(search_acc: np.ndarray) -> np.ndarray:
        return level_index(search_acc * sign[None, :])

    steps = n_levels - 1
    target = np.arange(1, steps + 1, dtype=np.int64)[:, None]
    low = np.broadcast_to(lo, (steps, lo.size)).copy()
    high = np.broadcast_to(hi + 1, (steps, lo.size)).copy()
    while np.any(low < high):
        mid = (low + high) // 2  # floor division keeps mid < high, so mid <= hi is always evaluable
        reached = level_of(mid) >= target
        active = low < high
        high = np.where(active & reached, mid, high)
        low = np.where(active & ~reached, mid + 1, low)
    thresholds = low.T.copy()  # (MH, steps)
    _self_check(level_of, thresholds, lo, hi, label, seed)
    return thresholds, negated


def _self_check(level_of, thresholds: np.ndarray, lo: np.ndarray, hi: np.ndarray, label: str, seed: int) -> None:
    """Compare threshold counting with direct evaluation on random and boundary accumulators.

    Catches an activation that is not monotone in the accumulator (which thresholds cannot express).
    """
    rng = np.random.default_rng(seed)
    span = (hi - lo + 1).astype(np.float64)
    samples = lo[None, :] + np.floor(rng.random((SELF_CHECK_SAMPLES, lo.size)) * span[None, :]).astype(np.int64)
    edges = [lo, hi] + [np.clip(thresholds[:, j] + d, lo, hi) for j in range(thresholds.shape[1]) for d in (-1, 0)]
    samples = np.concatenate([samples, np.stack(edges)])
    direct = level_of(samples)
    counted = np.stack([np.searchsorted(thresholds[c], samples[:, c], side="right") for c in range(lo.size)], axis=1)
    bad = np.argwhere(direct != counted)
    if bad.size:
        row, ch = bad[0]
        raise RtlgenError(f"{label}: the activation of channel {ch} is not monotone in the accumulator "
                          f"(at accumulator {samples[row, ch]}); it cannot be expressed as thresholds")


# Every float is a dyadic rational, so "fixed point" needs limits: a shift and a multiplier a DSP slice holds.
MAX_SHIFT = 24
MAX_MULT_BITS = 18


def derive_requantization(level_index: Callable[[np.ndarray], np.ndarray], in_steps: Callable[[np.ndarray], np.ndarray],
                          q, acc_lo: np.ndarray, acc_hi: np.ndarray, label: str) -> Requantization:
    """An exact integer requantization for a quantizer with too many levels for thresholds.

    `in_steps(acc)` is the quantizer's input in units of its scale (before rounding and clipping) for
    accumulators (B, MH); `level_index` the level index the quantizer gives. The slope and offset of
    `in_steps` must be dyadic (power-of-two scale ratios, as fixed-point models have): then
    level = clip(R((acc*mult + offset) / 2**shift), lo, hi) exactly. A ReLU before the quantizer shows up
    as a clip at level 0. The result is proved equal to `level_index` at every level boundary and at both
    ends of the accumulator range (both are monotone, so they are then equal everywhere); anything else is
    refused.
    """
    acc_lo = np.asarray(acc_lo, dtype=np.int64)
    acc_hi = np.asarray(acc_hi, dtype=np.int64)
    mh = acc_lo.size
    # the slope where the map is affine: at whichever end of the range is not clamped by a ReLU
    slopes, offsets = [], []
    for ends in ((acc_hi - 2, acc_hi - 1, acc_hi), (acc_lo, acc_lo + 1, acc_lo + 2)):
        pts = np.stack(ends).astype(np.int64)
        y = in_steps(pts.astype(np.float64))
        d1, d2 = y[1] - y[0], y[2] - y[1]
        slopes.append(np.where(d1 == d2, d1, np.nan))
        offsets.append(y[0] - d1 * pts[0])
    slope = np.where(np.isfinite(slopes[0]) & (slopes[0] != 0), slopes[0], slopes[1])
    offset = np.where(np.isfinite(slopes[0]) & (slopes[0] != 0), offsets[0], offsets[1])
    shift = next((s for s in range(MAX_SHIFT + 1) if np.all(np.isfinite(slope)) and
                  np.all(slope * 2.0**s == np.round(slope * 2.0**s)) and np.all(offset * 2.0**s == np.round(offset * 2.0**s))), None)
    mult = np.round(slope * 2.0**shift).astype(np.int64) if shift is not None else None
    if mult is not None and np.abs(mult).max() >= 2 ** (MAX_MULT_BITS - 1):
        shift = None
    if shift is None:
        raise RtlgenError(f"{label}: a {q.fmt.width}-bit activation has too many levels ({q.n_levels}) for thresholds, and the "
                          f"rescale in front of it is not fixed point (an integer of at most {MAX_MULT_BITS} bits over 2^{MAX_SHIFT}), so "
                          f"rtlgen cannot requantize it exactly; "
                          f"use at most 8-bit activations")
    off = np.round(offset * 2.0**shift).astype(np.int64)
    # the exact level boundaries of the real map, then the candidate clip ranges (a ReLU clamps at level 0)
    thresholds, negated = derive_thresholds(level_index, acc_lo, acc_hi, q.n_levels, label)
    sign = np.where(negated, -1, 1)
    edges = [acc_lo, acc_hi] + [np.clip(sign * (thresholds[:, j] + d), acc_lo, acc_hi)
                                for j in range(thresholds.shape[1]) for d in (-1, 0)]
    samples = np.stack(edges)
    expected = q.k_of_index(level_index(samples))
    for lo, hi in ((q.k_lo, q.k_hi), (max(q.k_lo, 0), q.k_hi), (q.k_lo, min(q.k_hi, 0))):
        if lo > hi:
            continue
        rq = Requantization.from_arrays(mult, off, shift, q.rounding, lo, hi, channels=mh)
        if np.array_equal(requantize_reference(samples, rq), expected):
            return rq
    raise RtlgenError(f"{label}: a {q.fmt.width}-bit activation has too many levels ({q.n_levels}) for thresholds, and the ops "
                      f"in front of it are not a fixed-point rescale (optionally followed by ReLU) that rtlgen can "
                      f"requantize exactly; use at most 8-bit activations")
