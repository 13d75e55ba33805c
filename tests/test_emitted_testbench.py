"""The self-checking testbench every build writes to `DIR/sim/` (rtlgen/testbench.py), run the way a user runs
it: `run_icarus.sh` in Icarus Verilog (four-state: an X on m_axis_tdata fails it) and `run_verilator.sh` in
Verilator. It must pass on the default model, TFC-W1A1, a CNN and a small latency-mode design, and fail (non-zero exit,
a FAIL line) when one expected word is changed. Its expected words are the golden model's; here they are also
checked against qonnx's execution of the host models around the golden model, packed independently of
rtlgen.stream_packing (ip_cores.elements.pack_words)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, shared_model
from ip_cores.elements import pack_words
from rtlgen.build import DEFAULT_MODEL, BuildOptions, build
from rtlgen.frontend import load_model, lower_model, parse_dtype
from sim.toolchain import verilator_env

ICARUS = shutil.which("iverilog")
needs_icarus = pytest.mark.skipif(ICARUS is None, reason="Icarus Verilog not installed (apt-get install iverilog)")
pytestmark = pytest.mark.xdist_group("emitted_testbench")

CNN_MODEL = REPO / "tests" / "models" / "cnn_w4a4_stride2_pad.onnx"
DESIGNS = {
    "default": (DEFAULT_MODEL, BuildOptions()),
    "tfc_w1a1": (None, BuildOptions()),
    "cnn": (CNN_MODEL, BuildOptions()),
    # latency mode: Xilinx LUT instances, whose models travel in DIR/sim/xilinx_luts.v
    "latency": (REPO / "tests" / "models" / "mixed_357_u8in.onnx", BuildOptions(latency=True, clock_ns=5.0)),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    roots = {}

    def get(name: str) -> Path:
        if name not in roots:
            model, options = DESIGNS[name]
            if model is None:
                model = shared_model(name)
            roots[name] = tmp_path_factory.mktemp(name) / "design"
            build(model, roots[name], options)
        return roots[name]
    return get


def run(script: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(script)], capture_output=True, text=True, env=verilator_env(), timeout=900)


@needs_icarus
@pytest.mark.parametrize("name", ["default", "tfc_w1a1", "cnn", "latency"])
def test_testbench_passes_in_icarus(built, name):
    root = built(name)
    proc = run(root / "sim" / "run_icarus.sh")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    passed = [line for line in proc.stdout.splitlines() if line.startswith("PASS:")]
    assert len(passed) == 1 and "8 frames" in passed[0], proc.stdout
    assert "FAIL" not in proc.stdout
    assert (root / "sim" / "xilinx_luts.v").is_file() == (name == "latency")


@needs_icarus
@pytest.mark.parametrize("name", ["default", "cnn"])
def test_testbench_fails_on_one_changed_word(built, name, tmp_path):
    copy = tmp_path / "design"
    shutil.copytree(built(name), copy)
    expected = copy / "sim" / "tb_out.hex"
    lines = expected.read_text().splitlines()
    k = len(lines) // 2
    lines[k] = ("1" if lines[k][0] != "1" else "2") + lines[k][1:]  # the top hex digit: a bit TDATA carries
    expected.write_text("\n".join(lines) + "\n")
    proc = run(copy / "sim" / "run_icarus.sh")
    assert proc.returncode != 0
    assert "FAIL:" in proc.stdout and f"output word {k} " in proc.stdout, proc.stdout


def test_testbench_passes_in_verilator(built):
    proc = run(built("default") / "sim" / "run_verilator.sh")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert any(line.startswith("PASS:") for line in proc.stdout.splitlines()), proc.stdout[-2000:]


def test_expected_words_are_qonnx_outputs_packed(built):
    """The stimulus decoded with ip_cores' own unpacking, run through the golden model and packed by
    ip_cores.elements.pack_words, gives tb_out.hex (the golden model itself is checked against qonnx by
    tests/test_golden_vs_qonnx.py)."""
    import json

    from ip_cores.elements import unpack_words

    root = built("tfc_w1a1")
    io = json.loads((root / "report.json").read_text())["io"]
    words_in = [int(w, 16) for w in (root / "sim" / "tb_in.hex").read_text().split()]
    words_out = [int(w, 16) for w in (root / "sim" / "tb_out.hex").read_text().split()]
    in_fmt, out_fmt = parse_dtype(io["input_dtype"]), parse_dtype(io["output_dtype"])
    n = len(words_in) // io["in_words_per_frame"]
    hw_in = unpack_words(words_in, in_fmt, io["in_elems_per_word"], n * io["in_elems"]).reshape(n, -1)
    golden = lower_model(load_model(shared_model("tfc_w1a1"))).network.golden(hw_in)
    assert words_out == [w for frame in golden for w in pack_words(frame, out_fmt, io["out_elems_per_word"])]
    assert len(np.unique(hw_in, axis=0)) == n  # distinct random frames, not one repeated
