"""Vector-vector unit: a depthwise convolution's arithmetic, per channel `y[c] = threshold(sum_k x[k, c] * W[c, k])`.

It consumes the depthwise order of the sliding-window generator (`SlidingWindow(depthwise=True)` with
SIMD = PE): for each output pixel, for each channel fold cf in C/PE, for each kernel position k in K, one
word of the PE channels cf*PE .. cf*PE+PE-1. Each PE lane multiplies its element by its channel's weight
for position k and accumulates over the K words of the fold; after the K-th word the PE accumulators
are thresholded or requantized (or passed through) into one output word. Output: C/PE words a pixel,
channels-last.

The issue stage (counters, weight address) is this module's; the datapath after it is the MVTU's
(ip_cores/mac_engine.py) with one product a lane and step. One input word a cycle; a fold's word is
offered `latency` cycles after the fold's last input word. Never stalled, P pixels take P*CF*K + latency
cycles from the first input to the last output.
"""
from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .activation import activation_reference, make_activation
from .elements import ElementFormat, pack_words, word_element
from .mac_engine import MacEngine
from .mac_terms import mac_resource_for
from .memories import plan_rom, read_rom
from .pipeline import Timed, WrapCounter
from .resources import Resources
from .requantize import Requantization
from .thresholding import accumulator_range, check_mac_parameters

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
    return activation_reference(np.einsum("pkc,ck->pc", x, w), thresholds, out_offset, out_fmt, requant)


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
    `mac_resource`, `threshold_style` and `memory_style` as for the MVTU ("dsp_packed" is "dsp" here: each
    lane multiplies its own input, so no two products share an operand).
    """

    def __init__(self, weights, pe: int, in_fmt: ElementFormat, w_fmt: ElementFormat, acc_width: int,
                 thresholds=None, out_fmt: ElementFormat | None = None, out_offset: int = 0,
                 kernel_elems: int | None = None, requant: Requantization | None = None, *,
                 mac_resource: str = "auto", threshold_style: str = "auto", memory_style: str = "auto"):
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
        self.mac_resource = mac_resource_for(in_fmt, w_fmt, mac_resource)
        self.weight_memory = plan_rom(self.cf * self.k, self.pe * w_fmt.width, memory_style)
        self.activation = make_activation(
            lanes=self.pe, n_folds=self.cf, out_fmt=self.out_fmt, xnor=self.xnor, n_terms=self.k,
            acc_width=self.acc_width, thresholds=self.thresholds, out_offset=self.out_offset, requant=requant,
            acc_range=accumulator_range(self.weights, in_fmt), threshold_style=threshold_style,
            memory_style=memory_style, mac_resource=self.mac_resource)
        self.engine = MacEngine(lanes=self.pe, terms_per_step=1, in_fmt=in_fmt, w_fmt=w_fmt,
                                acc_width=self.acc_width, n_terms=self.k, steps_per_output=self.k,
                                n_folds=self.cf, activation=self.activation, mac_resource=self.mac_resource,
                                input_latency=self.weight_memory.read_latency,
                                channel_constants=self._channel_constants())

        super().__init__({
            "i": In(stream.Signature(self.pe * in_fmt.width)),
            "o": Out(stream.Signature(self.pe * self.out_fmt.width)),
        })

    @property
    def latency(self) -> int:
        """Cycles from the acceptance of a fold's last input word to the offer of its output word."""
        return self.engine.latency

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

    def resources(self) -> Resources:
        """Analytic estimate (ip_cores/resources.py): issue stage, weight memory, input registers, the datapath."""
        R = self.engine.input_latency
        x_bits, w_bits = self.pe * self.in_fmt.width, self.pe * self.w_fmt.width
        memory = Resources.of_memory(self.weight_memory, self.weight_words())
        registers = x_bits * R + w_bits * (R - self.weight_memory.read_latency)
        counters = 3 * max(1, (self.cf * self.k).bit_length())
        return Resources(2 * counters + 6, 2 * counters + registers) + memory + self.engine.resources()

    def _channel_constants(self) -> list[int] | None:
        """Per output channel, minus the sum of its weights: the accumulator's start with a bipolar input
        (ip_cores/mac_terms.py), in channel order; None otherwise."""
        if not (self.in_fmt.is_bipolar and not self.w_fmt.is_bipolar):
            return None
        return [-int(v) for v in self.weights.astype(object).sum(axis=1)]

    # --- memory contents -------------------------------------------------------------------------

    def weight_words(self) -> list[int]:
        """Weight memory, address cf*K + k: element p is W[cf*PE + p, k]."""
        w = self.weights.reshape(self.cf, self.pe, self.k).transpose(0, 2, 1)
        return pack_words(w.reshape(-1), self.w_fmt, self.pe)

    # --- hardware ----------------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        K, CF, PE = self.k, self.cf, self.pe

        # --- issue: kernel position k and channel fold cf of the word taken from the stream ---
        may_reserve = Signal()
        issue = Signal()
        m.d.comb += [self.i.ready.eq(may_reserve), issue.eq(self.i.valid & may_reserve)]
        k = WrapCounter(m, K, "k", issue)
        cf = WrapCounter(m, CF, "cf", issue & k.last)
        w_addr = WrapCounter(m, CF * K, "w_addr", issue)  # weight memory address cf*K + k
        w_word = Timed(m, read_rom(m, "weights", self.weight_memory, self.weight_words(), w_addr.value),
                       self.weight_memory.read_latency, "w_word")
        # Every issue takes a stream word and the pipeline reads it one cycle later: the register loads every
        # cycle (no enable: `issue` would otherwise fan out to all its bits).
        x_reg = Signal(PE * self.in_fmt.width, reset_less=True)
        m.d.sync += x_reg.eq(self.i.payload)
        x_word = Timed(m, x_reg, 1, "x_reg")

        R = self.engine.input_latency
        x, w = x_word.at(R), w_word.at(R)
        pairs = [[(word_element(x, p, self.in_fmt), word_element(w, p, self.w_fmt))] for p in range(PE)]
        self.engine.build(m, self.o, pairs, valid=issue, first=k.first, last=k.last,
                          fold=Timed(m, cf.value, 0, "fold"), reserve=issue & k.last, may_reserve=may_reserve)
        return m
