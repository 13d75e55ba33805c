"""A bit heap: many signed terms summed in LUT compressor levels and one carry chain, pipelined by a delay budget.

A fully unrolled layer computes each output as a sum of dozens of terms (every input shifted by every nonzero
digit of its constant weight, plus the activation's offset). A tree of two-input adders spends a carry chain,
about 1.5 ns on a 7-series part, per level: six levels for 60 terms. A bit heap instead collects every term's
bits by weight (column), reduces each column with counters of up to 6 bits (a 6-input popcount is three LUT6s,
one LUT level, no carry chain) until two rows are left, and adds those with one carry chain. 60 terms take
about six LUT levels and one carry chain.

Signed arithmetic without sign extension: a bit b of negative weight -2**k is `(1 - b) * 2**k - 2**k`, so it
enters the heap inverted and -2**k goes to the heap's constant. The constant enters as constant-1 bits. The sum
is exact modulo 2**width; the caller gives a width that holds the sum's true range, so the low `width` bits,
read as two's complement, are the sum.

Registers go where the delay budget says (`Pipeliner`): every level has an estimated delay (`COMPRESS_LEVEL_NS`,
`carry_chain_ns`), and a level that would overrun the budget starts after a register.

Measured (Yosys 0.70 synth_xilinx and rtlgen.delay_model, 8 outputs of the jet tagger's second layer, 64 UINT6
inputs, INT6 weights, ~60 terms an output, registers for 5 ns): 3,319 LUT, 1,543 FF, 47 CARRY4. Five counter
levels from the input register took 8.06 ns in 9 LUT levels (the input bits fan out to every output's heap,
and ABC maps a 6-input counter onto about two LUT levels), so a counter level costs about 1.6 ns, not the one
LUT level it is in theory: `COMPRESS_LEVEL_NS` is that measurement. Neither `keep` on every counter bit nor 3:2
full adders help (0.94 ns a level for a 1.5x reduction: the same 1.6 ns a halving, and 30 % more LUTs). The
requantizing activation after the carry chain measured 5.3 ns (4 LUT levels), above a 5 ns clock on its own
(`ip_cores.unrolled.ACTIVATION_NS`). Counters of one LUT level and a two-stage activation are open work.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal, signed

__all__ = ["BitHeap", "csd_digits", "Pipeliner", "COMPRESS_LEVEL_NS", "carry_chain_ns", "counter"]

COMPRESS_LEVEL_NS = 1.6  # one counter level, as measured (module docstring)
CLOCK_OVERHEAD_NS = 0.55  # flip-flop clock-to-out plus setup


def carry_chain_ns(width: int) -> float:
    """A carry-chain adder of `width` bits: the net and LUT into it, the chain, the net out."""
    return 1.05 + 0.11 * max(0, -(-width // 4) - 1)


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


def counter(bits: list, outputs: int):
    """The low `outputs` bits of the count of 3 to 6 one-bit values, each bit a truth table indexed by the
    inputs (one `$shiftx` of a constant: Yosys maps it onto one LUT, and the Verilog stays one line a bit)."""
    n = len(bits)
    index = Cat(*bits)
    tables = [sum(1 << v for v in range(1 << n) if bin(v).count("1") >> j & 1) for j in range(outputs)]
    return Cat(*[Const(table, 1 << n).bit_select(index, 1) for table in tables])


class BitHeap:
    """Terms to add, modulo 2**width, as columns of one-bit signals plus one integer constant."""

    def __init__(self, width: int):
        self.width = int(width)
        self.columns: list[list] = [[] for _ in range(self.width)]
        self.constant = 0

    def add_term(self, value, value_signed: bool, shift: int, negate: bool = False) -> None:
        """Add `value` (an Amaranth value of its own width) times 2**shift, negated if `negate`."""
        n = len(value)
        for i in range(n):
            weight = i + shift
            negative = (value_signed and i == n - 1) != negate
            if weight >= self.width:
                continue  # a multiple of 2**width: nothing modulo 2**width
            if negative:
                self.columns[weight].append(~value[i])
                self.constant -= 1 << weight
            else:
                self.columns[weight].append(value[i])

    def add_bit(self, bit, shift: int, negate: bool = False) -> None:
        """Add one bit times (+-)2**shift."""
        self.add_term(bit, False, shift, negate)

    def add_constant(self, value: int) -> None:
        self.constant += int(value)

    @property
    def height(self) -> int:
        return max((len(c) for c in self.columns), default=0)

    def place_constant(self) -> None:
        """Move the constant into the columns as constant-1 bits (two's complement modulo 2**width)."""
        bits = self.constant % (1 << self.width)
        for k in range(self.width):
            if bits >> k & 1:
                self.columns[k].append(Const(1, 1))
        self.constant = 0

    def compress(self, m: Module, name: str) -> int:
        """One level of counters: every column of 3 or more bits is cut into groups of up to 6, each group
        replaced by its count's bits in this column and the next ones. Height roughly halves. Every counter
        output is a named signal (the expressions stay one counter deep). Returns the counters' output bits (one
        LUT each)."""
        luts = 0
        new = [[] for _ in range(self.width)]
        for k, bits in enumerate(self.columns):
            if len(bits) <= 2:
                new[k] += bits
                continue
            groups = [bits[i:i + 6] for i in range(0, len(bits), 6)]
            if len(groups[-1]) <= 2 and len(groups) > 1:  # 1-2 leftover bits pass through uncounted
                new[k] += groups.pop()
            for g, group in enumerate(groups):
                outputs = min(len(group).bit_length(), self.width - k)
                count = Signal(outputs, name=f"{name}_c{k}g{g}")
                m.d.comb += count.eq(counter(group, outputs))
                for j in range(outputs):
                    new[k + j].append(count[j])
                luts += outputs
        self.columns = new
        return luts

    def register(self, m: Module, name: str) -> None:
        """Every bit of the heap through a flip-flop (reset-less datapath register)."""
        for k, bits in enumerate(self.columns):
            regs = []
            for j, bit in enumerate(bits):
                if isinstance(bit, Const):
                    regs.append(bit)
                    continue
                reg = Signal(name=f"{name}_c{k}_{j}", reset_less=True)
                m.d.sync += reg.eq(bit)
                regs.append(reg)
            self.columns[k] = regs

    def rows(self) -> tuple:
        """The (at most two) rows of a compressed heap as two `width`-bit values."""
        if self.height > 2:
            raise ValueError(f"compress the heap to 2 rows first (height {self.height})")
        rows = []
        for r in range(2):
            rows.append(Cat(*[bits[r] if r < len(bits) else Const(0, 1) for bits in self.columns]))
        return rows

    def sum(self, m: Module, name: str) -> Signal:
        """The carry-chain sum of the two rows, as a signed `width`-bit signal."""
        a, b = self.rows()
        total = Signal(signed(self.width), name=name)
        m.d.comb += total.eq(a + b)
        return total


class Pipeliner:
    """Places registers by an estimated delay budget: `step(ns)` says whether a level of `ns` must start after
    a register (it would overrun the budget), and counts the registers placed."""

    def __init__(self, clock_ns: float):
        self.budget = float(clock_ns) - CLOCK_OVERHEAD_NS
        self.used = 0.0
        self.registers = 0

    def step(self, ns: float) -> bool:
        cut = self.used > 0 and self.used + ns > self.budget
        if cut:
            self.registers += 1
            self.used = 0.0
        self.used += ns
        return cut

    def cut(self) -> None:
        """A register here whatever the budget (the start of the next part of the pipeline)."""
        self.registers += 1
        self.used = 0.0
