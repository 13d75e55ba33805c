"""`rtlgen build --latency` end to end: dense models unrolled into one pipeline (ip_cores/unrolled.py), built,
simulated in Verilator with back-pressure and checked by `rtlgen verify` (hardware == golden == qonnx), a frame a
cycle at the estimated latency; models latency mode cannot take are refused in one line.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import REPO, shared_model, shared_refs
from test_cli import assert_user_error, rtlgen

MODELS = REPO / "tests" / "models"


@pytest.mark.parametrize("name", ["mixed_357_u8in", "w1a1_bipolar"])
def test_latency_mode_is_exact_at_a_frame_a_cycle(name, tmp_path):
    out = tmp_path / "design"
    code, stdout, stderr = rtlgen("build", MODELS / f"{name}.onnx", "-o", out, "--latency", "--clock-ns", "5")
    assert code == 0, stderr
    assert "latency mode" in stdout
    report = json.loads((out / "report.json").read_text())
    assert [s["kind"] for s in report["stages"]] == ["unrolled"]
    assert report["estimate"]["ii_cycles"] == 1
    assert all(layer["implementation"]["unrolled"] for layer in report["layers"])
    shares = report["resources"]["layers"]
    assert set(shares) == {layer["name"] for layer in report["layers"]}
    assert all(shares[layer["name"]]["luts"] > 0 for layer in report["layers"])  # every layer's own heaps
    assert abs(sum(r["luts"] for r in shares.values()) - report["resources"]["stages"]["unrolled"]["luts"]) <= len(shares)
    # the heaps' counters are LUT primitives: Vivado's own, models only for the FuseSoC lint target
    verilog = (out / "ip" / "hdl" / f"{report['top']}.v").read_text()
    assert "LUT6 #(" in verilog or "LUT5 #(" in verilog
    assert (out / "ip" / "sim" / "xilinx_luts.v").is_file()
    assert "xilinx_luts" not in (out / "ip" / "component.xml").read_text()
    core = next((out / "ip").glob("*.core")).read_text()
    assert '"sim/xilinx_luts.v"' in core and "filesets: [rtl, sim_models]" in core
    code, stdout, stderr = rtlgen("verify", MODELS / f"{name}.onnx", out, "--frames", "40", "--backpressure", "0.4",
                                  "--seed", "3")
    assert code == 0, stderr
    assert "hardware == golden on 40/40" in stdout and "golden == qonnx on 40/40" in stdout
    x = tmp_path / "x.npy"
    rng = np.random.default_rng(0)
    shape = report["io"]["input_shape"]
    np.save(x, rng.uniform(-1, 1, size=(12, *shape[1:])).astype(np.float32))
    stats = tmp_path / "stats.json"
    code, _, stderr = rtlgen("run", out, "--inputs", x, "--out", tmp_path / "y.npy", "--stats", stats)
    assert code == 0, stderr
    measured = json.loads(stats.read_text())
    assert measured["ii_cycles"] == 1
    assert measured["latency_cycles"] == report["estimate"]["latency_cycles"]


def test_latency_mode_refuses_convolutions_and_foldings(tmp_path):
    code, out, err = rtlgen("build", MODELS / "cnn1d_w2a2.onnx", "-o", tmp_path / "a", "--latency")
    assert_user_error(code, out, err, "--latency", "Conv", "dense")
    code, out, err = rtlgen("build", MODELS / "mixed_357_u8in.onnx", "-o", tmp_path / "b", "--latency",
                            "--target-cycles", "4")
    assert_user_error(code, out, err, "--latency", "--target")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_jet_tagger_takes_ten_cycles_at_5ns_bit_exact(tmp_path):
    """The trigger case: the jet tagger (16-64-32-32-5, QKeras 6-bit, INT16 host input) unrolled at a 5 ns target
    takes a frame a cycle and at most 10 cycles from a frame's input handshake to its output word (the registers
    on its path; hls4ml's tutorial reports 12 at 5 ns for a pruned version), with a ternary adder per heap and the
    first layer's wide clip flag on a comparison chain; bit-exact under back-pressure, and the measured latency
    is the planned one. (Its delay by Yosys and the delay model, 4.88 ns, is bench/bench_latency.py's.)"""
    path = shared_model("jettagging_qkeras_w6a6")
    x, y_ref = shared_refs("jettagging_qkeras_w6a6_fx")
    out = tmp_path / "design"
    code, _, stderr = rtlgen("build", path, "-o", out, "--latency", "--clock-ns", "5", "--input-dtype", "INT16",
                             "--input-scale", str(2.0 ** -8))
    assert code == 0, stderr
    report = json.loads((out / "report.json").read_text())
    layers = [layer["implementation"] for layer in report["layers"]]
    pipeline = 1 + sum(layer["pipeline_registers"] for layer in layers)  # the cuts and the output register
    assert pipeline <= 10 and report["stages"][0]["pipeline_cycles"] == pipeline
    assert report["estimate"]["ii_cycles"] == 1 and report["estimate"]["latency_cycles"] == pipeline + 1
    assert [layer["counter_levels"] for layer in layers] == [5, 5, 4, 5]  # three rows but the first layer's two
    verilog = (out / "ip" / "hdl" / f"{report['top']}.v").read_text()
    assert "CARRY4 " in verilog
    code, stdout, stderr = rtlgen("verify", path, out, "--frames", "60", "--backpressure", "0.3", "--seed", "2")
    assert code == 0, stderr
    assert "hardware == golden on 60/60" in stdout and "golden == qonnx on 60/60" in stdout
    stats = tmp_path / "stats.json"
    np.save(tmp_path / "x.npy", x)
    code, _, stderr = rtlgen("run", out, "--inputs", tmp_path / "x.npy", "--out", tmp_path / "y.npy", "--stats", stats)
    assert code == 0, stderr
    measured = json.loads(stats.read_text())
    assert measured["ii_cycles"] == 1 and measured["latency_cycles"] == pipeline + 1
    assert np.array_equal(np.load(tmp_path / "y.npy").reshape(y_ref.shape), y_ref)
