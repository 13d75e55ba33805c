"""The host side of a design: small ONNX models that run before and after the hardware.

head.onnx: the model's own float pre-processing up to and including its input quantizer, then
`round((q - offset) / step)`, so it outputs exactly the integers k the hardware takes, computed by qonnx's
own quantizer implementation (bit-exact with the reference by construction), then puts them in stream
order (a Gather: feature maps stream channels-last, see `rtlgen.stream_order`).
tail.onnx: puts the hardware's output frame back into the model's layout and turns the integers into the
real tensor the original graph had at that point (levels -> value(k); or accumulators -> alpha*acc + beta,
the MatMul/Conv output), followed by the original graph's remaining nodes (scale, bias, Softmax, TopK...).
A build writes both with their qonnx quantizer ops rewritten into standard ops (`portable`, exact in float32:
`rtlgen.portable_onnx`), which `rtlgen run` and the board driver run in onnxruntime; a node with no standard form
keeps them in qonnx form, run by qonnx.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .errors import RtlgenError
from .frontend import FEATURE_MAP_OPS, LoweredModel
from .quantizers import IntQuantizer, TruncQuantizer
from .portable_onnx import is_standard, session, to_standard_onnx

HW_IN = "hw_in"
HW_IN_STREAM = "hw_in_stream"
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
    """Model input -> the integer frame the hardware takes, (1, in_elems) in stream order."""
    head = _build_head_levels(lm)
    n = int(np.prod(lm.hw_in_shape))
    order = lm.hw_in_order if lm.hw_in_order is not None else np.arange(n)
    nodes, inits = _reorder_nodes(HW_IN, HW_IN_STREAM, order, (1, n), "rtlgen_head_order")
    graph = head.graph
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    del graph.output[:]
    graph.output.append(_value_info(HW_IN_STREAM, (1, n)))
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes

    return ModelWrapper(head).transform(InferShapes()).model


def _build_head_levels(lm: LoweredModel) -> onnx.ModelProto:
    """Model input -> the integer levels in the model's layout (`HW_IN`, shaped like the quantizer output)."""
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
    """The shape of the tensor the hardware's output frame stands for (in the model's layout)."""
    return lm.layer_sources[-1].boundary_shape


def _reorder_nodes(src: str, dst: str, order: np.ndarray, shape, prefix: str) -> tuple[list, list]:
    """Nodes (and their constants) that flatten `src`, pick elements by `order` and give them `shape`."""
    nodes = [
        helper.make_node("Reshape", [src, f"{prefix}_flat_shape"], [f"{prefix}_flat"], name=f"{prefix}_flatten"),
        helper.make_node("Gather", [f"{prefix}_flat", f"{prefix}_order"], [f"{prefix}_gathered"], axis=1, name=f"{prefix}_gather"),
        helper.make_node("Reshape", [f"{prefix}_gathered", f"{prefix}_shape"], [dst], name=f"{prefix}_reshape"),
    ]
    inits = [numpy_helper.from_array(np.array([1, -1], dtype=np.int64), f"{prefix}_flat_shape"),
             numpy_helper.from_array(np.asarray(order, dtype=np.int64), f"{prefix}_order"),
             numpy_helper.from_array(np.asarray(shape, dtype=np.int64), f"{prefix}_shape")]
    return nodes, inits


def build_tail(lm: LoweredModel, output: onnx.ValueInfoProto | None = None) -> onnx.ModelProto:
    """Hardware output frame (stream order) -> the boundary tensor in model layout -> the rest of the model (up to
    `output` when given, else the graph's output). A label selected in hardware is the graph's integer output."""
    src = lm.layer_sources[-1]
    shape = tail_input_shape(lm)
    n = int(np.prod(shape))
    in_vi = _value_info(HW_OUT, (1, n))
    if src.node.op_type in ("TopK", "ArgMax"):  # `--argmax-in-hardware`: the label, as the int64 it is in ONNX
        nodes = [helper.make_node("Cast", [HW_OUT], ["rtlgen_tail_label"], to=TensorProto.INT64, name="rtlgen_tail_cast"),
                 helper.make_node("Reshape", ["rtlgen_tail_label", "rtlgen_tail_label_shape"], [src.boundary],
                                  name="rtlgen_tail_reshape")]
        inits = [numpy_helper.from_array(np.asarray(shape, dtype=np.int64), "rtlgen_tail_label_shape")]
        return _model(lm, nodes, [in_vi], [lm.model.graph.output[0]], inits, "tail")
    # stream element s is flat element out_order[s] of the boundary tensor: gather by the inverse
    inverse = np.empty_like(src.out_order)
    inverse[src.out_order] = np.arange(src.out_order.size)
    nodes, inits = _reorder_nodes(HW_OUT, "rtlgen_tail_levels", inverse, shape, "rtlgen_tail_order")
    if isinstance(src.quantizer, (IntQuantizer, TruncQuantizer)):
        # (k - zero point) * scale, in this order, as qonnx's Quant and ONNX's DequantizeLinear round it in float32
        zero = getattr(src.quantizer, "zeropt", 0)
        scale = np.broadcast_to(np.asarray(src.quantizer.scale, dtype=np.float64), shape)
        nodes += [
            helper.make_node("Add", ["rtlgen_tail_levels", "rtlgen_tail_zero"], ["rtlgen_tail_centred"], name="rtlgen_tail_sub"),
            helper.make_node("Mul", ["rtlgen_tail_centred", "rtlgen_tail_scale"], [src.boundary], name="rtlgen_tail_mul"),
        ]
        inits += [_const("rtlgen_tail_zero", np.full(shape, -float(zero))), _const("rtlgen_tail_scale", scale)]
    else:
        if src.quantizer_node is not None:
            a, b = _affine_of_levels(src.quantizer, shape)
        else:  # accumulators: alpha/beta per output channel (axis 1 of a feature map, the last axis otherwise)
            feature_map = src.node.op_type in FEATURE_MAP_OPS and len(shape) > 2
            channel_shape = (1, -1) + (1,) * (len(shape) - 2) if feature_map else (1,) * (len(shape) - 1) + (-1,)
            a = np.broadcast_to(src.alpha.reshape(channel_shape), shape)
            b = np.broadcast_to(src.beta.reshape(channel_shape), shape)
        levels = "rtlgen_tail_levels"
        if src.quantizer_node is None and src.acc_offset is not None:
            # alpha * (acc + offset) + bias: the integers added first (exact in float32), as the activation decides
            # it; alpha * acc + beta would cancel two large float32 products
            offset = np.broadcast_to(src.acc_offset.reshape(channel_shape), shape)
            b = np.broadcast_to(np.asarray(src.bias, dtype=np.float64).reshape(channel_shape), shape)
            nodes.append(helper.make_node("Add", [levels, "rtlgen_tail_acc_offset"], ["rtlgen_tail_centred"],
                                          name="rtlgen_tail_centre"))
            inits.append(_const("rtlgen_tail_acc_offset", offset))
            levels = "rtlgen_tail_centred"
        nodes += [
            helper.make_node("Mul", [levels, "rtlgen_tail_scale"], ["rtlgen_tail_scaled"], name="rtlgen_tail_mul"),
            helper.make_node("Add", ["rtlgen_tail_scaled", "rtlgen_tail_offset"], [src.boundary], name="rtlgen_tail_add"),
        ]
        inits += [_const("rtlgen_tail_scale", a), _const("rtlgen_tail_offset", b)]
    nodes += list(lm.tail_nodes)
    out = lm.model.graph.output[0] if output is None else output
    return _model(lm, nodes, [in_vi], [out], inits, "tail")


def portable(model: onnx.ModelProto) -> onnx.ModelProto:
    """The standard-ONNX form of a host model where it has one (onnxruntime, and the board, run it), else itself."""
    standard = to_standard_onnx(model)
    return model if standard is None else standard


def execute_frames(model: onnx.ModelProto, frames: np.ndarray) -> np.ndarray:
    """Run a host model on each frame (batch axis first); returns outputs stacked on axis 0.

    A model of standard ops (a build's host models, see `portable`) runs in onnxruntime, tens of microseconds
    a frame; one with qonnx custom ops (as `build_head`/`build_tail` make them: the reference) in qonnx,
    10-40 ms a frame."""
    in_shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    frames = np.asarray(frames, dtype=np.float32)
    if is_standard(model):
        sess = session(model)
        in_name, out_name = model.graph.input[0].name, model.graph.output[0].name
        return np.stack([sess.run([out_name], {in_name: frame.reshape(in_shape)})[0] for frame in frames])
    return _execute_frames_qonnx(model, frames, in_shape)


def _execute_frames_qonnx(model: onnx.ModelProto, frames: np.ndarray, in_shape: list[int]) -> np.ndarray:
    import warnings

    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    wrapper = ModelWrapper(model)
    in_name = model.graph.input[0].name
    out_name = model.graph.output[0].name
    outs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for frame in frames:
            outs.append(np.asarray(execute_onnx(wrapper, {in_name: frame.reshape(in_shape)})[out_name]))
    return np.stack(outs)
