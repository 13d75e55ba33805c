"""Label select: the index of a frame's largest element (ArgMax / TopK(1) of a classifier's last layer).

A frame of C elements arrives as C/SIMD words of SIMD elements (element f*SIMD + j in word f); one word
leaves per frame, holding the index of the largest element (the lowest index among equal maxima, as ONNX
TopK and ArgMax without `select_last_index`; the highest with `last_on_tie`). Sending a label instead of C
scores cuts the output stream to one narrow word a frame.

Pipeline, free-running like the MVTU (`ip_cores.pipeline`): the SIMD elements of a word are reduced by a
tree of two-way compare-selects, two cycles a tree level (the comparison registered, then the select it drives),
then the word's winner is compared with the frame's running best (one comparator a cycle). The word that
ends a frame takes a credit of the output queue when it is accepted, so back-pressure stops only the input.
One input word a cycle: a frame takes C/SIMD cycles (`cycles_per_frame`); the label is written `latency`
cycles after the frame's last word is accepted.
"""
from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .elements import ElementFormat
from .pipeline import OutputQueue, WrapCounter, registered
from .resources import Resources, fifo_cost

__all__ = ["LabelSelect", "label_select_reference", "label_width"]


def label_width(channels: int) -> int:
    """Bits of a label 0..channels-1 (at least one)."""
    return max(1, (int(channels) - 1).bit_length())


def label_select_reference(x, last_on_tie: bool = False) -> np.ndarray:
    """What the core computes: frames (N, C) of element values -> (N, 1) labels."""
    x = np.asarray(x, dtype=np.int64)
    if last_on_tie:
        return (x.shape[1] - 1 - np.argmax(x[:, ::-1], axis=1))[:, None]
    return np.argmax(x, axis=1)[:, None]


class LabelSelect(wiring.Component):
    """Index of the largest of `channels` elements of format `fmt`, SIMD elements a word (SIMD | channels)."""

    def __init__(self, channels: int, simd: int, fmt: ElementFormat, last_on_tie: bool = False):
        if channels < 1 or simd < 1 or channels % simd:
            raise ValueError(f"SIMD {simd} must divide the {channels} channels")
        self.channels, self.simd, self.fmt, self.last_on_tie = int(channels), int(simd), fmt, bool(last_on_tie)
        self.folds = self.channels // self.simd
        self.label_bits = label_width(self.channels)
        self.tree_levels = (self.simd - 1).bit_length()
        # issue -> tree levels (compare, then select: two cycles each) -> running compare -> label written
        self.latency = 2 * self.tree_levels + 2
        self.queue = OutputQueue(self.label_bits, OutputQueue.depth_for(self.latency, self.folds))
        super().__init__({"i": In(stream.Signature(self.simd * fmt.width)),
                          "o": Out(stream.Signature(self.label_bits))})

    def cycles_per_frame(self) -> int:
        return self.folds

    def resources(self) -> Resources:
        """Analytic estimate: a comparator (a carry chain of the element width) and a mux of value and label per
        tree node and for the running best; per tree node its compare stage's registers (both candidates and the
        flag) and its select stage's, the issue registers, the fold counter and the output queue."""
        width, pair = self.fmt.width, self.fmt.width + self.label_bits
        compares = self.simd  # SIMD - 1 tree nodes and the running compare
        luts = compares * (width // 2 + 1 + pair) + 8
        ffs = (self.simd - 1) * (3 * pair + 1) + (self.simd + 1) * pair + 6 * (self.tree_levels + 2) + 16
        return Resources(luts=luts, ffs=ffs) + fifo_cost(self.label_bits, self.queue.depth + 2)

    def _greater(self, a, b):
        """`a` beats `b` (a comes later in the frame): strictly larger, or equal when the last index wins ties.
        The bipolar code (1 = +1, 0 = -1) orders as an unsigned bit."""
        if self.fmt.kind == "signed":
            a, b = a.as_signed(), b.as_signed()
        return (a >= b) if self.last_on_tie else (a > b)

    def elaborate(self, platform):
        m = Module()
        w, bits = self.fmt.width, self.label_bits
        accept = Signal()
        fold = WrapCounter(m, self.folds, "fold", en=accept)
        may_reserve = Signal()
        m.d.comb += [self.i.ready.eq(may_reserve | ~fold.last), accept.eq(self.i.valid & self.i.ready)]
        base = Signal(range(self.channels), name="fold_base")  # the label of the word's element 0: fold * SIMD
        if self.folds > 1:
            with m.If(accept):
                m.d.sync += base.eq(Mux(fold.last, 0, base + self.simd))
        # issue register: the word's (value, label) pairs and the frame flags beside `valid`
        pairs = [(registered(m, self.i.payload[j * w:(j + 1) * w], f"in_v{j}"),
                  registered(m, (base + j)[:bits], f"in_l{j}")) for j in range(self.simd)]
        valid, first, last = (registered(m, s, n, reset_less=False) for s, n in
                              ((accept, "v_issue"), (fold.first, "first_issue"), (fold.last, "last_issue")))
        for level in range(self.tree_levels):  # pairs (earlier, later): the later wins only by `_greater`
            # two cycles a level: the comparison, registered, then the select it drives (a 16-bit comparator and
            # the 20-bit mux behind it measured 5.1 ns in one cycle)
            nxt = []
            for k in range(0, len(pairs), 2):
                if k + 1 == len(pairs):
                    v, lab = pairs[k]
                    for step in ("c", "s"):
                        v, lab = registered(m, v, f"t{level}{step}_{k}_v"), registered(m, lab, f"t{level}{step}_{k}_l")
                    nxt.append((v, lab))
                    continue
                (av, al), (bv, bl) = pairs[k], pairs[k + 1]
                take_b = registered(m, self._greater(bv, av), f"t{level}c_{k}_take")
                av, al, bv, bl = (registered(m, x, f"t{level}c_{k}_{n}") for x, n in
                                  ((av, "av"), (al, "al"), (bv, "bv"), (bl, "bl")))
                nxt.append((registered(m, Mux(take_b, bv, av), f"t{level}s_{k}_v"),
                            registered(m, Mux(take_b, bl, al), f"t{level}s_{k}_l")))
            pairs = nxt
            for step in ("c", "s"):
                valid, first, last = (registered(m, x, f"{n}_t{level}{step}", reset_less=False) for x, n in
                                      ((valid, "v"), (first, "first"), (last, "last")))
        (word_v, word_l), = pairs
        best_v = Signal(w, name="best_v", reset_less=True)
        best_l = Signal(bits, name="best_l", reset_less=True)
        take = first | self._greater(word_v, best_v)  # a later word replaces the best only by `_greater`
        with m.If(valid & take):
            m.d.sync += [best_v.eq(word_v), best_l.eq(word_l)]
        label = Signal(bits, name="label", reset_less=True)
        m.d.sync += label.eq(Mux(take, word_l, best_l))
        write = registered(m, valid & last, "label_write", reset_less=False)
        m.d.comb += may_reserve.eq(self.queue.elaborate_into(m, "queue", self.o, label, write, accept & fold.last))
        return m
