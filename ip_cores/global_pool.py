"""Global sum pool: every pixel of a channels-last feature map summed per channel, then an activation.

A global average pool (GlobalAveragePool, a spatial ReduceMean, an AveragePool or TruncAvgPool2d as large as
the map) is the sum of each channel over the frame followed by its 1/N and the requantization, which the
compiler folds into exact integer thresholds. A sliding window over the whole map would buffer the whole map
to hand the vector unit each channel's pixels together; here the pixels arrive in stream order and each is
added into its channel's running sum at once, so the core holds one accumulator word per channel fold and
no image.

Input: P pixels a frame, each CF = C/PE words of PE elements (channels-last). Accumulators: a store of CF words
of PE sums (a memory, or a register when CF = 1), read-modify-write one input word a cycle:

    cycle 0   issue: counters (channel fold, pixel), read the fold's partial sums, take a queue credit on the
              last pixel
    cycle 1   per lane sum = (first pixel ? 0 : partial) + x; written back to the fold's word
    cycle 2   on the last pixel: the sums, registered, enter the activation (thresholds or requantization,
              ip_cores/activation.py)
    ..        the activation's word into the output queue, offered 2 cycles later

The write-back of word cf and the read of the next word hit different addresses (the fold counter steps by
one per word), and the same fold's next read comes CF >= 2 cycles later, after the write: no bypass. One input
word a cycle, free-running like the MVTU: back-pressure stops only the issue, through the output queue's
credits. Never stalled, a frame takes P*CF cycles and a fold's output word is offered `latency` cycles after
its last pixel's word is taken.
"""
from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .activation import activation_reference, make_activation
from .elements import ElementFormat, word_element
from .maxpool import PartialStore
from .memories import plan_ram
from .pipeline import OutputQueue, Timed, WrapCounter, registered
from .requantize import Requantization
from .resources import Resources, fifo_cost
from .thresholding import check_mac_parameters

__all__ = ["GlobalSumPool", "global_sum_pool_reference"]


def global_sum_pool_reference(x, channels: int, thresholds=None, out_offset: int = 0, *,
                              requant: Requantization | None = None) -> np.ndarray:
    """What the core computes, in plain numpy: frames (N, P*C) channels-last -> (N, C): each channel's sum over
    the P pixels, thresholded (`count(sum >= T[c, j]) + out_offset`), requantized, or as it is."""
    x = np.asarray(x, dtype=np.int64)
    sums = x.reshape(len(x), -1, channels).sum(axis=1)
    return activation_reference(sums, thresholds, out_offset, None, requant)


class GlobalSumPool(wiring.Component):
    """Per-channel sum over a frame's `pixels` pixels (docs/CONTRACTS.md, "Convolution cores").

    Ports: `i` (PE `in_fmt` elements a word, P*C/PE words a frame, channels-last) and `o` (PE `out_fmt` elements
    a word, C/PE words a frame, word cf holding channels cf*PE .. cf*PE+PE-1). `acc_width` signed bits must hold
    P times the input range; `thresholds` (C, NT) / `out_offset` / `requant` as for the vector unit.
    """

    acc_cycle = 2  # the cycle (from the issue of the last pixel's word) its sums enter the activation

    def __init__(self, in_fmt: ElementFormat, channels: int, pixels: int, pe: int, acc_width: int,
                 thresholds=None, out_fmt: ElementFormat | None = None, out_offset: int = 0,
                 requant: Requantization | None = None, *, threshold_style: str = "auto", memory_style: str = "auto"):
        if in_fmt.is_bipolar:
            raise ValueError("a global sum pool takes integer levels, not bipolar ones")
        if pe < 1 or channels % pe:
            raise ValueError(f"PE {pe} must divide the {channels} channels")
        if pixels < 1:
            raise ValueError(f"pixels must be positive, not {pixels}")
        self.in_fmt, self.channels, self.pixels = in_fmt, int(channels), int(pixels)
        self.pe, self.cf = int(pe), self.channels // int(pe)
        self.acc_width = int(acc_width)
        unit = np.ones((self.channels, self.pixels), dtype=np.int64)  # the sum is a unit-weight dot product
        _, self.thresholds, self.out_fmt = check_mac_parameters(
            unit, in_fmt, ElementFormat.unsigned(1), acc_width, thresholds, out_fmt, out_offset, requant)
        self.out_offset, self.requant = int(out_offset), requant
        self.store = plan_ram(self.cf, self.pe * self.acc_width, memory_style) if self.cf > 1 else None
        self.activation = make_activation(
            lanes=self.pe, n_folds=self.cf, out_fmt=self.out_fmt, xnor=False, n_terms=self.pixels,
            acc_width=self.acc_width, thresholds=self.thresholds, out_offset=self.out_offset, requant=requant,
            acc_range=(self.pixels * min(in_fmt.min, 0), self.pixels * max(in_fmt.max, 0)),
            threshold_style=threshold_style, memory_style=memory_style, mac_resource="lut")
        self.write_cycle = self.acc_cycle + self.activation.latency
        self.latency = self.write_cycle + OutputQueue.read_latency
        self.queue_depth = OutputQueue.depth_for(self.write_cycle, 1)
        super().__init__({"i": In(stream.Signature(self.pe * in_fmt.width)),
                          "o": Out(stream.Signature(self.pe * self.out_fmt.width))})

    # --- figures for the compiler's timing model -------------------------------------------------

    def cycles_per_frame(self) -> int:
        return self.pixels * self.cf

    def resources(self) -> Resources:
        """Analytic estimate (ip_cores/resources.py): counters, the accumulator store and its adders, the input
        and sum registers, the activation and the output queue."""
        sums = self.pe * self.acc_width
        counters = 2 * max(1, self.cf.bit_length()) + 2 * max(1, self.pixels.bit_length())
        store = Resources.of_memory(self.store) if self.store is not None else Resources(0, sums)
        adders = Resources(sums + self.pe, sums + self.pe * self.in_fmt.width + 2 * self.pe)  # add, acc + x regs
        queue = fifo_cost(self.pe * self.out_fmt.width, self.queue_depth + 2) + \
            Resources(6, 2 * self.queue_depth.bit_length() + 1)
        control = Resources(counters + 6, counters + 3 * self.write_cycle)
        return store + adders + self.activation.resources() + queue + control

    # --- hardware ----------------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        PE, W = self.pe, self.acc_width

        # --- cycle 0: issue; a word of the last pixel needs a place in the output queue ---
        may_reserve, issue = Signal(), Signal()
        fold = WrapCounter(m, self.cf, "fold", issue)
        pixel = WrapCounter(m, self.pixels, "pixel", issue & fold.last)
        m.d.comb += [self.i.ready.eq(~pixel.last | may_reserve), issue.eq(self.i.valid & self.i.ready)]
        store = PartialStore(m, "sums", PE * W, self.cf)
        store.read(m, fold.value, issue)

        # --- cycle 1: add the word into its fold's sums and write them back ---
        valid1 = registered(m, issue, "valid1", reset_less=False)
        fold1 = registered(m, fold.value, "fold1")
        x1 = Signal(PE * self.in_fmt.width, reset_less=True)
        m.d.sync += x1.eq(self.i.payload)  # loads every cycle; `valid1` says whether it is a word
        sums = []
        for p in range(PE):
            # each lane its own copy of the first-pixel bit: one net would otherwise reach PE * W adders
            first = registered(m, pixel.first, f"first1_{p}")
            if PE > 1:
                first.attrs["keep"] = 1
            partial = store.data[p * W:(p + 1) * W].as_signed()
            total = Signal(signed(W), name=f"sum{p}")
            m.d.comb += total.eq(Mux(first, 0, partial) + word_element(x1, p, self.in_fmt))
            sums.append(total)
        store.write(m, fold1, Cat(*sums), valid1)

        # --- cycle 2: the last pixel's sums enter the activation ---
        done1 = valid1 & registered(m, pixel.last, "last1")
        accs = [Timed(m, registered(m, s, f"acc{p}"), self.acc_cycle, f"acc{p}") for p, s in enumerate(sums)]
        done = Timed(m, registered(m, done1, "acc_done", reset_less=False), self.acc_cycle, "acc_done",
                     reset_less=False)
        out = self.activation.build(m, accs, Timed(m, fold.value, 0, "fold"))
        queue = OutputQueue(PE * self.out_fmt.width, self.queue_depth)
        m.d.comb += may_reserve.eq(queue.elaborate_into(m, "out_queue", self.o, out.value,
                                                        done.at(self.write_cycle), issue & pixel.last))
        return m
