"""Matrix-vector-threshold unit: a folded, streaming `y = threshold(W x)` with a numpy reference.

The MH x MW matrix is folded into NF = MH/PE neuron folds and SF = MW/SIMD synapse folds. Each clock
the unit does one (nf, sf) step: PE dot products of SIMD elements, added into PE accumulators. A vector
therefore takes NF*SF steps; the input vector arrives once (SF words, during nf = 0) and is replayed
from an input buffer for the other neuron folds. After the last synapse fold of a neuron fold, the PE
accumulators are thresholded or requantized in parallel (or passed through) into one output word.

Pipeline (one step enters per cycle, a global stall per stage keeps it exact under back-pressure):

    issue   counters (nf, sf); weight memory and input buffer read (synchronous ports, BRAM-friendly)
    S1      memory outputs -> PE x SIMD products and adder trees -> accumulate into ...
    S2      ... the PE accumulators (complete after the last sf); the thresholds (or requantization
            mult/offset) of that nf are read here
    S3      thresholding or requantization -> output register (the `o` stream)

Each stage holds at most one item and moves on when the next stage is empty or emptying that same
cycle, so with input available and output ready there is no bubble anywhere (II = 1, NF*SF cycles a
vector, latency 3). `i.ready` depends combinationally on `o.ready` through these stage-free terms only.
"""
from __future__ import annotations

import numpy as np
from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .elements import ElementFormat, pack_words, unsigned_width_for, word_element
from .requantize import Requantization, requantize_reference
from .thresholding import accumulator_range, activation_word, adder_tree, check_mac_parameters

__all__ = ["MVTU", "mvtu_reference", "accumulator_range"]


def mvtu_reference(weights, x_vectors, thresholds=None, out_offset: int = 0, *, out_fmt=None,
                   requant: Requantization | None = None) -> np.ndarray:
    """What the MVTU computes, in plain numpy: x_vectors (N, MW) -> (N, MH) integer values.

    Bipolar elements are given as -1/+1. Without thresholds the result is the accumulator. With
    thresholds (MH, NT) the result is `count_j(acc >= T[c, j]) + out_offset`; for a bipolar `out_fmt`
    the count (0 or 1) is returned as the bipolar value -1/+1. With `requant` the result is
    `requantize_reference(acc, requant)`.
    """
    w = np.asarray(weights, dtype=np.int64)
    x = np.asarray(x_vectors, dtype=np.int64)
    if x.ndim == 1:
        x = x[None, :]
    acc = x @ w.T
    if requant is not None:
        return requantize_reference(acc, requant)
    if thresholds is None:
        return acc
    t = np.asarray(thresholds, dtype=np.int64)
    count = (acc[:, :, None] >= t[None, :, :]).sum(axis=2)
    if out_fmt is not None and out_fmt.is_bipolar:
        return np.where(count > 0, 1, -1)
    return count + int(out_offset)


class MVTU(wiring.Component):
    """Folded matrix-vector-threshold unit (docs/CONTRACTS.md, "Matrix-vector-threshold unit").

    Ports: `i` (stream of SIMD `in_fmt` elements a word, SF words a vector) and `o` (stream of PE
    `out_fmt` elements a word, NF words a vector, word nf holding channels nf*PE .. nf*PE+PE-1).
    """

    def __init__(self, weights, simd: int, pe: int, in_fmt: ElementFormat, w_fmt: ElementFormat,
                 acc_width: int, thresholds=None, out_fmt: ElementFormat | None = None, out_offset: int = 0,
                 requant: Requantization | None = None):
        weights = np.asarray(weights)
        if weights.ndim != 2:
            raise ValueError(f"weights must be a 2-D (MH, MW) array, not shape {weights.shape}")
        self.mh, self.mw = (int(d) for d in weights.shape)
        if simd < 1 or self.mw % simd:
            raise ValueError(f"SIMD {simd} must divide MW {self.mw}")
        if pe < 1 or self.mh % pe:
            raise ValueError(f"PE {pe} must divide MH {self.mh}")
        self.simd, self.pe = int(simd), int(pe)
        self.sf, self.nf = self.mw // self.simd, self.mh // self.pe
        self.in_fmt, self.w_fmt = in_fmt, w_fmt
        self.acc_width = int(acc_width)
        self.xnor = in_fmt.is_bipolar and w_fmt.is_bipolar

        self.weights, self.thresholds, self.out_fmt = check_mac_parameters(
            weights, in_fmt, w_fmt, acc_width, thresholds, out_fmt, out_offset, requant)
        self.out_offset = int(out_offset)
        self.requant = requant

        super().__init__({
            "i": In(stream.Signature(self.simd * in_fmt.width)),
            "o": Out(stream.Signature(self.pe * self.out_fmt.width)),
        })

    @property
    def cycles_per_vector(self) -> int:
        """Clock cycles one input vector occupies the unit when never stalled (the initiation interval)."""
        return self.nf * self.sf

    latency = 3
    """Pipeline depth (issue, S1, S2, S3): never stalled, N vectors take N*NF*SF + latency cycles from
    the first input transfer to the last output transfer."""

    # --- memory contents -------------------------------------------------------------------------

    def weight_words(self) -> list[int]:
        """Weight memory, address nf*SF + sf: element p*SIMD + s is W[nf*PE + p, sf*SIMD + s]."""
        w = self.weights.reshape(self.nf, self.pe, self.sf, self.simd).transpose(0, 2, 1, 3)
        return pack_words(w.reshape(-1), self.w_fmt, self.pe * self.simd)

    # --- hardware ----------------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        SF, NF, PE, SIMD = self.sf, self.nf, self.pe, self.simd
        in_w, w_w = self.in_fmt.width, self.w_fmt.width

        # Stage-free terms: a stage can take a new item if it is empty or its item leaves this cycle.
        v1, v2 = Signal(), Signal()
        s3_free = Signal()
        s2_free = Signal()
        s1_free = Signal()
        m.d.comb += [
            s3_free.eq(~self.o.valid | self.o.ready),
            s2_free.eq(~v2 | s3_free),
            s1_free.eq(~v1 | s2_free),
        ]
        s1_to_s2 = Signal()
        s2_to_s3 = Signal()
        m.d.comb += [s1_to_s2.eq(v1 & s2_free), s2_to_s3.eq(v2 & s3_free)]

        # --- issue: fold counters; the input comes from the stream only in neuron fold 0 ---
        issue = Signal()
        sf = Signal(range(SF)) if SF > 1 else Const(0, 1)
        nf = Signal(range(NF)) if NF > 1 else Const(0, 1)
        sf_last = (sf == SF - 1) if SF > 1 else Const(1)
        nf_last = (nf == NF - 1) if NF > 1 else Const(1)
        from_stream = (nf == 0) if NF > 1 else Const(1)
        m.d.comb += [
            issue.eq(Mux(from_stream, self.i.valid, 1) & s1_free),
            self.i.ready.eq(from_stream & s1_free),
        ]
        with m.If(issue):
            if SF > 1:
                m.d.sync += sf.eq(Mux(sf_last, 0, sf + 1))
            if NF > 1:
                with m.If(sf_last):
                    m.d.sync += nf.eq(Mux(nf_last, 0, nf + 1))

        # Weight memory: one word of PE*SIMD weights per step, read synchronously (BRAM/LUTRAM).
        w_words = self.weight_words()
        if NF * SF > 1:
            w_addr = Signal(range(NF * SF))
            with m.If(issue):
                m.d.sync += w_addr.eq(Mux(sf_last & nf_last, 0, w_addr + 1))
            m.submodules.weights = w_mem = Memory(shape=unsigned(PE * SIMD * w_w), depth=NF * SF, init=w_words)
            w_port = w_mem.read_port()
            m.d.comb += [w_port.addr.eq(w_addr), w_port.en.eq(issue)]
            w_word = w_port.data
        else:
            w_word = Const(w_words[0], PE * SIMD * w_w)

        # Input: the stream word is registered; later neuron folds replay it from the buffer.
        x_reg = Signal(SIMD * in_w)
        with m.If(issue & from_stream):
            m.d.sync += x_reg.eq(self.i.payload)
        if NF > 1 and SF > 1:
            m.submodules.in_buffer = buf = Memory(shape=unsigned(SIMD * in_w), depth=SF, init=[])
            buf_w = buf.write_port()
            buf_r = buf.read_port()
            from_stream1 = Signal()
            m.d.comb += [
                buf_w.addr.eq(sf), buf_w.data.eq(self.i.payload), buf_w.en.eq(issue & from_stream),
                buf_r.addr.eq(sf), buf_r.en.eq(issue),
            ]
            with m.If(issue):
                m.d.sync += from_stream1.eq(from_stream)
            x_word = Mux(from_stream1, x_reg, buf_r.data)
        else:
            # NF == 1: every step reads the stream. SF == 1: the one word of the vector stays in x_reg.
            x_word = x_reg

        # --- S1: step control travelling with the memory outputs ---
        first1, last1 = Signal(), Signal()
        nf1 = Signal(range(NF)) if NF > 1 else Const(0, 1)
        with m.If(issue):
            m.d.sync += [v1.eq(1), first1.eq(sf == 0), last1.eq(sf_last)]
            if NF > 1:
                m.d.sync += nf1.eq(nf)
        with m.Elif(s2_free):
            m.d.sync += v1.eq(0)

        # --- S1 -> S2: PE dot products of SIMD elements, accumulated ---
        if self.xnor:
            acc_shape = unsigned(unsigned_width_for(self.mw))
        else:
            acc_shape = signed(self.acc_width)
        accs = [Signal(acc_shape, name=f"acc{p}") for p in range(PE)]
        for p, acc in enumerate(accs):
            dot = adder_tree([self._product(x_word, w_word, p, s) for s in range(SIMD)])
            with m.If(s1_to_s2):
                m.d.sync += acc.eq(Mux(first1, 0, acc) + dot)
        with m.If(s1_to_s2):
            m.d.sync += v2.eq(last1)
        with m.Elif(s3_free):
            m.d.sync += v2.eq(0)

        # --- S2 -> S3: activation of all PE channels in parallel, into the output register; the
        # thresholds (or mult/offset) of the neuron fold whose sums sit in the accumulators are read with S2 ---
        out_word = activation_word(m, accs, thresholds=self.thresholds, xnor=self.xnor, n_terms=self.mw,
                                   acc_width=self.acc_width, out_fmt=self.out_fmt, out_offset=self.out_offset,
                                   n_folds=NF, fold=nf1, fold_read_en=s1_to_s2, requant=self.requant)
        with m.If(s2_to_s3):
            m.d.sync += [self.o.payload.eq(out_word), self.o.valid.eq(1)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m

    def _product(self, x_word, w_word, p: int, s: int):
        """One term x[s] * W[p, s]: a multiply, a conditional negation, or an XNOR bit."""
        x = word_element(x_word, s, self.in_fmt)
        w = word_element(w_word, p * self.simd + s, self.w_fmt)
        if self.xnor:
            return ~(x ^ w)
        if self.in_fmt.is_bipolar:
            return Mux(x, w, -w)
        if self.w_fmt.is_bipolar:
            return Mux(w, x, -x)
        return x * w

