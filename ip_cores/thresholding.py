"""The multiply-accumulate-threshold stage the MVTU and the vector-vector unit share.

Both cores sum products of `in_fmt` inputs and `w_fmt` weights into PE accumulators of `acc_width`
bits (an unsigned popcount when both formats are bipolar: XNOR-popcount), then turn the accumulators of
one fold into one output word: either the accumulator itself, or `count_j(acc >= T[c, j]) + out_offset`
with per-channel thresholds T (for a bipolar output, the count 0/1 as -1/+1), or an exact integer
requantization `clip(R((acc * mult[c] + offset[c]) / 2**shift), lo, hi)` (ip_cores/requantize.py) for
outputs too wide for one comparator per level. What they share lives here, once, so the two cores
cannot drift apart:

    check_mac_parameters   the checks of weights, accumulator width, activation and output format
    threshold_table        thresholds moved into the domain the hardware compares in
    activation_word        the threshold or requantization memories and the per-lane logic of the output word
"""
from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Const, Module, Signal, unsigned
from amaranth.lib.memory import Memory

from .elements import ElementFormat, pack_words, signed_width_for, unsigned_width_for, word_element
from .requantize import Requantization, requantize_lane

__all__ = ["accumulator_range", "check_mac_parameters", "threshold_table", "activation_word", "adder_tree",
           "fold_table", "signed_sum", "requant_parameters"]


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


def adder_tree(terms: list):
    """Balanced adder tree (depth log2(n)) instead of a chain, for a shorter combinational path."""
    terms = list(terms)
    while len(terms) > 1:
        paired = [terms[k] + terms[k + 1] for k in range(0, len(terms) - 1, 2)]
        if len(terms) % 2:
            paired.append(terms[-1])
        terms = paired
    return terms[0]


def fold_table(m: Module, name: str, words: list[int], width: int, n_folds: int, fold, fold_read_en):
    """One `width`-bit word per fold: a memory `name` read synchronously at address `fold` when
    `fold_read_en` (valid the cycle after), or a constant with one fold."""
    if n_folds == 1:
        return Const(words[0], width)
    mem = Memory(shape=unsigned(width), depth=n_folds, init=words)
    m.submodules[name] = mem
    port = mem.read_port()
    m.d.comb += [port.addr.eq(fold), port.en.eq(fold_read_en)]
    return port.data


def signed_sum(acc, xnor: bool, n_terms: int):
    """The accumulator's value as a signed sum: an XNOR popcount pc as `2*pc - n_terms`."""
    return ((Cat(acc, Const(0, 1)).as_signed() << 1) - n_terms) if xnor else acc


def requant_parameters(m: Module, name: str, values: tuple[int, ...], lanes: int, n_folds: int, fold,
                       fold_read_en) -> list:
    """Lane p's value of a per-channel requantization parameter in the fold being activated.

    One Python int for all lanes when every channel has the same value; per-lane constants with one
    fold; else fields of a memory `name` (word nf, element p = channel nf*lanes + p, signed) read like
    the thresholds.
    """
    if len(set(values)) == 1:
        return [values[0]] * lanes
    if n_folds == 1:
        return list(values)
    fmt = ElementFormat.signed(signed_width_for(min(values), max(values)))
    word = fold_table(m, name, pack_words(values, fmt, lanes), lanes * fmt.width, n_folds, fold, fold_read_en)
    return [word_element(word, p, fmt) for p in range(lanes)]


def activation_word(m: Module, accs: list, *, thresholds: np.ndarray | None, xnor: bool, n_terms: int,
                    acc_width: int, out_fmt: ElementFormat, out_offset: int, n_folds: int, fold, fold_read_en,
                    requant: Requantization | None = None):
    """The output word of PE accumulators (all lanes in parallel, combinational): Cat of PE `out_fmt` elements.

    Without thresholds or requantization each element is the accumulator (an XNOR popcount pc as
    `2*pc - n_terms`). With thresholds, each is its count of reached thresholds plus `out_offset`. The
    thresholds of fold `fold` (one word of PE*NT per fold, fold-major like the accumulators' channels)
    come from a memory `thresholds` with a synchronous read port enabled by `fold_read_en`, so they are
    valid in the cycle after: read them as the last sum of the fold enters the accumulators. With one
    fold they are constants. With `requant`, each element is the requantized signed sum
    (`requantize_lane`); mult and offset come from memories `requant_mult` / `requant_offset` read
    the same way, or are constants with one fold or when every channel has the same value.
    """
    lanes = len(accs)
    if requant is not None:
        mults = requant_parameters(m, "requant_mult", requant.mult, lanes, n_folds, fold, fold_read_en)
        offsets = requant_parameters(m, "requant_offset", requant.offset, lanes, n_folds, fold, fold_read_en)
    thr_word = None
    if thresholds is not None:
        t_fmt, table = threshold_table(thresholds, xnor, n_terms, acc_width)
        n_t = table.shape[1]
        t_words = pack_words(table.reshape(-1), t_fmt, lanes * n_t)
        thr_word = fold_table(m, "thresholds", t_words, lanes * n_t * t_fmt.width, n_folds, fold, fold_read_en)

    outs = []
    for p, acc in enumerate(accs):
        if requant is not None:
            value = requantize_lane(m, signed_sum(acc, xnor, n_terms), mults[p], offsets[p], requant, f"rq{p}")
        elif thresholds is None:
            value = signed_sum(acc, xnor, n_terms)
        else:
            value = adder_tree([acc >= word_element(thr_word, p * n_t + j, t_fmt) for j in range(n_t)])
            if out_offset:
                value = value + out_offset
        # Assignment sign-extends a signed value and keeps the low bits: two's complement out_fmt.
        out = Signal(out_fmt.width, name=f"out{p}")
        m.d.comb += out.eq(value)
        outs.append(out)
    return Cat(*outs)
