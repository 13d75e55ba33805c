"""The command line as users meet it: exit codes, one-line errors without tracebacks, no finished-looking
output after a failure, and the happy path on the embedded default model."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, SHARED_MODELS, shared_model

DEFAULT_INPUTS = REPO / "rtlgen" / "models" / "default_digits_inputs.npy"
DEFAULT_MODEL = REPO / "rtlgen" / "models" / "default_digits_mlp.onnx"


def rtlgen(*args, cwd=None):
    proc = subprocess.run([sys.executable, "-m", "rtlgen.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd)
    return proc.returncode, proc.stdout, proc.stderr


def assert_user_error(code, out, err, *needles):
    assert code == 2, (code, out, err)
    assert "Traceback" not in err and "Traceback" not in out
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("rtlgen: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="module")
def default_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("default") / "design"
    code, stdout, stderr = rtlgen("build", "-o", out)
    assert code == 0, stderr
    return out, stdout


def test_build_default_model_without_argument(default_build):
    out, stdout = default_build
    assert "default folding" in stdout
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["name"] == DEFAULT_MODEL.name
    for key in ("name", "op", "PE", "SIMD", "input_dtype", "weight_dtype", "output_dtype", "in_stream_bits",
                "out_stream_bits", "cycles_per_frame"):
        assert all(key in layer for layer in report["layers"]), key
    assert report["estimate"]["ii_cycles"] == max(layer["cycles_per_frame"] for layer in report["layers"])
    assert (out / "ip" / "hdl" / f"{report['top']}.v").is_file()
    assert (out / "host" / "head.onnx").is_file() and (out / "host" / "tail.onnx").is_file()


def test_run_and_verify_default_model(default_build, tmp_path):
    out, _ = default_build
    y_path, stats_path = tmp_path / "y.npy", tmp_path / "stats.json"
    code, stdout, stderr = rtlgen("run", out, "--inputs", DEFAULT_INPUTS, "--out", y_path, "--stats", stats_path)
    assert code == 0, stderr
    x = np.load(DEFAULT_INPUTS)
    y = np.load(y_path)
    assert y.shape == (len(x), 10)
    stats = json.loads(stats_path.read_text())
    assert stats["frames"] == len(x) and stats["latency_cycles"] > 0
    assert stats["error_flag"] is False  # well-formed frames never raise the input framer's error flag
    assert abs(stats["ii_cycles"] - stats["estimate"]["ii_cycles"]) <= 0.02 * stats["estimate"]["ii_cycles"]
    assert abs(stats["latency_cycles"] - stats["estimate"]["latency_cycles"]) <= 0.02 * stats["estimate"]["latency_cycles"]
    labels = np.load(REPO / "rtlgen" / "models" / "default_digits_labels.npy")
    assert (y.argmax(axis=1) == labels).mean() > 0.8  # a trained classifier, through the RTL
    code, stdout, stderr = rtlgen("verify", DEFAULT_MODEL, out, "--frames", "24", "--backpressure", "0.4", "--seed", "5")
    assert code == 0, stderr
    assert "hardware == golden on 24/24" in stdout and "golden == qonnx on 24/24" in stdout


def test_build_without_input_tlast(tmp_path):
    """--ignore-input-tlast: no s_axis_tlast port (the s_axis interface maps no TLAST), the report says so, and the
    design runs in the harness, which then drives no TLAST."""
    from rtlgen.verilog_ports import read_verilog_ports

    out = tmp_path / "design"
    code, _, stderr = rtlgen("build", "-o", out, "--ignore-input-tlast")
    assert code == 0, stderr
    report = json.loads((out / "report.json").read_text())
    assert report["io"]["input_tlast"] is False
    ports = {p.name: p for p in read_verilog_ports(out / report["verilog"][0], report["top"])}
    assert "s_axis_tlast" not in ports and ports["error"].direction == "out"
    assert "s_axis_tlast" not in (out / "ip" / "component.xml").read_text()
    code, stdout, stderr = rtlgen("run", out, "--inputs", DEFAULT_INPUTS, "--out", tmp_path / "y.npy")
    assert code == 0, stderr
    assert np.load(tmp_path / "y.npy").shape == (len(np.load(DEFAULT_INPUTS)), 10)


def test_missing_model_file(tmp_path):
    assert_user_error(*rtlgen("build", tmp_path / "nope.onnx", "-o", tmp_path / "o"), "nope.onnx", "not found")
    assert not (tmp_path / "o").exists()


def test_not_an_onnx_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf\x00\x01\x02" * 10)
    assert_user_error(*rtlgen("build", bad, "-o", tmp_path / "o"), "bad.onnx")
    assert not (tmp_path / "o").exists()


def test_truncated_onnx(tmp_path):
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(DEFAULT_MODEL.read_bytes()[:5000])
    assert_user_error(*rtlgen("build", cut, "-o", tmp_path / "o"), "cut.onnx")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("name,needles", [
    ("fp8_floatquant_gemm", ["FloatQuant"]),
    ("espcn_subpixel_w4a4", ["DepthToSpace_0", "DepthToSpace"]),
    ("qkeras_qact_0", ["no MatMul, Gemm or Conv"]),
    ("branched_chlast_w4a4", ["branching", "Resize", "Concat"]),
    ("sepconv_chlast_w4a4", ["Conv_0", "Conv_3", "channels-last", "NCHW"]),
])
def test_unsupported_models_list_offending_nodes(name, needles, tmp_path):
    assert_user_error(*rtlgen("build", shared_model(name), "-o", tmp_path / "o"), *needles)
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o.tmp-*"))


def test_float_input_needs_input_format(tmp_path):
    path = shared_model("jettagging_qkeras_w6a6")
    assert_user_error(*rtlgen("build", path, "-o", tmp_path / "o"), "global_in", "--input-dtype", "--input-scale")
    assert_user_error(*rtlgen("build", path, "-o", tmp_path / "o", "--input-dtype", "INT16"), "--input-scale")
    assert_user_error(*rtlgen("build", path, "-o", tmp_path / "o", "--input-dtype", "FLOAT8", "--input-scale", "0.1"), "FLOAT8")
    code, out, err = rtlgen("build", path, "-o", tmp_path / "o", "--input-dtype", "INT16", "--input-scale", "0.00390625")
    assert code == 0, err


@pytest.mark.parametrize("spec,needles", [
    ({"layers": {"Gemm_9": {"PE": 1}}}, ["Gemm_9", "Gemm_0"]),
    ({"layers": {"Gemm_0": {"PE": 3}}}, ["PE=3", "Gemm_0", "divide"]),
    ({"layers": {"Gemm_0": {"SIMD": 0}}}, ["SIMD=0", "Gemm_0"]),
    ({"layers": {"Gemm_0": {"PE": "fast"}}}, ["PE", "Gemm_0"]),
    ({"layers": {"Gemm_0": {"pe": 2}}}, ["pe", "PE, SIMD"]),
    ({"layers": {"Gemm_0": {"mac_resource": "fpga"}}}, ["mac_resource", "Gemm_0", "lut, dsp"]),
    ({"defaults": {"threshold_style": "fast"}}, ["threshold_style", "binary", "requant"]),
    ({"target_cycles": -3}, ["target_cycles"]),
    ({"foo": 1}, ["foo"]),
])
def test_bad_folding(spec, needles, tmp_path):
    folding = tmp_path / "fold.json"
    folding.write_text(json.dumps(spec))
    assert_user_error(*rtlgen("build", "-o", tmp_path / "o", "--folding", folding), *needles)
    assert not (tmp_path / "o").exists()


def test_folding_options_choose_the_implementation(tmp_path):
    """mac_resource / threshold_style / memory_style in a folding file reach the cores (report.json says how each
    layer is built) and change no result (the design still verifies)."""
    folding = tmp_path / "fold.json"
    folding.write_text(json.dumps({"defaults": {"memory_style": "block"}, "layers": {
        "Gemm_0": {"mac_resource": "dsp", "threshold_style": "binary"}, "Gemm_1": {"threshold_style": "parallel"}}}))
    out = tmp_path / "o"
    code, _, err = rtlgen("build", "-o", out, "--folding", folding)
    assert code == 0, err
    layers = {layer["name"]: layer["implementation"] for layer in json.loads((out / "report.json").read_text())["layers"]}
    assert layers["Gemm_0"]["mac_resource"] == "dsp" and "binary search" in layers["Gemm_0"]["activation"]
    assert "parallel" in layers["Gemm_1"]["activation"] and layers["Gemm_2"]["mac_resource"] == "lut"
    assert all(m["kind"] == "block" for impl in layers.values() for m in impl["memories"] if m["role"] != "input_buffer")
    code, stdout, err = rtlgen("verify", DEFAULT_MODEL, out, "--inputs", DEFAULT_INPUTS)
    assert code == 0 and "hardware == golden on 32/32" in stdout, stdout + err


def test_folding_file_not_json(tmp_path):
    folding = tmp_path / "fold.json"
    folding.write_text("{PE: 4")
    assert_user_error(*rtlgen("build", "-o", tmp_path / "o", "--folding", folding), "fold.json", "JSON")
    assert_user_error(*rtlgen("build", "-o", tmp_path / "o", "--folding", tmp_path / "none.json"), "none.json", "not found")


def test_existing_output_folder(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    assert_user_error(*rtlgen("build", "-o", out), "exists", "--force")
    assert (out / "keep.txt").read_text() == "user data"
    (tmp_path / "file").write_text("x")
    assert_user_error(*rtlgen("build", "-o", tmp_path / "file"), "not a folder")


def test_output_folder_with_missing_parents_is_created(tmp_path):
    """`-o a/b/c` creates a and b like `mkdir -p` (a fresh clone has no build/ folder; `make demo` writes there)."""
    code, _, stderr = rtlgen("build", "-o", Path("a") / "b" / "c", cwd=tmp_path)
    assert code == 0, stderr
    assert json.loads((tmp_path / "a" / "b" / "c" / "report.json").read_text())["model"]["name"] == DEFAULT_MODEL.name
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["c"]  # no temporary folder left beside it


def test_output_parent_that_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    assert_user_error(*rtlgen("build", "-o", tmp_path / "file" / "sub" / "o"), "file", "not a folder")
    assert (tmp_path / "file").read_text() == "x"


def test_failed_build_leaves_no_created_parents(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_text("not an onnx model")
    code, _, err = rtlgen("build", bad, "-o", tmp_path / "x" / "y" / "o")
    assert code == 2, err
    assert not (tmp_path / "x").exists()


def test_run_rejects_bad_inputs(default_build, tmp_path):
    out, _ = default_build
    wrong_shape = tmp_path / "wrong.npy"
    np.save(wrong_shape, np.zeros((4, 63), dtype=np.float32))
    assert_user_error(*rtlgen("run", out, "--inputs", wrong_shape, "--out", tmp_path / "y.npy"), "(4, 63)", "64")
    strings = tmp_path / "strings.npy"
    np.save(strings, np.array([["a"] * 64]))
    assert_user_error(*rtlgen("run", out, "--inputs", strings, "--out", tmp_path / "y.npy"), "numeric")
    nan = tmp_path / "nan.npy"
    np.save(nan, np.full((2, 1, 64), np.nan, dtype=np.float32))
    assert_user_error(*rtlgen("run", out, "--inputs", nan, "--out", tmp_path / "y.npy"), "NaN")
    not_npy = tmp_path / "x.npy"
    not_npy.write_text("hello")
    assert_user_error(*rtlgen("run", out, "--inputs", not_npy, "--out", tmp_path / "y.npy"), "x.npy")
    assert_user_error(*rtlgen("run", tmp_path, "--inputs", DEFAULT_INPUTS, "--out", tmp_path / "y.npy"), "report.json")
    assert not (tmp_path / "y.npy").exists()


def test_verify_rejects_other_model(default_build, tmp_path):
    out, _ = default_build
    other = shared_model("bnn_fc_1layer")
    assert_user_error(*rtlgen("verify", other, out, "--frames", "2"), "built from", DEFAULT_MODEL.name)


def _mutated_copy(out: Path, tmp_path: Path, pattern: str, mutate) -> Path:
    """A copy of the built design with the first word of its first memory file matching `pattern` replaced by
    `mutate(word)` (hex text, as `$readmemh` reads it at simulation time)."""
    import shutil

    copy = tmp_path / "mutated"
    shutil.copytree(out, copy)
    tables = sorted((copy / "ip" / "hdl").glob(pattern))
    assert tables, f"no memory file {pattern} in {out}: choose another one to corrupt"
    table = tables[0]
    words = table.read_text().split("\n")
    changed = mutate(words[0])
    assert changed != words[0] and len(changed) == len(words[0])
    table.write_text("\n".join([changed, *words[1:]]))
    return copy


CNN_MODEL = REPO / "tests" / "models" / "cnn_w4a4_stride2_pad.onnx"


@pytest.fixture(scope="module")
def cnn_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("cnn") / "design"
    code, _, stderr = rtlgen("build", CNN_MODEL, "-o", out)
    assert code == 0, stderr
    return out


MUTATIONS = {
    # the sign bit of one weight (the top bit of the layer's first weight table's first word)
    "weight": ("weights", lambda w: format(int(w[0], 16) ^ 8, "x") + w[1:]),
    # the first step of the layer's binary search for its channel 0: a threshold above every accumulator
    "threshold": ("thr_s0", lambda w: "7" + "f" * (len(w) - 1)),
}


@pytest.mark.parametrize("what", sorted(MUTATIONS))
@pytest.mark.parametrize("design,layer", [("default", "Gemm_0"), ("cnn", "Conv_1")])
def test_verify_reports_a_corrupted_memory(default_build, cnn_build, tmp_path, design, layer, what):
    """One weight or one threshold changed in the built design's memory files (the digits MLP's first layer; the
    CNN's second convolution): `rtlgen verify` compares the hardware with a golden model computed from the
    model, so it must say which frames differ, name the layer whose memory changed, and exit 1."""
    out, model = (default_build[0], DEFAULT_MODEL) if design == "default" else (cnn_build, CNN_MODEL)
    report = json.loads((out / "report.json").read_text())
    stage = next(i for i, s in enumerate(report["stages"]) if s["name"] == layer)
    code, stdout, stderr = rtlgen("verify", model, out, "--frames", "16")
    assert code == 0 and "hardware == golden on 16/16" in stdout, (stdout, stderr)
    role, mutate = MUTATIONS[what]
    mutated = _mutated_copy(out, tmp_path, f"*_stage{stage}_{role}*.mem", mutate)
    code, stdout, stderr = rtlgen("verify", model, mutated, "--frames", "16")
    assert code == 1, (what, stdout, stderr)
    assert "hardware == golden on 16/16" not in stdout and "HARDWARE != GOLDEN: frame " in stdout, stdout
    assert f"output of {report['layers'][-1]['name']}, element" in stdout and "Traceback" not in stderr, stdout
    assert f"layer {layer}: memory file " in stdout and "changed since the build" in stdout, stdout
