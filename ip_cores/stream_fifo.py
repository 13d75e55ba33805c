"""A first-in first-out queue between two valid/ready streams, with the `i`/`o` stream ports every other core
has, so the compiler can drop one between any two stages with `wiring.connect`.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .memories import plan_ram
from .pipeline import UpDownCount
from .resources import Resources, fifo_cost, fifo_memory_words

__all__ = ["StreamFIFO"]


class StreamFIFO(wiring.Component):
    """Holds up to `depth` words of `width` bits; ports `i` (in) and `o` (out).

    depth >= 2: a memory of depth - 1 words (at least 3; LUTRAM or block RAM by size, synchronous read) in
    front of an output register; a word written into an empty FIFO is offered 2 cycles later, and a word a
    cycle passes when never stalled. Every flag is a register, and the count takes a fetch a cycle late, so
    `o.ready` passes one LUT before reaching the fetch's flip-flops and never the count, and `i.ready` is a
    register: a chain of stages does not build a long path through their handshakes. The cycle after a fetch
    from a full memory the FIFO holds one word fewer. depth 1 is a single
    register (alternately full and empty), depth 0 a plain wire.
    """

    def __init__(self, width: int, depth: int):
        if width < 1:
            raise ValueError(f"FIFO width must be positive, not {width}")
        if depth < 0:
            raise ValueError(f"FIFO depth must be >= 0, not {depth}")
        self.width, self.depth = int(width), int(depth)
        # Cycles from a word entering an empty FIFO to it being offered at the output.
        self.latency = {0: 0, 1: 1}.get(self.depth, 2)
        self.memory = plan_ram(fifo_memory_words(self.depth), self.width) if self.depth >= 2 else None
        super().__init__({"i": In(stream.Signature(self.width)), "o": Out(stream.Signature(self.width))})

    def resources(self) -> Resources:
        """Analytic estimate (ip_cores/resources.py)."""
        if self.depth == 0:
            return Resources()
        if self.depth == 1:
            return Resources(2, self.width + 1)
        return fifo_cost(self.width, self.depth)

    def elaborate(self, platform):
        m = Module()
        if self.depth == 0:
            m.d.comb += [
                self.o.payload.eq(self.i.payload),
                self.o.valid.eq(self.i.valid),
                self.i.ready.eq(self.o.ready),
            ]
        elif self.depth == 1:
            data, full = Signal(self.width, reset_less=True), Signal()
            m.d.comb += [self.i.ready.eq(~full), self.o.valid.eq(full), self.o.payload.eq(data)]
            with m.If(self.i.valid & ~full):
                m.d.sync += [data.eq(self.i.payload), full.eq(1)]
            with m.Elif(self.o.ready):
                m.d.sync += full.eq(0)
        else:
            _registered_fifo(m, self.i, self.o, self.width, self.memory.depth, self.memory.attrs)
        return m


def _registered_fifo(m: Module, i, o, width: int, depth: int, attrs: dict) -> None:
    """`depth` stored words behind an output register (see `StreamFIFO`).

    The count of stored words takes a fetch (memory -> output register) one cycle late, from the register
    `fetched`: the consumer's `o.ready` then reaches only the fetch itself (the read enable, the read
    pointer, `out_valid`, `fetched`), never the count and its flags, whose next values mix in comparisons
    that synthesis would otherwise put after it. A word is available while the count, less a fetch not yet
    counted, is nonzero; `i.ready` (not full) sees that fetch a cycle late, so right after a fetch from a full
    memory the writer waits one cycle more.
    """
    mem = Memory(shape=unsigned(width), depth=depth, init=[], attrs=attrs)
    m.submodules.storage = mem
    wr, rd = mem.write_port(), mem.read_port()

    count = UpDownCount(depth, "stored")     # words in the memory plus a fetch of the cycle before
    stored = count.value
    nonempty, full = Signal(name="nonempty"), Signal(name="full")      # stored != 0, stored == depth
    one, last_free = Signal(name="one"), Signal(name="last_free")      # stored == 1, stored == depth - 1
    out_valid = Signal()
    fetched = Signal()                       # a fetch last cycle, not yet taken off the count
    wptr, rptr = Signal(range(depth)), Signal(range(depth))

    push = Signal()
    fetch = Signal()                         # memory -> output register
    available = Mux(fetched, nonempty & ~one, nonempty)
    m.d.comb += [
        i.ready.eq(~full),
        push.eq(i.valid & ~full),
        fetch.eq(available & (~out_valid | o.ready)),
        o.valid.eq(out_valid),
        o.payload.eq(rd.data),
        wr.addr.eq(wptr), wr.data.eq(i.payload), wr.en.eq(push),
        rd.addr.eq(rptr), rd.en.eq(fetch),
    ]
    m.d.sync += fetched.eq(fetch)

    def wrap_inc(ptr):
        return Mux(ptr == depth - 1, 0, ptr + 1) if depth > 1 else 0

    with m.If(push):
        m.d.sync += wptr.eq(wrap_inc(wptr))
    with m.If(fetch):
        m.d.sync += [rptr.eq(wrap_inc(rptr)), out_valid.eq(1)]
    with m.Elif(o.ready):
        m.d.sync += out_valid.eq(0)

    # Next count and flags, for each of the four (push, fetched) cases, from registers only.
    two_free = (stored == depth - 2) if depth > 2 else ~nonempty
    with m.Switch(Cat(fetched, push)):
        with m.Case(0b10):  # push only
            count.up(m)
            m.d.sync += [nonempty.eq(1), full.eq(last_free), one.eq(~nonempty), last_free.eq(two_free)]
        with m.Case(0b01):  # fetch only
            count.down(m)
            m.d.sync += [nonempty.eq(~one), full.eq(0), one.eq(stored == 2), last_free.eq(full)]
