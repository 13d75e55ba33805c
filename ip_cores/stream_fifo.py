"""A first-in first-out queue between two valid/ready streams.

A thin wrapper around Amaranth's synchronous FIFOs that gives them the `i`/`o` stream ports every
other core has, so the compiler can drop one between any two stages with `wiring.connect`.
"""
from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .resources import Resources, fifo_cost

__all__ = ["StreamFIFO"]


class StreamFIFO(wiring.Component):
    """Holds up to `depth` words of `width` bits; ports `i` (in) and `o` (out).

    depth >= 3 uses a block-RAM-friendly FIFO (synchronous read, registered output, latency 2);
    depth 1..2 uses a LUTRAM FIFO (latency 1). Full throughput (a word a cycle) needs depth >= 2;
    depth 1 alternates full/empty. depth 0 is a plain wire, for stages that need no buffering.
    """

    def __init__(self, width: int, depth: int):
        if width < 1:
            raise ValueError(f"FIFO width must be positive, not {width}")
        if depth < 0:
            raise ValueError(f"FIFO depth must be >= 0, not {depth}")
        self.width, self.depth = int(width), int(depth)
        # Cycles from a word entering an empty FIFO to it being offered at the output.
        self.latency = 0 if self.depth == 0 else 1 if self.depth < 3 else 2
        super().__init__({"i": In(stream.Signature(self.width)), "o": Out(stream.Signature(self.width))})

    def resources(self) -> Resources:
        """Analytic estimate (ip_cores/resources.py)."""
        if self.depth == 0:
            return Resources()
        return fifo_cost(self.width, self.depth)

    def elaborate(self, platform):
        m = Module()
        if self.depth == 0:
            m.d.comb += [
                self.o.payload.eq(self.i.payload),
                self.o.valid.eq(self.i.valid),
                self.i.ready.eq(self.o.ready),
            ]
            return m
        fifo_class = SyncFIFOBuffered if self.depth >= 3 else SyncFIFO
        m.submodules.fifo = fifo = fifo_class(width=self.width, depth=self.depth)
        m.d.comb += [
            fifo.w_data.eq(self.i.payload),
            fifo.w_en.eq(self.i.valid),
            self.i.ready.eq(fifo.w_rdy),
            self.o.payload.eq(fifo.r_data),
            self.o.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(self.o.ready),
        ]
        return m
