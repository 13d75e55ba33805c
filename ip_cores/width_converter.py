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
        if self.in_elems > self.out_elems:  # split: the shifting word and the waiting next word
            return Resources(2 * in_w + 2 * counter + 3, 2 * in_w + counter + 3)
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
        """Shift out the current word's k pieces, lowest first, while the next word waits in a second register.
        `i.ready` is that register's empty flag and `last` (the piece on the output is the word's last) a register
        of its own: no path from `o.ready` to `i.ready`, and a word a k cycles when never stalled."""
        piece = len(self.o.payload)
        word = Signal(len(self.i.payload), reset_less=True)
        nxt = Signal(len(self.i.payload), reset_less=True)
        index = Signal(range(k))
        full, last, nxt_full = Signal(), Signal(), Signal()
        take = Signal()
        finish = full & self.o.ready & last
        m.d.comb += [
            self.o.payload.eq(word[:piece]),
            self.o.valid.eq(full),
            self.i.ready.eq(~nxt_full),
            take.eq(self.i.valid & ~nxt_full),
        ]
        with m.If(~full | finish):  # the current word is done (or there is none): refill it
            with m.If(nxt_full):
                m.d.sync += [word.eq(nxt), index.eq(0), last.eq(0), full.eq(1), nxt_full.eq(take)]
                with m.If(take):
                    m.d.sync += nxt.eq(self.i.payload)
            with m.Elif(take):
                m.d.sync += [word.eq(self.i.payload), index.eq(0), last.eq(0), full.eq(1)]
            with m.Else():
                m.d.sync += full.eq(0)
        with m.Else():
            with m.If(self.o.ready):
                m.d.sync += [word.eq(word >> piece), index.eq(index + 1), last.eq(index == k - 2)]
            with m.If(take):
                m.d.sync += [nxt.eq(self.i.payload), nxt_full.eq(1)]

    def _gather(self, m: Module, k: int) -> None:
        """Collect k-1 input words in a shift register; the k-th completes the registered output. `last` (the
        next input word completes an output) is a register of its own, so `i.ready` is one LUT from registers and
        does not depend on `o.ready`."""
        piece = len(self.i.payload)
        collected = Signal(piece * (k - 1), reset_less=True)
        out_word = Signal(len(self.o.payload), reset_less=True)
        count = Signal(range(k))
        last = Signal()
        # The completing word waits for an empty output register, not for one emptying this cycle: with k >= 2
        # input words per output the register has always emptied by then when the consumer keeps up.
        m.d.comb += [self.i.ready.eq(~last | ~self.o.valid), self.o.payload.eq(out_word)]
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
