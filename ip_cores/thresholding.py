"""What the MVTU and the vector unit check and share about their arithmetic.

Both cores sum products of `in_fmt` inputs and `w_fmt` weights into PE accumulators of `acc_width`
bits (an unsigned popcount when both formats are bipolar: XNOR-popcount), then turn the accumulators of
one fold into one output word (ip_cores/activation.py): the accumulator itself, `count_j(acc >= T[c, j]) +
out_offset` with per-channel thresholds T (for a bipolar output, the count 0/1 as -1/+1), or an exact
integer requantization (ip_cores/requantize.py). What they share lives here, once:

    accumulator_range      the extremes of every dot product of a weight matrix
    check_mac_parameters   the checks of weights, accumulator width, activation and output format
    threshold_table        thresholds moved into the domain the hardware compares in
"""
from __future__ import annotations

import numpy as np

from .elements import ElementFormat, signed_width_for, unsigned_width_for
from .requantize import Requantization

__all__ = ["accumulator_range", "check_mac_parameters", "threshold_table"]


def accumulator_range(weights: np.ndarray, in_fmt: ElementFormat) -> tuple[int, int]:
    """Smallest and largest `sum_i x[i] * W[c, i]` over all rows c and all inputs x in `in_fmt`.

    Each term is linear in its own x[i], so the extremes take each x[i] at an end of its range. Every
    term's best value is >= 0 and its worst <= 0 (all formats contain values of both signs or zero),
    so partial sums over any subset of terms, as the accumulator sees them, stay inside this range.
    """
    w = np.asarray(weights)
    reach = int(np.abs(w).max(initial=0)) * max(abs(in_fmt.min), abs(in_fmt.max)) * max(1, w.shape[-1])
    w = w.astype(np.int64) if w.dtype != object and reach < 2 ** 62 else w.astype(object)  # exact either way
    lo_terms = np.minimum(w * in_fmt.min, w * in_fmt.max)
    hi_terms = np.maximum(w * in_fmt.min, w * in_fmt.max)
    return int(lo_terms.sum(axis=1).min()), int(hi_terms.sum(axis=1).max())


def check_mac_parameters(weights: np.ndarray, in_fmt: ElementFormat, w_fmt: ElementFormat, acc_width: int,
                         thresholds, out_fmt: ElementFormat | None, out_offset: int,
                         requant: Requantization | None = None
                         ) -> tuple[np.ndarray, np.ndarray | None, ElementFormat]:
    """Check a (channels, terms) weight matrix and what follows the accumulators; ValueError if off.

    The weights must fit `w_fmt`, `acc_width` signed bits must hold every sum of `in_fmt` inputs
    (`accumulator_range`). Without thresholds or requantization the output is the accumulator
    (`out_fmt` signed and at least `acc_width` bits, by default exactly that; no `out_offset`). With
    thresholds: integers of shape (channels, NT >= 1), each row non-decreasing, and every output
    `out_offset .. out_offset + NT` must fit `out_fmt` (a bipolar output: NT = 1 and no offset). With
    `requant` (not with thresholds): one mult/offset per channel, `out_fmt` (required, not bipolar)
    must hold `requant.lo .. requant.hi`, no `out_offset` (the requantization has its own offsets).
    Returns the weights as checked integers, the thresholds as int64 (or None) and the output format.
    """
    weights = w_fmt.check(weights, "weight")
    channels = weights.shape[0]
    lo, hi = accumulator_range(weights, in_fmt)
    if int(acc_width) < signed_width_for(lo, hi):
        raise ValueError(f"acc_width {acc_width} cannot hold accumulator range [{lo}, {hi}]: "
                         f"needs {signed_width_for(lo, hi)} signed bits")

    out_offset = int(out_offset)
    if requant is not None:
        _check_requantization(requant, channels, thresholds, out_fmt, out_offset)
        return weights, None, out_fmt
    if thresholds is None:
        out_fmt = out_fmt or ElementFormat.signed(int(acc_width))
        if not out_fmt.is_signed or out_fmt.width < int(acc_width):
            raise ValueError(f"without thresholds the output is the accumulator: out_fmt must be signed "
                             f"and at least {int(acc_width)} bits, not {out_fmt}")
        if out_offset:
            raise ValueError("out_offset applies only with thresholds")
        return weights, None, out_fmt

    t = np.asarray(thresholds)
    if t.ndim != 2 or t.shape[0] != channels or t.shape[1] < 1:
        raise ValueError(f"thresholds must have shape ({channels}, NT >= 1), not {t.shape}")
    if t.dtype.kind not in "iu":
        raise ValueError(f"thresholds must be integers, not dtype {t.dtype}")
    if np.any(np.diff(t.astype(np.int64), axis=1) < 0):
        raise ValueError("each row of thresholds must be non-decreasing")
    if out_fmt is None:
        raise ValueError("out_fmt is required with thresholds")
    n_t = t.shape[1]
    if out_fmt.is_bipolar:
        if n_t != 1 or out_offset != 0:
            raise ValueError("a bipolar output needs exactly one threshold per channel and out_offset 0")
    elif not (out_fmt.min <= out_offset and out_offset + n_t <= out_fmt.max):
        raise ValueError(f"outputs [{out_offset}, {out_offset + n_t}] do not fit {out_fmt}")
    return weights, t.astype(np.int64), out_fmt


def _check_requantization(requant, channels: int, thresholds, out_fmt: ElementFormat | None,
                          out_offset: int) -> None:
    """The requantizing activation's checks (see `check_mac_parameters`); ValueError if off."""
    if not isinstance(requant, Requantization):
        raise ValueError(f"requant must be a Requantization, not {type(requant).__name__}")
    if thresholds is not None:
        raise ValueError("thresholds and requant are two different activations: give one of them")
    if requant.channels != channels:
        raise ValueError(f"requant has {requant.channels} channels (mult/offset), the weights {channels}")
    if out_offset:
        raise ValueError("out_offset applies only with thresholds; a requantization has its own offsets")
    if out_fmt is None:
        raise ValueError("out_fmt is required with requant")
    if out_fmt.is_bipolar:
        raise ValueError("a requantized output cannot be bipolar: use one threshold")
    if not (out_fmt.min <= requant.lo and requant.hi <= out_fmt.max):
        raise ValueError(f"requantized outputs [{requant.lo}, {requant.hi}] do not fit {out_fmt}")


def threshold_table(thresholds: np.ndarray, xnor: bool, n_terms: int, acc_width: int
                    ) -> tuple[ElementFormat, np.ndarray]:
    """Thresholds in the domain the hardware compares in, clipped so they fit a few bits.

    Clipping keeps every comparison result: a threshold below the smallest accumulator value is
    always reached, one above the largest never. With XNOR-popcount over `n_terms` products,
    `acc = 2*pc - n_terms`, so `acc >= T` is `pc >= ceil((T + n_terms) / 2)`, compared on the
    popcount directly.
    """
    t = thresholds
    if xnor:
        t = -((-(t + n_terms)) // 2)
        return ElementFormat.unsigned(unsigned_width_for(n_terms + 1)), np.clip(t, 0, n_terms + 1)
    top = 1 << (acc_width - 1)
    return ElementFormat.signed(acc_width + 1), np.clip(t, -top, top)
