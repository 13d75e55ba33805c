"""Building blocks of free-running pipelines: delay lines, registered adder trees, a credit-counted output queue.

The compute cores (MVTU, vector unit) are built as free-running pipelines: an item enters at the issue stage
and moves one stage a cycle, never stopped, with a `valid` bit beside it. Back-pressure stops only the issue
stage: an output queue at the end has room for every item in flight, counted by credits (`OutputQueue`), so
the consumer's `ready` never reaches a datapath register's enable. Datapath registers carry no reset; only
the `valid` bits and the counters do.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal

__all__ = ["delay", "registered", "pipelined_sum", "tree_register_levels", "OutputQueue", "Timed", "WrapCounter",
           "UpDownCount", "LEVELS_PER_STAGE"]

LEVELS_PER_STAGE = 2  # adder-tree levels between registers


def registered(m: Module, value, name: str, *, reset_less: bool = True) -> Signal:
    """`value` one cycle later, in a register (reset-less unless it is control).

    A pipeline register loads every cycle, so it must not be built inside `m.If`/`m.Switch` (it would get
    their condition as an enable and stop holding its item's value): that is refused.
    """
    if m.domain._depth:  # inside the body of an m.If / m.Switch / m.FSM
        raise RuntimeError(f"pipeline register {name} built inside a conditional block")
    reg = Signal(value.shape(), name=name, reset_less=reset_less)
    m.d.sync += reg.eq(value)
    return reg


def delay(m: Module, value, cycles: int, name: str, *, reset_less: bool = True):
    """`value` delayed by `cycles` clock cycles (a plain register chain; Yosys turns long reset-less chains
    into shift-register LUTs). `cycles` 0 returns `value` itself."""
    for k in range(cycles):
        value = registered(m, value, f"{name}_d{k + 1}", reset_less=reset_less)
    return value


class Timed:
    """A per-item signal of a free-running pipeline and the cycle (counted from the item's issue) at which
    it holds that item; `at(c)` gives the same value aligned to a later cycle c (a delay line, built once
    per cycle asked for). Keeping the cycle beside the value makes misaligned pipeline taps impossible."""

    def __init__(self, m: Module, value, cycle: int, name: str, *, reset_less: bool = True):
        self.m, self.value, self.cycle, self.name, self.reset_less = m, value, int(cycle), name, reset_less
        self._taps = {self.cycle: value}

    def at(self, cycle: int):
        """The value at `cycle`. A tap that logic reads is kept a flip-flop (`keep`): Yosys would otherwise fold
        the delay line into an SRL16E, whose 1.5 ns clock-to-out lands on the reading logic's path."""
        tap = self._tap(int(cycle))
        if int(cycle) != self.cycle:
            tap.attrs["keep"] = 1
        return tap

    def _tap(self, cycle: int):
        if cycle < self.cycle:
            raise ValueError(f"{self.name} is known from cycle {self.cycle}, not at cycle {cycle}")
        if cycle not in self._taps:
            previous = self._tap(cycle - 1)
            self._taps[cycle] = registered(self.m, previous, f"{self.name}_c{cycle}", reset_less=self.reset_less)
        return self._taps[cycle]


class WrapCounter:
    """A counter over range(n) that steps when `en` and wraps to 0, with `first` (value == 0) and `last`
    (value == n - 1) kept as registers: the issue logic that reads them stays one LUT deep instead of
    comparing a counter on its path. With n == 1 the value is a constant 0 and both flags are constant 1.
    """

    def __init__(self, m: Module, n: int, name: str, en):
        self.n = int(n)
        if self.n == 1:
            self.value, self.first, self.last = Const(0, 1), Const(1, 1), Const(1, 1)
            return
        self.value = Signal(range(self.n), name=name)
        self.first = Signal(name=f"{name}_first", init=1)
        self.last = Signal(name=f"{name}_last", init=self.n == 1)
        with m.If(en):
            m.d.sync += [
                self.value.eq(Mux(self.last, 0, self.value + 1)),
                self.first.eq(self.last),
                self.last.eq(~self.last & (self.value == self.n - 2)),
            ]


class UpDownCount:
    """A count over range(n + 1) stepped up or down by one by late handshake signals (FIFO fill, credits).

    The value, value + 1 and value - 1 are all registers, so a step only picks one of them: with a single
    `count +/- 1` Yosys shares one adder between both directions and the late signal then runs down its
    carry chain (a LUT and a CARRY4 more on the handshake path). `up`/`down` add the statements of one step
    to the current `m.If`/`m.Switch` case; the caller never steps both ways in one cycle.
    """

    def __init__(self, n: int, name: str):
        width = max(1, int(n).bit_length())
        self.value = Signal(width, name=name)
        self.plus_one = Signal(width, name=f"{name}_plus_one", init=1)
        self.minus_one = Signal(width, name=f"{name}_minus_one", init=(1 << width) - 1)

    def up(self, m: Module) -> None:
        m.d.sync += [self.value.eq(self.plus_one), self.plus_one.eq(self.plus_one + 1),
                     self.minus_one.eq(self.value)]

    def down(self, m: Module) -> None:
        m.d.sync += [self.value.eq(self.minus_one), self.minus_one.eq(self.minus_one - 1),
                     self.plus_one.eq(self.value)]


TWO_LEVEL_MAX_BITS = 20  # two adder levels share a pipeline stage while their widths add up to this


def _paired_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    paired = [(ranges[k][0] + ranges[k + 1][0], ranges[k][1] + ranges[k + 1][1]) for k in range(0, len(ranges) - 1, 2)]
    return paired + ([ranges[-1]] if len(ranges) % 2 else [])


def _width(lo: int, hi: int) -> int:
    from .elements import signed_width_for
    return signed_width_for(lo, hi)


def tree_register_levels(ranges: list[tuple[int, int]], first_stage_levels: int = LEVELS_PER_STAGE) -> list[bool]:
    """Where the adder tree over terms with these value ranges gets its registers: for each level (pairs added
    in order, an odd term carried on), whether a register follows it.

    A stage holds at most two levels, and two only while their adders are narrow (widths adding up to
    `TWO_LEVEL_MAX_BITS`: two carry chains and their LUTs in one clock); the first stage holds
    `first_stage_levels` (1 when the terms are LUTs of their own, like table products); the last level is
    always registered. One term: no level, no register."""
    widths = []
    while len(ranges) > 1:
        ranges = _paired_ranges(ranges)
        widths.append(max(_width(lo, hi) for lo, hi in ranges))
    registers = [False] * len(widths)
    in_stage, stage_bits, first = 0, 0, True
    for level, width in enumerate(widths):
        limit = first_stage_levels if first else LEVELS_PER_STAGE
        if in_stage and (in_stage >= limit or stage_bits + width > TWO_LEVEL_MAX_BITS):
            registers[level - 1] = True
            in_stage, stage_bits, first = 0, 0, False
        in_stage += 1
        stage_bits += width
    if registers:
        registers[-1] = True
    return registers


def pipelined_sum(m: Module, terms: list, register_after: list[bool], name: str):
    """The sum of `terms` through a balanced adder tree with a register after each level `register_after` (from
    `tree_register_levels`) says; the result is `sum(register_after)` cycles late (0 for one term).

    Pairs are added in order, an odd term out is carried to the next level, so the tree has exactly
    ceil(log2(n)) levels. Amaranth widens each sum by one bit, so no intermediate value can overflow.
    """
    terms = list(terms)
    if len(register_after) != max(0, (len(terms) - 1).bit_length()):
        raise ValueError(f"{name}: {len(register_after)} register flags for a tree over {len(terms)} terms")
    for level, register in enumerate(register_after):
        paired = [terms[k] + terms[k + 1] for k in range(0, len(terms) - 1, 2)]
        terms = paired + ([terms[-1]] if len(terms) % 2 else [])
        if register:
            terms = [registered(m, t, f"{name}_l{level + 1}_{k}") for k, t in enumerate(terms)]
    return terms[0]


class OutputQueue:
    """The end of a free-running pipeline: a small FIFO whose room is reserved when an item is issued.

    `reserve` (comb, from the issue stage) takes one credit for an output word that will be written
    `latency` cycles later; `may_reserve` (a register's output only, no path from `o.ready`) says whether a
    credit is free. The queue holds `depth` words, so the pipeline never writes into a full queue and never
    needs to stop. A word is offered on `o` `read_latency` cycles after it is written.

    With `depth` >= ceil((pipeline latency + read_latency + 1) / issue interval) + 1 the credits never run out
    while the consumer is always ready, so the queue costs no throughput; `depth_for` computes it.
    """

    read_latency = 2  # StreamFIFO: written at t, offered from t + 2

    def __init__(self, width: int, depth: int):
        self.width, self.depth = int(width), max(2, int(depth))

    @classmethod
    def depth_for(cls, pipeline_latency: int, cycles_per_output: int) -> int:
        """Queue words needed for full throughput when an output is reserved every `cycles_per_output`."""
        in_flight = pipeline_latency + cls.read_latency + 1
        return max(2, -(-in_flight // max(1, cycles_per_output)) + 1)

    def elaborate_into(self, m: Module, name: str, o_stream, write_data, write_en, reserve) -> Signal:
        """Build the queue in `m`; returns `may_reserve`.

        The credit count follows `reserve` one cycle late (it is registered first, so the issue logic feeds a
        flip-flop, not the count's update): one reserve may be in flight uncounted, so `may_reserve` says a
        credit is free with one to spare (count < depth of `depth + 1` counted), and the FIFO has a word for it.
        """
        from .stream_fifo import StreamFIFO
        counted = self.depth + 1
        # One word more than can be outstanding, so a write never meets a full queue whatever its timing.
        m.submodules[name] = fifo = StreamFIFO(self.width, counted + 1)
        pending = UpDownCount(counted, f"{name}_pending")
        room = Signal(name=f"{name}_room", init=1)  # pending < counted, as a register
        may_reserve = Signal(name=f"{name}_may_reserve", init=1)  # pending < counted - 1
        reserved = Signal(name=f"{name}_reserved")  # `reserve` of the cycle before
        m.d.sync += reserved.eq(reserve)
        leave = o_stream.valid & o_stream.ready
        m.d.comb += [
            fifo.i.payload.eq(write_data),
            fifo.i.valid.eq(write_en),
            o_stream.payload.eq(fifo.o.payload),
            o_stream.valid.eq(fifo.o.valid),
            fifo.o.ready.eq(o_stream.ready),
        ]
        # The next count and its flags for each (reserved, leave) case, from registers; the late input only picks.
        with m.Switch(Cat(leave, reserved)):
            with m.Case(0b10):  # a credit taken
                pending.up(m)
                m.d.sync += [room.eq(may_reserve), may_reserve.eq(pending.value < counted - 2)]
            with m.Case(0b01):  # a word left
                pending.down(m)
                m.d.sync += [room.eq(1), may_reserve.eq(room)]
        return may_reserve
