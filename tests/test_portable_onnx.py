"""qonnx's quantizer ops rewritten into standard ONNX (rtlgen/portable_onnx.py) compute exactly what qonnx
computes, in onnxruntime: every rounding mode at ties and beyond the clip range, 1-bit signed and bipolar
quantizers, MultiThreshold, opset-9 models raised to 11, and the host heads and tails of real models."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import shared_model
from rtlgen.frontend import InputFormat, load_model, lower_model
from rtlgen.host import build_head, build_tail, execute_frames
from rtlgen.portable_onnx import is_standard, session, to_standard_onnx

QONNX = "qonnx.custom_op.general"


def qonnx_run(model, x: np.ndarray) -> np.ndarray:
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return execute_onnx(ModelWrapper(model), {"x": x})["y"]


def ort_run(model, x: np.ndarray) -> np.ndarray:
    standard = to_standard_onnx(model)
    assert standard is not None and is_standard(standard)
    return session(standard).run(["y"], {"x": x})[0]


def one_node_model(node, inits, shape, opset: int = 13):
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
                              initializer=[numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(QONNX, 1)])


# values around every tie of a step 0.25 grid, exact ties included, and far outside the clip range
TIES = np.concatenate([np.arange(-40, 40) * 0.125, np.arange(-40, 40) * 0.125 + 1e-4, [-1e6, 1e6, -0.0]])
X = np.asarray(TIES, dtype=np.float32).reshape(1, -1)


@pytest.mark.parametrize("mode", ["ROUND", "HALF_EVEN", "CEIL", "FLOOR", "UP", "DOWN", "HALF_UP", "HALF_DOWN"])
@pytest.mark.parametrize("signed,narrow,bits", [(1, 0, 4), (1, 1, 3), (0, 0, 4), (0, 1, 2), (1, 0, 1)])
@pytest.mark.parametrize("opset", [9, 13])
def test_quant_matches_qonnx(mode, signed, narrow, bits, opset):
    node = helper.make_node("Quant", ["x", "scale", "zeropt", "bits"], ["y"], domain=QONNX, name="q",
                            signed=signed, narrow=narrow, rounding_mode=mode)
    model = one_node_model(node, {"scale": 0.25, "zeropt": 0.0 if signed else 1.0, "bits": float(bits)}, list(X.shape), opset)
    want, got = qonnx_run(model, X), ort_run(model, X)
    assert want.dtype == got.dtype and np.array_equal(want, got), (want - got)


def test_bipolar_quant_matches_qonnx():
    node = helper.make_node("BipolarQuant", ["x", "scale"], ["y"], domain=QONNX, name="b")
    model = one_node_model(node, {"scale": 0.5}, list(X.shape))
    assert np.array_equal(qonnx_run(model, X), ort_run(model, X))


@pytest.mark.parametrize("layout,shape", [("NC", [2, 3]), ("NCHW", [1, 3, 2, 2]), ("NHWC", [1, 2, 2, 3]),
                                          ("", [1, 2, 3]), ("", [1, 3, 2, 2])])  # no layout: qonnx guesses NWC, NCHW
def test_multithreshold_matches_qonnx(layout, shape):
    thresholds = np.array([[-1.0, 0.0, 0.5], [0.0, 0.0, 2.0], [-3.0, 1.0, 1.5]])
    layout_attr = {"data_layout": layout} if layout else {}
    node = helper.make_node("MultiThreshold", ["x", "t"], ["y"], domain=QONNX, name="m", out_scale=2.0,
                            out_bias=-3.0, **layout_attr)
    model = one_node_model(node, {"t": thresholds}, shape, opset=11)
    x = np.random.default_rng(0).choice([-3.0, -1.0, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5], size=shape).astype(np.float32)
    assert np.array_equal(qonnx_run(model, x), ort_run(model, x))


@pytest.mark.parametrize("name,input_format", [
    ("tfc_w1a1", None), ("tfc_w2a2", None), ("tfc_w1a1_finnonnx", None), ("kws_w3a3_mlperftiny", None),
    ("jettagging_qkeras_w6a6", InputFormat("INT16", 1 / 256)), ("radioml_vgg10_w8a8", None)])
def test_host_models_of_real_models_match_qonnx(name, input_format):
    """Each model's head on inputs of many magnitudes (and on a fine grid, where ties are likely after the
    head's affine pre-processing), its tail on integer frames: onnxruntime on the standard form == qonnx."""
    lowered = lower_model(load_model(shared_model(name)), input_format=input_format)
    rng = np.random.default_rng(1)
    for model, kind in ((build_head(lowered), "head"), (build_tail(lowered), "tail")):
        shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
        if kind == "head":
            x = rng.standard_normal((24, *shape[1:])) * rng.choice([0.01, 1, 30], size=(24,) + (1,) * (len(shape) - 1))
            x = np.concatenate([x, np.round(x * 512) / 512]).astype(np.float32)
        else:
            x = rng.integers(-40, 40, size=(16, *shape[1:])).astype(np.float32)
        standard = to_standard_onnx(model)
        assert standard is not None and is_standard(standard), f"{name} {kind} has no standard form"
        assert np.array_equal(execute_frames(standard, x), execute_frames(model, x)), f"{name} {kind}"
