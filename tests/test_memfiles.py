"""Read-only memory contents live in `$readmemh` files beside the Verilog (rtlgen/memfiles.py).

- a hand-made Amaranth design with a known table: the file holds exactly its words (written out by hand here),
  the Verilog reads it with `$readmemh`, written memories keep their inline initialisation;
- a built design has one file per table, listed in the IP's file set, and no inline table left;
- the files are what the hardware uses: changing one weight in a built design's file makes `rtlgen verify`
  report a hardware-vs-golden mismatch and exit 1 (and the untouched design passes).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

from amaranth.back import verilog
from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from conftest import REPO
from rtlgen.memfiles import externalize_rom_contents

DEFAULT_INPUTS = REPO / "rtlgen" / "models" / "default_digits_inputs.npy"
DEFAULT_MODEL = REPO / "rtlgen" / "models" / "default_digits_mlp.onnx"


class _TableAndRam(wiring.Component):
    def __init__(self):
        super().__init__({"addr": In(2), "data": Out(12), "ram_out": Out(8)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.table = table = Memory(shape=unsigned(12), depth=4, init=[0x123, 0xABC, 0x00F, 0xFFF],
                                            attrs={"logic_block": 1})
        m.submodules.scratch = scratch = Memory(shape=unsigned(8), depth=4, init=[], attrs={"ram_style": "distributed"})
        rd, wr, rd2 = table.read_port(), scratch.write_port(), scratch.read_port()
        m.d.comb += [rd.addr.eq(self.addr), self.data.eq(rd.data), wr.addr.eq(self.addr), wr.data.eq(self.addr),
                     wr.en.eq(1), rd2.addr.eq(self.addr), self.ram_out.eq(rd2.data)]
        return m


def test_a_table_becomes_a_file_and_a_ram_stays_inline():
    text = verilog.convert(_TableAndRam(), name="demo", emit_src=False)
    new_text, files = externalize_rom_contents(text)
    assert files == {"demo_table.mem": "123\nabc\n00f\nfff\n"}
    # `table` is a Verilog keyword: Yosys writes the escaped name `\table ` (its space ends the identifier)
    assert 'initial $readmemh("demo_table.mem", \\table );' in new_text
    assert "[0] = 12'h" not in new_text and "12'h123" not in new_text
    assert re.search(r"scratch\[0\] = 8'h00;", new_text)  # the written memory keeps its zeros inline


def test_decimal_and_binary_words_are_read_too():
    text = ("module m(clk);\n  (* logic_block = 32'd1 *)\n  reg [31:0] t [2:0];\n  initial begin\n"
            "    t[0] = 32'd1591223881;\n    t[1] = 32'hdeadbeef;\n    t[2] = 32'b101;\n  end\nendmodule\n")
    _, files = externalize_rom_contents(text)
    assert files == {"m_t.mem": "5ed82649\ndeadbeef\n00000005\n"}  # 1591223881 = 0x5ed82649


def test_built_design_reads_its_tables_from_files(tmp_path):
    out = tmp_path / "d"
    proc = subprocess.run([sys.executable, "-m", "rtlgen.cli", "build", "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    hdl = out / "ip" / "hdl"
    top = (hdl / f"{report['top']}.v").read_text()
    mem_files = sorted(p.name for p in hdl.glob("*.mem"))
    assert mem_files and all(f'$readmemh("{name}"' in top for name in mem_files)
    assert not re.search(r"\bweights\[\d+\] = ", top)
    component = (out / "ip" / "component.xml").read_text()
    assert all(f"hdl/{name}" in component for name in mem_files)

    # The hardware uses the files: one word of weights changed -> hardware differs from the golden model.
    verify = [sys.executable, "-m", "rtlgen.cli", "verify", str(DEFAULT_MODEL), str(out), "--inputs", str(DEFAULT_INPUTS)]
    assert subprocess.run(verify, capture_output=True, text=True).returncode == 0
    stage = next(k for k, st in enumerate(report["stages"]) if st["name"] == "Gemm_0")
    weights = next(hdl / name for name in mem_files if f"stage{stage}_weights" in name)  # its first column group
    rows = weights.read_text().splitlines()
    rows[0] = "0" * len(rows[0])  # the first output channel's first weights all zero
    weights.write_text("\n".join(rows) + "\n")
    proc = subprocess.run(verify, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "hardware == golden on" in proc.stdout and "hardware == golden on 32/32" not in proc.stdout
    shutil.rmtree(out)
