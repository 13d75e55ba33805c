"""The multiply-accumulate-threshold stage the MVTU and the vector-vector unit share.

Both cores sum products of `in_fmt` inputs and `w_fmt` weights into PE accumulators of `acc_width`
bits (an unsigned popcount when both formats are bipolar: XNOR-popcount), then turn the accumulators of
one fold into one output word: either the accumulator itself, or `count_j(acc >= T[c, j]) + out_offset`
with per-channel thresholds T (for a bipolar output, the count 0/1 as -1/+1). What they share lives
here, once, so the two cores cannot drift apart:

    check_mac_parameters   the checks of weights, accumulator width, thresholds and output format
    threshold_table        thresholds moved into the domain the hardware compares in
    activation_word        the threshold memory and the comparators/adder trees of the output word
"""
from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Const, Module, Signal, unsigned
from amaranth.lib.memory import Memory

from .elements import ElementFormat, pack_words, signed_width_for, unsigned_width_for, word_element

__all__ = ["accumulator_range", "check_mac_parameters", "threshold_table", "activation_word", "adder_tree"]


def accumulator_range(weights: np.ndarray, in_fmt: ElementFormat) -> tuple[int, int]:
    """Smallest and largest `sum_i x[i] * W[c, i]` over all rows c and all inputs x in `in_fmt`.

    Each term is linear in its own x[i], so the extremes take each x[i] at an end of its range. Every
    term's best value is >= 0 and its worst <= 0 (all formats contain values of both signs or zero),
    so partial sums over any subset of terms, as the accumulator sees them, stay inside this range.
    """
    w = np.asarray(weights, dtype=object)
    lo_terms = np.minimum(w * in_fmt.min, w * in_fmt.max)
    hi_terms = np.maximum(w * in_fmt.min, w * in_fmt.max)
    return int(lo_terms.sum(axis=1).min()), int(hi_terms.sum(axis=1).max())


def check_mac_parameters(weights: np.ndarray, in_fmt: ElementFormat, w_fmt: ElementFormat, acc_width: int,
                         thresholds, out_fmt: ElementFormat | None, out_offset: int
                         ) -> tuple[np.ndarray, np.ndarray | None, ElementFormat]:
    """Check a (channels, terms) weight matrix and what follows the accumulators; ValueError if off.

    The weights must fit `w_fmt`, `acc_width` signed bits must hold every sum of `in_fmt` inputs
    (`accumulator_range`). Without thresholds the output is the accumulator (`out_fmt` signed and at
    least `acc_width` bits, by default exactly that; no `out_offset`). With thresholds: integers of
    shape (channels, NT >= 1), each row non-decreasing, and every output `out_offset .. out_offset + NT`
    must fit `out_fmt` (a bipolar output: NT = 1 and no offset).
    Returns the weights as checked integers, the thresholds as int64 (or None) and the output format.
    """
    weights = w_fmt.check(weights, "weight")
    channels = weights.shape[0]
    lo, hi = accumulator_range(weights, in_fmt)
    if int(acc_width) < signed_width_for(lo, hi):
        raise ValueError(f"acc_width {acc_width} cannot hold accumulator range [{lo}, {hi}]: "
                         f"needs {signed_width_for(lo, hi)} signed bits")

    out_offset = int(out_offset)
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


def adder_tree(terms: list):
    """Balanced adder tree (depth log2(n)) instead of a chain, for a shorter combinational path."""
    terms = list(terms)
    while len(terms) > 1:
        paired = [terms[k] + terms[k + 1] for k in range(0, len(terms) - 1, 2)]
        if len(terms) % 2:
            paired.append(terms[-1])
        terms = paired
    return terms[0]


def activation_word(m: Module, accs: list, *, thresholds: np.ndarray | None, xnor: bool, n_terms: int,
                    acc_width: int, out_fmt: ElementFormat, out_offset: int, n_folds: int, fold, fold_read_en):
    """The output word of PE accumulators (all lanes in parallel, combinational): Cat of PE `out_fmt` elements.

    Without thresholds each element is the accumulator (an XNOR popcount pc as `2*pc - n_terms`).
    With them, each is its count of reached thresholds plus `out_offset`. The thresholds of fold `fold`
    (one word of PE*NT per fold, fold-major like the accumulators' channels) come from a memory
    `thresholds` with a synchronous read port enabled by `fold_read_en`, so they are valid in the cycle
    after: read them as the last sum of the fold enters the accumulators. With one fold they are constants.
    """
    thr_word = None
    if thresholds is not None:
        t_fmt, table = threshold_table(thresholds, xnor, n_terms, acc_width)
        n_t = table.shape[1]
        lanes = len(accs)
        t_words = pack_words(table.reshape(-1), t_fmt, lanes * n_t)
        if n_folds > 1:
            m.submodules.thresholds = t_mem = Memory(shape=unsigned(lanes * n_t * t_fmt.width), depth=n_folds,
                                                     init=t_words)
            t_port = t_mem.read_port()
            m.d.comb += [t_port.addr.eq(fold), t_port.en.eq(fold_read_en)]
            thr_word = t_port.data
        else:
            thr_word = Const(t_words[0], lanes * n_t * t_fmt.width)

    outs = []
    for p, acc in enumerate(accs):
        if thresholds is None:
            value = ((Cat(acc, Const(0, 1)).as_signed() << 1) - n_terms) if xnor else acc
        else:
            value = adder_tree([acc >= word_element(thr_word, p * n_t + j, t_fmt) for j in range(n_t)])
            if out_offset:
                value = value + out_offset
        # Assignment sign-extends a signed value and keeps the low bits: two's complement out_fmt.
        out = Signal(out_fmt.width, name=f"out{p}")
        m.d.comb += out.eq(value)
        outs.append(out)
    return Cat(*outs)
