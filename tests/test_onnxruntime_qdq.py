"""Models quantized by ONNX Runtime itself (`quantize_static`, QDQ format): asymmetric uint8 activations with
their calibrated zero points, int8 weights (per channel or per tensor), int32 biases, Relu folded into the
quantizers, re-quantized Reshapes, Conv without kernel_shape. Built and run in Verilator; the reference is
onnxruntime on the quantized graph as ONNX Runtime wrote it: the outputs equal it exactly where the model ends
on a quantizer (the CNN), within float32 rounding where the host rescales the last accumulators (the MLP). The float models are written here with onnx.helper and random weights, quantized at test
time (a second or two), so nothing is stored and no training is involved."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxruntime.quantization as ort_quantization
from rtlgen.build import BuildOptions, build
from rtlgen.frontend import load_model, lower_model
from rtlgen.reference import onnxruntime_execute
from rtlgen.runner import run_design



def _init(name, value):
    return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)


def float_cnn(rng) -> onnx.ModelProto:
    """3x8x8 -> conv 3x3 pad 1 (3 -> 8) + Relu -> conv 3x3 stride 2 pad 1 (8 -> 8) + Relu -> flatten 128 ->
    MatMul + Add -> 5."""
    inits = [_init("w1", rng.normal(size=(8, 3, 3, 3)) * 0.3), _init("b1", rng.normal(size=8) * 0.1),
             _init("w2", rng.normal(size=(8, 8, 3, 3)) * 0.2), _init("b2", rng.normal(size=8) * 0.1),
             _init("w3", rng.normal(size=(128, 5)) * 0.2), _init("b3", rng.normal(size=5) * 0.1),
             numpy_helper.from_array(np.array([1, 128], dtype=np.int64), "shape")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2], name="conv2"),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("Reshape", ["r2", "shape"], ["f"], name="flatten"),
             helper.make_node("MatMul", ["f", "w3"], ["m"], name="fc"),
             helper.make_node("Add", ["m", "b3"], ["y"], name="fc_bias")]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def float_mlp(rng) -> onnx.ModelProto:
    """20 -> Gemm 24 + Relu -> Gemm 16 + Relu -> Gemm 6."""
    inits = [_init("w1", rng.normal(size=(24, 20)) * 0.3), _init("b1", rng.normal(size=24) * 0.1),
             _init("w2", rng.normal(size=(16, 24)) * 0.3), _init("b2", rng.normal(size=16) * 0.1),
             _init("w3", rng.normal(size=(6, 16)) * 0.3), _init("b3", rng.normal(size=6) * 0.1)]
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["g1"], transB=1, name="fc1"),
             helper.make_node("Relu", ["g1"], ["r1"], name="relu1"),
             helper.make_node("Gemm", ["r1", "w2", "b2"], ["g2"], transB=1, name="fc2"),
             helper.make_node("Relu", ["g2"], ["r2"], name="relu2"),
             helper.make_node("Gemm", ["r2", "w3", "b3"], ["y"], transB=1, name="fc3")]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 20])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


class _Calibration(ort_quantization.CalibrationDataReader):
    def __init__(self, shape, rng, frames=32):
        self.frames = iter([{"x": rng.normal(size=shape).astype(np.float32)} for _ in range(frames)])

    def get_next(self):
        return next(self.frames, None)


def quantized(float_model: onnx.ModelProto, shape, tmp_path, per_channel: bool, seed: int):
    """ONNX Runtime's QDQ quantization of `float_model`: uint8 activations (asymmetric), int8 weights."""
    src, dst = tmp_path / "float.onnx", tmp_path / "qdq.onnx"
    onnx.save(float_model, str(src))
    ort_quantization.quantize_static(str(src), str(dst), _Calibration(shape, np.random.default_rng(seed)),
                                     quant_format=ort_quantization.QuantFormat.QDQ,
                                     activation_type=ort_quantization.QuantType.QUInt8,
                                     weight_type=ort_quantization.QuantType.QInt8, per_channel=per_channel)
    return dst


CASES = [("cnn", True, None), ("cnn", False, {"defaults": {"PE": 1, "SIMD": 1}}), ("mlp", True, None),
         ("mlp", False, {"defaults": {"PE": "max", "SIMD": "max"}})]


@pytest.mark.parametrize("kind,per_channel,folding", CASES, ids=[f"{c[0]}-{'perch' if c[1] else 'pertensor'}" for c in CASES])
def test_onnxruntime_quantized_model_bit_exact(kind, per_channel, folding, tmp_path):
    rng = np.random.default_rng(11)
    shape = (1, 3, 8, 8) if kind == "cnn" else (1, 20)
    path = quantized(float_cnn(rng) if kind == "cnn" else float_mlp(rng), shape, tmp_path, per_channel, seed=12)
    original = onnx.load(str(path))
    zero_points = [numpy_helper.to_array(t) for t in original.graph.initializer if t.name.endswith("zero_point")
                   and t.data_type == TensorProto.UINT8]
    assert any(int(z) != 0 for z in zero_points), "expected asymmetric activations"
    if kind == "cnn":  # an odd zero point: QuantizeLinear's rounding order differs from qonnx Quant's on ties
        assert any(int(z) % 2 == 1 for z in zero_points)
    lowered = lower_model(load_model(path))
    assert len(lowered.network.layers) == 3  # the re-quantized Reshape does not end the hardware
    x = np.random.default_rng(13).normal(scale=1.5, size=(24,) + shape[1:]).astype(np.float32)
    x[0] = 50.0  # beyond the calibrated input range: every element saturates
    x[1] = -50.0
    report = build(path, tmp_path / "design", BuildOptions(folding_spec=folding))
    if kind == "cnn":
        assert report["layers"][0]["conv"]["pad_level"] == lowered.input_quantizer.zeropt != 0
    result = run_design(tmp_path / "design", x, p_in_gap=0.3, p_out_stall=0.3, seed=2)
    np.testing.assert_array_equal(result.hw_out, lowered.network.golden(result.hw_in))
    y_ort = onnxruntime_execute(original, x)
    if lowered.layer_sources[-1].quantizer_node is not None:  # ends on a quantizer: the same levels, exactly
        np.testing.assert_array_equal(result.outputs.reshape(y_ort.shape), y_ort)
    else:  # the host rescales the last accumulators in float32, in another order than onnxruntime's Gemm
        np.testing.assert_allclose(result.outputs.reshape(y_ort.shape), y_ort, rtol=1e-5, atol=1e-5 * np.abs(y_ort).max())
