"""Residual networks: a tensor read by two branches that an Add joins again becomes a duplicator, two edges (the
skip edge's FIFO is the skip-path buffer, sized from both paths' schedules) and an interleaver into a two-tap
vector unit whose weights are the exact alignment multipliers of the Add's input scales.

References are qonnx's (the Brevitas exports' stored outputs, `execute_onnx` on hand-written graphs) and exact
rational arithmetic (`ExactReferee`), never rtlgen's own.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import own_model
from rtlgen.errors import RtlgenError, UnsupportedModelError
from rtlgen.frontend import clean_model, lower_model
from rtlgen.graph import AddLayer
from rtlgen.host import build_head, execute_frames
from rtlgen.verify import compare_with_qonnx
from test_end_to_end import _check

RESNET_CASES = [
    ("default", None),
    ("serial", "serial"),  # every layer at PE = SIMD = 1 (`_serial`)
    ("wide_adds", {"layers": {"Add_0": {"PE": 8}, "Add_1": {"PE": 4}, "Add_2": {"PE": 16},
                              "Conv_3": {"PE": 4, "SIMD": 8}}}),
]


def _hw_in(lowered, x):
    return np.round(execute_frames(build_head(lowered), x).reshape(len(x), -1)).astype(np.int64)


def _lowered(name):
    path, x, y_ref = own_model(name)
    return lower_model(clean_model(onnx.load(str(path)))), x, y_ref


def _serial(lowered) -> dict:
    return {"layers": {layer.name: {"PE": 1, "SIMD": 1} for layer in lowered.network.layers}}


@pytest.mark.parametrize("name", ["resnet_w4a4", "resnet8_w4a4"])
def test_resnet_exports_golden_equals_qonnx(name):
    lowered, x, _ = _lowered(name)
    frames = x if name == "resnet_w4a4" else x[:4]
    # the small one's every frame also through exact rational arithmetic, which must agree with the golden model
    result = compare_with_qonnx(lowered, frames, _hw_in(lowered, frames), referee_all=name == "resnet_w4a4")
    assert not result.unexplained and not result.near_ties and result.golden_qonnx_equal == len(frames)


def test_resnet_lowers_to_a_dag():
    """Three blocks: identity skip, strided 1x1 projection, identity skip; the Adds read both branches."""
    network = _lowered("resnet_w4a4")[0].network
    names = [layer.name for layer in network.layers]
    adds = [i for i, layer in enumerate(network.layers) if isinstance(layer, AddLayer)]
    assert len(adds) == 3 and not network.is_chain
    block1, block2, block3 = (network.producers(i) for i in adds)
    assert [names[p] for p in block1] == ["Conv_2", "Conv_0"]  # long path, then the stem's output itself
    assert [names[p] for p in block2] == ["Conv_5", "Conv_3"]  # the projection (Conv_3: 1x1, stride 2)
    assert network.layers[names.index("Conv_3")].conv.stride_h == 2
    assert [names[p] for p in block3] == ["Conv_7", "Add_1"]
    assert sorted(network.consumers(names.index("Conv_0"))) == [names.index("Conv_1"), adds[0]]
    for i in adds:  # the alignment multipliers are the Add inputs' scale ratio (power-of-two scales here)
        ma, mb = network.layers[i].weights[0]
        assert np.all(network.layers[i].weights == [ma, mb]) and ma >= 1 and mb >= 1
        assert (ma & (ma - 1)) == 0 and (mb & (mb - 1)) == 0


@pytest.mark.parametrize("fold_name,folding", RESNET_CASES, ids=[c[0] for c in RESNET_CASES])
def test_resnet_bit_exact(fold_name, folding, tmp_path):
    """Hardware == golden, outputs == qonnx's stored ones, worst-case frames, ii and latency within 2 %; and
    under random back-pressure (input gaps, output stalls): no deadlock, hardware == golden."""
    path, x, y_ref = own_model("resnet_w4a4")
    if fold_name == "serial":
        folding = _serial(_lowered("resnet_w4a4")[0])
    report, _ = _check(path, x[:4], y_ref[:4], folding, tmp_path / "design", backpressure=0.35)
    adds = [layer for layer in report["layers"] if layer["op"] == "Add"]
    assert len(adds) == 3
    sizing = report["fifo_sizing"]
    skip = {name: depth for name, depth in sizing["depths"].items() if name.endswith("b")}
    assert len(skip) == 3 and sizing["skip_path_bits"] > 0
    if fold_name == "wide_adds":
        assert [a["PE"] for a in adds] == [8, 4, 16]
    # report.html draws each stream that does not run to the next block (duplicator outputs, skip inputs)
    stages = report["stages"]
    jumps = sum(1 for i, s in enumerate(stages) for feed in s["feeds"] if i and feed != stages[i - 1]["name"])
    html = (tmp_path / "design" / "report.html").read_text()
    assert jumps >= 6 and html.count('class="branch"') == jumps


def test_resnet_under_heavy_backpressure(tmp_path):
    """Random input gaps and output stalls more often than not: no deadlock, every output word right, and the
    free-running interval still the estimate's."""
    from rtlgen.build import BuildOptions, build
    from rtlgen.runner import run_design

    path, x, y_ref = own_model("resnet_w4a4")
    report = build(path, tmp_path / "d", BuildOptions())
    result = run_design(tmp_path / "d", x[:8], p_in_gap=0.6, p_out_stall=0.6, seed=4)
    lowered = _lowered("resnet_w4a4")[0]
    np.testing.assert_array_equal(result.hw_out, lowered.network.golden(result.hw_in))
    np.testing.assert_allclose(result.outputs.reshape(y_ref[:8].shape), y_ref[:8], rtol=1e-5, atol=1e-6)
    free = run_design(tmp_path / "d", x[:6])
    assert free.stats["ii_cycles"] == report["estimate"]["ii_cycles"]


def test_resnet8_end_to_end(tmp_path):
    """MLPerf Tiny's ResNet-8 topology (16/32/64 channels at 32x32x3): builds, three frames bit-exact in Verilator,
    measured interval and latency equal to the estimate (build seconds: bench/bench_residual.py)."""
    from rtlgen.build import BuildOptions, build
    from rtlgen.runner import run_design

    path, x, y_ref = own_model("resnet8_w4a4")
    report = build(path, tmp_path / "d", BuildOptions())
    result = run_design(tmp_path / "d", x[:3])
    lowered = _lowered("resnet8_w4a4")[0]
    np.testing.assert_array_equal(result.hw_out, lowered.network.golden(result.hw_in))
    np.testing.assert_allclose(result.outputs.reshape(y_ref[:3].shape), y_ref[:3], rtol=1e-5, atol=1e-5)
    assert result.stats["ii_cycles"] == report["estimate"]["ii_cycles"]
    assert result.stats["latency_cycles"] == report["estimate"]["latency_cycles"]
    assert sum(layer["op"] == "Add" for layer in report["layers"]) == 3
    assert report["fifo_sizing"]["skip_path_bits"] < report["fifo_sizing"]["rule_bits"]


# ---------------------------------------------------------------------------------------------------------
# hand-written graphs: x (1, 6) -> Quant INT4 -> MatMul -> Quant INT4 (scale 1/8) -> [MatMul -> Quant] + [skip]
#                      -> Add -> Relu -> Quant

def _const(name, value):
    return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)


def _quant(inp, out, scale, bits, signed=True, zero="z0", name=None):
    return helper.make_node("Quant", [inp, scale, zero, bits], [out], name=name or f"q_{out}",
                            domain="qonnx.custom_op.general", signed=int(signed), narrow=0, rounding_mode="ROUND")


def _residual_mlp(long_scale=0.25, skip=("identity",), out_scale=0.5, long_quantized=True, fork_to=2):
    """A 2-D residual block; `skip` is ("identity",) or ("dense", scale) (a MatMul + Quant on the skip path)."""
    rng = np.random.default_rng(3)
    inits = [_const("s_in", 0.125), _const("z0", 0.0), _const("b4", 4.0), _const("b6", 6.0), _const("s_a", long_scale),
             _const("s_out", out_scale), _const("w0", rng.integers(-2, 3, size=(6, 6))),
             _const("w1", rng.integers(-3, 4, size=(6, 6))), _const("w2", rng.integers(-3, 4, size=(6, 6)))]
    nodes = [_quant("x", "x0", "s_in", "b4", name="q_in"), helper.make_node("MatMul", ["x0", "w0"], ["m0"], name="stem"),
             _quant("m0", "xq", "s_in", "b4", name="q_stem"),
             helper.make_node("MatMul", ["xq", "w1"], ["m1"], name="mm_long")]
    if long_quantized:
        nodes.append(_quant("m1", "a", "s_a", "b6", name="q_long"))
    else:
        nodes.append(helper.make_node("Mul", ["m1", "s_a"], ["a"], name="scale_long"))
    if skip[0] == "identity":
        b = "xq"
    else:
        inits.append(_const("s_b", skip[1]))
        nodes += [helper.make_node("MatMul", ["xq", "w2"], ["m2"], name="mm_skip"), _quant("m2", "b", "s_b", "b6", name="q_skip")]
        b = "b"
    for k in range(fork_to - 2):
        nodes.append(helper.make_node("Relu", ["xq"], [f"extra{k}"], name=f"extra_reader{k}"))
    nodes += [helper.make_node("Add", ["a", b], ["s"], name="join"), helper.make_node("Relu", ["s"], ["r"], name="relu"),
              _quant("r", "y", "s_out", "b4", signed=False, name="q_out")]
    graph = helper.make_graph(nodes, "residual", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                   helper.make_opsetid("qonnx.custom_op.general", 1)])


@pytest.mark.parametrize("skip,long_scale", [(("identity",), 0.25), (("identity",), 0.375), (("dense", 0.1875), 0.25),
                                             (("dense", 0.03125), 0.5)])
def test_residual_mlp_golden_equals_qonnx_and_exact(skip, long_scale):
    """2-D residual blocks whose Add inputs align with multipliers up to 12:1 (0.375 / 0.125 = 3:1, 0.25 / 0.1875 =
    4:3, 0.5 / 0.03125 = 16:1), on frames spanning the input range and beyond."""
    model = _residual_mlp(long_scale=long_scale, skip=skip)
    lowered = lower_model(clean_model(model))
    add = lowered.network.layers[-1]
    assert isinstance(add, AddLayer)
    x = np.random.default_rng(1).uniform(-1.2, 1.2, size=(64, 1, 6)).astype(np.float32)
    x[0], x[1] = 1.0, -1.0
    result = compare_with_qonnx(lowered, x, _hw_in(lowered, x), referee_all=True)
    assert not result.unexplained and not result.near_ties and result.golden_qonnx_equal == len(x)


def test_residual_mlp_runs_in_rtl(tmp_path):
    from rtlgen.build import BuildOptions, build
    from rtlgen.reference import qonnx_execute
    from rtlgen.runner import run_design

    model = _residual_mlp(long_scale=0.375, skip=("dense", 0.25))
    path = tmp_path / "res.onnx"
    onnx.save(model, str(path))
    x = np.random.default_rng(2).uniform(-1.2, 1.2, size=(12, 1, 6)).astype(np.float32)
    lowered = lower_model(clean_model(model))
    network = lowered.network
    long_layer, skip_layer = (network.layers[p].name for p in network.producers(len(network.layers) - 1))
    wide = {"layers": {long_layer: {"PE": 6, "SIMD": 3}, skip_layer: {"PE": 2, "SIMD": 6},
                       network.layers[-1].name: {"PE": 3}}}
    for folding in (None, wide):
        report = build(path, tmp_path / "d", BuildOptions(folding_spec=folding, force=True))
        result = run_design(tmp_path / "d", x, p_in_gap=0.2, p_out_stall=0.3, seed=1)
        np.testing.assert_array_equal(result.hw_out, lowered.network.golden(result.hw_in))
        y_ref = qonnx_execute(lowered.model, x, [])[0]
        np.testing.assert_array_equal(result.outputs.reshape(len(x), -1), np.asarray(y_ref).reshape(len(x), -1))
        assert report["fifo_sizing"]["skip_path_bits"] > 0


@pytest.mark.parametrize("kwargs,why", [
    ({"long_scale": 0.3}, r"'join' in the model file\) \(Add\): the scales of its inputs .* no small exact integer ratio"),
    ({"long_quantized": False}, r"'join' in the model file\) \(Add\): its input .*'scale_long'.* is not the output of a quantizer"),
    ({"fork_to": 3}, r"feeds 3 nodes"),
])
def test_unsupported_residuals_are_refused_by_name(kwargs, why):
    with pytest.raises(RtlgenError, match=why):
        lower_model(clean_model(_residual_mlp(**kwargs)))


def test_branches_that_never_meet_are_refused():
    """A fork whose branches end in a Concat (out of scope) is named, as is the Concat."""
    inits = [_const("s_in", 0.125), _const("z0", 0.0), _const("b4", 4.0)]
    nodes = [_quant("x", "xq", "s_in", "b4", name="q_in"), helper.make_node("Relu", ["xq"], ["r1"], name="r1"),
             helper.make_node("Neg", ["xq"], ["r2"], name="r2"),
             helper.make_node("Concat", ["r1", "r2"], ["y"], name="cat", axis=1)]
    graph = helper.make_graph(nodes, "cat", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 12])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                    helper.make_opsetid("qonnx.custom_op.general", 1)])
    with pytest.raises(UnsupportedModelError, match="do not meet again in one Add"):
        lower_model(clean_model(model))
