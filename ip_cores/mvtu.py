"""Matrix-vector-threshold unit: a folded, streaming `y = threshold(W x)` with a numpy reference.

The MH x MW matrix is folded into NF = MH/PE neuron folds and SF = MW/SIMD synapse folds. Each clock
the unit issues one (nf, sf) step: PE dot products of SIMD elements, added into PE accumulators. A vector
therefore takes NF*SF steps; the input vector arrives once (SF words, during nf = 0) and is replayed
from an input buffer for the other neuron folds. After the last synapse fold of a neuron fold, the PE
accumulators are thresholded or requantized (or passed through) into one output word.

The issue stage (counters, weight-memory address, input buffer) is this module's; everything after it is
the free-running datapath shared with the vector unit (ip_cores/mac_engine.py): registered products or
LUT product terms, adder trees with a register every two levels, accumulators, a pipelined activation
(ip_cores/activation.py) and an output queue whose credits stop the issue, never the datapath. One step a
cycle (II = 1), NF*SF cycles a vector, and a fold's word is offered `latency` cycles after its last step.
"""
from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .activation import activation_reference, make_activation
from .elements import ElementFormat, pack_words, word_element
from .mac_engine import MacEngine
from .mac_terms import mac_resource_for
from .memories import plan_ram, plan_rom, read_rom
from .pipeline import Timed, WrapCounter, registered
from .resources import Resources
from .requantize import Requantization
from .thresholding import accumulator_range, check_mac_parameters

__all__ = ["MVTU", "mvtu_reference", "accumulator_range"]

LANES_PER_INPUT_COPY = 8  # lanes that share one copy of the registered input word


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
    return activation_reference(x @ w.T, thresholds, out_offset, out_fmt, requant)


class MVTU(wiring.Component):
    """Folded matrix-vector-threshold unit (docs/CONTRACTS.md, "Matrix-vector-threshold unit").

    Ports: `i` (stream of SIMD `in_fmt` elements a word, SF words a vector) and `o` (stream of PE
    `out_fmt` elements a word, NF words a vector, word nf holding channels nf*PE .. nf*PE+PE-1).
    Implementation choices (they change cost and latency, never results): `mac_resource` ("auto", "lut",
    "dsp", "dsp_packed": PE lanes share DSP48s where the widths allow, ip_cores/mac_terms.py),
    `threshold_style` ("auto", "parallel", "binary"), `memory_style` ("auto", "logic"/"lutram", "block") for the
    weight memory, input buffer and threshold tables.
    """

    def __init__(self, weights, simd: int, pe: int, in_fmt: ElementFormat, w_fmt: ElementFormat,
                 acc_width: int, thresholds=None, out_fmt: ElementFormat | None = None, out_offset: int = 0,
                 requant: Requantization | None = None, *, mac_resource: str = "auto",
                 threshold_style: str = "auto", memory_style: str = "auto"):
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
        self.mac_resource = mac_resource_for(in_fmt, w_fmt, mac_resource)

        self.weight_memory = plan_rom(self.nf * self.sf, self.pe * self.simd * w_fmt.width, memory_style)
        self.input_buffer = (plan_ram(self.sf, self.simd * in_fmt.width, memory_style)
                             if self.nf > 1 and self.sf > 1 else None)
        self.activation = make_activation(
            lanes=self.pe, n_folds=self.nf, out_fmt=self.out_fmt, xnor=self.xnor, n_terms=self.mw,
            acc_width=self.acc_width, thresholds=self.thresholds, out_offset=self.out_offset, requant=requant,
            acc_range=accumulator_range(self.weights, in_fmt), threshold_style=threshold_style,
            memory_style=memory_style, mac_resource=self.mac_resource)
        input_latency = max(self.weight_memory.read_latency,
                            self.input_buffer.read_latency if self.input_buffer is not None else 1)
        self.engine = MacEngine(lanes=self.pe, terms_per_step=self.simd, in_fmt=in_fmt, w_fmt=w_fmt,
                                acc_width=self.acc_width, n_terms=self.mw, steps_per_output=self.sf,
                                n_folds=self.nf, activation=self.activation, mac_resource=self.mac_resource,
                                input_latency=input_latency,
                                channel_constants=self._channel_constants(),
                                dsp_packed=mac_resource == "dsp_packed")

        super().__init__({
            "i": In(stream.Signature(self.simd * in_fmt.width)),
            "o": Out(stream.Signature(self.pe * self.out_fmt.width)),
        })

    @property
    def cycles_per_vector(self) -> int:
        """Clock cycles one input vector occupies the unit when never stalled (the initiation interval)."""
        return self.nf * self.sf

    @property
    def latency(self) -> int:
        """Cycles from the issue of a fold's last step to its output word on `o`: never stalled, N vectors
        take N*NF*SF + latency cycles from the first input transfer to the last output transfer."""
        return self.engine.latency

    def resources(self) -> Resources:
        """Analytic estimate (ip_cores/resources.py): issue stage, memories, input registers, the datapath."""
        R = self.engine.input_latency
        x_bits, w_bits = self.simd * self.in_fmt.width, self.pe * self.simd * self.w_fmt.width
        memories = Resources.of_memory(self.weight_memory, self.weight_words())
        registers = x_bits * R + w_bits * (R - self.weight_memory.read_latency)
        registers += x_bits * (-(-self.pe // LANES_PER_INPUT_COPY)) if self.pe > LANES_PER_INPUT_COPY else 0
        if self.input_buffer is not None:
            memories += Resources.of_memory(self.input_buffer) + Resources(x_bits, x_bits)
        counters = 3 * max(1, (self.nf * self.sf).bit_length())
        issue = Resources(2 * counters + 6, 2 * counters)
        return issue + memories + Resources(0, registers) + self.engine.resources()

    def _channel_constants(self) -> list[int] | None:
        """Per output channel, minus the sum of its weights: the accumulator's start with a bipolar input
        (ip_cores/mac_terms.py), in channel order; None otherwise."""
        if not (self.in_fmt.is_bipolar and not self.w_fmt.is_bipolar):
            return None
        return [-int(v) for v in self.weights.astype(object).sum(axis=1)]

    # --- memory contents -------------------------------------------------------------------------

    def weight_words(self) -> list[int]:
        """Weight memory, address nf*SF + sf: element p*SIMD + s is W[nf*PE + p, sf*SIMD + s]."""
        w = self.weights.reshape(self.nf, self.pe, self.sf, self.simd).transpose(0, 2, 1, 3)
        return pack_words(w.reshape(-1), self.w_fmt, self.pe * self.simd)

    # --- hardware ----------------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        SF, NF, PE, SIMD = self.sf, self.nf, self.pe, self.simd

        # --- issue: fold counters; the input comes from the stream only in neuron fold 0 ---
        may_reserve = Signal()
        issue = Signal()
        sf = WrapCounter(m, SF, "sf", issue)
        nf = WrapCounter(m, NF, "nf", issue & sf.last)
        w_addr = WrapCounter(m, NF * SF, "w_addr", issue)  # weight memory address nf*SF + sf
        from_stream = nf.first
        m.d.comb += [
            issue.eq(Mux(from_stream, self.i.valid, 1) & may_reserve),
            self.i.ready.eq(from_stream & may_reserve),
        ]
        w_word = Timed(m, read_rom(m, "weights", self.weight_memory, self.weight_words(), w_addr.value),
                       self.weight_memory.read_latency, "w_word")

        # Input: the stream word is registered; later neuron folds replay it from the buffer.
        # It must hold the word only when later folds replay it from this register (NF > 1 without a buffer);
        # otherwise it loads every cycle, since the pipeline reads it the cycle after the issue (no enable
        # from `issue` fanning out to all its bits).
        x_reg = Signal(SIMD * self.in_fmt.width, reset_less=True)
        if NF > 1 and self.input_buffer is None:
            with m.If(issue & from_stream):
                m.d.sync += x_reg.eq(self.i.payload)
        else:
            m.d.sync += x_reg.eq(self.i.payload)
        x_word = Timed(m, x_reg, 1, "x_reg")
        if self.input_buffer is not None:
            buf = Memory(shape=unsigned(SIMD * self.in_fmt.width), depth=SF, init=[], attrs=self.input_buffer.attrs)
            m.submodules.in_buffer = buf
            buf_w, buf_r = buf.write_port(), buf.read_port()
            m.d.comb += [buf_w.addr.eq(sf.value), buf_w.data.eq(self.i.payload), buf_w.en.eq(issue & from_stream),
                         buf_r.addr.eq(sf.value)]
            replay = buf_r.data
            if self.input_buffer.read_latency == 2:
                replay = registered(m, replay, "replay_q")
            rb = self.input_buffer.read_latency
            stream_step = Timed(m, from_stream, 0, "from_stream")
            x_word = Timed(m, Mux(stream_step.at(rb), x_word.at(rb), replay), rb, "x_word")

        R = self.engine.input_latency
        w = w_word.at(R)
        # The input word feeds every lane: a copy of its register per LANES_PER_INPUT_COPY lanes keeps each
        # copy's fanout to a few dozen product LUTs.
        copies = [x_word.at(R)]
        if PE > LANES_PER_INPUT_COPY and R - 1 >= x_word.cycle:
            copies = [registered(m, x_word.at(R - 1), f"x_word_g{g}") for g in range(-(-PE // LANES_PER_INPUT_COPY))]
            for copy in copies:
                copy.attrs["keep"] = 1
        lane_x = [copies[min(p // LANES_PER_INPUT_COPY, len(copies) - 1)] for p in range(PE)]
        pairs = [[(word_element(lane_x[p], s, self.in_fmt), word_element(w, p * SIMD + s, self.w_fmt))
                  for s in range(SIMD)] for p in range(PE)]
        self.engine.build(m, self.o, pairs, valid=issue, first=sf.first, last=sf.last,
                          fold=Timed(m, nf.value, 0, "fold"), reserve=issue & sf.last, may_reserve=may_reserve)
        return m
