"""The host side of a design: small ONNX models that run before and after the hardware.

head.onnx: the model's own float pre-processing up to and including its input quantizer, then
`round((q - offset) / step)`, so it outputs exactly the integers k the hardware takes, computed by qonnx's
own quantizer implementation (bit-exact with the reference by construction).
tail.onnx: turns the hardware's integers back into the real tensor the original graph had at that point
(levels -> value(k); or accumulators -> alpha*acc + beta, the MatMul output), followed by the original
graph's remaining nodes (scale, bias, Softmax, TopK...).
Both are executed with qonnx, one frame at a time, because they may contain qonnx custom ops.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .errors import RtlgenError
from .frontend import LoweredModel, tensor_shape

HW_IN = "hw_in"
HW_OUT = "hw_out"


def _value_info(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _const(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)


def _model(lm: LoweredModel, nodes, inputs, outputs, extra_inits, name: str, opset: int | None = None) -> onnx.ModelProto:
    """A self-contained model of `nodes`: every constant they read becomes an initializer."""
    produced = {o for n in nodes for o in n.output}
    given = {vi.name for vi in inputs} | {t.name for t in extra_inits}
    inits = list(extra_inits)
    for node in nodes:
        for tensor in node.input:
            if not tensor or tensor in produced or tensor in given:
                continue
            value = lm.constant(tensor)
            if value is None:
                raise RtlgenError(f"{node.name} ({node.op_type}): input {tensor} is neither constant nor produced in the {name}")
            inits.append(numpy_helper.from_array(np.asarray(value), tensor))
            given.add(tensor)
    graph = helper.make_graph(list(nodes), name, inputs, outputs, initializer=inits)
    opsets = list(lm.model.opset_import) if opset is None else [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="rtlgen")
    model.ir_version = lm.model.ir_version
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes

    return ModelWrapper(model).transform(InferShapes()).model


def _affine_of_levels(q, shape) -> tuple[np.ndarray, np.ndarray]:
    """(A, B) with value(k) = A*k + B, broadcast to the quantizer's tensor shape (from two valid levels)."""
    k1 = q.k_lo
    k2 = q.k_lo + (2 if q.fmt.kind == "bipolar" else 1)
    v1, v2 = q.value(np.full(shape, k1)), q.value(np.full(shape, k2))
    a = (v2 - v1) / (k2 - k1)
    return np.broadcast_to(a, shape), np.broadcast_to(v1 - a * k1, shape)


def build_head(lm: LoweredModel) -> onnx.ModelProto:
    in_vi = _value_info(lm.input_name, lm.input_shape)
    out_vi = _value_info(HW_IN, lm.hw_in_shape)
    if lm.input_quantizer is not None:
        q = lm.input_quantizer
        a, b = _affine_of_levels(q, lm.hw_in_shape)
        if np.unique(a).size != 1:
            raise RtlgenError(f"{q.node} ({q.op}): the input quantizer's scale varies per element; rtlgen needs one input scale")
        q_out = lm.head_nodes[-1].output[0]
        nodes = list(lm.head_nodes) + [
            helper.make_node("Sub", [q_out, "rtlgen_head_offset"], ["rtlgen_head_shifted"], name="rtlgen_head_sub"),
            helper.make_node("Div", ["rtlgen_head_shifted", "rtlgen_head_step"], ["rtlgen_head_levels"], name="rtlgen_head_div"),
            # the quotient is an integer up to float error; Floor(x + 0.5) snaps it and, unlike Round, exists
            # in every opset the original model may use
            helper.make_node("Add", ["rtlgen_head_levels", "rtlgen_head_half"], ["rtlgen_head_levels_half"], name="rtlgen_head_add"),
            helper.make_node("Floor", ["rtlgen_head_levels_half"], [HW_IN], name="rtlgen_head_floor"),
        ]
        inits = [_const("rtlgen_head_offset", b), _const("rtlgen_head_step", a.ravel()[0]), _const("rtlgen_head_half", 0.5)]
        return _model(lm, nodes, [in_vi], [out_vi], inits, "head")
    if lm.input_format is not None:
        fmt = lm.network.input_fmt
        if fmt.kind == "bipolar":
            raise RtlgenError("--input-dtype BIPOLAR: quantize the input in the model (BipolarQuant) instead")
        nodes = [
            helper.make_node("Div", [lm.input_name, "rtlgen_in_scale"], ["rtlgen_in_div"], name="rtlgen_head_div"),
            helper.make_node("Round", ["rtlgen_in_div"], ["rtlgen_in_round"], name="rtlgen_head_round"),
            helper.make_node("Clip", ["rtlgen_in_round", "rtlgen_in_lo", "rtlgen_in_hi"], [HW_IN], name="rtlgen_head_clip"),
        ]
        inits = [_const("rtlgen_in_scale", lm.input_format.scale), _const("rtlgen_in_lo", float(fmt.min)),
                 _const("rtlgen_in_hi", float(fmt.max))]
        return _model(lm, nodes, [in_vi], [out_vi], inits, "head", opset=13)  # Round (half to even) needs >= 11
    return _model(lm, [helper.make_node("Identity", [lm.input_name], [HW_IN], name="rtlgen_head_identity")],
                  [in_vi], [out_vi], [], "head")


def tail_input_shape(lm: LoweredModel) -> tuple[int, ...]:
    src = lm.layer_sources[-1]
    if src.quantizer_node is not None:
        return tensor_shape(lm.model, src.quantizer_node.output[0]) or (1, lm.network.out_elems)
    return src.matmul_out_shape


def build_tail(lm: LoweredModel) -> onnx.ModelProto:
    src = lm.layer_sources[-1]
    shape = tail_input_shape(lm)
    in_vi = _value_info(HW_OUT, shape)
    if src.quantizer_node is not None:
        a, b = _affine_of_levels(src.quantizer, shape)
        boundary = src.quantizer_node.output[0]
    else:
        a = src.alpha.reshape(shape)
        b = src.beta.reshape(shape)
        boundary = src.matmul.output[0]
    nodes = [
        helper.make_node("Mul", [HW_OUT, "rtlgen_tail_scale"], ["rtlgen_tail_scaled"], name="rtlgen_tail_mul"),
        helper.make_node("Add", ["rtlgen_tail_scaled", "rtlgen_tail_offset"], [boundary], name="rtlgen_tail_add"),
    ] + list(lm.tail_nodes)
    out = lm.model.graph.output[0]
    inits = [_const("rtlgen_tail_scale", a), _const("rtlgen_tail_offset", b)]
    return _model(lm, nodes, [in_vi], [out], inits, "tail")


def execute_frames(model: onnx.ModelProto, frames: np.ndarray) -> np.ndarray:
    """Run a host model with qonnx on each frame (batch axis first); returns outputs stacked on axis 0."""
    import warnings

    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    wrapper = ModelWrapper(model)
    in_name = model.graph.input[0].name
    out_name = model.graph.output[0].name
    in_shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    outs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for frame in frames:
            x = np.asarray(frame, dtype=np.float32).reshape(in_shape)
            outs.append(np.asarray(execute_onnx(wrapper, {in_name: x})[out_name]))
    return np.stack(outs)
