"""Hostile and malformed models: each is refused with one line naming the node/op/option and the fix, exit
code 2, no traceback, and no output folder (built with onnx.helper here, so each case is exactly one flaw)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from test_cli import assert_user_error, rtlgen

QDOMAIN = "qonnx.custom_op.general"


def _const(name, value, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def mlp(*, in_shape=(1, 4), act_bits=4.0, w_bits=4.0, zeropt=0.0, rounding="ROUND", scale_input=False,
        extra_nodes=(), dynamic_batch=False, no_shape=False) -> onnx.ModelProto:
    """x -> Quant(8b) -> MatMul(Quant(W1)) -> Relu -> Quant(act) -> MatMul(Quant(W2)) -> y, one flaw at a time."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Quant", ["x", "s_in", "z0", "b8"], ["xq"], domain=QDOMAIN, signed=1, narrow=0, rounding_mode="ROUND", name="Quant_in"),
        helper.make_node("Quant", ["w1", "s_w", "zw", "bw"], ["w1q"], domain=QDOMAIN, signed=1, narrow=1, rounding_mode="ROUND", name="Quant_w1"),
        helper.make_node("MatMul", ["xq", "w1q"], ["h"], name="MatMul_0"),
        helper.make_node("Relu", ["h"], ["hr"], name="Relu_0"),
        helper.make_node("Quant", ["hr", "s_a" if not scale_input else "s_dyn", "za", "ba"], ["hq"], domain=QDOMAIN, signed=0,
                         narrow=0, rounding_mode=rounding, name="Quant_act"),
        helper.make_node("Quant", ["w2", "s_w", "z0", "b4"], ["w2q"], domain=QDOMAIN, signed=1, narrow=1, rounding_mode="ROUND", name="Quant_w2"),
        helper.make_node("MatMul", ["hq", "w2q"], ["y"], name="MatMul_1"),
        *extra_nodes,
    ]
    inits = [_const("s_in", 0.05), _const("z0", 0.0), _const("b8", 8.0), _const("b4", 4.0), _const("w1", rng.normal(size=(in_shape[-1], 6))),
             _const("s_w", 0.1), _const("zw", 0.0), _const("bw", w_bits), _const("s_a", 0.25), _const("za", zeropt),
             _const("ba", act_bits), _const("w2", rng.normal(size=(6, 3)))]
    if no_shape:
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)
    else:
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N" if dynamic_batch else in_shape[0], *in_shape[1:]])
    inputs = [x] + ([helper.make_tensor_value_info("s_dyn", TensorProto.FLOAT, [])] if scale_input else [])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "hostile", inputs, [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QDOMAIN, 1)])
    model.ir_version = 8
    return model


def _build(tmp_path, model):
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    return rtlgen("build", path, "-o", tmp_path / "out")


def test_the_clean_model_builds(tmp_path):
    """The base model is fine, so each case below fails for its one flaw only."""
    code, out, err = _build(tmp_path, mlp())
    assert code == 0, err


@pytest.mark.parametrize("flaw,needles", [
    ({"dynamic_batch": True}, ["x", "shape"]),
    ({"no_shape": True}, ["x", "shape"]),
    ({"zeropt": 0.5}, ["Quant_act", "zero point"]),  # a fractional one (an integer zero point is supported)
    ({"act_bits": 12.0}, ["Quant_act", "12-bit", "at most 8"]),
    ({"w_bits": 12.0}, ["Quant_w1", "at most 8"]),
    ({"act_bits": 2.5}, ["Quant_act", "bit width"]),
    ({"rounding": "STOCHASTIC"}, ["Quant_act", "rounding mode"]),
    ({"scale_input": True}, ["Quant_act", "s_dyn", "constant"]),
])
def test_flawed_models_are_refused(flaw, needles, tmp_path):
    assert_user_error(*_build(tmp_path, mlp(**flaw)), *needles)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp-*"))


def test_unsupported_ops_inside_the_network_are_all_listed(tmp_path):
    """Two unsupported ops in the hardware part: one message lists both."""
    base = mlp()
    nodes = list(base.graph.node)
    relu = next(i for i, n in enumerate(nodes) if n.op_type == "Relu")
    nodes[relu] = helper.make_node("Softsign", ["h"], ["hr"], name="Softsign_0")
    base.graph.ClearField("node")
    base.graph.node.extend(nodes[:relu] + [nodes[relu]] + nodes[relu + 1:])
    # and a second one: replace the input quantizer's Relu-free path by an Erf before MatMul_0
    first = base.graph.node[2]
    erf = helper.make_node("Erf", ["xq"], ["xe"], name="Erf_0")
    first.input[0] = "xe"
    base.graph.node.insert(2, erf)
    assert_user_error(*_build(tmp_path, base), "Softsign_0", "Erf_0")


def test_empty_file_and_directory_as_model(tmp_path):
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    assert_user_error(*rtlgen("build", empty, "-o", tmp_path / "o"), "empty.onnx")
    assert_user_error(*rtlgen("build", tmp_path, "-o", tmp_path / "o"), "not found")


def test_output_folder_that_cannot_be_created(tmp_path):
    assert_user_error(*rtlgen("build", "-o", "/proc/rtlgen-out"), "/proc/rtlgen-out")
