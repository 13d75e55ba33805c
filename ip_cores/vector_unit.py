"""Vector-vector unit: a depthwise convolution's arithmetic, per channel `y[c] = threshold(sum_k x[k, c] * W[c, k])`.

It consumes the depthwise order of the sliding-window generator (`SlidingWindow(depthwise=True)` with
SIMD = PE): for each output pixel, for each channel fold cf in C/PE, for each kernel position k in K, one
word of the PE channels cf*PE .. cf*PE+PE-1. Each PE lane multiplies its element by its channel's weight
for position k and accumulates over the K words of the fold; after the K-th word the PE accumulators
are thresholded or requantized (or passed through) into one output word. Output: C/PE words a pixel,
channels-last.

Pipeline, the same as the MVTU's (ip_cores/mvtu.py) without a synapse dimension: one input word a cycle,
a global stall per stage, latency 3 (issue + weight read, products into accumulators, thresholds, output
register). Never stalled, P pixels take P*CF*K + 3 cycles from the first input to the last output.
"""
from __future__ import annotations

import numpy as np
from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .elements import ElementFormat, pack_words, unsigned_width_for, word_element
from .requantize import Requantization, requantize_reference
from .thresholding import activation_word, check_mac_parameters

__all__ = ["VectorVectorUnit", "vector_unit_reference", "vector_unit_input_order"]


def vector_unit_reference(weights, windows, thresholds=None, out_offset: int = 0, *, out_fmt=None,
                          requant: Requantization | None = None) -> np.ndarray:
    """What the unit computes, in plain numpy: windows (P, K, C) -> (P, C) integer values.

    `acc[p, c] = sum_k windows[p, k, c] * W[c, k]` (bipolar as -1/+1). With thresholds (C, NT):
    `count_j(acc >= T[c, j]) + out_offset`, for a bipolar `out_fmt` the count as -1/+1. With
    `requant`: `requantize_reference(acc, requant)`. Without either: acc.
    """
    w = np.asarray(weights, dtype=np.int64)
    x = np.asarray(windows, dtype=np.int64)
    if x.ndim == 2:
        x = x[None]
    acc = np.einsum("pkc,ck->pc", x, w)
    if requant is not None:
        return requantize_reference(acc, requant)
    if thresholds is None:
        return acc
    t = np.asarray(thresholds, dtype=np.int64)
    count = (acc[:, :, None] >= t[None, :, :]).sum(axis=2)
    if out_fmt is not None and out_fmt.is_bipolar:
        return np.where(count > 0, 1, -1)
    return count + int(out_offset)


def vector_unit_input_order(windows, pe: int) -> np.ndarray:
    """windows (P, K, C) -> the flat element sequence the unit consumes: for p: for cf: for k: PE channels."""
    x = np.asarray(windows)
    p, k, c = x.shape
    if c % pe:
        raise ValueError(f"PE {pe} must divide the {c} channels")
    return x.reshape(p, k, c // pe, pe).transpose(0, 2, 1, 3).reshape(-1)


class VectorVectorUnit(wiring.Component):
    """Depthwise multiply-accumulate-threshold unit (docs/CONTRACTS.md, "Convolution cores").

    Ports: `i` (PE `in_fmt` elements a word, CF*K words a pixel in depthwise window order) and `o`
    (PE `out_fmt` elements a word, CF words a pixel, word cf holding channels cf*PE .. cf*PE+PE-1).
    """

    latency = 3
    """Cycles from the acceptance of a fold's last input word to the transfer of its output word."""

    def __init__(self, weights, pe: int, in_fmt: ElementFormat, w_fmt: ElementFormat, acc_width: int,
                 thresholds=None, out_fmt: ElementFormat | None = None, out_offset: int = 0,
                 kernel_elems: int | None = None, requant: Requantization | None = None):
        weights = np.asarray(weights)
        if weights.ndim != 2:
            raise ValueError(f"weights must be a 2-D (C, K) array, not shape {weights.shape}")
        self.channels, self.k = (int(d) for d in weights.shape)
        if kernel_elems is not None and int(kernel_elems) != self.k:
            raise ValueError(f"kernel_elems {kernel_elems} does not match the weights' K = {self.k}")
        if pe < 1 or self.channels % pe:
            raise ValueError(f"PE {pe} must divide the {self.channels} channels")
        self.pe, self.cf = int(pe), self.channels // int(pe)
        self.in_fmt, self.w_fmt = in_fmt, w_fmt
        self.acc_width = int(acc_width)
        self.xnor = in_fmt.is_bipolar and w_fmt.is_bipolar

        self.weights, self.thresholds, self.out_fmt = check_mac_parameters(
            weights, in_fmt, w_fmt, acc_width, thresholds, out_fmt, out_offset, requant)
        self.out_offset = int(out_offset)
        self.requant = requant

        super().__init__({
            "i": In(stream.Signature(self.pe * in_fmt.width)),
            "o": Out(stream.Signature(self.pe * self.out_fmt.width)),
        })

    # --- figures for the compiler's timing model -------------------------------------------------

    @property
    def cycles_per_pixel(self) -> int:
        """Input words (= cycles, never stalled) per output pixel: CF*K."""
        return self.cf * self.k

    def cycles_per_frame(self, pixels_per_frame: int) -> int:
        """Cycles per frame of `pixels_per_frame` output pixels in steady state (one input word a cycle)."""
        return int(pixels_per_frame) * self.cycles_per_pixel

    def initial_latency(self) -> int:
        """Input words the unit must have before it sends its first output word (one fold: K)."""
        return self.k

    # --- memory contents -------------------------------------------------------------------------

    def weight_words(self) -> list[int]:
        """Weight memory, address cf*K + k: element p is W[cf*PE + p, k]."""
        w = self.weights.reshape(self.cf, self.pe, self.k).transpose(0, 2, 1)
        return pack_words(w.reshape(-1), self.w_fmt, self.pe)

    # --- hardware ----------------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        K, CF, PE = self.k, self.cf, self.pe
        w_w = self.w_fmt.width

        # Stage-free terms: a stage can take a new item if it is empty or its item leaves this cycle.
        v1, v2 = Signal(), Signal()
        s3_free, s2_free, s1_free = Signal(), Signal(), Signal()
        m.d.comb += [
            s3_free.eq(~self.o.valid | self.o.ready),
            s2_free.eq(~v2 | s3_free),
            s1_free.eq(~v1 | s2_free),
        ]
        s1_to_s2, s2_to_s3 = Signal(), Signal()
        m.d.comb += [s1_to_s2.eq(v1 & s2_free), s2_to_s3.eq(v2 & s3_free)]

        # --- issue: kernel position k and channel fold cf of the word taken from the stream ---
        issue = Signal()
        m.d.comb += [self.i.ready.eq(s1_free), issue.eq(self.i.valid & s1_free)]
        k = Signal(range(K)) if K > 1 else Const(0, 1)
        cf = Signal(range(CF)) if CF > 1 else Const(0, 1)
        k_last = (k == K - 1) if K > 1 else Const(1)
        cf_last = (cf == CF - 1) if CF > 1 else Const(1)
        with m.If(issue):
            if K > 1:
                m.d.sync += k.eq(Mux(k_last, 0, k + 1))
            if CF > 1:
                with m.If(k_last):
                    m.d.sync += cf.eq(Mux(cf_last, 0, cf + 1))

        w_words = self.weight_words()
        if CF * K > 1:
            w_addr = Signal(range(CF * K))
            with m.If(issue):
                m.d.sync += w_addr.eq(Mux(k_last & cf_last, 0, w_addr + 1))
            m.submodules.weights = w_mem = Memory(shape=unsigned(PE * w_w), depth=CF * K, init=w_words)
            w_port = w_mem.read_port()
            m.d.comb += [w_port.addr.eq(w_addr), w_port.en.eq(issue)]
            w_word = w_port.data
        else:
            w_word = Const(w_words[0], PE * w_w)
        x_word = Signal(PE * self.in_fmt.width)
        with m.If(issue):
            m.d.sync += x_word.eq(self.i.payload)

        # --- S1: products into the accumulators ---
        first1, last1 = Signal(), Signal()
        cf1 = Signal(range(CF)) if CF > 1 else Const(0, 1)
        with m.If(issue):
            m.d.sync += [v1.eq(1), first1.eq(k == 0), last1.eq(k_last)]
            if CF > 1:
                m.d.sync += cf1.eq(cf)
        with m.Elif(s2_free):
            m.d.sync += v1.eq(0)

        acc_shape = unsigned(unsigned_width_for(K)) if self.xnor else signed(self.acc_width)
        accs = [Signal(acc_shape, name=f"acc{p}") for p in range(PE)]
        for p, acc in enumerate(accs):
            with m.If(s1_to_s2):
                m.d.sync += acc.eq(Mux(first1, 0, acc) + self._product(x_word, w_word, p))
        with m.If(s1_to_s2):
            m.d.sync += v2.eq(last1)
        with m.Elif(s3_free):
            m.d.sync += v2.eq(0)

        # --- S2 -> S3: activation of all PE channels in parallel, into the output register; the
        # thresholds (or mult/offset) of the channel fold whose sums sit in the accumulators are read with S2 ---
        out_word = activation_word(m, accs, thresholds=self.thresholds, xnor=self.xnor, n_terms=K,
                                   acc_width=self.acc_width, out_fmt=self.out_fmt, out_offset=self.out_offset,
                                   n_folds=CF, fold=cf1, fold_read_en=s1_to_s2, requant=self.requant)
        with m.If(s2_to_s3):
            m.d.sync += [self.o.payload.eq(out_word), self.o.valid.eq(1)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m

    def _product(self, x_word, w_word, p: int):
        """Lane p's term x * W[c, k]: a multiply, a conditional negation, or an XNOR bit."""
        x = word_element(x_word, p, self.in_fmt)
        w = word_element(w_word, p, self.w_fmt)
        if self.xnor:
            return ~(x ^ w)
        if self.in_fmt.is_bipolar:
            return Mux(x, w, -w)
        if self.w_fmt.is_bipolar:
            return Mux(w, x, -x)
        return x * w
