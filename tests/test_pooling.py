"""Average pooling: AveragePool, GlobalAveragePool, ReduceMean over the spatial axes and Brevitas' TruncAvgPool2d
(AveragePool + qonnx Trunc v1/v2), lowered to a window sum (a depthwise convolution with unit weights) whose
1/N and requantization are exact integer thresholds.

References are qonnx's (stored outputs of the Brevitas exports, or `execute_onnx` on hand-written graphs) and
exact rational arithmetic (`ExactReferee` on every frame), never rtlgen's own.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import own_model
from rtlgen.errors import RtlgenError
from rtlgen.frontend import clean_model, lower_model
from rtlgen.host import build_head, execute_frames
from rtlgen.quantizers import ROUNDING_MODES
from rtlgen.reference import qonnx_execute
from rtlgen.verify import compare_with_qonnx
from test_end_to_end import SERIAL, _check

POOL_CASES = [
    ("mobilenet_w4a4", "default", None),
    ("mobilenet_w4a4", "wide", {"layers": {"Conv_0": {"PE": 16, "SIMD": 3}, "Conv_1": {"PE": 16},
                                           "Conv_2": {"PE": 8, "SIMD": 16}, "Conv_3": {"PE": 16},
                                           "Conv_4": {"PE": 8, "SIMD": 32}, "AveragePool_0": {"PE": 8},
                                           "Gemm_0": {"PE": 2, "SIMD": 32}}}),
    ("cnn_avgpool_w4a4", "default", None),
    ("cnn_avgpool_w4a4", "serial", SERIAL),
    ("cnn_avgpool_w4a4", "pools_wide", {"layers": {"AveragePool_0": {"PE": 8}, "AveragePool_1": {"PE": 4},
                                                   "ReduceMean_0": {"PE": 2}}}),
]


def _hw_in(lowered, x):
    return np.round(execute_frames(build_head(lowered), x).reshape(len(x), -1)).astype(np.int64)


@pytest.mark.parametrize("name", ["mobilenet_w4a4", "cnn_avgpool_w4a4"])
def test_pool_exports_golden_equals_qonnx(name):
    path, x, y_ref = own_model(name)
    lowered = lower_model(clean_model(onnx.load(str(path))))
    pools = [layer for layer in lowered.network.layers if "average_pool" in layer.sources]
    assert pools and all(np.all(layer.weights == 1) for layer in pools)
    hw_in = _hw_in(lowered, x)
    # every frame also through exact rational arithmetic, which must agree with the golden model everywhere
    result = compare_with_qonnx(lowered, x, hw_in, referee_all=name == "cnn_avgpool_w4a4")
    assert not result.unexplained and not result.near_ties and result.golden_qonnx_equal == len(x)


@pytest.mark.parametrize("name,fold_name,folding", POOL_CASES, ids=[f"{c[0]}-{c[1]}" for c in POOL_CASES])
def test_pool_networks_bit_exact(name, fold_name, folding, tmp_path):
    """Hardware == golden, outputs == qonnx's stored ones, worst-case frames, ii and latency within 2 %, and
    hardware == golden under random back-pressure."""
    path, x, y_ref = own_model(name)
    report, _ = _check(path, x[:6], y_ref[:6], folding, tmp_path / "design", backpressure=0.3)
    pools = [layer for layer in report["layers"] if layer.get("conv", {}).get("average_pool")]
    assert pools
    if fold_name == "pools_wide":
        assert [p["PE"] for p in pools] == [8, 4, 2]


def test_pool_networks_under_backpressure(tmp_path):
    from rtlgen.build import BuildOptions, build
    from rtlgen.runner import run_design

    path, x, y_ref = own_model("cnn_avgpool_w4a4")
    build(path, tmp_path / "d", BuildOptions())
    result = run_design(tmp_path / "d", x, p_in_gap=0.3, p_out_stall=0.4, seed=9)
    lowered = lower_model(clean_model(onnx.load(str(path))))
    np.testing.assert_array_equal(result.hw_out, lowered.network.golden(result.hw_in))
    np.testing.assert_allclose(result.outputs.reshape(y_ref.shape), y_ref, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# hand-written graphs: x (1, 3, 6, 6) -> Quant INT4 -> pool -> quantizer

def _const(name, value):
    return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)


def _pool_model(pool: onnx.NodeProto, quant: onnx.NodeProto, extra_inits=(), out_shape=(1, 3, 3, 3), qonnx_version=2,
                signed_input=True):
    inits = [_const("s_in", 0.25), _const("z0", 0.0), _const("b_in", 4.0), *extra_inits]
    nodes = [helper.make_node("Quant", ["x", "s_in", "z0", "b_in"], ["xq"], name="q_in", domain="qonnx.custom_op.general",
                              signed=int(signed_input), narrow=0, rounding_mode="ROUND"), pool, quant]
    graph = helper.make_graph(nodes, "pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                   helper.make_opsetid("qonnx.custom_op.general", qonnx_version)])


def _trunc(version: int, mode: str, signed: bool) -> tuple[onnx.NodeProto, list]:
    """Trunc of a 2x2 average (sum/4 of levels with scale 0.25): 6 input bits to 4."""
    if version == 1:
        inputs, inits = ["p", "s_p", "z0", "b6", "b4"], [_const("s_p", 0.0625), _const("b6", 6.0), _const("b4", 4.0)]
        attrs = {}
    else:
        inputs = ["p", "s_p", "z0", "b6", "s_out", "b4"]
        inits = [_const("s_p", 0.0625), _const("b6", 6.0), _const("s_out", 0.25), _const("b4", 4.0)]
        attrs = {"signed": int(signed), "narrow": 0}
    return helper.make_node("Trunc", inputs, ["y"], name="trunc", domain="qonnx.custom_op.general",
                            rounding_mode=mode, **attrs), inits


def _golden_vs_qonnx_exact(model, frames=64, seed=0):
    """Golden model == qonnx == exact arithmetic on random frames spanning the input range (both ways beyond)."""
    lowered = lower_model(clean_model(model))
    x = np.random.default_rng(seed).uniform(-3.0, 3.0, size=(frames, 1, 3, 6, 6)).astype(np.float32)
    x[0] = 2.5  # every level at its maximum: the largest window sums
    x[1] = -2.5
    hw_in = _hw_in(lowered, x)
    result = compare_with_qonnx(lowered, x, hw_in, referee_all=True)
    assert not result.unexplained, result.unexplained
    assert not result.near_ties and result.golden_qonnx_equal == frames
    return lowered, x, hw_in


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("mode", ROUNDING_MODES)
def test_trunc_every_version_and_rounding_mode(version, mode):
    trunc, inits = _trunc(version, mode, signed=True)
    pool = helper.make_node("AveragePool", ["xq"], ["p"], name="avg", kernel_shape=[2, 2], strides=[2, 2])
    lowered, x, hw_in = _golden_vs_qonnx_exact(_pool_model(pool, trunc, inits, qonnx_version=version))
    # independently: qonnx's own output levels equal the golden model's, frame by frame
    y_qonnx, _ = qonnx_execute(lowered.model, x)
    levels = np.rint(y_qonnx / (0.0625 if version == 1 else 0.25)).astype(np.int64)
    golden = lowered.network.golden(hw_in).reshape(len(x), 3, 3, 3)  # stream order: (h, w, c)
    np.testing.assert_array_equal(np.moveaxis(levels.reshape(len(x), 3, 3, 3), 1, -1), golden)
    assert len(set(np.unique(golden))) > 4


def test_trunc_v2_unsigned_clips_at_its_bit_width():
    trunc, inits = _trunc(2, "FLOOR", signed=False)
    pool = helper.make_node("AveragePool", ["xq"], ["p"], name="avg", kernel_shape=[2, 2], strides=[2, 2])
    lowered, _, hw_in = _golden_vs_qonnx_exact(_pool_model(pool, trunc, inits, signed_input=True))
    out = lowered.network.golden(hw_in)
    assert out.min() == 0 and out.max() <= 15 and lowered.network.layers[0].out_fmt.kind == "unsigned"


@pytest.mark.parametrize("pool_node,out_shape", [
    (helper.make_node("GlobalAveragePool", ["xq"], ["p"], name="gap"), (1, 3, 1, 1)),
    (helper.make_node("ReduceMean", ["xq"], ["p"], name="mean", axes=[2, 3], keepdims=0), (1, 3)),
    (helper.make_node("AveragePool", ["xq"], ["p"], name="avgpad", kernel_shape=[3, 3], strides=[1, 1],
                      pads=[1, 1, 1, 1], count_include_pad=1), (1, 3, 6, 6)),
    (helper.make_node("AveragePool", ["xq"], ["p"], name="avg3s2", kernel_shape=[3, 3], strides=[2, 2]), (1, 3, 2, 2)),
])
def test_average_pools_then_quant(pool_node, out_shape):
    """Each pool form followed by a signed 6-bit Quant (round half to even) whose scale is not a power of two."""
    quant = helper.make_node("Quant", ["p", "s_q", "z0", "b_q"], ["y"], name="q_out", domain="qonnx.custom_op.general",
                             signed=1, narrow=0, rounding_mode="ROUND")
    model = _pool_model(pool_node, quant, [_const("s_q", 0.07), _const("b_q", 6.0)], out_shape=out_shape)
    lowered, _, _ = _golden_vs_qonnx_exact(model)
    layer = lowered.network.layers[0]
    assert layer.sources["average_pool"] == pool_node.op_type and np.all(layer.weights == 1)


@pytest.mark.parametrize("pool_node,why", [
    (helper.make_node("AveragePool", ["xq"], ["p"], name="avgpad0", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                      count_include_pad=0), "count_include_pad=0"),
    (helper.make_node("AveragePool", ["xq"], ["p"], name="avgceil", kernel_shape=[4, 4], strides=[4, 4], ceil_mode=1),
     "ceil_mode=1"),
    (helper.make_node("ReduceMean", ["xq"], ["p"], name="meanc", axes=[1], keepdims=1), "only the mean over the spatial"),
])
def test_unsupported_pools_are_refused_by_name(pool_node, why):
    quant = helper.make_node("Quant", ["p", "s_q", "z0", "b_q"], ["y"], name="q_out", domain="qonnx.custom_op.general",
                             signed=1, narrow=0, rounding_mode="ROUND")
    model = _pool_model(pool_node, quant, [_const("s_q", 0.07), _const("b_q", 6.0)], out_shape=(1, 3, 2, 2))
    with pytest.raises(RtlgenError, match=f"{pool_node.name}.*{why}"):
        lower_model(clean_model(model))


def test_trunc_with_wrong_input_count_is_refused():
    trunc, inits = _trunc(2, "FLOOR", signed=True)
    pool = helper.make_node("AveragePool", ["xq"], ["p"], name="avg", kernel_shape=[2, 2], strides=[2, 2])
    model = _pool_model(pool, trunc, inits, qonnx_version=1)  # six inputs, but the opset says v1 (five)
    with pytest.raises(RtlgenError, match="Trunc v1, which takes 5"):
        lower_model(clean_model(model))
