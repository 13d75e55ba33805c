"""Host models in plain ONNX: qonnx's quantizer ops rewritten into standard ops, for onnxruntime.

The host head and tail (rtlgen/host.py) may hold qonnx custom ops: the model's input quantizer in the head, an
output quantizer in the tail. qonnx executes them in numpy one frame at a time (10-40 ms a frame); onnxruntime
runs the same graph in tens of microseconds, and is all a board needs (no qonnx there). `to_standard_onnx`
rewrites each `Quant`, `BipolarQuant` and `MultiThreshold` into the standard ops that compute, in float32 and in the same order,
exactly what qonnx's `int_quant`, `binary_quant` and `multithreshold` compute (`x / scale + zeropt`, clamped,
rounded by the node's mode, `(y - zeropt) * scale`; a count of thresholds reached, scaled and biased). A model
below opset 11 is first raised to 11 by onnx's version converter. The rewrite is exact only if onnxruntime computes each op as IEEE float32 one at a
time, so `session` turns its graph optimizations off (they would fold a Div by a constant into a Mul by its
reciprocal, which rounds differently).

A model with any other non-standard op, non-constant quantizer parameters, or an opset the converter cannot raise
has no standard form here: `to_standard_onnx` returns None and the caller keeps qonnx.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["to_standard_onnx", "is_standard", "session", "STANDARD_DOMAINS"]

STANDARD_DOMAINS = ("", "ai.onnx")
MIN_OPSET = 11  # Round and Clip with min/max inputs


def is_standard(model: onnx.ModelProto) -> bool:
    """Whether every node is a standard ONNX op (onnxruntime runs it without custom kernels)."""
    return all(node.domain in STANDARD_DOMAINS for node in model.graph.node)


def _opset(model: onnx.ModelProto) -> int:
    return max((o.version for o in model.opset_import if o.domain in STANDARD_DOMAINS), default=0)


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


class _Rewriter:
    """Standard nodes replacing one quantizer node; every constant they add is a float32 initializer."""

    def __init__(self, node: onnx.NodeProto, inits: dict[str, np.ndarray]):
        self.node, self.inits = node, inits
        self.nodes: list[onnx.NodeProto] = []
        self.new_inits: list[onnx.TensorProto] = []
        self.prefix = f"rtlgen_std_{node.name or node.output[0]}"
        self.count = 0

    def _name(self) -> str:
        self.count += 1
        return f"{self.prefix}_{self.count}"

    def const(self, value) -> str:
        name = self._name()
        self.new_inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def op(self, op_type: str, *inputs: str, out: str | None = None) -> str:
        out = out or self._name()
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=self._name()))
        return out

    def rounded(self, y: str, mode: str) -> str | None:
        """`y` rounded as qonnx's `resolve_rounding_mode(mode)` does, or None for a mode it does not know."""
        mode = mode.upper()
        if mode in ("ROUND", "HALF_EVEN"):
            return self.op("Round", y)  # ONNX Round is half to even, like np.round
        if mode == "CEIL":
            return self.op("Ceil", y)
        if mode == "FLOOR":
            return self.op("Floor", y)
        sign, mag = self.op("Sign", y), self.op("Abs", y)
        if mode == "UP":
            return self.op("Mul", sign, self.op("Ceil", mag))
        if mode == "DOWN":
            return self.op("Mul", sign, self.op("Floor", mag))
        if mode == "HALF_UP":
            return self.op("Mul", sign, self.op("Floor", self.op("Add", mag, self.const(0.5))))
        if mode == "HALF_DOWN":
            return self.op("Mul", sign, self.op("Ceil", self.op("Sub", mag, self.const(0.5))))
        return None

    def quant(self) -> bool:
        """Quant(x, scale, zeropt, bitwidth) as qonnx's `int_quant`."""
        node = self.node
        if len(node.input) != 4 or any(name not in self.inits for name in node.input[1:]):
            return False
        scale, zeropt, bits = (self.inits[name] for name in node.input[1:])
        if scale.dtype != np.float32 or zeropt.dtype != np.float32 or bits.size != 1:
            return False
        attrs = _attrs(node)
        signed, narrow, bits = bool(attrs.get("signed", 1)), bool(attrs.get("narrow", 0)), int(bits.reshape(-1)[0])
        mode = attrs.get("rounding_mode", b"ROUND")
        mode = mode.decode() if isinstance(mode, bytes) else str(mode)
        y = self.op("Add", self.op("Div", node.input[0], node.input[1]), node.input[2])
        if bits == 1 and signed:  # qonnx maps a 1-bit signed Quant to +-1 (y >= 0 -> +1)
            y = self.op("Where", self.op("Not", self.op("Less", y, self.const(0.0))), self.const(1.0), self.const(-1.0))
        else:
            lo = -(2 ** (bits - 1)) + (1 if narrow else 0) if signed else 0
            hi = 2 ** (bits - 1) - 1 if signed else 2 ** bits - 1 - (1 if narrow else 0)
            y = self.rounded(self.op("Clip", y, self.const(lo), self.const(hi)), mode)
            if y is None:
                return False
        self.op("Mul", self.op("Sub", y, node.input[2]), node.input[1], out=node.output[0])
        return True

    def multithreshold(self, opset: int, rank: int | None) -> bool:
        """MultiThreshold(x, T) as qonnx's `multithreshold`: out_scale * #{t : x >= T[c, t]} + out_bias, the
        channel c on axis 1 (or the layout's C)."""
        node = self.node
        if len(node.input) != 2 or node.input[1] not in self.inits or rank is None:
            return False
        thresholds = self.inits[node.input[1]]
        attrs = _attrs(node)
        layout = attrs.get("data_layout", b"")
        layout = layout.decode() if isinstance(layout, bytes) else str(layout)
        if not layout:  # qonnx guesses the layout from the rank: NC, NWC, NCHW
            layout = {2: "NC", 3: "NWC", 4: "NCHW"}.get(rank, "")
        cdim = layout.index("C") if "C" in layout else 1
        if thresholds.ndim != 2 or not 0 < cdim < rank:
            return False
        # x[..., None] >= T shaped so that its channel axis meets x's and the thresholds run along the new last axis
        shape = [thresholds.shape[0] if d == cdim else 1 for d in range(1, rank)] + [thresholds.shape[1]]
        t = self.const(thresholds.reshape(shape))
        if opset >= 13:
            x = self.op("Unsqueeze", node.input[0], self.int_const([-1]))
        else:
            x = self.op_attrs("Unsqueeze", [node.input[0]], axes=[rank])
        reached = self.op_attrs("Cast", [self.op("Not", self.op("Less", x, t))], to=onnx.TensorProto.FLOAT)
        if opset >= 13:
            count = self.op_attrs("ReduceSum", [reached, self.int_const([-1])], keepdims=0)
        else:
            count = self.op_attrs("ReduceSum", [reached], axes=[-1], keepdims=0)
        scaled = self.op("Mul", count, self.const(float(attrs.get("out_scale", 1.0))))
        self.op("Add", scaled, self.const(float(attrs.get("out_bias", 0.0))), out=node.output[0])
        return True

    def int_const(self, value) -> str:
        name = self._name()
        self.new_inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.int64), name))
        return name

    def op_attrs(self, op_type: str, inputs: list[str], **attrs) -> str:
        out = self._name()
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=self._name(), **attrs))
        return out

    def bipolar_quant(self) -> bool:
        """BipolarQuant(x, scale) as qonnx's `binary_quant`: (x >= 0 ? 1 : -1) * scale."""
        node = self.node
        if len(node.input) != 2 or node.input[1] not in self.inits:
            return False
        y = self.op("Where", self.op("Not", self.op("Less", node.input[0], self.const(0.0))), self.const(1.0),
                    self.const(-1.0))
        self.op("Mul", y, node.input[1], out=node.output[0])
        return True


def _raise_opset(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """`model` at opset MIN_OPSET by onnx's version converter (which updates the standard nodes whose form
    changed), its custom nodes kept as they are; None where the converter fails."""
    from onnx import version_converter

    held = onnx.ModelProto()
    held.CopyFrom(model)
    custom = {}
    for k, node in enumerate(held.graph.node):
        if node.domain not in STANDARD_DOMAINS:  # a stand-in the converter knows (Sum: same inputs, same outputs)
            tag = f"rtlgen_held_{k}"
            custom[tag] = onnx.NodeProto()
            custom[tag].CopyFrom(node)
            node.CopyFrom(helper.make_node("Sum", list(node.input), list(node.output), name=tag))
    kept = [o for o in held.opset_import if o.domain in STANDARD_DOMAINS]
    del held.opset_import[:]
    held.opset_import.extend(kept)
    try:
        converted = version_converter.convert_version(held, MIN_OPSET)
    except Exception:  # the converter raises many kinds; any of them means: keep qonnx
        return None
    for node in converted.graph.node:
        if node.name in custom:
            node.CopyFrom(custom[node.name])
    return converted


def _ranks(model: onnx.ModelProto) -> dict[str, int]:
    """Tensor name -> rank, from the model's value infos, inputs and outputs."""
    infos = list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)
    return {vi.name: len(vi.type.tensor_type.shape.dim) for vi in infos if vi.type.tensor_type.HasField("shape")}


def to_standard_onnx(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """`model` with its Quant/BipolarQuant/MultiThreshold nodes as standard ops (a copy), itself if it has
    none, or None."""
    if is_standard(model):
        return model
    if _opset(model) < MIN_OPSET:
        model = _raise_opset(model)
        if model is None:
            return None
    opset, ranks = _opset(model), _ranks(model)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    nodes, new_inits = [], []
    for node in model.graph.node:
        if node.domain in STANDARD_DOMAINS:
            nodes.append(node)
            continue
        rewriter = _Rewriter(node, inits)
        done = {"Quant": rewriter.quant, "IntQuant": rewriter.quant,
                "BipolarQuant": rewriter.bipolar_quant,
                "MultiThreshold": lambda: rewriter.multithreshold(opset, ranks.get(node.input[0]))}.get(
                    node.op_type, lambda: False)()
        if not done:
            return None
        nodes += rewriter.nodes
        new_inits += rewriter.new_inits
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    out.graph.initializer.extend(new_inits)
    kept = [o for o in out.opset_import if o.domain in STANDARD_DOMAINS]
    del out.opset_import[:]
    out.opset_import.extend(kept)
    return out


def session(model: onnx.ModelProto):
    """An onnxruntime session of a standard model, one thread, graph optimizations off (see the module's
    docstring: each op must round as it is written)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
