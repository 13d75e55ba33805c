"""QCDQ models (QuantizeLinear / Clip / DequantizeLinear): converted to Quant nodes, built, run bit-exact.

The references are onnxruntime's outputs of the original QCDQ graphs (tests/models/qcdq_*_out.npy, written by
export_test_qcdq.py, and onnxruntime again here), never a conversion's. Hand-written graphs cover the ONNX
Runtime QDQ form (weights as DequantizeLinear of int8 initializers) and every pattern the conversion refuses.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import own_model
from rtlgen.build import BuildOptions, build
from rtlgen.errors import RtlgenError
from rtlgen.frontend import clean_model, load_model, lower_model
from rtlgen.host import build_tail, execute_frames
from rtlgen.qcdq import qcdq_offences, valid_clip_range
from rtlgen.reference import onnxruntime_execute
from rtlgen.runner import run_design
from rtlgen.verify import compare_with_qonnx, verify
from test_end_to_end import PARALLEL, SERIAL

QCDQ_CASES = [
    ("qcdq_mlp_w4a4", "default", None),
    ("qcdq_mlp_w4a4", "serial", SERIAL),
    ("qcdq_mlp_w4a4", "parallel", PARALLEL),
    ("qcdq_cnn_w4a4", "default", None),
    ("qcdq_cnn_w4a4", "mixed", {"layers": {"Conv_0": {"PE": 4, "SIMD": 3}, "Conv_1": {"PE": 2, "SIMD": 8},
                                           "MaxPool_0": {"SIMD": 4}, "Gemm_0": {"PE": 5, "SIMD": 16}}}),
]


def _golden_output(lowered, x):
    """The integer golden model's final output through the host tail, for float frames `x`."""
    from rtlgen.host import build_head

    hw_in = np.round(execute_frames(build_head(lowered), x).reshape(len(x), -1)).astype(np.int64)
    golden = lowered.network.golden(hw_in)
    return hw_in, execute_frames(build_tail(lowered), golden.astype(np.float32))


@pytest.mark.parametrize("name", ["qcdq_mlp_w4a4", "qcdq_cnn_w4a4"])
def test_golden_equals_onnxruntime_on_the_original(name):
    path, x, y_ref = own_model(name)
    original = onnx.load(str(path))
    assert {n.op_type for n in original.graph.node} >= {"QuantizeLinear", "Clip", "DequantizeLinear"}
    assert not any(n.op_type == "Quant" for n in original.graph.node)
    # the stored reference is onnxruntime on the file as exported
    np.testing.assert_array_equal(onnxruntime_execute(original, x).reshape(y_ref.shape), y_ref)
    lowered = lower_model(load_model(path))
    hw_in, y_golden = _golden_output(lowered, x)
    np.testing.assert_allclose(y_golden.reshape(y_ref.shape), y_ref, rtol=1e-5, atol=1e-5 * np.abs(y_ref).max())
    # and layer by layer against qonnx on the converted model: no frame disagrees
    result = compare_with_qonnx(lowered, x, hw_in)
    assert not result.unexplained and not result.near_ties and result.golden_qonnx_equal == len(x)


@pytest.mark.parametrize("name,fold_name,folding", QCDQ_CASES, ids=[f"{c[0]}-{c[1]}" for c in QCDQ_CASES])
def test_qcdq_bit_exact_under_backpressure(name, fold_name, folding, tmp_path):
    path, x, y_ref = own_model(name)
    out = tmp_path / "design"
    report = build(path, out, BuildOptions(folding_spec=folding))
    golden = lower_model(load_model(path)).network
    # random output back-pressure: bit-exact, no deadlock
    pressed = run_design(out, x, p_in_gap=0.3, p_out_stall=0.3, seed=5)
    hw_in = pressed.hw_in
    np.testing.assert_array_equal(pressed.hw_out, golden.golden(hw_in))
    np.testing.assert_allclose(pressed.outputs.reshape(y_ref.shape), y_ref, rtol=1e-5, atol=1e-5 * np.abs(y_ref).max())
    # free-running: the measured interval is the estimate's
    free = run_design(out, x)
    np.testing.assert_array_equal(free.hw_out, pressed.hw_out)
    est = report["estimate"]["ii_cycles"]
    assert abs(free.stats["ii_cycles"] - est) <= 0.05 * est, (free.stats, report["estimate"])
    if fold_name == "parallel":
        assert est == 1


def test_verify_reports_onnxruntime_on_the_original(tmp_path):
    path, x, _ = own_model("qcdq_mlp_w4a4")
    build(path, tmp_path / "d", BuildOptions())
    result = verify(path, tmp_path / "d", x[:6], p_in_gap=0.2, p_out_stall=0.2, seed=1)
    assert result.ok and result.original_runtime_diff is not None and result.original_runtime_diff < 1e-4
    assert "onnxruntime on the original QCDQ graph" in result.summary("qcdq_mlp_w4a4")


# ---------------------------------------------------------------------------------------------------------
# hand-written QCDQ graphs

def _init(name, value, dtype):
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def _qdq_mlp(*, act_clip=(0, 15), act_zero=0, act_target="DequantizeLinear", weight_dtype=np.int8, extra_nodes=(),
             w1_zero=(0, 0, 0, 0, 0)):
    """x (1, 6) -> Q/DQ int8 -> MatMul(DQ(int8 W1 per column)) -> Relu -> Q uint8 -> Clip -> DQ ->
    MatMul(DQ(int8 W2)) -> y (1, 3): the ONNX Runtime QDQ form, weights as integer initializers. Power-of-two
    scales keep onnxruntime's float32 exact, ties included, so its output is the exact reference."""
    rng = np.random.default_rng(7)
    w1 = rng.integers(-7, 8, size=(6, 5)).astype(weight_dtype)
    w2 = rng.integers(-7, 8, size=(5, 3)).astype(weight_dtype)
    inits = [
        _init("s_in", 0.0625, np.float32), _init("z_in", 0, np.int8),
        _init("w1", w1, weight_dtype), _init("s_w1", [0.125, 0.25, 0.0625, 0.125, 0.5], np.float32),
        _init("z_w1", list(w1_zero), weight_dtype),
        _init("s_a", 0.25, np.float32), _init("z_a", act_zero, np.uint8),
        _init("w2", w2, weight_dtype), _init("s_w2", 0.125, np.float32), _init("z_w2", 0, weight_dtype),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s_in", "z_in"], ["xq"], name="q_in"),
        helper.make_node("DequantizeLinear", ["xq", "s_in", "z_in"], ["xd"], name="dq_in"),
        helper.make_node("DequantizeLinear", ["w1", "s_w1", "z_w1"], ["w1d"], name="dq_w1", axis=1),
        helper.make_node("MatMul", ["xd", "w1d"], ["h"], name="mm1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("QuantizeLinear", ["r", "s_a", "z_a"], ["rq"], name="q_act"),
    ]
    act = "rq"
    if act_clip is not None:
        inits += [_init("c_lo", act_clip[0], np.uint8), _init("c_hi", act_clip[1], np.uint8)]
        nodes.append(helper.make_node("Clip", ["rq", "c_lo", "c_hi"], ["rc"], name="clip_act"))
        act = "rc"
    if act_target == "DequantizeLinear":
        nodes.append(helper.make_node("DequantizeLinear", [act, "s_a", "z_a"], ["rd"], name="dq_act"))
    else:
        nodes.append(helper.make_node("Cast", [act], ["rd"], name="cast_act", to=TensorProto.FLOAT))
    nodes += [helper.make_node("DequantizeLinear", ["w2", "s_w2", "z_w2"], ["w2d"], name="dq_w2"),
              helper.make_node("MatMul", ["rd", "w2d"], ["y"], name="mm2"), *extra_nodes]
    graph = helper.make_graph(nodes, "qdq_mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("act_zero,act_clip", [(0, (0, 15)), (3, None)])
def test_onnxruntime_qdq_form_lowers_exactly(act_zero, act_clip, tmp_path):
    """Weights as DequantizeLinear of int8 initializers (per-column scales on axis 1), a uint8 activation with a
    4-bit Clip, or with zero point 3 over the whole uint8 range: the golden model equals onnxruntime on the
    original graph on every frame."""
    model = _qdq_mlp(act_zero=act_zero, act_clip=act_clip)
    assert not qcdq_offences(model)
    path = tmp_path / "qdq.onnx"
    onnx.save(model, str(path))
    lowered = lower_model(load_model(path))
    assert [layer.in_fmt.width for layer in lowered.network.layers] == [8, 4 if act_clip else 8]
    assert lowered.network.layers[1].in_fmt.kind == "unsigned"
    x = np.random.default_rng(3).normal(scale=3.0, size=(40, 1, 6)).astype(np.float32)
    x[0, 0, :3] = [100.0, -100.0, 0.0]  # beyond the int8 range both ways
    _, y_golden = _golden_output(lowered, x)
    y_ort = onnxruntime_execute(model, x)
    np.testing.assert_array_equal(y_golden.reshape(y_ort.shape), y_ort)


@pytest.mark.parametrize("lo,hi,signed,ok", [(0, 15, False, True), (0, 255, False, True), (-8, 7, True, True),
                                             (-7, 7, True, True), (0, 6, False, False), (0, 7, True, False),
                                             (-8, 8, True, False), (1, 15, False, False), (-128, 127, True, True)])
def test_clip_ranges(lo, hi, signed, ok):
    assert valid_clip_range(lo, hi, signed) is ok


@pytest.mark.parametrize("kwargs,where,why", [
    ({"act_clip": (0, 6)}, "clip_act", "range [0, 6] is not the full range"),
    ({"w1_zero": [0, 1, 0, 0, 0]}, "dq_w1", "differ per channel"),
    ({"act_target": "Cast"}, "q_act", "not a DequantizeLinear"),
])
def test_refused_patterns_name_the_node(kwargs, where, why, tmp_path):
    model = _qdq_mlp(**kwargs)
    offences = qcdq_offences(model)
    assert any(o.node == where and why in o.why for o in offences), offences
    with pytest.raises(RtlgenError, match=where):
        clean_model(model)


def test_integer_operator_model_is_refused():
    model = _qdq_mlp(extra_nodes=[helper.make_node("MatMulInteger", ["xq", "w1"], ["unused"], name="mmi")])
    offences = qcdq_offences(model)
    assert any(o.node == "mmi" and "integer-operator" in o.why for o in offences)


def test_cli_refuses_bad_qcdq_in_one_line(tmp_path):
    path = tmp_path / "bad.onnx"
    onnx.save(_qdq_mlp(act_clip=(0, 6)), str(path))
    proc = subprocess.run([sys.executable, "-m", "rtlgen.cli", "build", str(path), "-o", str(tmp_path / "out")],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "clip_act" in proc.stderr and "[0, 6]" in proc.stderr
    assert not (tmp_path / "out").exists()
