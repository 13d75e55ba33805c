"""Stream fan-out and fan-in for residual networks: a duplicator (one stream to several) and an interleaver
(two streams to one, word by word), with registered handshakes.

A residual block reads its input twice: the long path (convolutions) and the skip path, joined again by an
element-wise Add. In rtlgen's dataflow the fan-out is `StreamDuplicator`, whose every branch is a `StreamFIFO`
(the skip branch's FIFO is the skip-path buffer, sized to what the long path delays), and the Add is
`StreamInterleave` feeding a vector unit: the interleaver alternates words of its two inputs (PE channels of
the long path, then the same PE channels of the skip path), which is exactly a depthwise convolution's input
with two taps, so the vector unit computes `ka*a + kb*b` per channel with the exact integer alignment
multipliers as its two weights, then the thresholds or requantization of whatever follows the Add.

Handshakes: each branch FIFO of the duplicator takes the input word as soon as it has room, remembering that
it did, and the input moves on once every branch has it (`i.ready`: an AND of the branches' flags, never on a
branch's write path); the interleaver writes into a small output FIFO, so `o.ready` never
reaches its inputs' `ready`. Neither core touches the payload beyond wiring and one mux.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .resources import Resources, fifo_cost
from .stream_fifo import StreamFIFO

__all__ = ["StreamDuplicator", "StreamInterleave"]


class StreamDuplicator(wiring.Component):
    """`i` (words of `width` bits) copied to outputs `o0`..`o{n-1}`; branch k buffers `depths[k]` words (>= 2).

    Each branch takes a word when it has room (not necessarily in the same cycle as the others); the input
    moves on when all have it, and each branch drains at its own consumer's pace. A branch that holds `depth` words stops the input, so the deepest
    difference between the branches' consumption must fit the shallower branch's FIFO: the caller sizes the
    skip branch from the two paths' schedules. A word reaches a branch output 2 cycles after it is taken.
    """

    latency = 2

    def __init__(self, width: int, depths: list[int]):
        if len(depths) < 2:
            raise ValueError("a duplicator needs at least two branches")
        if any(d < 2 for d in depths):
            raise ValueError(f"branch depths {depths}: each must be at least 2 (a registered i.ready)")
        self.width, self.depths = int(width), [int(d) for d in depths]
        ports = {"i": In(stream.Signature(self.width))}
        ports.update({f"o{k}": Out(stream.Signature(self.width)) for k in range(len(self.depths))})
        super().__init__(ports)

    @property
    def outputs(self) -> list:
        return [getattr(self, f"o{k}") for k in range(len(self.depths))]

    def resources(self) -> Resources:
        total = Resources(luts=1 + len(self.depths) // 6)
        for depth in self.depths:
            total = total + fifo_cost(self.width, depth)
        return total

    def elaborate(self, platform):
        m = Module()
        fifos = [StreamFIFO(self.width, depth) for depth in self.depths]  # built here: a timing model never elaborates
        for k, (fifo, out) in enumerate(zip(fifos, self.outputs)):
            m.submodules[f"branch{k}"] = fifo
            wiring.connect(m, fifo.o, wiring.flipped(out))
        # Branch k takes the word as soon as it has room (`taken_k` remembers it did), so a branch's write never
        # waits on another branch's flags; the input moves on when every branch has it.
        got = []
        for k, fifo in enumerate(fifos):
            taken = Signal(name=f"taken{k}")
            m.d.comb += [fifo.i.payload.eq(self.i.payload), fifo.i.valid.eq(self.i.valid & ~taken)]
            got.append((taken, taken | fifo.i.ready))
        all_got = got[0][1]
        for _, has in got[1:]:
            all_got = all_got & has
        m.d.comb += self.i.ready.eq(all_got)
        for taken, has in got:
            m.d.sync += taken.eq(self.i.valid & ~all_got & has)
        return m


class StreamInterleave(wiring.Component):
    """Words of `a` and `b` alternately on `o` (a first), `width` bits each: a frame of N words from each input
    becomes 2N words. Output through a `StreamFIFO` of `out_depth` words (>= 2), so `o.ready` reaches no input's
    `ready`; one word a cycle when both inputs keep up, a word offered 2 cycles after it is taken.

    With `widen=(a_fmt, b_fmt, out_fmt, elems)` the inputs carry `elems` elements of their own formats and each
    element is sign- or zero-extended to `out_fmt` (`width` is then the output's, elems * out_fmt.width): a
    residual Add whose two inputs have different formats (a signed long path, an unsigned skip) sums them in one
    vector unit of one input format. Extension is wiring only.
    """

    latency = 2

    def __init__(self, width: int, out_depth: int = 2, widen: tuple | None = None):
        if out_depth < 2:
            raise ValueError(f"output depth {out_depth}: at least 2 (a registered ready)")
        self.width = int(width)
        self.widen = widen
        in_widths = (self.width, self.width)
        if widen is not None:
            a_fmt, b_fmt, out_fmt, elems = widen
            if elems * out_fmt.width != self.width:
                raise ValueError(f"width {width} is not {elems} elements of {out_fmt.width} bits")
            for fmt in (a_fmt, b_fmt):
                if fmt.is_bipolar or out_fmt.is_bipolar or fmt.width > out_fmt.width or \
                        (fmt.is_signed and not out_fmt.is_signed) or \
                        (not fmt.is_signed and out_fmt.is_signed and fmt.width >= out_fmt.width):
                    raise ValueError(f"cannot widen {fmt} elements to {out_fmt} without changing their values")
            in_widths = (elems * a_fmt.width, elems * b_fmt.width)
        self.out_depth = int(out_depth)
        super().__init__({"a": In(stream.Signature(in_widths[0])), "b": In(stream.Signature(in_widths[1])),
                          "o": Out(stream.Signature(self.width))})

    def resources(self) -> Resources:
        return Resources(luts=self.width + 2, ffs=1) + fifo_cost(self.width, self.out_depth)

    def _widened(self, port, fmt_index: int):
        """The input word with every element extended to the output format (sign bits or zeros on top)."""
        if self.widen is None:
            return port.payload
        fmt, out_fmt, elems = self.widen[fmt_index], self.widen[2], self.widen[3]
        extra = out_fmt.width - fmt.width
        parts = []
        for e in range(elems):
            raw = port.payload[e * fmt.width:(e + 1) * fmt.width]
            top = raw[-1].replicate(extra) if fmt.is_signed else Const(0, extra)
            parts.append(Cat(raw, top) if extra else raw)
        return Cat(*parts)

    def elaborate(self, platform):
        m = Module()
        m.submodules.out = out = StreamFIFO(self.width, self.out_depth)
        wiring.connect(m, out.o, wiring.flipped(self.o))
        turn_b = Signal(name="turn_b")  # the next word comes from b
        a_word, b_word = Signal(self.width, name="a_word"), Signal(self.width, name="b_word")
        m.d.comb += [a_word.eq(self._widened(self.a, 0)), b_word.eq(self._widened(self.b, 1))]
        m.d.comb += [
            self.a.ready.eq(~turn_b & out.i.ready),
            self.b.ready.eq(turn_b & out.i.ready),
            out.i.valid.eq(Mux(turn_b, self.b.valid, self.a.valid)),
            out.i.payload.eq(Mux(turn_b, b_word, a_word)),
        ]
        with m.If(out.i.valid & out.i.ready):
            m.d.sync += turn_b.eq(~turn_b)
        return m
