"""Change how many elements a stream word carries, keeping element order.

Between two layers whose folding differs (one produces PE elements a word, the next consumes SIMD),
words are split into narrower ones or gathered into wider ones. Element order is the stream order
of docs/CONTRACTS.md (element i of a word at bits [i*w, (i+1)*w)), so splitting takes the low
elements first and gathering puts the first word received in the low bits.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .resources import Resources

__all__ = ["StreamWidthConverter"]


class StreamWidthConverter(wiring.Component):
    """`i` carries `in_elems` elements of `elem_width` bits a word, `o` carries `out_elems`.

    One of `in_elems`, `out_elems` must divide the other. Splitting sends one output word a cycle
    (an input word is taken the same cycle its last piece leaves); gathering takes one input word a
    cycle (the finished word moves to a registered output). Equal sizes are a wire.
    """

    def __init__(self, elem_width: int, in_elems: int, out_elems: int):
        if elem_width < 1 or in_elems < 1 or out_elems < 1:
            raise ValueError("element width and element counts must be positive")
        if in_elems % out_elems and out_elems % in_elems:
            raise ValueError(f"one of in_elems {in_elems} and out_elems {out_elems} must divide the other")
        self.elem_width, self.in_elems, self.out_elems = int(elem_width), int(in_elems), int(out_elems)
        # Cycles from the word that completes an output (or starts a split) to that output being offered.
        self.latency = 0 if self.in_elems == self.out_elems else 1
        super().__init__({
            "i": In(stream.Signature(self.elem_width * self.in_elems)),
            "o": Out(stream.Signature(self.elem_width * self.out_elems)),
        })

    def resources(self) -> Resources:
        """Analytic estimate (ip_cores/resources.py): the word registers, the piece multiplexer of a split."""
        in_w, out_w = self.elem_width * self.in_elems, self.elem_width * self.out_elems
        if self.in_elems == self.out_elems:
            return Resources()
        counter = max(1, (max(self.in_elems, self.out_elems) // min(self.in_elems, self.out_elems)).bit_length())
        if self.in_elems > self.out_elems:  # split: shift register of the input word
            return Resources(in_w + 2 * counter + 3, in_w + counter + 2)
        return Resources(2 * counter + 3, in_w * (self.out_elems // self.in_elems - 1) + out_w + counter + 2)

    def elaborate(self, platform):
        m = Module()
        if self.in_elems == self.out_elems:
            m.d.comb += [
                self.o.payload.eq(self.i.payload),
                self.o.valid.eq(self.i.valid),
                self.i.ready.eq(self.o.ready),
            ]
        elif self.in_elems > self.out_elems:
            self._split(m, self.in_elems // self.out_elems)
        else:
            self._gather(m, self.out_elems // self.in_elems)
        return m

    def _split(self, m: Module, k: int) -> None:
        """Hold one input word and shift out its k pieces, lowest first. `last` (the piece on the output is the
        word's last) is a register of its own, so `i.ready` is two LUT levels from registers."""
        piece = len(self.o.payload)
        word = Signal(len(self.i.payload), reset_less=True)
        index = Signal(range(k))
        full = Signal()
        last = Signal()
        m.d.comb += [
            self.o.payload.eq(word[:piece]),
            self.o.valid.eq(full),
            self.i.ready.eq(~full | (self.o.ready & last)),
        ]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [word.eq(self.i.payload), index.eq(0), full.eq(1), last.eq(k == 1)]
        with m.Elif(self.o.valid & self.o.ready):
            m.d.sync += [word.eq(word >> piece), index.eq(index + 1), last.eq(index == k - 2)]
            with m.If(last):
                m.d.sync += full.eq(0)

    def _gather(self, m: Module, k: int) -> None:
        """Collect k-1 input words in a shift register; the k-th completes the registered output. `last` (the
        next input word completes an output) is a register of its own, so `i.ready` is one LUT from registers."""
        piece = len(self.i.payload)
        collected = Signal(piece * (k - 1), reset_less=True)
        out_word = Signal(len(self.o.payload), reset_less=True)
        count = Signal(range(k))
        last = Signal()
        out_free = ~self.o.valid | self.o.ready
        m.d.comb += [self.i.ready.eq(~last | out_free), self.o.payload.eq(out_word)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [
                collected.eq(Cat(collected[piece:], self.i.payload)),
                count.eq(Mux(last, 0, count + 1)),
                last.eq(count == k - 2),
            ]
            with m.If(last):
                m.d.sync += [out_word.eq(Cat(collected, self.i.payload)), self.o.valid.eq(1)]
            with m.Elif(self.o.ready):
                m.d.sync += self.o.valid.eq(0)
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
