"""The accelerator's top level: a chain of stream stages behind AXI-Stream ports with Vivado names.

Vivado's IP packager recognises `ap_clk`, `ap_rst_n`, `s_axis_*` and `m_axis_*` and infers the clock,
the active-low reset and both AXI-Stream interfaces from the names alone, so the ports are flat
members (not stream signatures, whose Verilog names would be `i__payload` ...) and the component
drives its own `sync` clock domain from them (so no `clk`/`rst` ports appear in the Verilog).
"""
from __future__ import annotations

from amaranth.back import verilog
from amaranth.hdl import ClockDomain, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["AxisDataflowTop", "to_verilog", "axis_width"]


def axis_width(width: int) -> int:
    """AXI-Stream TDATA width for an inner stream of `width` bits: rounded up to whole bytes."""
    return max(8, -(-int(width) // 8) * 8)


class AxisDataflowTop(wiring.Component):
    """`stages` (components with `i`/`o` stream ports) joined in a chain, between AXI-Stream ports.

    `in_width`/`out_width` are the payload widths of the first stage's `i` and the last stage's `o`;
    TDATA is those rounded up to a multiple of 8 (padding ignored on input, zero on output).
    TLAST is high on the last word of every output frame of `out_words_per_frame` words.
    """

    def __init__(self, stages, in_width: int, out_width: int, out_words_per_frame: int):
        self.stages = list(stages)
        self.in_width, self.out_width = int(in_width), int(out_width)
        self.out_words_per_frame = int(out_words_per_frame)
        if self.out_words_per_frame < 1:
            raise ValueError(f"out_words_per_frame must be positive, not {out_words_per_frame}")
        if self.stages:
            first, last = len(self.stages[0].i.payload), len(self.stages[-1].o.payload)
            if (first, last) != (self.in_width, self.out_width):
                raise ValueError(f"stage widths {first} -> {last} do not match in_width {in_width} "
                                 f"and out_width {out_width}")
        elif self.in_width != self.out_width:
            raise ValueError("without stages in_width and out_width must be equal")
        super().__init__({
            "ap_clk": In(1),
            "ap_rst_n": In(1),
            "s_axis_tdata": In(axis_width(self.in_width)),
            "s_axis_tvalid": In(1),
            "s_axis_tready": Out(1),
            "m_axis_tdata": Out(axis_width(self.out_width)),
            "m_axis_tvalid": Out(1),
            "m_axis_tready": In(1),
            "m_axis_tlast": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = sync = ClockDomain("sync")
        m.d.comb += [sync.clk.eq(self.ap_clk), sync.rst.eq(~self.ap_rst_n)]

        for index, stage in enumerate(self.stages):
            m.submodules[f"stage{index}"] = stage
        for upstream, downstream in zip(self.stages, self.stages[1:]):
            wiring.connect(m, upstream.o, downstream.i)

        if self.stages:
            head, tail = self.stages[0].i, self.stages[-1].o
            m.d.comb += [
                head.payload.eq(self.s_axis_tdata[:self.in_width]),
                head.valid.eq(self.s_axis_tvalid),
                self.s_axis_tready.eq(head.ready),
                self.m_axis_tdata.eq(tail.payload),
                self.m_axis_tvalid.eq(tail.valid),
                tail.ready.eq(self.m_axis_tready),
            ]
        else:
            m.d.comb += [
                self.m_axis_tdata.eq(self.s_axis_tdata[:self.in_width]),
                self.m_axis_tvalid.eq(self.s_axis_tvalid),
                self.s_axis_tready.eq(self.m_axis_tready),
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
