"""The exact referee of `verify` (rtlgen/exact_eval.py, `ExactReferee` in rtlgen/verify.py), and mutations of the
lowered network that `compare_with_qonnx` must report.

- the exact evaluator's quantizers against Python's own `Fraction` rounding (written here, not in rtlgen), on
  exact ties, float32 near-ties and clipping, and against qonnx's float32 on a value where float32 is wrong;
- a convolution (stride, asymmetric padding, groups) against qonnx where float32 is exact;
- the referee on every frame of real models agrees with the golden model on every element of every layer;
- a frame with a near-tie at its first layer is still checked at its later layers (an error there is caught);
- one weight, one threshold and one requantization multiplier changed in the lowered network of an FC model
  and a CNN are reported as unexplained, naming the layer and the frame; a tolerance that would hide a
  one-level error (half a step) does not hide them.
"""
from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import own_model, shared_model, shared_refs
from rtlgen import verify as verify_mod
from rtlgen.exact_eval import ExactEvaluator
from rtlgen.frontend import InputFormat, load_model, lower_model
from rtlgen.host import build_head, execute_frames
from rtlgen.reference import qonnx_execute
from rtlgen.verify import NEAR_TIE, compare_with_qonnx

QONNX = "qonnx.custom_op.general"
F32 = np.float32


def _const(name, value, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def _quant_model(n: int, scale, zeropt: float, bits: int, signed: int, narrow: int, mode: str) -> onnx.ModelProto:
    node = helper.make_node("Quant", ["x", "s", "z", "b"], ["y"], domain=QONNX, signed=signed, narrow=narrow,
                            rounding_mode=mode)
    graph = helper.make_graph([node], "q", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])],
                              initializer=[_const("s", scale), _const("z", zeropt), _const("b", bits)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QONNX, 1)])


def _fraction_round(y: Fraction, mode: str) -> int:
    """Python's own integer rounding of a Fraction, per qonnx rounding mode (the test's independent reference)."""
    sign = -1 if y < 0 else 1
    return {"ROUND": lambda: round(y),  # Fraction.__round__: half to even
            "CEIL": lambda: math.ceil(y), "FLOOR": lambda: math.floor(y),
            "UP": lambda: sign * math.ceil(abs(y)), "DOWN": lambda: math.trunc(y),
            "HALF_UP": lambda: sign * math.floor(abs(y) + Fraction(1, 2)),
            "HALF_DOWN": lambda: sign * math.ceil(abs(y) - Fraction(1, 2))}[mode]()


@pytest.mark.parametrize("mode", ["ROUND", "CEIL", "FLOOR", "UP", "DOWN", "HALF_UP", "HALF_DOWN"])
@pytest.mark.parametrize("scale,zeropt,bits,signed,narrow", [(0.25, 0.0, 4, 1, 0), (F32(0.1), 0.0, 3, 1, 1),
                                                             (F32(0.3), 2.0, 4, 0, 0), (F32(-0.7), 0.0, 5, 1, 0)])
def test_quant_rounds_like_fractions(mode, scale, zeropt, bits, signed, narrow):
    """Exact ties ((k + 1/2) * scale), values a float32 ulp beside them, random values and clipped ones."""
    rng = np.random.default_rng(bits)
    s = Fraction(float(F32(scale)))
    ties = [float(F32((k + 0.5) * float(s))) for k in range(-20, 20)]
    beside = [float(np.nextafter(F32(t), F32(np.inf))) for t in ties] + [float(np.nextafter(F32(t), F32(-np.inf))) for t in ties]
    x = np.array(ties + beside + list(rng.uniform(-40, 40, 40) * float(s)), dtype=np.float32)[None, :]
    ev = ExactEvaluator(_quant_model(x.shape[1], scale, zeropt, bits, signed, narrow, mode))
    got = ev.run({"x": x}, ["y"])["y"]
    lo = -(2 ** (bits - 1)) + narrow if signed else 0
    hi = 2 ** (bits - 1) - 1 if signed else 2 ** bits - 1 - narrow
    for i, v in enumerate(x[0].tolist()):
        q = min(max(_fraction_round(Fraction(v) / s + Fraction(zeropt), mode), lo), hi)
        want = (q - Fraction(zeropt)) * s
        assert Fraction(int(got.num[0, i]), int(got.den[0, i])) == want, (mode, v, got.num[0, i], got.den[0, i], want)


def test_exact_quant_differs_from_float32_where_float32_rounds_wrong():
    """x / 0.1 in float32 lands on k + 1/2 where the exact quotient is just below or above it: qonnx rounds the
    float32 tie, the evaluator the exact value; at least one such input exists, and the evaluator is right on all."""
    scale = F32(0.1)
    x = np.array([[F32((k + 0.5) * 0.1) for k in range(-8, 8)]], dtype=np.float32)
    model = _quant_model(x.shape[1], scale, 0.0, 5, 1, 0, "ROUND")
    got = ExactEvaluator(model).run({"x": x}, ["y"])["y"]
    ref, _ = qonnx_execute(model, x)
    s = Fraction(float(scale))
    exact = [round(Fraction(float(v)) / s) for v in x[0]]
    float32_levels = np.round(ref.reshape(-1) / scale).astype(int).tolist()
    assert exact != float32_levels  # the inputs do contain float32 misroundings
    assert [Fraction(int(n), int(d)) / s for n, d in zip(got.num[0], got.den[0])] == exact


def test_conv_matches_qonnx_where_float32_is_exact():
    """Grouped convolution with stride 2 and asymmetric padding, bias, then a max-pool, on small integers
    (float32 is exact there): the evaluator must give qonnx's numbers."""
    rng = np.random.default_rng(3)
    w = rng.integers(-3, 4, size=(4, 2, 3, 3)).astype(np.float32)
    b = rng.integers(-5, 6, size=4).astype(np.float32)
    conv = helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], strides=[2, 1], pads=[1, 0, 2, 1], group=2)
    pool = helper.make_node("MaxPool", ["c"], ["y"], kernel_shape=[2, 2], strides=[1, 2])
    graph = helper.make_graph([conv, pool], "c", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 7, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[_const("w", w), _const("b", b)])
    model = infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    x = rng.integers(-8, 9, size=(2, 1, 4, 7, 6)).astype(np.float32)
    ref, _ = qonnx_execute(model, x)
    ev = ExactEvaluator(model)
    for f in range(2):
        got = ev.run({"x": x[f]}, ["y"])["y"]
        assert np.array_equal(got.to_float(), ref[f].astype(np.float64))


def infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes

    return ModelWrapper(model).transform(InferShapes()).model


def _hw_in(lowered, x):
    return np.round(execute_frames(build_head(lowered), x).reshape(len(x), -1)).astype(np.int64)


@pytest.mark.parametrize("name", ["tfc_w1a1_finnonnx", "tfc_w1a2", "unsw_nb15_mlp_w2a2", "bnn_fc_1layer", "kwsmlp_w3a3"])
def test_referee_agrees_with_golden_on_shared_models(name):
    """Every frame through the referee: the golden model equals exact arithmetic on every element of every layer
    (MultiThreshold, BipolarQuant, BatchNormalization, Div/Sub/Mul, Squeeze/Unsqueeze, Gemm, MatMul)."""
    x, _ = shared_refs(name)
    lowered = lower_model(load_model(shared_model(name)))
    res = compare_with_qonnx(lowered, x[:6], _hw_in(lowered, x[:6]), referee_all=True)
    assert not res.unexplained, res.unexplained


@pytest.mark.parametrize("name", ["cnn_w4a4_stride2_pad", "cnn_depthwise_w4a4", "cnn1d_w2a2", "cnn_w1a1_kx1", "w2a2_bn"])
def test_referee_agrees_with_golden_on_own_models(name):
    """The same on the project's CNNs: convolutions (stride, padding, depthwise, 1-D, k x 1), max-pools, BN."""
    path, x, _ = own_model(name)
    lowered = lower_model(load_model(path))
    res = compare_with_qonnx(lowered, x[:3], _hw_in(lowered, x[:3]), referee_all=True)
    assert not res.unexplained, res.unexplained


# ----------------------------------------------------------------------------------- near-tie then an error

def _tie_then_layer_model() -> onnx.ModelProto:
    """in (UINT4) -> MatMul W0 -> Mul 0.1 -> Quant UINT4 ROUND -> MatMul W1 -> Quant INT4 ROUND.

    With an accumulator of 5, the first activation's exact input is 5 * float32(0.1) = 0.50000000745..., which
    rounds to 1; float32 computes exactly 0.5 and rounds it (half to even) to 0: a near-tie at 7.5e-9 steps."""
    w0 = np.array([[1, 0], [0, 1]], dtype=np.float32)
    w1 = np.array([[1, -2], [3, 1]], dtype=np.float32)

    def quant(inp, out, bits, signed, scale="one"):
        return helper.make_node("Quant", [inp, scale, "zero", bits], [out], domain=QONNX, signed=signed, narrow=0,
                                rounding_mode="ROUND")
    nodes = [quant("x", "xq", "b4", 0), quant("w0", "w0q", "b4", 1), quant("w1", "w1q", "b4", 1),
             helper.make_node("MatMul", ["xq", "w0q"], ["a0"]), helper.make_node("Mul", ["a0", "tenth"], ["p0"]),
             quant("p0", "y0", "b4", 0), helper.make_node("MatMul", ["y0", "w1q"], ["a1"]), quant("a1", "y", "b4", 1)]
    inits = [_const("w0", w0), _const("w1", w1), _const("one", 1.0), _const("zero", 0.0), _const("b4", 4.0),
             _const("tenth", 0.1)]
    graph = helper.make_graph(nodes, "tie", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QONNX, 1)])


def test_a_near_tie_does_not_hide_a_later_error(tmp_path):
    """Both frames have a near-tie at the first layer; a threshold of the second layer is then raised so the
    golden model loses a level there. The frame must still be compared at its second layer and reported."""
    path = tmp_path / "tie.onnx"
    onnx.save(_tie_then_layer_model(), str(path))
    lowered = lower_model(load_model(path))
    x = np.array([[5, 3], [5, 7]], dtype=np.float32)
    hw_in = _hw_in(lowered, x)
    clean = compare_with_qonnx(lowered, x, hw_in)
    assert not clean.unexplained and {t.frame for t in clean.near_ties} == {0, 1} and clean.refereed == 2, clean
    assert all(t.layer == lowered.network.layers[0].name and t.distance_steps < 1e-8 for t in clean.near_ties)

    second = lowered.network.layers[1]
    _lose_a_level(second, second.accumulate(lowered.network.layers[0].golden(hw_in))[1].reshape(-1, second.mh), 0)
    res = compare_with_qonnx(lowered, x, hw_in)
    assert any(u.startswith(f"frame 1 {second.name}[") and "exact arithmetic" in u for u in res.unexplained), res.unexplained


# ----------------------------------------------------------------------------------- mutations of the lowered network

def _lose_a_level(layer, acc: np.ndarray, channel: int) -> None:
    """Raise the highest threshold of `channel` that one of the accumulators `acc` (vectors, MH) reaches to just
    above it: that vector's level drops by one (thresholds stay sorted, as the next one is above it too)."""
    values = acc[:, channel]
    t = layer.thresholds[channel]
    reached = [(int(np.flatnonzero(t <= a)[-1]), a) for a in values if np.any(t <= a)]
    assert reached, f"no accumulator of channel {channel} reaches a threshold: pick another channel"
    j, a = reached[0]
    layer.thresholds = layer.thresholds.copy()
    layer.thresholds[channel, j] = a + 1


def _flip_a_weight(layer, layer_in: np.ndarray) -> None:
    """Negate the largest-magnitude weight of the first output channel where doing so changes an output on
    these frames (a saturated channel may not notice)."""
    before = layer.golden(layer_in)
    original = layer.weights
    for channel in range(layer.weights.shape[0]):
        col = int(np.argmax(np.abs(original[channel])))
        layer.weights = original.copy()
        layer.weights[channel, col] = -original[channel, col]
        if np.any(layer.golden(layer_in) != before):
            return
    layer.weights = original


def _mutate(lowered, li: int, what: str, hw_in: np.ndarray) -> None:
    golden = lowered.network.golden_per_layer(hw_in)
    layer = lowered.network.layers[li]
    layer_in = hw_in if li == 0 else golden[li - 1]
    if what == "threshold":
        _lose_a_level(layer, layer.accumulate(layer_in).reshape(-1, layer.mh), 0)
    elif what == "weight":
        _flip_a_weight(layer, layer_in)
    else:  # the requantization multiplier of channel 0, up by an eighth
        rq = layer.requant
        mult = list(rq.mult)
        mult[0] += max(1, abs(mult[0]) // 8)
        layer.requant = dataclasses.replace(rq, mult=tuple(mult))
    after = lowered.network.golden_per_layer(hw_in)[li]
    assert np.any(after != golden[li]), f"the {what} mutation of {layer.name} changes nothing on these frames"


def _fc_case():
    x, _ = shared_refs("tfc_w2a2")
    return lower_model(load_model(shared_model("tfc_w2a2"))), x[:8]


def _cnn_case():
    path, x, _ = own_model("cnn_w4a4_stride2_pad")
    return lower_model(load_model(path)), x[:4]


def _requant_case():
    x, _ = shared_refs("mnist_cnn_qkeras_qonnx2mdc")
    fmt = InputFormat("INT8", 2.0 ** -7)
    snapped = (np.clip(np.round(x[:2] / fmt.scale), -128, 127) * fmt.scale).astype(np.float32)
    return lower_model(load_model(shared_model("mnist_cnn_qkeras_qonnx2mdc")), input_format=fmt), snapped


@pytest.mark.parametrize("case,li,what", [("fc", 1, "weight"), ("fc", 1, "threshold"), ("cnn", 1, "weight"),
                                          ("cnn", 1, "threshold"), ("requant", 0, "requant")])
@pytest.mark.parametrize("tolerance", ["default", "half_step"])
def test_a_mutated_lowered_network_is_reported(case, li, what, tolerance, monkeypatch):
    """The golden model made wrong in one place disagrees with qonnx, and the referee (exact arithmetic) says
    the golden model is the wrong one: unexplained, naming the frame and the layer. With the near-tie
    tolerance raised to half a step (enough to excuse any one-level disagreement with qonnx) it still is."""
    lowered, x = {"fc": _fc_case, "cnn": _cnn_case, "requant": _requant_case}[case]()
    hw_in = _hw_in(lowered, x)
    assert not compare_with_qonnx(lowered, x, hw_in).unexplained
    _mutate(lowered, li, what, hw_in)
    if tolerance == "half_step":
        monkeypatch.setattr(verify_mod, "NEAR_TIE", 0.5)
    res = compare_with_qonnx(lowered, x, hw_in)
    name = lowered.network.layers[li].name
    assert any(u.startswith("frame ") and f" {name}[" in u and "exact arithmetic" in u for u in res.unexplained), res.unexplained
    assert NEAR_TIE < 0.5
