"""`rtlgen build --latency` end to end: dense models unrolled into one pipeline (ip_cores/unrolled.py), built,
simulated in Verilator with back-pressure and checked by `rtlgen verify` (hardware == golden == qonnx), a frame a
cycle at the estimated latency; models latency mode cannot take are refused in one line.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import REPO
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
