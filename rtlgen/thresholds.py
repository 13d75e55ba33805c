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
    counted = (samples[:, :, None] >= thresholds[None, :, :]).sum(axis=2)
    bad = np.argwhere(direct != counted)
    if bad.size:
        row, ch = bad[0]
        raise RtlgenError(f"{label}: the activation of channel {ch} is not monotone in the accumulator "
                          f"(at accumulator {samples[row, ch]}); it cannot be expressed as thresholds")
