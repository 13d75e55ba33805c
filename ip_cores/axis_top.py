"""The accelerator's top level: a chain of stream stages behind AXI-Stream ports with Vivado names.

Vivado's IP packager recognises `ap_clk`, `ap_rst_n`, `s_axis_*` and `m_axis_*` and infers the clock,
the active-low reset and both AXI-Stream interfaces from the names alone, so the ports are flat
members (not stream signatures, whose Verilog names would be `i__payload` ...) and the component
drives its own `sync` clock domain from them (so no `clk`/`rst` ports appear in the Verilog).

The input honours TLAST: an `InputFramer` (ip_cores/input_framer.py) realigns the stream at the next TLAST
after a short or long frame and raises the sticky `error` output. TDATA widths are the power-of-two byte
counts an AXI DMA streams (`axis_width`), so a DMA feeds the core one word a beat with no width converter.
"""
from __future__ import annotations

from amaranth.back import verilog
from amaranth.hdl import ClockDomain, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .input_framer import InputFramer

__all__ = ["AxisDataflowTop", "to_verilog", "axis_width", "DMA_STREAM_WIDTHS"]

DMA_STREAM_WIDTHS = (8, 16, 32, 64, 128, 256, 512, 1024)
"""The TDATA widths (bits) an AXI DMA's MM2S/S2MM stream ports take."""


def axis_width(width: int) -> int:
    """AXI-Stream TDATA width for an inner stream of `width` bits (payload in the low bits, zero padding).

    Up to 1024 bits: the smallest of `DMA_STREAM_WIDTHS` that holds it, so an AXI DMA of exactly that
    stream width feeds (or takes) one word a beat. Wider words: the next multiple of 1024 bits (no DMA
    streams that wide; a block design puts an integer-ratio width converter behind a 1024-bit DMA stream).
    """
    width = int(width)
    if width < 1:
        raise ValueError(f"stream width must be positive, not {width}")
    for candidate in DMA_STREAM_WIDTHS:
        if width <= candidate:
            return candidate
    top = DMA_STREAM_WIDTHS[-1]
    return -(-width // top) * top


class AxisDataflowTop(wiring.Component):
    """`stages` (components with `i`/`o` stream ports) joined in a chain, between AXI-Stream ports.

    Or joined as a graph: `connections` lists `(from_stage, from_port, to_stage, to_port)` (indices into
    `stages` and stream port names: a duplicator's `o0`, `o1`, an interleaver's `a`, `b`), and the network's
    input enters `stages[0].i` and its output leaves `stages[-1].o`.

    `in_width`/`out_width` are the payload widths of the first stage's `i` and the last stage's `o`;
    TDATA is those rounded up by `axis_width` (padding ignored on input, zero on output).
    TLAST is high on the last word of every output frame of `out_words_per_frame` words.
    With `input_tlast` (the default) `s_axis_tlast` marks the last of every `in_words_per_frame` input
    words and an `InputFramer` realigns the input after a short or long frame, raising `error` (sticky
    until reset). Without it the core has no `s_axis_tlast`, counts nothing, and `error` stays 0.
    """

    def __init__(self, stages, in_width: int, out_width: int, out_words_per_frame: int,
                 in_words_per_frame: int | None = None, input_tlast: bool = True, connections=None):
        self.stages = list(stages)
        self.connections = [(i, "o", i + 1, "i") for i in range(len(self.stages) - 1)] if connections is None else \
            [tuple(c) for c in connections]
        self.in_width, self.out_width = int(in_width), int(out_width)
        self.out_words_per_frame = int(out_words_per_frame)
        self.input_tlast = bool(input_tlast)
        if in_words_per_frame is None and self.input_tlast:
            raise ValueError("in_words_per_frame is needed to frame the input (or input_tlast=False)")
        self.in_words_per_frame = int(in_words_per_frame or 1)
        if self.out_words_per_frame < 1 or self.in_words_per_frame < 1:
            raise ValueError(f"words per frame must be positive, not {in_words_per_frame} in and "
                             f"{out_words_per_frame} out")
        if self.stages:
            first, last = len(self.stages[0].i.payload), len(self.stages[-1].o.payload)
            if (first, last) != (self.in_width, self.out_width):
                raise ValueError(f"stage widths {first} -> {last} do not match in_width {in_width} "
                                 f"and out_width {out_width}")
        elif self.in_width != self.out_width:
            raise ValueError("without stages in_width and out_width must be equal")
        ports = {
            "ap_clk": In(1),
            "ap_rst_n": In(1),
            "s_axis_tdata": In(axis_width(self.in_width)),
            "s_axis_tvalid": In(1),
            "s_axis_tready": Out(1),
        }
        if self.input_tlast:
            ports["s_axis_tlast"] = In(1)
        ports.update({
            "m_axis_tdata": Out(axis_width(self.out_width)),
            "m_axis_tvalid": Out(1),
            "m_axis_tready": In(1),
            "m_axis_tlast": Out(1),
            "error": Out(1),
        })
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = sync = ClockDomain("sync")
        m.d.comb += [sync.clk.eq(self.ap_clk), sync.rst.eq(~self.ap_rst_n)]

        for index, stage in enumerate(self.stages):
            m.submodules[f"stage{index}"] = stage
        for source, out_port, sink, in_port in self.connections:
            wiring.connect(m, getattr(self.stages[source], out_port), getattr(self.stages[sink], in_port))

        # The input: straight into the chain, or through the framer that honours TLAST.
        in_payload, in_valid, in_ready = self.s_axis_tdata[:self.in_width], self.s_axis_tvalid, self.s_axis_tready
        if self.input_tlast:
            m.submodules.framer = framer = InputFramer(self.in_width, self.in_words_per_frame)
            m.d.comb += [
                framer.i.payload.data.eq(in_payload),
                framer.i.payload.last.eq(self.s_axis_tlast),
                framer.i.valid.eq(in_valid),
                in_ready.eq(framer.i.ready),
                self.error.eq(framer.error),
            ]
            in_payload, in_valid, in_ready = framer.o.payload, framer.o.valid, framer.o.ready

        if self.stages:
            head, tail = self.stages[0].i, self.stages[-1].o
            m.d.comb += [
                head.payload.eq(in_payload),
                head.valid.eq(in_valid),
                in_ready.eq(head.ready),
                self.m_axis_tdata.eq(tail.payload),
                self.m_axis_tvalid.eq(tail.valid),
                tail.ready.eq(self.m_axis_tready),
            ]
        else:
            m.d.comb += [
                self.m_axis_tdata.eq(in_payload),
                self.m_axis_tvalid.eq(in_valid),
                in_ready.eq(self.m_axis_tready),
            ]

        # TLAST: count the output words that leave and mark each frame's last one.
        n = self.out_words_per_frame
        if n == 1:
            m.d.comb += self.m_axis_tlast.eq(1)
        else:
            count = Signal(range(n))
            last = count == n - 1
            m.d.comb += self.m_axis_tlast.eq(last)
            with m.If(self.m_axis_tvalid & self.m_axis_tready):
                m.d.sync += count.eq(Mux(last, 0, count + 1))
        return m


def to_verilog(top: wiring.Component, name: str) -> str:
    """Verilog of `top` as a module called `name` whose ports are the component's members only.

    Source locations are left out so the text does not depend on where the tree is checked out.
    """
    return verilog.convert(top, name=name, emit_src=False)
