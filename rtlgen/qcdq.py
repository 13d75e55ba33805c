"""QCDQ models: quantizers written as QuantizeLinear / Clip / DequantizeLinear, converted to qonnx Quant nodes.

Brevitas' `export_onnx_qcdq` and ONNX Runtime's QDQ format express each quantizer in standard ONNX:
`DequantizeLinear(Clip(QuantizeLinear(x, s, z), lo, hi), s, z)` for activations and weights (the Clip only
where the range is narrower than the integer type), or `DequantizeLinear(w_int, s, z)` on an integer
initializer. qonnx's `QCDQToQuant` fuses each into one `Quant` node (round half to even, as QuantizeLinear
rounds), after which the frontend sees the QONNX model it knows.

That transformation asserts on some inputs and silently skips or misreads others, so every pattern is checked
first (`qcdq_offences`) for what keeps the conversion exact:
- scales and zero points are constants, the same on both sides of a pair, one zero point per tensor (an
  asymmetric activation's, as ONNX Runtime quantizes them, becomes the Quant node's zero point);
- a Clip's bounds are constants spanning exactly the range of one bit width of the integer type's signedness
  (signed, signed narrow or unsigned): the fused Quant's range is the one its bit width implies, so Clip(0, 6)
  would silently become 0..7;
- every QuantizeLinear feeds only DequantizeLinears (directly or through one Clip): integer operators
  (QLinearConv, MatMulInteger, ...) are the other ONNX quantization format, not this one.
No QuantizeLinear/DequantizeLinear may remain after the conversion. `rtlgen verify` runs the original QCDQ
graph itself in onnxruntime as the reference for the converted model's outputs.
"""
from __future__ import annotations

import warnings

import numpy as np
import onnx

from .errors import Offence, RtlgenError, UnsupportedModelError
from .onnx_eval import initializer_arrays

QCDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}
INTEGER_OPERATOR_OPS = {"QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger", "QLinearAdd", "QLinearMul",
                        "DynamicQuantizeLinear"}
_INTEGER_TYPES = {onnx.TensorProto.INT8: True, onnx.TensorProto.UINT8: False, onnx.TensorProto.INT16: True,
                  onnx.TensorProto.UINT16: False, onnx.TensorProto.INT32: True}


def is_rounding_stage(node: onnx.NodeProto) -> bool:
    """Whether `node` is the rounding half of a Quant pair `_round_before_zero_point` split (by its name in the
    converted model, kept in the doc string once qonnx's cleanup renames it)."""
    return node.op_type == "Quant" and (node.name.endswith(ROUNDING_STAGE_SUFFIX) or
                                        (node.doc_string or "").endswith(ROUNDING_STAGE_SUFFIX))


def is_qcdq(model: onnx.ModelProto) -> bool:
    """Whether the model writes any quantizer as QuantizeLinear/DequantizeLinear."""
    return any(node.op_type in QCDQ_OPS for node in model.graph.node)


def _name(node: onnx.NodeProto) -> str:
    return node.name or node.output[0]


def _users(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    return users


def valid_clip_range(lo: int, hi: int, signed: bool) -> bool:
    """Whether [lo, hi] is exactly the range of one bit width: -2^(b-1)..2^(b-1)-1 or its narrow form
    -(2^(b-1)-1)..2^(b-1)-1 when signed, 0..2^b-1 when unsigned."""
    if hi < 1:
        return False
    if not signed:
        return lo == 0 and (hi + 1) & hi == 0
    return (hi + 1) & hi == 0 and lo in (-(hi + 1), -hi)


class _Checker:
    """Collects the offences of one model's QCDQ patterns (see the module doc)."""

    def __init__(self, model: onnx.ModelProto):
        self.graph = model.graph
        self.inits = initializer_arrays(model.graph)
        self.init_types = {t.name: t.data_type for t in model.graph.initializer}
        self.users = _users(model.graph)
        self.producer = {out: node for node in model.graph.node for out in node.output}
        self.offences: list[Offence] = []

    def refuse(self, node: onnx.NodeProto, why: str) -> None:
        self.offences.append(Offence(_name(node), node.op_type, why))

    def scale_and_zero(self, node: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray] | None:
        """The node's constant scale and zero point, or None (offence recorded)."""
        if len(node.input) < 3 or not node.input[2]:
            self.refuse(node, "no zero point input; export it explicitly (a zero-point initializer of the integer type)")
            return None
        scale, zero = self.inits.get(node.input[1]), self.inits.get(node.input[2])
        if scale is None or zero is None:
            self.refuse(node, "scale and zero point must be initializers (constants)")
            return None
        if np.unique(zero).size != 1:
            self.refuse(node, f"zero points {np.ravel(zero)[:4].tolist()} differ per channel; only one zero point per "
                              "tensor maps to integer dataflow (quantize per-channel weights symmetrically)")
            return None
        block = next((a.i for a in node.attribute if a.name == "block_size"), 0)
        if block:
            self.refuse(node, f"blocked quantization (block_size {block}) is not supported; use per-tensor or per-channel")
            return None
        return scale, zero

    def check_quantize(self, q: onnx.NodeProto) -> None:
        pair = self.scale_and_zero(q)
        if pair is None:
            return
        zero_type = self.init_types.get(q.input[2])
        if zero_type not in _INTEGER_TYPES:
            self.refuse(q, f"integer type {onnx.TensorProto.DataType.Name(zero_type)} is not int8/uint8/int16/uint16/int32")
            return
        users = self.users.get(q.output[0], [])
        if len(users) == 1 and users[0].op_type == "Clip":
            self.check_clip(users[0], signed=_INTEGER_TYPES[zero_type])
            users = self.users.get(users[0].output[0], [])
        wrong = [u for u in users if u.op_type != "DequantizeLinear"]
        if wrong or not users:
            what = ", ".join(f"{_name(u)} ({u.op_type})" for u in wrong) or "nothing"
            self.refuse(q, f"feeds {what}, not a DequantizeLinear: QCDQ needs every QuantizeLinear followed by "
                           "DequantizeLinear (integer-operator models, QLinearConv/MatMulInteger, are not supported)")
            return
        for dq in users:
            self.check_same_parameters(q, dq)

    def check_clip(self, clip: onnx.NodeProto, signed: bool) -> None:
        bounds = [self.inits.get(name) if name else None for name in list(clip.input[1:3]) + [""] * (3 - len(clip.input))]
        if any(b is None or np.size(b) != 1 for b in bounds):
            self.refuse(clip, "bounds between QuantizeLinear and DequantizeLinear must be scalar initializers")
            return
        lo, hi = (int(np.ravel(b)[0]) for b in bounds)
        if not valid_clip_range(lo, hi, signed):
            kind = "signed (-2^(b-1)..2^(b-1)-1, or narrow from -(2^(b-1)-1))" if signed else "unsigned (0..2^b-1)"
            self.refuse(clip, f"range [{lo}, {hi}] is not the full range of a {kind} bit width; a quantizer's "
                              "clip must be its bit width's range")

    def check_same_parameters(self, q: onnx.NodeProto, dq: onnx.NodeProto) -> None:
        pair = self.scale_and_zero(dq)
        if pair is None:
            return
        q_scale = self.inits[q.input[1]]
        axis = lambda n: next((a.i for a in n.attribute if a.name == "axis"), 1)  # noqa: E731
        if q_scale.shape != pair[0].shape or np.any(q_scale != pair[0]) or (q_scale.size > 1 and axis(q) != axis(dq)):
            self.refuse(dq, f"scale differs from its QuantizeLinear {_name(q)}'s; a QCDQ pair must share scale, zero "
                            "point and axis")

    def check_dequantize(self, dq: onnx.NodeProto) -> None:
        source = self.producer.get(dq.input[0])
        if source is not None and source.op_type == "Clip":
            source = self.producer.get(source.input[0])
        if source is not None and source.op_type == "QuantizeLinear":
            return  # checked with its QuantizeLinear
        if dq.input[0] in self.inits:
            if self.init_types.get(dq.input[0]) not in _INTEGER_TYPES:
                self.refuse(dq, "dequantizes an initializer that is not of an integer type")
            else:
                self.scale_and_zero(dq)
            return
        self.refuse(dq, f"reads {dq.input[0]}, which is neither a QuantizeLinear's output nor an integer initializer")


def qcdq_offences(model: onnx.ModelProto) -> list[Offence]:
    """Every QCDQ pattern in `model` that the conversion to Quant would not keep exact (see the module doc)."""
    checker = _Checker(model)
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear":
            checker.check_quantize(node)
        elif node.op_type == "DequantizeLinear":
            checker.check_dequantize(node)
        elif node.op_type in INTEGER_OPERATOR_OPS:
            checker.refuse(node, "integer-operator (QOperator) quantization is not supported; export QDQ/QCDQ "
                                 "(QuantizeLinear/DequantizeLinear around float operators) or QONNX")
    return checker.offences


def _initializer_dequantizers_to_quant(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy where every DequantizeLinear of an integer initializer (ONNX Runtime's weights and biases) is a Quant
    node of the dequantized values (float32), with its scale and zero point shaped to broadcast against them.
    qonnx 1.0.0's QCDQToQuant does this itself, but subtracts the zero point in the integer type (a uint8
    bias 0 with zero point 174 becomes 82) and multiplies per-axis scales before shaping them."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    inits = {t.name: t for t in model.graph.initializer}
    for index, node in enumerate(model.graph.node):
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            continue
        levels = onnx.numpy_helper.to_array(inits[node.input[0]])
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1) % max(1, levels.ndim)
        shape = [1] * levels.ndim
        params = []
        for slot in (1, 2):
            value = onnx.numpy_helper.to_array(inits[node.input[slot]]).astype(np.float64)
            if value.size > 1:
                shape[axis] = value.size
                value = value.reshape(shape)
            params.append(value)
        scale, zero = params
        real = ((levels.astype(np.int64) - zero) * scale).astype(np.float32)
        tag = node.name or node.output[0]
        names = [f"{tag}_rtlgen_{what}" for what in ("values", "scale", "zero_point", "bit_width")]
        bits = np.float32(8 * levels.dtype.itemsize)
        for name, value in zip(names, (real, scale.astype(np.float32), zero.astype(np.float32), bits)):
            model.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        signed = int(np.issubdtype(levels.dtype, np.signedinteger))
        model.graph.node[index].CopyFrom(onnx.helper.make_node(
            "Quant", names, [node.output[0]], name=tag, domain="qonnx.custom_op.general", signed=signed, narrow=0,
            rounding_mode="ROUND"))
    return model


def to_quant(model: onnx.ModelProto, label: str = "model") -> onnx.ModelProto:
    """`model` with every QCDQ pattern fused into a qonnx Quant node; UnsupportedModelError listing every pattern
    that would not convert exactly."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.transformation.qcdq_to_qonnx import QCDQToQuant

    offences = qcdq_offences(model)
    if offences:
        raise UnsupportedModelError(offences)
    model = _initializer_dequantizers_to_quant(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            wrapper = ModelWrapper(onnx.ModelProto.FromString(model.SerializeToString()))
            wrapper = wrapper.transform(InferShapes()).transform(QCDQToQuant())
        except Exception as exc:  # qonnx asserts on patterns it does not expect
            raise RtlgenError(f"qonnx could not convert the QCDQ quantizers of {label} to Quant nodes: "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    left = [Offence(_name(n), n.op_type, "left unconverted by qonnx's QCDQToQuant (an unexpected pattern); "
                                         "export with Brevitas export_onnx_qcdq or as QONNX")
            for n in wrapper.model.graph.node if n.op_type in QCDQ_OPS]
    if left:
        raise UnsupportedModelError(left)
    return _round_before_zero_point(_float_quant_parameters(wrapper.model))


def _float_quant_parameters(model: onnx.ModelProto) -> onnx.ModelProto:
    """Quant nodes with float32 scale, zero point and bit width, as qonnx exports them (the conversion keeps the
    integer zero-point tensors of the QCDQ pairs, which onnxruntime's Quant rewrite cannot take)."""
    inits = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "Quant":
            continue
        for slot in range(1, len(node.input)):
            tensor = inits.get(node.input[slot])
            if tensor is None or tensor.data_type == onnx.TensorProto.FLOAT:
                continue
            name = f"{node.input[slot]}_rtlgen_float"
            if name not in inits:
                value = onnx.numpy_helper.to_array(tensor).astype(np.float32)
                inits[name] = onnx.numpy_helper.from_array(value, name)
                model.graph.initializer.append(inits[name])
            node.input[slot] = name
    return model


ROUNDING_STAGE_SUFFIX = "_rtlgen_rounding"  # name of the first Quant of a split pair


def _round_before_zero_point(model: onnx.ModelProto) -> onnx.ModelProto:
    """QuantizeLinear rounds x / scale and then adds the zero point; qonnx's Quant rounds x / scale + zero point.
    With round half to even the two differ on ties when the zero point is odd (24.5 + 3 rounds to 28, but
    round(24.5) + 3 is 27). So each fused Quant of a dynamic tensor with a nonzero zero point becomes two: the
    rounding, a Quant with zero point 0 two bits wider than the range can reach (so it never clips first), and
    then the original Quant, whose input is on the integer grid (its rounding has nothing left to do). The
    frontend reads the pair as one quantizer that rounds first (`IntQuantizer.round_first`)."""
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        zero = inits.get(node.input[2]) if node.op_type == "Quant" and len(node.input) > 3 else None
        if zero is None or node.input[0] in inits or not np.any(zero != 0):
            nodes.append(node)
            continue
        bits = int(np.ravel(inits[node.input[3]])[0])
        tag = node.name or node.output[0]
        wide, zero_name, rounded = f"{tag}_rtlgen_round_bits", f"{tag}_rtlgen_round_zero", f"{tag}_rtlgen_rounded"
        model.graph.initializer.extend([onnx.numpy_helper.from_array(np.float32(min(bits + 2, 32)), wide),
                                        onnx.numpy_helper.from_array(np.float32(0), zero_name)])
        rounding = next((a.s.decode() for a in node.attribute if a.name == "rounding_mode"), "ROUND")
        first = onnx.helper.make_node("Quant", [node.input[0], node.input[1], zero_name, wide], [rounded],
                                      name=f"{tag}{ROUNDING_STAGE_SUFFIX}", domain=node.domain, signed=1, narrow=0,
                                      rounding_mode=rounding)
        node.input[0] = rounded
        nodes.extend([first, node])
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model
