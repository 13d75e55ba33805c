"""Frontend: load a QONNX model, check every node up front, and lower it to integer layers.

The model is read as a chain: graph input -> [host head] -> input quantizer -> (layer -> per-element ops ->
quantizer)* -> [host tail], where a layer is a MatMul/Gemm/Conv, a MaxPool on quantized levels, or an average
pool (AveragePool, GlobalAveragePool, spatial ReduceMean: a depthwise convolution with unit weights and weight
scale 1/N, so its divide and the quantizer or qonnx Trunc after it become exact thresholds like any layer's).
Each integer layer is derived, not pattern-matched:

- the layer's input is the previous quantizer's integer k (or the previous layer's accumulator when no
  quantizer sits between them); the ops between must make the layer's input an affine function `a*k + b` of
  k with one scalar `a` (probed numerically; for a convolution `b` must be per channel, and 0 under padding);
- the weights are the weight quantizer's integer levels, with its per-output-channel scale (a Conv's
  (OC, IC, KH, KW) become im2col columns in (kh, kw, ic) order, the sliding window's order);
- so the compute output is `alpha[c]*acc[c] + beta[c]` with `acc = W_int @ k`, and the per-element ops after
  it plus the next quantizer make a monotone map acc -> level per channel, whose steps are found exactly on
  the integers by `thresholds.derive_thresholds` (or, for activations wider than 8 bits behind a fixed-point
  rescale, an exact requantization by `thresholds.derive_requantization`).

Residual blocks: where a quantizer's output is read by two branches that an Add joins again, the chain holds a
`Residual` (its branches are chains themselves, so blocks nest). Each branch is lowered like the main chain and
must end on a quantizer; the join becomes an `AddLayer` whose accumulator is `ma*ka + mb*kb` with the exact
integer ratio ma/mb of the two inputs' scales (`_lower_add`), activated by the per-element ops and quantizer
after the Add like any layer. The layers land in topological order with explicit producers (`layer.inputs`).

Feature maps stream channels-last; `stream_order` position maps follow every element through the layout ops,
so dense weights after a convolution are permuted to the stream order and refused layouts are caught.
All checks collect `Offence`s first and fail once, listing every offending node, before anything is built.
"""
from __future__ import annotations

import re
from fractions import Fraction
from functools import partial
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx

from ip_cores.elements import ElementFormat, signed_width_for

from .errors import Offence, RtlgenError, UnsupportedModelError
from .graph import AddLayer, Conv, DepthwiseLayer, MaxPoolLayer, MVTULayer, Network
from .onnx_eval import (LAYOUT, MONOTONE_ELEMENTWISE, ORIGINAL_NAME_TAG, ChainEvaluator, display_name,
                        initializer_arrays, node_attrs, offence)
from .qcdq import is_qcdq, is_rounding_stage, to_quant
from .quantizers import (ROUNDING_MODES, BipolarQuantizer, IntQuantizer, Quantizer, ThresholdQuantizer,
                         TruncQuantizer, int_range)
from .stream_order import channels_last_positions, stream_order
from .thresholds import derive_requantization, derive_thresholds

QUANT_OPS = {"Quant", "IntQuant", "BipolarQuant", "MultiThreshold", "Trunc"}
MATMUL_OPS = {"MatMul", "Gemm"}
MAX_WEIGHT_BITS = 8
MAX_ACTIVATION_BITS = 8  # a quantizer that becomes thresholds: 2^bits - 1 of them per channel
MAX_INPUT_BITS = 24
# average pools are lowered as depthwise convolutions with unit weights and a 1/N scale (`_pool_weights`)
AVG_POOL_OPS = {"AveragePool", "GlobalAveragePool", "ReduceMean"}
COMPUTE_OPS = MATMUL_OPS | {"Conv"} | AVG_POOL_OPS
FEATURE_MAP_OPS = {"Conv"} | AVG_POOL_OPS  # compute ops whose output is a feature map (channel axis 1)
CHANNELS_LAST_DOMAIN = "qonnx.custom_op.channels_last"
POOL_OPS = {"MaxPool"}
NOT_YET = {
    "FloatQuant": "floating-point quantization (FloatQuant) is outside integer dataflow",
    "Resize": "Resize is not supported",
    "Concat": "Concat (branching graphs) is not supported",
    "DepthToSpace": "DepthToSpace is not supported",
}


@dataclass(frozen=True)
class InputFormat:
    """How float inputs become integers when the model itself does not quantize its input."""

    dtype: str  # qonnx DataType name: INT16, UINT8, BIPOLAR...
    scale: float


def parse_dtype(name: str) -> ElementFormat:
    """ElementFormat of a qonnx DataType name (BIPOLAR, BINARY, INTn, UINTn)."""
    name = name.upper()
    if name == "BIPOLAR":
        return ElementFormat.bipolar()
    if name == "BINARY":
        return ElementFormat.unsigned(1)
    m = re.fullmatch(r"(U?)INT(\d+)", name)
    if not m or not 1 <= int(m.group(2)) <= 64:
        raise ValueError(f"not an integer data type: {name}")
    width = int(m.group(2))
    return ElementFormat.unsigned(width) if m.group(1) else ElementFormat.signed(width)


@dataclass
class LayerSource:
    """Where an integer layer came from in the ONNX graph (for the host tail and for verification)."""

    node: onnx.NodeProto  # the MatMul / Gemm / Conv / MaxPool node
    epilogue: list[onnx.NodeProto]  # per-element ops between the compute node and the quantizer (or the end)
    quantizer_node: onnx.NodeProto | None
    quantizer: Quantizer | None
    alpha: np.ndarray | None  # compute output = alpha * acc + beta, per output channel
    beta: np.ndarray | None
    boundary: str  # the ONNX tensor the layer's output stream stands for (quantizer or compute output)
    boundary_shape: tuple[int, ...]
    out_order: np.ndarray  # for each stream element of the layer's output frame, the flat index in `boundary`
    negated: np.ndarray | None = None  # channels whose weights were negated to make the activation non-decreasing
    pre_activation: object = None  # true accumulators (B, MH) -> the quantizer's real input (B, MH), float64
    level_index: object = None  # true accumulators (B, MH) -> the quantizer's level indices (B, MH)
    # compute output = alpha * (acc + acc_offset) + bias when the input offset is a whole number of steps (a zero
    # point, `_integer_accumulator_offset`): the host tail adds the integers first, as the activation does
    acc_offset: np.ndarray | None = None
    bias: np.ndarray | None = None


@dataclass
class LoweredModel:
    """A checked, cleaned model and everything derived from it."""

    model: onnx.ModelProto  # the cleaned original (what qonnx executes as the reference)
    input_name: str
    input_shape: tuple[int, ...]
    output_name: str
    network: Network
    head_nodes: list[onnx.NodeProto]
    input_quantizer: Quantizer | None  # None when the input is integer by annotation or --input-dtype
    input_format: InputFormat | None  # set when the user supplied the input format
    input_annotation: str | None  # qonnx DataType annotation of the graph input, if integer
    hw_in_shape: tuple[int, ...]  # shape of the integer tensor that enters the hardware (model layout)
    layer_sources: list[LayerSource] = field(default_factory=list)
    tail_nodes: list[onnx.NodeProto] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    constant: object = None  # tensor name -> value for tensors computable from initializers (or None)
    hw_in_order: np.ndarray | None = None  # stream element s = flat element hw_in_order[s] of the head output


# ----------------------------------------------------------------------------------------------- loading

def load_model(path: str | Path) -> onnx.ModelProto:
    """Read and clean a QONNX model with qonnx (shape inference, constant folding except quantizers)."""
    path = Path(path)
    if not path.is_file():
        raise RtlgenError(f"model file {path} not found")
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # protobuf raises several unrelated types for a corrupt file
        raise RtlgenError(f"{path} is not a readable ONNX model ({type(exc).__name__}); export it again") from None
    if not proto.graph.node:
        raise RtlgenError(f"{path} is not an ONNX model with a graph (no nodes found)")
    return clean_model(proto, str(path))


def clean_model(proto: onnx.ModelProto, label: str = "model") -> onnx.ModelProto:
    """qonnx's cleanup of a model as exported, after refusing what cleanup cannot take; QCDQ quantizers are first
    fused into Quant nodes (`rtlgen.qcdq`)."""
    import warnings

    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    if is_qcdq(proto):
        proto = to_quant(proto, label)
    init_names = {i.name for i in proto.graph.initializer}
    graph_inputs = {i.name for i in proto.graph.input} - init_names
    dynamic_params = [(node, name) for node in proto.graph.node if node.op_type in ("Quant", "IntQuant", "BipolarQuant", "MultiThreshold")
                      for name in node.input[1:] if name in graph_inputs]
    if dynamic_params:
        raise UnsupportedModelError([Offence(node.name or node.output[0], node.op_type, f"parameter {name} is a graph input, not a constant; "
                                             "quantizer scales, zero points and bit widths must be initializers") for node, name in dynamic_params])
    # Channels-last custom ops are always refused, and qonnx's shape inference takes about a minute on such models
    # (it prints every shape-compatible stand-in node): refuse them before cleanup, with the ops never supported.
    channels_last = [node for node in proto.graph.node if node.domain == CHANNELS_LAST_DOMAIN]
    if channels_last:
        ops = ", ".join(sorted({node.op_type for node in channels_last}))
        names = ", ".join(node.name or node.output[0] for node in channels_last)
        offences = [Offence(names, ops, f"{len(channels_last)} channels-last custom op(s) ({CHANNELS_LAST_DOMAIN}); "
                                        "export the model channels-first (NCHW, standard ONNX ops): rtlgen streams "
                                        "channels-last itself")]
        raise UnsupportedModelError(offences + [Offence(node.name or node.output[0], node.op_type, NOT_YET[node.op_type])
                                                for node in proto.graph.node if node.op_type in NOT_YET])
    for node in proto.graph.node:  # cleanup renames every node: keep the user's names for messages
        if node.name:
            node.doc_string = ORIGINAL_NAME_TAG + node.name
    for node in proto.graph.node:  # qonnx resolves custom ops by domain; a bare or missing one is common
        if node.op_type in ("Quant", "BipolarQuant", "Trunc", "IntQuant", "MultiThreshold") and (
            node.domain in ("", "qonnx", "onnx.brevitas", "finn", "finn.custom_op.general")
        ):
            node.domain = "qonnx.custom_op.general"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            wrapper = cleanup_model(ModelWrapper(proto))
        except Exception as exc:
            raise RtlgenError(f"qonnx could not clean up {label}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    return wrapper.model


def tensor_shape(model: onnx.ModelProto, name: str) -> tuple[int, ...] | None:
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        if vi.name == name:
            dims = vi.type.tensor_type.shape.dim
            if not vi.type.tensor_type.HasField("shape"):
                return None
            if any(not d.HasField("dim_value") or d.dim_value <= 0 for d in dims):
                return None
            return tuple(d.dim_value for d in dims)
    return None


def tensor_annotation(model: onnx.ModelProto, name: str) -> str | None:
    for qa in model.graph.quantization_annotation:
        if qa.tensor_name == name:
            for kv in qa.quant_parameter_tensor_names:
                if kv.key == "finn_datatype":
                    return kv.value
    return None


# ----------------------------------------------------------------------------------------------- lowering

class _Lowering:
    """One lowering run; holds the cleaned model's lookup tables."""

    def __init__(self, model: onnx.ModelProto, input_format: InputFormat | None, name: str):
        self.model = model
        self.graph = model.graph
        self.input_format = input_format
        self.name = name
        self.inits = initializer_arrays(self.graph)
        self.producer = {o: n for n in self.graph.node for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in self.graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self._const_cache: dict[str, np.ndarray | None] = {}
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 11)
        self._quantizers: dict[str, Quantizer] = {}
        self.offences: list[Offence] = []
        self.evaluator = ChainEvaluator(self.inits, self.quantizer, self.constant)
        self.hw_in_order: np.ndarray | None = None  # set by the first layer (see _input_positions)

    # constants -----------------------------------------------------------------------------------------
    def constant(self, name: str) -> np.ndarray | None:
        """Value of a tensor computable from initializers alone (as qonnx would compute it), else None."""
        if name in self.inits:
            return self.inits[name]
        if name in self._const_cache:
            return self._const_cache[name]
        node = self.producer.get(name)
        value = None
        if node is not None and all((not i) or self.constant(i) is not None for i in node.input):
            from qonnx.core.onnx_exec import execute_node

            context = {i: self.constant(i) for i in node.input if i}
            for o in node.output:
                context[o] = None
            try:
                execute_node(node, context, self.graph, self.opset)
                value = np.asarray(context[name])
            except Exception:
                value = None
        self._const_cache[name] = value
        return value

    # quantizers ----------------------------------------------------------------------------------------
    def quantizer(self, node: onnx.NodeProto) -> Quantizer:
        """Quantizer object of a quantizer node; raises RtlgenError naming the node when it is not usable."""
        key = node.output[0]
        if key not in self._quantizers:
            self._quantizers[key] = self._make_quantizer(node)
        return self._quantizers[key]

    def _const_input(self, node: onnx.NodeProto, idx: int, what: str) -> np.ndarray:
        value = self.constant(node.input[idx]) if len(node.input) > idx and node.input[idx] else None
        if value is None:
            raise RtlgenError(f"{display_name(node)} ({node.op_type}): {what} is not a constant; export it as an initializer")
        return np.asarray(value)

    def _make_quantizer(self, node: onnx.NodeProto) -> Quantizer:
        a = node_attrs(node)
        label = f"{display_name(node)} ({node.op_type})"
        if node.op_type in ("Quant", "IntQuant"):
            scale = self._const_input(node, 1, "scale").astype(np.float64)
            zeropt = self._const_input(node, 2, "zero point")
            bits = self._const_input(node, 3, "bit width")
            if np.unique(zeropt).size != 1 or float(zeropt.ravel()[0]) != int(zeropt.ravel()[0]):
                raise RtlgenError(f"{label}: zero point {zeropt.ravel()[:4].tolist()} is not one integer; per-channel "
                                  f"or fractional zero points do not map to integer dataflow")
            if bits.size != 1 or float(bits.ravel()[0]) != int(bits.ravel()[0]) or int(bits.ravel()[0]) < 1:
                raise RtlgenError(f"{label}: bit width {bits.ravel()[:4].tolist()} is not one positive integer")
            if np.any(scale == 0) or not np.all(np.isfinite(scale)):
                raise RtlgenError(f"{label}: scale contains 0 or a non-finite value")
            bitwidth = int(bits.ravel()[0])
            signed, narrow = bool(a.get("signed", 1)), bool(a.get("narrow", 0))
            rounding = a.get("rounding_mode", b"ROUND")
            rounding = rounding.decode() if isinstance(rounding, bytes) else str(rounding)
            if rounding.upper() not in ROUNDING_MODES:
                raise RtlgenError(f"{label}: rounding mode {rounding} is not one qonnx implements")
            zero = int(zeropt.ravel()[0])
            if bitwidth == 1 and signed:
                if zero:
                    raise RtlgenError(f"{label}: a 1-bit signed (bipolar) quantizer with zero point {zero}")
                return IntQuantizer(node.name, node.op_type, ElementFormat.bipolar(), -1, 1, scale=scale,
                                    bitwidth=1, signed=True, narrow=narrow, rounding=rounding.upper())
            lo, hi = int_range(bitwidth, signed, narrow)
            if not lo <= zero <= hi:
                raise RtlgenError(f"{label}: zero point {zero} is outside its {bitwidth}-bit range [{lo}, {hi}]")
            fmt = ElementFormat.signed(bitwidth) if signed else ElementFormat.unsigned(bitwidth)
            rounder = self.producer.get(node.input[0])
            round_first = rounder is not None and is_rounding_stage(rounder)
            if round_first and not np.array_equal(self._const_input(rounder, 1, "scale"), self._const_input(node, 1, "scale")):
                raise RtlgenError(f"{label}: its rounding stage {display_name(rounder)} has another scale")
            return IntQuantizer(node.name, node.op_type, fmt, lo, hi, scale=scale, bitwidth=bitwidth,
                                signed=signed, narrow=narrow, rounding=rounding.upper(), zeropt=zero,
                                round_first=round_first)
        if node.op_type == "Trunc":
            return self._trunc_quantizer(node, a, label)
        if node.op_type == "BipolarQuant":
            scale = self._const_input(node, 1, "scale").astype(np.float64)
            return BipolarQuantizer(node.name, node.op_type, ElementFormat.bipolar(), -1, 1, scale=scale)
        if node.op_type == "MultiThreshold":
            thresholds = self._const_input(node, 1, "thresholds").astype(np.float64)
            if thresholds.ndim != 2:
                raise RtlgenError(f"{label}: thresholds must be 2-D (channels, steps)")
            if a.get("data_layout", b"NCHW") not in (b"NCHW", "NCHW", b"NC", "NC"):
                raise RtlgenError(f"{label}: data_layout {a.get('data_layout')} is not supported")
            out_dtype = a.get("out_dtype", b"")
            out_dtype = out_dtype.decode() if isinstance(out_dtype, bytes) else str(out_dtype)
            try:
                fmt = parse_dtype(out_dtype)
            except ValueError:
                raise RtlgenError(f"{label}: out_dtype {out_dtype!r} is not an integer type") from None
            steps = thresholds.shape[1]
            if np.any(np.diff(thresholds, axis=1) < 0):
                raise RtlgenError(f"{label}: thresholds are not sorted per channel")
            k_lo = -1 if fmt.kind == "bipolar" else fmt.min
            k_hi = 1 if fmt.kind == "bipolar" else k_lo + steps
            if fmt.kind == "bipolar" and steps != 1:
                raise RtlgenError(f"{label}: a BIPOLAR MultiThreshold needs exactly one threshold per channel")
            return ThresholdQuantizer(node.name, node.op_type, fmt, k_lo, k_hi, thresholds=thresholds,
                                      out_scale=float(a.get("out_scale", 1.0)), out_bias=float(a.get("out_bias", 0.0)))
        raise RtlgenError(f"{label}: not a quantizer")

    def _custom_op_version(self, node: onnx.NodeProto) -> int | None:
        return next((o.version for o in self.model.opset_import if o.domain == node.domain), None)

    def _trunc_quantizer(self, node: onnx.NodeProto, a: dict, label: str) -> TruncQuantizer:
        """qonnx's Trunc as its version executes it (the model's opset for the node's domain; qonnx takes the
        newest, 2, when the model names none): v1 (x, scale, zero point, in bits, out bits), v2 (x, scale, zero
        point, in bits, out scale, out bits)."""
        version = 1 if self._custom_op_version(node) == 1 else 2
        if len(node.input) != 4 + version:
            raise RtlgenError(f"{label}: {len(node.input)} inputs, but qonnx executes it as Trunc v{version}, which takes "
                              f"{4 + version}; fix the model's opset_import for domain {node.domain}")
        scale = self._const_input(node, 1, "scale").astype(np.float64)
        if np.any(self._const_input(node, 2, "zero point") != 0):
            raise RtlgenError(f"{label}: zero point is not 0; only symmetric quantizers map to integer dataflow")
        bits = [self._const_input(node, i, "bit width") for i in ((3, 4) if version == 1 else (3, 5))]
        if any(b.size != 1 or float(b.ravel()[0]) != int(b.ravel()[0]) or int(b.ravel()[0]) < 1 for b in bits):
            raise RtlgenError(f"{label}: bit widths {[b.ravel()[:2].tolist() for b in bits]} are not positive integers")
        in_bits, out_bits = (int(b.ravel()[0]) for b in bits)
        if np.any(scale <= 0) or not np.all(np.isfinite(scale)):
            raise RtlgenError(f"{label}: scale must be positive and finite")
        rounding = a.get("rounding_mode", b"FLOOR")
        rounding = (rounding.decode() if isinstance(rounding, bytes) else str(rounding)).upper()
        if rounding not in ROUNDING_MODES:
            raise RtlgenError(f"{label}: rounding mode {rounding} is not one qonnx implements")
        if version == 1:
            if in_bits < out_bits:
                raise RtlgenError(f"{label}: input bit width {in_bits} is below the output's {out_bits}")
            signed = self._upstream_signed(node)
            lo, hi = int_range(out_bits, signed, False)
            shift, out_scale, clip = np.asarray(float(in_bits - out_bits)), scale, False
        else:
            out_scale = self._const_input(node, 4, "output scale").astype(np.float64)
            if np.any(out_scale <= 0) or not np.all(np.isfinite(out_scale)):
                raise RtlgenError(f"{label}: output scale must be positive and finite")
            shift = np.round(np.log2(out_scale / scale))
            signed, narrow = bool(a.get("signed", 1)), bool(a.get("narrow", 0))
            lo, hi = int_range(out_bits, signed, narrow)
            clip = True
        fmt = ElementFormat.signed(out_bits) if signed else ElementFormat.unsigned(out_bits)
        return TruncQuantizer(node.name, node.op_type, fmt, lo, hi, scale=out_scale, in_scale=scale, shift=shift,
                              clip=clip, rounding=rounding)

    def _upstream_signed(self, node: onnx.NodeProto) -> bool:
        """Whether the nearest quantizer upstream of `node` is signed (a Trunc v1 has no signed attribute: its
        levels keep the sign of the pooled levels); signed when there is none."""
        name = node.input[0]
        while name in self.producer:
            up = self.producer[name]
            if up.op_type in ("Quant", "IntQuant"):
                return bool(node_attrs(up).get("signed", 1))
            if up.op_type == "BipolarQuant":
                return True
            name = up.input[0]
        return True

    # chain -----------------------------------------------------------------------------------------------
    def dynamic_users(self, tensor: str) -> list[onnx.NodeProto]:
        """The nodes reading `tensor` whose output is not a constant."""
        return [n for n in self.consumers.get(tensor, []) if self.constant(n.output[0]) is None]

    def is_join(self, node: onnx.NodeProto) -> bool:
        """An Add of two computed tensors: where a residual block's branches meet."""
        return node.op_type == "Add" and sum(1 for x in node.input if x and self.constant(x) is None) == 2

    def dynamic_chain(self) -> tuple[str, list]:
        """The graph input and the chain from it to the output: nodes, and a `Residual` for each fork that a
        join Add closes again (its branches are chains themselves, so blocks nest)."""
        graph_inputs = [i for i in self.graph.input if i.name not in self.inits]
        if len(graph_inputs) != 1:
            raise RtlgenError(f"the model has {len(graph_inputs)} graph inputs ({', '.join(i.name for i in graph_inputs)}); rtlgen needs exactly one")
        if len(self.graph.output) != 1:
            raise RtlgenError(f"the model has {len(self.graph.output)} graph outputs; rtlgen needs exactly one")
        in_name = graph_inputs[0].name
        chain, end, seen = self._walk(in_name, set())
        if end is not None:
            raise UnsupportedModelError([offence(end, "adds two computed tensors that do not branch from one "
                                                      "tensor; only residual blocks (a fork joined by an Add) are supported")])
        for node in self.graph.node:
            if id(node) not in seen and self.constant(node.output[0]) is None:
                self.offences.append(offence(node, "is not on the chain from the graph input to the output"))
        return in_name, chain

    def _walk(self, cur: str, seen: set) -> tuple[list, onnx.NodeProto | None, set]:
        """Follow tensor `cur` downstream: (the chain, the join Add where it stopped or None at the end, the
        ids of the nodes visited)."""
        chain = []
        while True:
            users = self.dynamic_users(cur)
            if not users:
                return chain, None, seen
            if len(users) == 1 and self.is_join(users[0]):
                return chain, users[0], seen
            if len(users) == 1:
                node = users[0]
                for other in node.input:
                    if other and other != cur and self.constant(other) is None:
                        self.offences.append(offence(node, f"has a second non-constant input {other}; only chains "
                                                           f"of layers and residual Adds are supported"))
                chain.append(node)
                seen.add(id(node))
                if node.op_type == "TopK":
                    return chain, None, seen
                cur = node.output[0]
                continue
            block = self._residual(cur, users, seen)
            chain.append(block)
            seen.add(id(block.join))
            cur = block.join.output[0]

    def _residual(self, fork: str, users: list[onnx.NodeProto], seen: set) -> "Residual":
        """The block from a tensor read by two nodes to the Add that joins the two branches again."""
        names = ", ".join(f"{n.name} ({n.op_type})" for n in users)
        if len(users) != 2:
            raise UnsupportedModelError([Offence(fork, "tensor", f"feeds {len(users)} nodes ({names}); a tensor may "
                                                                  f"feed two branches joined by an Add, no more")])
        branches, joins = [], []
        for user in users:
            if self.is_join(user):  # the identity skip: the fork tensor itself reaches the Add
                branches.append([])
                joins.append(user)
                continue
            seen.add(id(user))
            rest, join, seen = self._walk(user.output[0], seen)
            branches.append([user, *rest])
            joins.append(join)
        if joins[0] is None or joins[0] is not joins[1]:
            raise UnsupportedModelError([Offence(fork, "tensor", f"feeds two branches ({names}) that do not meet "
                                                                  f"again in one Add; only residual blocks are supported")])
        join = joins[0]
        inputs = [(b[-1].output[0] if b else fork) for b in branches]
        if inputs[0] == inputs[1]:
            raise UnsupportedModelError([offence(join, "adds a tensor to itself; only a residual join of two branches is supported")])
        # the branch with more layers is the long path; the Add's input order decides which weight is which
        long_first = sum(map(_counts_as_layer, branches[0])) >= sum(map(_counts_as_layer, branches[1]))
        a, b = (0, 1) if long_first else (1, 0)
        return Residual(fork=fork, long=branches[a], skip=branches[b], join=join,
                        long_input=list(join.input).index(inputs[a]), skip_input=list(join.input).index(inputs[b]))

    # weights -----------------------------------------------------------------------------------------------
    def integer_weights(self, node: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray, ElementFormat, bool]:
        """(W_int (MW, MH), scale per output column (MH,), format, bipolar) of a MatMul/Gemm weight input.

        For a Conv: (W_int, scale per output channel, format, bipolar) with W_int (KH*KW*IC, OC) in im2col
        order (kh, kw, ic), or (C, KH*KW) for a depthwise convolution; an average pool is the depthwise
        convolution with unit weights and scale 1/N (`_pool_weights`)."""
        if node.op_type == "Conv":
            return self._conv_weights(node)
        if node.op_type in AVG_POOL_OPS:
            return self._pool_weights(node)
        a = node_attrs(node)
        name = node.input[1]
        levels, scales, bipolar, quantizer_node = self._weight_levels(name, node)
        if node.op_type == "Gemm":
            if int(a.get("transA", 0)):
                raise RtlgenError(f"{node.name} (Gemm): transA=1 is not supported")
            if int(a.get("transB", 0)):
                levels, scales = levels.T, scales.T
            scales = scales * float(a.get("alpha", 1.0))
        if levels.ndim != 2:
            raise RtlgenError(f"{display_name(node)} ({node.op_type}): weights have shape {levels.shape}, expected 2-D")
        if not np.all(scales == scales[0:1, :]):
            raise RtlgenError(f"{display_name(node)} ({node.op_type}): weight scale varies along the input axis; only per-tensor or per-output-channel scales map to integers")
        fmt = self._weight_format(levels, bipolar, node, quantizer_node, name)
        return levels.astype(np.int64), scales[0, :].astype(np.float64), fmt, bipolar

    def _conv_weights(self, node: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray, ElementFormat, bool]:
        label = f"{display_name(node)} (Conv)"
        levels, scales, bipolar, quantizer_node = self._weight_levels(node.input[1], node)
        if levels.ndim == 3:  # 1-D convolution: a K x 1 kernel over an L x 1 image
            levels, scales = levels[..., None], scales[..., None]
        if levels.ndim != 4:
            raise RtlgenError(f"{label}: weights have shape {levels.shape}; expected (OC, IC, K) or (OC, IC, KH, KW)")
        oc = levels.shape[0]
        per_channel = scales.reshape(oc, -1)
        if not np.all(per_channel == per_channel[:, :1]):
            raise RtlgenError(f"{label}: weight scale varies inside a filter; only per-tensor or per-output-channel scales map to integers")
        fmt = self._weight_format(levels, bipolar, node, quantizer_node, node.input[1])
        group = int(node_attrs(node).get("group", 1))
        if group == 1:
            rows = levels.transpose(2, 3, 1, 0).reshape(-1, oc)
        else:  # depthwise (checked by the caller against the input channels): one K-tap filter per channel
            rows = levels.reshape(oc, -1)
        return rows.astype(np.int64), per_channel[:, 0].astype(np.float64), fmt, bipolar

    def _pool_weights(self, node: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray, ElementFormat, bool]:
        """An average pool's sum as a depthwise convolution: one unit weight per tap, scale 1/N per channel."""
        kernel, _, _ = pool_window(self, node)
        channels = tensor_shape(self.model, node.input[0])[1]
        taps = kernel[0] * kernel[1]
        return (np.ones((channels, taps), dtype=np.int64), np.full(channels, 1.0 / taps), ElementFormat.unsigned(1),
                False)

    def _weight_format(self, levels: np.ndarray, bipolar: bool, node: onnx.NodeProto,
                       quantizer_node: onnx.NodeProto | None, name: str) -> ElementFormat:
        if bipolar:
            return ElementFormat.bipolar()
        lo, hi = int(levels.min()), int(levels.max())
        fmt = ElementFormat.signed(signed_width_for(min(lo, 0), max(hi, 0))) if lo < 0 else \
            ElementFormat.unsigned(max(1, int(hi).bit_length()))
        if fmt.width > MAX_WEIGHT_BITS:
            who = quantizer_node.name if quantizer_node is not None else name
            raise RtlgenError(f"{who}: weights of {node.name} need {fmt.width} bits; at most {MAX_WEIGHT_BITS}-bit weights are supported")
        return fmt

    def _weight_levels(self, name: str, user: onnx.NodeProto):
        """Walk back from a weight tensor through layout ops to a quantizer or an integer initializer."""
        layout: list[onnx.NodeProto] = []
        cur = name
        while True:
            if cur in self.inits:
                values = np.asarray(self.inits[cur], dtype=np.float64)
                if not np.all(values == np.round(values)):
                    raise RtlgenError(f"{display_name(user)} ({user.op_type}): weights {cur} are float and not quantized; quantize them (Quant/BipolarQuant) or export integer weights")
                levels, scales, qnode = values.astype(np.int64), np.ones_like(values), None
                bipolar = bool(np.all(np.abs(values) == 1)) and values.size > 0
                break
            node = self.producer.get(cur)
            if node is None:
                raise RtlgenError(f"{display_name(user)} ({user.op_type}): weight input {cur} is not a constant")
            if node.op_type in ("Transpose", "Reshape", "Identity", "Flatten", "Squeeze", "Unsqueeze"):
                layout.append(node)
                cur = node.input[0]
                continue
            if node.op_type in ("Quant", "IntQuant", "BipolarQuant"):
                q = self.quantizer(node)
                src = self.constant(node.input[0])
                if src is None:
                    raise RtlgenError(f"{display_name(node)} ({node.op_type}): quantizes weights that are not constant")
                src = np.asarray(src, dtype=np.float64)
                if q.fmt.kind != "bipolar" and q.fmt.width > MAX_WEIGHT_BITS:
                    raise RtlgenError(f"{display_name(node)} ({node.op_type}): {q.fmt.width}-bit weights; at most {MAX_WEIGHT_BITS} bits are supported")
                # the levels qonnx's float32 quantizer gives these weights: they define the model, so a weight
                # that sits on a rounding tie in float32 must round as qonnx rounds it, not as exact math would
                quantized = self.constant(node.output[0])
                scales = np.broadcast_to(q.scale.astype(np.float64), src.shape).copy()
                if quantized is None:
                    raise RtlgenError(f"{display_name(node)} ({node.op_type}): qonnx could not evaluate these weights")
                ratio = np.asarray(quantized, dtype=np.float64) / scales
                levels = np.round(ratio).astype(np.int64)
                if np.any(np.abs(ratio - levels) > 1e-3):
                    raise RtlgenError(f"{display_name(node)} ({node.op_type}): quantized weights are not integer multiples of the scale")
                bipolar, qnode = q.fmt.kind == "bipolar", node
                break
            raise RtlgenError(f"{display_name(user)} ({user.op_type}): weights come from a {node.op_type} node ({node.name}); expected an initializer or a quantizer")
        if layout:
            ev = ChainEvaluator({}, self.quantizer, self.constant)
            for lnode in reversed(layout):
                # layout ops on constants have no batch axis: add one, evaluate, drop it
                levels = ev.run([lnode], levels[None].astype(np.float64), lnode.input[0])[0]
                scales = ev.run([lnode], scales[None], lnode.input[0])[0]
            levels = np.round(levels).astype(np.int64)
        return levels, scales, bipolar, qnode

    def constant_bias(self, node: onnx.NodeProto, mh: int) -> np.ndarray:
        if node.op_type not in ("Gemm", "Conv") or len(node.input) < 3 or not node.input[2]:
            return np.zeros(mh)
        c = self.constant(node.input[2])
        if c is None:
            raise RtlgenError(f"{display_name(node)} ({node.op_type}): bias {node.input[2]} is not constant")
        if node.op_type == "Conv":
            return np.broadcast_to(np.asarray(c, dtype=np.float64).reshape(-1), (mh,)).copy()
        return np.broadcast_to(np.asarray(c, dtype=np.float64).reshape(-1) if np.asarray(c).size in (1, mh) else np.asarray(c, dtype=np.float64), (mh,)) * float(node_attrs(node).get("beta", 1.0))


def _counts_as_layer(element) -> bool:
    return isinstance(element, Residual) or element.op_type in COMPUTE_OPS | POOL_OPS


@dataclass
class Residual:
    """A residual block in the chain: the tensor `fork` read by two branches (chains of nodes and blocks; the skip
    branch may be empty: the fork tensor itself) that the Add `join` sums again. It stands in the chain where the
    Add does, so the per-element ops and the quantizer after the Add are its epilogue, as after any layer."""

    fork: str
    long: list
    skip: list
    join: onnx.NodeProto
    long_input: int  # which input of the Add each branch arrives on
    skip_input: int

    op_type = "Residual"

    @property
    def name(self) -> str:
        return self.join.name

    @property
    def output(self) -> list[str]:
        return list(self.join.output)

    @property
    def input(self) -> list[str]:
        return [self.fork]


@dataclass
class _IntTensor:
    """An integer tensor at a layer boundary: what the next layer reads."""

    name: str  # the ONNX tensor that holds its real values (quantizer output, compute output, head output)
    shape: tuple[int, ...]  # ONNX shape, batch axis first
    fmt: ElementFormat
    k_range: tuple[int, int]
    value: object  # integers k (B, *shape[1:]) -> the real tensor (float64)
    positions: np.ndarray | None  # stream index of each element (shape[1:]); None: the hardware input, still free
    producer: int = -1  # the index of the layer that streams it (-1: the network input)


def _is_weighted(lw: _Lowering, node) -> bool:
    """A MatMul/Gemm/Conv whose second input is a constant or comes from a weight quantizer, an average pool, or a
    residual block (its join Add becomes a layer)."""
    if isinstance(node, Residual) or node.op_type in AVG_POOL_OPS:
        return True
    if node.op_type not in COMPUTE_OPS or len(node.input) < 2:
        return False
    w = node.input[1]
    return lw.constant(w) is not None or (w in lw.producer and lw.producer[w].op_type in QUANT_OPS | LAYOUT)


def lower_model(model: onnx.ModelProto, *, input_format: InputFormat | None = None, name: str = "model") -> LoweredModel:
    """Check the cleaned model and lower it to a `Network`; raise one error listing every offending node.

    Steps: the chain from the graph input (`_Lowering.dynamic_chain`), the integer region on it
    (`_integer_region`), every node checked up front (`_check_nodes`), the input side (`_input_side`: the host
    head and the hardware input's format), then the layers (`_lower_segment`) and what is left for the host."""
    lw = _Lowering(model, input_format, name)
    in_name, chain = lw.dynamic_chain()
    input_shape = tensor_shape(model, in_name)
    if input_shape is None:
        raise RtlgenError(f"graph input {in_name} has a dynamic or unknown shape; export the model with a fixed input shape (batch 1)")
    if input_shape[0] != 1:
        raise RtlgenError(f"graph input {in_name} has batch size {input_shape[0]}; export the model with batch size 1")
    region = _integer_region(lw, chain)
    _check_nodes(lw, chain, in_name, region.start, region.end)
    if lw.offences:
        raise UnsupportedModelError(lw.offences)
    side = _input_side(lw, chain, region, in_name, input_format)
    hw_in_shape = tensor_shape(model, side.hw_in_name) or input_shape

    cur = _IntTensor(side.hw_in_name, tuple(hw_in_shape), side.fmt, side.k_range, side.value, None)
    layers: list = []
    sources: list[LayerSource] = []
    cur, tail_start = _lower_segment(lw, chain, region.start, region.end, cur, layers, sources)
    tail_nodes = chain[tail_start:]
    if any(isinstance(n, Residual) for n in tail_nodes):
        block = next(n for n in tail_nodes if isinstance(n, Residual))
        raise RtlgenError(f"{display_name(block.join)} (Add): the residual block ends outside the integer layers "
                          f"(no quantizer after it before the output); rtlgen puts residual blocks in hardware only")

    network = Network(name=name, layers=layers, input_fmt=side.fmt, output_fmt=layers[-1].out_fmt)
    return LoweredModel(model=model, input_name=in_name, input_shape=input_shape, output_name=model.graph.output[0].name,
                        network=network, head_nodes=side.head_nodes, input_quantizer=side.quantizer,
                        input_format=side.format_used, input_annotation=side.annotation, hw_in_shape=hw_in_shape,
                        layer_sources=sources, tail_nodes=tail_nodes, notes=side.notes, constant=lw.constant,
                        hw_in_order=lw.hw_in_order)


@dataclass(frozen=True)
class _Region:
    """Where the hardware's part of the chain lies: `start` (after the input quantizer) to `end` (the quantizer
    after the last layer, or that layer); `input_quantizer` is the chain index of the input's quantizer, if any."""

    start: int
    end: int
    first_layer: int
    input_quantizer: int | None


def _integer_region(lw: _Lowering, chain: list) -> _Region:
    compute_idx = [i for i, n in enumerate(chain) if _is_weighted(lw, n)]
    if not compute_idx:
        ops = sorted({n.op_type for n in chain})
        for node in chain:
            if node.op_type in NOT_YET:
                lw.offences.append(offence(node, NOT_YET[node.op_type]))
        if lw.offences:
            raise UnsupportedModelError(lw.offences)
        raise RtlgenError(f"no MatMul, Gemm or Conv layer with constant weights found (ops: {', '.join(ops)}); nothing to put in hardware")
    last_mm = compute_idx[-1]
    # the integer region ends at the first quantizer after the last compute node, or at that node
    end_q = None
    for i in range(last_mm + 1, len(chain)):
        if chain[i].op_type in QUANT_OPS:
            end_q = i + 1 if is_rounding_stage(chain[i]) else i  # a split pair ends on its second Quant
            break
        if chain[i].op_type not in MONOTONE_ELEMENTWISE | LAYOUT or lw.evaluator.check(chain[i], chain[i - 1].output[0]):
            break
    input_quant = [i for i in range(compute_idx[0]) if chain[i].op_type in QUANT_OPS]
    return _Region(start=input_quant[-1] + 1 if input_quant else 0,  # before it: the host head, run by qonnx as is
                   end=end_q if end_q is not None else last_mm, first_layer=compute_idx[0],
                   input_quantizer=input_quant[-1] if input_quant else None)


@dataclass
class _InputSide:
    """The host head and the integers it hands the hardware: their format, range and real values."""

    head_nodes: list
    quantizer: Quantizer | None
    hw_in_name: str
    fmt: ElementFormat
    k_range: tuple[int, int]
    value: object  # integers k -> the real values entering the first layer's pre-ops
    format_used: InputFormat | None
    annotation: str | None
    notes: list[str]


def _input_side(lw: _Lowering, chain: list, region: _Region, in_name: str,
                input_format: InputFormat | None) -> _InputSide:
    """The model's own input quantizer (the head runs up to it), else --input-dtype/--input-scale, else an integer
    annotation of the graph input; RtlgenError when none gives integers."""
    annotation = tensor_annotation(lw.model, in_name)
    q0_idx = region.input_quantizer
    if q0_idx is not None:
        node = chain[q0_idx]
        q0 = lw.quantizer(node)
        if q0.fmt.kind != "bipolar" and q0.fmt.width > MAX_INPUT_BITS:
            raise RtlgenError(f"{display_name(node)} ({node.op_type}): {q0.fmt.width}-bit input is wider than the {MAX_INPUT_BITS} bits supported")
        notes = [f"--input-dtype/--input-scale ignored: the model quantizes its input at {node.name}"] \
            if input_format is not None else []
        return _InputSide(chain[: q0_idx + 1], q0, node.output[0], q0.fmt, (q0.k_lo, q0.k_hi), q0.value, None,
                          annotation, notes)
    if input_format is not None:
        try:
            fmt = parse_dtype(input_format.dtype)
        except ValueError:
            raise RtlgenError(f"--input-dtype {input_format.dtype}: not an integer type; use e.g. INT8, UINT8, INT16, BIPOLAR") from None
        if not (input_format.scale > 0 and np.isfinite(input_format.scale)):
            raise RtlgenError(f"--input-scale {input_format.scale}: must be a positive number")
        if fmt.kind != "bipolar" and fmt.width > MAX_INPUT_BITS:
            raise RtlgenError(f"--input-dtype {input_format.dtype}: at most {MAX_INPUT_BITS} bits")
        scale = float(input_format.scale)
        value = lambda k: np.asarray(k, dtype=np.float64) * scale  # noqa: E731
        notes = [f"input {in_name} is float in the model; the host quantizes it to {input_format.dtype} with scale {scale:g}"]
        used = input_format
    elif annotation is not None and annotation.upper() not in ("FLOAT32", "FLOAT16"):
        try:
            fmt = parse_dtype(annotation)
        except ValueError:
            raise RtlgenError(f"graph input {in_name} is annotated {annotation}, which is not an integer type; pass --input-dtype and --input-scale") from None
        value = lambda k: np.asarray(k, dtype=np.float64)  # noqa: E731
        notes = [f"input {in_name} is annotated {annotation}: the hardware takes it as it is"]
        used = None
    else:
        raise RtlgenError(
            f"graph input {in_name} is float and not quantized before the first layer {chain[region.first_layer].name}; "
            f"pass --input-dtype (e.g. INT16) and --input-scale S so the host feeds round(x/S) to the hardware")
    k_range = (-1, 1) if fmt.kind == "bipolar" else (fmt.min, fmt.max)
    return _InputSide([], None, in_name, fmt, k_range, value, used, annotation, notes)


def _own_reason(node: onnx.NodeProto, err: RtlgenError) -> str:
    """The error without its '<node> (<op>): ' prefix when it names this very node."""
    prefix = f"{display_name(node)} ({node.op_type}): "
    return str(err)[len(prefix):] if str(err).startswith(prefix) else str(err)


def _check_nodes(lw: _Lowering, chain: list, in_name: str, region_start: int, region_end: int) -> None:
    """Collect an `Offence` for every node of `chain` rtlgen cannot lower (the nodes from `region_start` to
    `region_end` are the hardware's; a residual block's branches are all hardware)."""
    for i, node in enumerate(chain):
        dyn_in = chain[i - 1].output[0] if i else in_name
        if isinstance(node, Residual):
            for branch in (node.long, node.skip):
                _check_nodes(lw, branch, node.fork, 0, len(branch) - 1)
            continue
        if node.op_type in NOT_YET:  # also in the host tail: these are outside what rtlgen handles at all
            lw.offences.append(offence(node, NOT_YET[node.op_type]))
            continue
        if node.op_type in QUANT_OPS:
            try:
                lw.quantizer(node)
            except RtlgenError as err:
                lw.offences.append(offence(node, _own_reason(node, err)))
            continue
        if node.op_type in COMPUTE_OPS and _is_weighted(lw, node):
            if i > region_end:
                continue
            try:
                lw.integer_weights(node)
            except RtlgenError as err:
                lw.offences.append(offence(node, _own_reason(node, err)))
            continue
        if node.op_type in POOL_OPS and region_start <= i <= region_end:
            continue  # checked when lowered
        if region_start <= i <= region_end:
            why = lw.evaluator.check(node, dyn_in)
            if why:
                lw.offences.append(offence(node, why))


# ----------------------------------------------------------------------------------------------- layers

def _lower_segment(lw: _Lowering, chain: list, start: int, end: int, cur: _IntTensor, layers: list,
                   sources: list) -> tuple[_IntTensor, int]:
    """Lower `chain[start:end + 1]` from the integer tensor `cur`, appending layers and their sources; returns the
    integer tensor it ends on and the index where the host tail begins (end + 1 when the chain is all hardware)."""
    i = start
    while True:
        j = i  # the ops before the next hardware node: layout and affine ops on the current integers
        while j <= end and not isinstance(chain[j], Residual) and (
                chain[j].op_type not in COMPUTE_OPS | POOL_OPS | QUANT_OPS or _is_noop_quantizer(lw, chain[i:j], cur, chain[j])):
            j += 1
        if j > end or chain[j].op_type in QUANT_OPS or (chain[j].op_type in COMPUTE_OPS and not _is_weighted(lw, chain[j])):
            return cur, i
        pre, node = chain[i:j], chain[j]
        if node.op_type in POOL_OPS:
            layer, src, nxt = _lower_maxpool(lw, node, pre, cur)
            cur = _append_layer(layers, sources, layer, src, nxt, (cur.producer,))
            i = j + 1
            continue
        # ops after the compute node up to its activation quantizer, the next compute node, or the end
        k = j + 1
        while k <= end and (isinstance(chain[k], Residual) or chain[k].op_type not in COMPUTE_OPS | POOL_OPS | QUANT_OPS):
            if isinstance(chain[k], Residual):
                raise RtlgenError(f"{display_name(chain[k].join)} (Add): the residual block's input {chain[k].fork} is "
                                  f"not quantized; put a quantizer (e.g. QuantReLU / QuantIdentity) before the fork")
            k += 1
        qnode = chain[k] if k <= end and chain[k].op_type in QUANT_OPS else None
        epilogue_end = k
        if qnode is not None and is_rounding_stage(qnode):  # a QCDQ pair: the quantizer is its second Quant
            k += 1
            qnode = chain[k]
        if k <= end and chain[k].op_type in POOL_OPS:
            raise RtlgenError(f"{display_name(chain[k])} (MaxPool): pools the output of {node.name} before its activation "
                              f"quantizer; rtlgen pools quantized levels: put the MaxPool after the quantizer")
        feeds_compute = qnode is None and k <= end and chain[k].op_type in COMPUTE_OPS
        epilogue = chain[j + 1: epilogue_end] if qnode is not None else []
        if isinstance(node, Residual):
            if qnode is None:
                raise RtlgenError(f"{display_name(node.join)} (Add): the residual sum is not quantized before the next "
                                  f"layer or the output; put a quantizer (e.g. QuantReLU) after the Add")
            cur = _lower_residual(lw, node, pre, cur, epilogue, qnode, layers, sources)
        else:
            layer, src, nxt = _lower_compute(lw, node, pre, cur, epilogue, qnode)
            cur = _append_layer(layers, sources, layer, src, nxt, (cur.producer,))
        if qnode is not None:
            i = k + 1
        elif feeds_compute:
            i = j + 1  # the accumulators feed the next layer directly; the ops between are its pre-ops
        else:
            return cur, j + 1


def _append_layer(layers: list, sources: list, layer, src: "LayerSource", out: _IntTensor,
                  inputs: tuple[int, ...]) -> _IntTensor:
    """Add a lowered layer reading `inputs` (layer indices); its output tensor, streamed by it."""
    layer.inputs = inputs
    layers.append(layer)
    sources.append(src)
    return replace(out, producer=len(layers) - 1)


def _lower_branch(lw: _Lowering, block: Residual, branch: list, cur: _IntTensor, layers: list,
                  sources: list) -> _IntTensor:
    """One branch of a residual block, which must end on a quantizer (the Add sums two integer tensors)."""
    if not branch:
        return cur
    out, tail = _lower_segment(lw, branch, 0, len(branch) - 1, cur, layers, sources)
    if tail != len(branch) or out.name != branch[-1].output[0]:
        last = branch[-1]
        raise RtlgenError(f"{display_name(block.join)} (Add): its input {last.output[0]} ({last.op_type} "
                          f"{display_name(last)}) is not the output of a quantizer; put a quantizer (e.g. "
                          f"QuantIdentity) at the end of each branch so the Add sums integers")
    return out


def _lower_residual(lw: _Lowering, block: Residual, pre: list, cur: _IntTensor, epilogue: list,
                    qnode: onnx.NodeProto, layers: list, sources: list) -> _IntTensor:
    """A residual block: both branches' layers, then the join as an `AddLayer` whose activation is the quantizer
    after the Add (through `epilogue`)."""
    label = f"{display_name(block.join)} (Add)"
    if pre or cur.name != block.fork:
        raise RtlgenError(f"{label}: ops ({', '.join(n.op_type for n in pre)}) sit between the quantizer "
                          f"{cur.name} and the residual fork; fork right at a quantizer's output")
    if cur.positions is None:
        raise RtlgenError(f"{label}: the network input forks straight into a residual block; put a layer first")
    long_out = _lower_branch(lw, block, block.long, cur, layers, sources)
    skip_out = _lower_branch(lw, block, block.skip, cur, layers, sources)
    layer, src, nxt = _lower_add(lw, block, long_out, skip_out, epilogue, qnode)
    return _append_layer(layers, sources, layer, src, nxt, (long_out.producer, skip_out.producer))


def _is_noop_quantizer(lw: _Lowering, pre: list[onnx.NodeProto], cur: _IntTensor, node: onnx.NodeProto) -> bool:
    """Whether quantizer `node`, after the layout and affine ops `pre` on the current levels, gives back every real
    value those levels can carry (ONNX Runtime re-quantizes a Reshape's output with the same scale and zero
    point): then it is no layer boundary, and the levels pass through it unchanged."""
    if node.op_type not in QUANT_OPS:
        return False
    step = 2 if cur.fmt.kind == "bipolar" else 1
    levels = np.arange(cur.k_range[0], cur.k_range[1] + 1, step)
    if levels.size > 2 ** (MAX_ACTIVATION_BITS + 1):
        return False
    probes = cur.value(np.stack([np.full(cur.shape[1:], k, dtype=np.float64) for k in levels]))
    try:
        before = lw.evaluator.run(pre, probes, cur.name)
        after = lw.evaluator.run([*pre, node], probes, cur.name)
    except (RtlgenError, ValueError):
        return False
    return before.shape == after.shape and np.array_equal(before, after)


def _input_positions(lw: _Lowering, pre: list[onnx.NodeProto], cur: _IntTensor, feature_map: bool) -> np.ndarray:
    """Position map of `cur`, fixing the hardware input's stream order on first use.

    The host may put the input elements in any order, so the first layer chooses: a dense layer takes the
    tensor as it is laid out; a convolution or pool takes its (layout-adjusted) input channels-last."""
    if cur.positions is not None:
        return cur.positions
    n = int(np.prod(cur.shape[1:], dtype=np.int64))
    index = np.arange(n, dtype=np.float64).reshape((1,) + tuple(cur.shape[1:]))
    if not feature_map:
        positions = np.arange(n).reshape(cur.shape[1:])
    else:
        arranged = lw.evaluator.run([p for p in pre if p.op_type in LAYOUT], index, cur.name)[0].astype(np.int64)
        order = np.moveaxis(arranged, 0, -1).reshape(-1)  # channels-last: stream s carries element order[s]
        positions = np.empty(n, dtype=np.int64)
        positions[order] = np.arange(n)
        positions = positions.reshape(cur.shape[1:])
    lw.hw_in_order = stream_order(positions)
    return positions


def _feature_map_input(lw: _Lowering, node: onnx.NodeProto, pre: list[onnx.NodeProto], cur: _IntTensor,
                       label: str) -> tuple[int, int, int, tuple[int, ...]]:
    """(C, H, W, shape) of a Conv/MaxPool input, checked to arrive channels-last in the stream."""
    shape = tensor_shape(lw.model, node.input[0])
    if shape is None or len(shape) not in (3, 4):
        raise RtlgenError(f"{label}: input shape {shape} is not (1, C, L) or (1, C, H, W) after shape inference")
    positions = _input_positions(lw, pre, cur, feature_map=True)
    moved = lw.evaluator.run([p for p in pre if p.op_type in LAYOUT], positions[None].astype(np.float64), cur.name)[0]
    if moved.shape != tuple(shape[1:]) or not np.array_equal(moved.astype(np.int64), channels_last_positions(shape)):
        raise RtlgenError(f"{label}: its input {node.input[0]} does not arrive channels-last (pixel by pixel) in the "
                          f"stream; the layout ops between the layers reorder it in a way rtlgen cannot stream")
    c, h = shape[1], shape[2]
    w = shape[3] if len(shape) == 4 else 1
    return c, h, w, tuple(shape)


def _window_attrs(node: onnx.NodeProto, spatial: int, label: str,
                  default_kernel: list[int] | None = None) -> tuple[list[int], list[int], list[int]]:
    """(kernel, strides, pads [begin..., end...]) as 2-D lists (a 1-D op gets a K x 1 window); a Conv without
    kernel_shape (optional in ONNX, ONNX Runtime's quantizer drops it) takes `default_kernel`, its weights'."""
    a = node_attrs(node)
    auto_pad = a.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    if auto_pad not in ("NOTSET", "VALID", ""):
        raise RtlgenError(f"{label}: auto_pad={auto_pad} is not supported; export explicit pads")
    kernel = list(a.get("kernel_shape", default_kernel or []))
    if len(kernel) != spatial:
        raise RtlgenError(f"{label}: kernel_shape {kernel} does not match the {spatial}-D input")
    strides = list(a.get("strides", [1] * spatial))
    pads = list(a.get("pads", [0] * (2 * spatial)))
    dilations = list(a.get("dilations", [1] * spatial))
    if any(d != 1 for d in dilations):
        raise RtlgenError(f"{label}: dilations {dilations} are not supported (only 1)")
    if spatial == 1:
        kernel, strides, pads = kernel + [1], strides + [1], [pads[0], 0, pads[1], 0]
    return kernel, strides, pads


def pool_window(lw: _Lowering, node: onnx.NodeProto) -> tuple[list[int], list[int], list[int]]:
    """(kernel, strides, pads) of an average pool (AveragePool, GlobalAveragePool, ReduceMean over the spatial
    axes) as 2-D lists; RtlgenError where it is not one sum of N taps divided by N everywhere."""
    label = f"{display_name(node)} ({node.op_type})"
    shape = tensor_shape(lw.model, node.input[0])
    if shape is None or len(shape) not in (3, 4):
        raise RtlgenError(f"{label}: input shape {shape} is not (1, C, L) or (1, C, H, W) after shape inference")
    spatial = len(shape) - 2
    if node.op_type == "AveragePool":
        a = node_attrs(node)
        if int(a.get("ceil_mode", 0)):
            raise RtlgenError(f"{label}: ceil_mode=1 is not supported")
        kernel, strides, pads = _window_attrs(node, spatial, label)
        if any(pads) and not int(a.get("count_include_pad", 0)):
            raise RtlgenError(f"{label}: padded with count_include_pad=0, border windows divide by fewer taps than "
                              f"the others; export with count_include_pad=1 or without padding")
        return kernel, strides, pads
    if node.op_type == "ReduceMean":
        a = node_attrs(node)
        axes = a.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = lw.constant(node.input[1])
            if axes is None:
                raise RtlgenError(f"{label}: axes {node.input[1]} is not a constant")
        axes = sorted(int(x) % len(shape) for x in np.ravel(axes)) if axes is not None else []
        if axes != list(range(2, len(shape))):
            raise RtlgenError(f"{label}: averages over axes {axes or 'all'}; only the mean over the spatial axes "
                              f"{list(range(2, len(shape)))} (a global average pool) is supported")
    return list(shape[2:]) + [1] * (2 - spatial), [1, 1], [0, 0, 0, 0]


def _lower_maxpool(lw: _Lowering, node: onnx.NodeProto, pre: list[onnx.NodeProto], cur: _IntTensor):
    label = f"{display_name(node)} (MaxPool)"
    if any(p.op_type not in LAYOUT | QUANT_OPS for p in pre):  # a quantizer here is a no-op (`_is_noop_quantizer`)
        bad = next(p for p in pre if p.op_type not in LAYOUT | QUANT_OPS)
        raise RtlgenError(f"{label}: {bad.op_type} {bad.name} sits between the quantizer and the pool; rtlgen pools quantized levels directly")
    a = node_attrs(node)
    if int(a.get("ceil_mode", 0)):
        raise RtlgenError(f"{label}: ceil_mode=1 is not supported")
    if len(node.output) > 1 and node.output[1]:
        raise RtlgenError(f"{label}: the Indices output is not supported")
    c, h, w, shape = _feature_map_input(lw, node, pre, cur, label)
    kernel, strides, pads = _window_attrs(node, len(shape) - 2, label)
    if any(pads):
        raise RtlgenError(f"{label}: padded max-pool (pads {pads}) is not supported")
    step = 2 if cur.fmt.kind == "bipolar" else 1
    lo_val = np.asarray(cur.value(np.full((1,) + cur.shape[1:], cur.k_range[0])))
    hi_val = np.asarray(cur.value(np.full((1,) + cur.shape[1:], cur.k_range[0] + step)))
    if not np.all(hi_val > lo_val):
        raise RtlgenError(f"{label}: pools a quantizer whose scale is not positive; the largest level would not be the largest value")
    pool = Conv(h, w, c, kernel[0], kernel[1], strides[0], strides[1])
    if pool.kernel_h > h or pool.kernel_w > w:
        raise RtlgenError(f"{label}: kernel {kernel} is larger than the {h}x{w} input")
    out_shape = tensor_shape(lw.model, node.output[0]) or ((1, c, pool.out_h, pool.out_w) if len(shape) == 4 else (1, c, pool.out_h))
    layer = MaxPoolLayer(name=node.name, fmt=cur.fmt, pool=pool, sources={"pool": node.name})
    positions = channels_last_positions(out_shape)
    src = LayerSource(node=node, epilogue=[], quantizer_node=None, quantizer=None, alpha=None, beta=None,
                      boundary=node.output[0], boundary_shape=tuple(out_shape), out_order=stream_order(positions))
    return layer, src, _IntTensor(node.output[0], tuple(out_shape), cur.fmt, cur.k_range, cur.value, positions)


def _zero_level(offsets: np.ndarray, scale: float, fmt: ElementFormat, label: str) -> int:
    """The input level whose real value is 0 (`scale * k + offset == 0`, an asymmetric quantizer's zero point):
    what zero padding pads with. RtlgenError when it is not one integer level of `fmt` for every channel."""
    levels = -np.asarray(offsets, dtype=np.float64) / scale
    level = int(np.round(levels[0]))
    lo, hi = (-1, 1) if fmt.kind == "bipolar" else (fmt.min, fmt.max)
    if not np.allclose(levels, level, rtol=0, atol=1e-6) or not lo <= level <= hi or fmt.kind == "bipolar":
        raise RtlgenError(f"{label}: zero padding of its input has no integer level (the real value 0 sits at level "
                          f"{levels[0]:.4g} of the input quantizer); pad with a symmetric quantizer or remove the padding")
    return level


def _conv_geometry(lw: _Lowering, node: onnx.NodeProto, pre, cur: _IntTensor, label: str) -> tuple[Conv, tuple]:
    c, h, w, shape = _feature_map_input(lw, node, pre, cur, label)
    if node.op_type in AVG_POOL_OPS:
        kernel, strides, pads = pool_window(lw, node)
    else:
        weights = tensor_shape(lw.model, node.input[1]) if len(node.input) > 1 else None
        kernel, strides, pads = _window_attrs(node, len(shape) - 2, label, list(weights[2:]) if weights else None)
    conv = Conv(h, w, c, kernel[0], kernel[1], strides[0], strides[1], pads[0], pads[1], pads[2], pads[3])
    if conv.pad_top + conv.pad_bottom >= conv.kernel_h or conv.pad_left + conv.pad_right >= conv.kernel_w:
        raise RtlgenError(f"{label}: padding {pads} is as large as the kernel {kernel}; at most kernel - 1 in total per axis is supported")
    if conv.out_h < 1 or conv.out_w < 1:
        raise RtlgenError(f"{label}: the kernel {kernel} does not fit the padded input")
    return conv, shape


def _lower_compute(lw: _Lowering, node: onnx.NodeProto, pre: list[onnx.NodeProto], cur: _IntTensor,
                   epilogue: list[onnx.NodeProto], qnode: onnx.NodeProto | None):
    """One MatMul/Gemm/Conv with its activation -> (layer, source, the integer tensor it produces)."""
    label = f"{display_name(node)} ({node.op_type})"
    w_int, w_scale, w_fmt, w_bipolar = lw.integer_weights(node)
    in_fmt = cur.fmt
    conv, depthwise = None, False
    if node.op_type == "Conv" or node.op_type in AVG_POOL_OPS:
        conv, in_shape = _conv_geometry(lw, node, pre, cur, label)
        group = int(node_attrs(node).get("group", 1)) if node.op_type == "Conv" else conv.channels
        if node.op_type in AVG_POOL_OPS:
            depthwise = True
        elif group != 1:
            if not (group == conv.channels and w_int.shape[0] == conv.channels):
                raise RtlgenError(f"{label}: group={group} is neither 1 nor depthwise (groups = channels = {conv.channels}, one filter each)")
            depthwise = True
        if conv.padded and in_fmt.kind == "bipolar":
            raise RtlgenError(f"{label}: zero padding of a bipolar (+1/-1) input cannot be represented; remove the padding or quantize the input to 2+ bits")
        mh = w_int.shape[0] if depthwise else w_int.shape[1]
        out_shape = tensor_shape(lw.model, node.output[0]) or (1, mh, conv.out_h) + ((conv.out_w,) if len(in_shape) == 4 else ())
    else:
        in_shape = cur.shape
        mh = w_int.shape[1]
        out_shape = tensor_shape(lw.model, node.output[0]) or (1, mh)

    # 1) the compute node's input is a*k + b of the stream integers k (probed at three valid levels)
    step = 2 if in_fmt.kind == "bipolar" else 1
    probe_k = [cur.k_range[0] + step * t for t in range(3)]
    probes = np.stack([np.full(cur.shape[1:], v, dtype=np.float64) for v in probe_k])
    u = lw.evaluator.run(pre, cur.value(probes), cur.name).reshape(3, -1)
    a_vec = (u[1] - u[0]) / step
    b_vec = u[0] - a_vec * probe_k[0]
    if not np.allclose((u[2] - u[1]) / step, a_vec, rtol=1e-9, atol=0):
        raise RtlgenError(f"{label}: the ops between {cur.name} and this layer are not affine in the quantized values")
    # one scale for every element, up to float64 rounding of the probe (a scalar Mul followed by a per-element
    # Add makes the differences disagree in the last bits)
    a = float(np.median(a_vec))
    if a == 0 or not np.allclose(a_vec, a, rtol=1e-9, atol=0):
        raise RtlgenError(f"{label}: its input scale differs per element (per-channel activation scale); only a per-tensor scale maps to integers")
    bias = lw.constant_bias(node, mh)

    if conv is None:
        # MatMul input element j is stream element order[j]
        positions = _input_positions(lw, pre, cur, feature_map=False)
        layout_only = [n for n in pre if n.op_type in LAYOUT]
        order = lw.evaluator.run(layout_only, positions[None].astype(np.float64), cur.name).reshape(-1)
        mw = w_int.shape[0]
        if order.size != mw or sorted(order.astype(np.int64).tolist()) != list(range(mw)):
            raise RtlgenError(f"{label}: its input has {order.size} elements after {cur.name}, but the weights expect {mw}")
        order = order.astype(np.int64)
        wh = np.zeros((mh, mw), dtype=np.int64)
        wh[:, order] = w_int.T  # stream-order weights: Wh[c, order[j]] = W_int[j, c]
        beta = b_vec @ (w_int.astype(np.float64) * w_scale[None, :]) + bias
        column_offsets = np.empty(mw)
        column_offsets[order] = b_vec
        acc_offset = _integer_accumulator_offset(wh, column_offsets, a)
    else:
        b_map = b_vec.reshape(in_shape[1:])
        b_channel = b_map.reshape(conv.channels, -1)
        if not np.allclose(b_channel, b_channel[:, :1], rtol=1e-12, atol=0):
            raise RtlgenError(f"{label}: its input offset differs per pixel; only per-channel offsets map to integers")
        if conv.padded and np.any(b_channel != 0):
            conv = replace(conv, pad_value=_zero_level(b_channel[:, 0], a, in_fmt, label))
        b_ch = b_channel[:, 0]
        if depthwise:
            wh = w_int
            beta = b_ch * (w_int.astype(np.float64) * w_scale[:, None]).sum(axis=1) + bias
            acc_offset = _integer_accumulator_offset(wh, None, a, per_row=b_ch)
        else:
            wh = w_int.T.copy()
            beta = np.tile(b_ch, conv.kernel_elems) @ (w_int.astype(np.float64) * w_scale[None, :]) + bias
            acc_offset = _integer_accumulator_offset(wh, np.tile(b_ch, conv.kernel_elems), a)
    alpha = a * w_scale
    if acc_offset is not None:  # the input offset stays an integer offset of the accumulator: see the helper
        beta = alpha * acc_offset + bias

    acc = _Accumulation(node=node, label=label, wh=wh, w_fmt=w_fmt, in_fmt=in_fmt, alpha=alpha, beta=beta,
                        acc_offset=acc_offset, bias=bias, out_shape=tuple(out_shape),
                        out_positions=channels_last_positions(out_shape), per_channel_map=conv is not None)

    def make_layer(common: dict):
        if node.op_type in AVG_POOL_OPS:  # the sum of a window's levels (unit weights); the 1/N is in the thresholds
            common["sources"]["average_pool"] = node.op_type
        return DepthwiseLayer(conv=conv, **common) if depthwise else MVTULayer(conv=conv, **common)

    return _activated_layer(lw, acc, epilogue, qnode, make_layer)


@dataclass
class _Accumulation:
    """A compute node lowered to integer accumulators: its output is `alpha * acc + beta` per channel (or
    `alpha * (acc + acc_offset) + bias`), `acc = wh @ input levels`, element e of its output at stream position
    `out_positions[e]`."""

    node: onnx.NodeProto
    label: str
    wh: np.ndarray  # (MH, taps) integer weights in stream order
    w_fmt: ElementFormat
    in_fmt: ElementFormat
    alpha: np.ndarray
    beta: np.ndarray
    acc_offset: np.ndarray | None
    bias: np.ndarray | None
    out_shape: tuple[int, ...]
    out_positions: np.ndarray
    per_channel_map: bool  # a feature map whose channels (axis 1) are the accumulators, not one per element

    @property
    def mh(self) -> int:
        return self.wh.shape[0]


def _activated_layer(lw: _Lowering, acc: _Accumulation, epilogue: list[onnx.NodeProto], qnode: onnx.NodeProto | None,
                     make_layer) -> tuple:
    """The layer of an accumulation and its activation (thresholds or a requantization from the epilogue and the
    quantizer `qnode`, or none): (layer, its source, the integer tensor it streams). `make_layer(fields)` builds
    the layer's class from the shared fields."""
    node, label, wh, w_fmt, in_fmt, mh = acc.node, acc.label, acc.wh.copy(), acc.w_fmt, acc.in_fmt, acc.mh
    alpha, beta, acc_offset, bias, out_shape = acc.alpha, acc.beta, acc.acc_offset, acc.bias, acc.out_shape
    # 2) accumulator range from the actual weights and every value the input format can carry (a narrow
    #    quantizer never produces its format's minimum, but the hardware must not overflow if it arrives)
    x_lo, x_hi = (-1, 1) if in_fmt.kind == "bipolar" else (in_fmt.min, in_fmt.max)
    acc_lo_c = np.minimum(wh * x_lo, wh * x_hi).sum(axis=1)
    acc_hi_c = np.maximum(wh * x_lo, wh * x_hi).sum(axis=1)

    out_positions = acc.out_positions
    ep = _Epilogue(lw, node, alpha, beta, tuple(out_shape), out_positions, epilogue, label,
                   acc_offset=acc_offset, bias=bias, per_channel_map=acc.per_channel_map)

    negated = np.zeros(mh, dtype=bool)
    thresholds, requant, q, level_index = None, None, None, None
    if qnode is not None:
        q = lw.quantizer(qnode)
        level_index = partial(ep.level_index, q)  # accumulators (B, MH) -> level indices, through the epilogue

        if q.fmt.kind != "bipolar" and q.n_levels - 1 > 2**MAX_ACTIVATION_BITS - 1:
            if not isinstance(q, IntQuantizer):
                raise RtlgenError(f"{display_name(qnode)} ({qnode.op_type}): {q.n_levels} levels are too many for thresholds; at most {MAX_ACTIVATION_BITS}-bit activations")
            requant = derive_requantization(level_index, lambda acc: ep.in_steps(q, acc), q, acc_lo_c, acc_hi_c,
                                            f"{display_name(qnode)} ({qnode.op_type})")
        else:
            thresholds, negated = derive_thresholds(level_index, acc_lo_c, acc_hi_c, q.n_levels, label)
            wh[negated] = -wh[negated]
            acc_lo_c, acc_hi_c = (np.where(negated, -acc_hi_c, acc_lo_c), np.where(negated, -acc_lo_c, acc_hi_c))
    acc_lo, acc_hi = int(acc_lo_c.min()), int(acc_hi_c.max())
    if qnode is None:
        acc_width = signed_width_for(min(acc_lo, 0), max(acc_hi, 0))
        out_fmt, out_offset = ElementFormat.signed(acc_width), 0
    else:
        out_fmt = q.fmt
        out_offset = 0 if q.fmt.kind == "bipolar" else q.k_lo
        if thresholds is not None:
            # a threshold may sit at acc_hi + 1 ("never reached"), so that value must fit too
            acc_width = signed_width_for(min(acc_lo, 0), max(acc_hi + 1, 0))
            thresholds = np.clip(thresholds, acc_lo, acc_hi + 1)
            if thresholds.shape[1] == 0:  # a one-level quantizer: the output is constant; one unreachable threshold
                thresholds = np.full((mh, 1), acc_hi + 1, dtype=np.int64)
        else:
            acc_width = signed_width_for(min(acc_lo, 0), max(acc_hi, 0))
    if w_fmt.kind != "bipolar" and negated.any():
        lo, hi = int(wh.min()), int(wh.max())
        w_fmt = ElementFormat.signed(signed_width_for(min(lo, 0), max(hi, 0))) if lo < 0 else ElementFormat.unsigned(max(1, hi.bit_length()))
    sources = {"node": node.name, "epilogue": [n.name for n in epilogue], "quantizer": qnode.name if qnode is not None else None}
    common = dict(name=node.name, weights=wh, in_fmt=in_fmt, w_fmt=w_fmt, acc_lo=acc_lo, acc_hi=acc_hi, acc_width=acc_width,
                  thresholds=thresholds, out_fmt=out_fmt, out_offset=out_offset, sources=sources, requant=requant)
    layer = make_layer(common)

    if qnode is not None:
        boundary, boundary_shape = qnode.output[0], tensor_shape(lw.model, qnode.output[0]) or tuple(out_shape)
        positions = ep.q_positions
        nxt = _IntTensor(boundary, tuple(boundary_shape), q.fmt, (q.k_lo, q.k_hi), q.value, positions)
    else:
        boundary, boundary_shape, positions = node.output[0], tuple(out_shape), out_positions
        channel_shape = (1, mh) + (1,) * (len(out_shape) - 2)
        if len(out_shape) == 2 or acc.per_channel_map:
            al, be = alpha.reshape(channel_shape), beta.reshape(channel_shape)
        else:  # a MatMul on a 3-D tensor: channels on the last axis
            al, be = alpha, beta
        nxt = _IntTensor(boundary, boundary_shape, out_fmt, (acc_lo, acc_hi),
                         lambda k, al=al, be=be: np.asarray(k, dtype=np.float64) * al + be, positions)
    src = LayerSource(node=node, epilogue=epilogue, quantizer_node=qnode, quantizer=q, alpha=alpha, beta=beta,
                      boundary=boundary, boundary_shape=tuple(boundary_shape), out_order=stream_order(positions),
                      negated=negated, pre_activation=ep.pre_activation, level_index=level_index,
                      acc_offset=acc_offset, bias=bias)
    return layer, src, nxt


MAX_ALIGNMENT_BITS = 8  # an Add's alignment multipliers: the reduced ratio of its inputs' scales, at most 8 bits each


def _tensor_affine(t: _IntTensor, label: str, which: str) -> tuple[float, float]:
    """(scale, offset) with `value = scale * k + offset` for every element of an Add input, or RtlgenError."""
    step = 2 if t.fmt.kind == "bipolar" else 1
    lo = np.full((1,) + t.shape[1:], t.k_range[0], dtype=np.float64)
    v0 = np.asarray(t.value(lo), dtype=np.float64).reshape(-1)
    v1 = np.asarray(t.value(lo + step), dtype=np.float64).reshape(-1)
    scale = (v1 - v0) / step
    offset = v0 - scale * t.k_range[0]
    if not (np.all(scale == scale[0]) and np.all(offset == offset[0])) or scale[0] <= 0:
        raise RtlgenError(f"{label}: its {which} input {t.name} has a per-channel or non-positive scale; only a "
                          f"per-tensor positive scale (and zero point) aligns exactly with the other input")
    return float(scale[0]), float(offset[0])


def _alignment(sa: float, sb: float, label: str) -> tuple[int, int]:
    """Integers (ma, mb) with sa / sb == ma / mb exactly (the float scales' exact ratio, reduced)."""
    ratio = Fraction(sa) / Fraction(sb)
    ma, mb = ratio.numerator, ratio.denominator
    if max(ma, mb) >= 2 ** MAX_ALIGNMENT_BITS:
        raise RtlgenError(f"{label}: the scales of its inputs ({sa:.9g} and {sb:.9g}) have no small exact integer "
                          f"ratio ({ma}/{mb}); quantize both Add inputs with power-of-two scales or one shared "
                          f"quantizer so they align with multipliers of at most {MAX_ALIGNMENT_BITS} bits")
    return ma, mb


def _common_format(a: ElementFormat, b: ElementFormat, label: str) -> ElementFormat:
    """The narrowest format holding the levels of both inputs (the interleaved stream carries both)."""
    if a.kind == "bipolar" or b.kind == "bipolar":
        raise RtlgenError(f"{label}: a bipolar (+1/-1) input to a residual Add is not supported; quantize it to 2+ bits")
    lo, hi = min(a.min, b.min), max(a.max, b.max)
    return ElementFormat.signed(signed_width_for(lo, hi)) if lo < 0 else ElementFormat.unsigned(max(1, hi.bit_length()))


def _lower_add(lw: _Lowering, block: Residual, a: _IntTensor, b: _IntTensor, epilogue: list[onnx.NodeProto],
               qnode: onnx.NodeProto) -> tuple:
    """A residual join `a + b` of two integer tensors (a: the long path): the accumulator `ma*ka + mb*kb` with the
    exact alignment multipliers, so the sum is `g*acc + offset` and the quantizer after it becomes thresholds."""
    node = block.join
    label = f"{display_name(node)} (Add)"
    out_shape = tensor_shape(lw.model, node.output[0])
    if out_shape is None or tuple(out_shape) != tuple(a.shape) or tuple(a.shape) != tuple(b.shape):
        raise RtlgenError(f"{label}: adds {a.name} {tuple(a.shape)} and {b.name} {tuple(b.shape)}; only tensors of the "
                          f"same shape (no broadcasting) can be summed element by element in the stream")
    if a.positions is None or b.positions is None or not np.array_equal(a.positions, b.positions):
        raise RtlgenError(f"{label}: its inputs {a.name} and {b.name} arrive in different stream orders")
    sa, oa = _tensor_affine(a, label, "first")
    sb, ob = _tensor_affine(b, label, "second")
    ma, mb = _alignment(sa, sb, label)
    g = sa / ma
    channels = out_shape[1]
    per_channel_map = len(out_shape) > 2
    wh = np.tile(np.array([ma, mb], dtype=np.int64), (channels, 1))
    w_fmt = ElementFormat.unsigned(max(ma, mb).bit_length())
    alpha = np.full(channels, g)
    za, zb = -oa / sa, -ob / sb
    acc_offset, bias = None, np.zeros(channels)
    if za == round(za) and zb == round(zb) and (za or zb):  # zero points: an integer accumulator offset
        acc_offset = np.full(channels, -(ma * int(round(za)) + mb * int(round(zb))), dtype=np.int64)
        beta = alpha * acc_offset
    else:
        beta = np.full(channels, oa + ob)
    acc = _Accumulation(node=node, label=label, wh=wh, w_fmt=w_fmt, in_fmt=_common_format(a.fmt, b.fmt, label),
                        alpha=alpha, beta=beta, acc_offset=acc_offset, bias=bias, out_shape=tuple(out_shape),
                        out_positions=a.positions, per_channel_map=per_channel_map)
    pixels = int(np.prod(out_shape[1:], dtype=np.int64)) // channels

    def make_layer(common: dict):
        common["sources"].update(add_inputs=[a.name, b.name], alignment=[ma, mb])
        return AddLayer(pixels=pixels, input_fmts=(a.fmt, b.fmt), **common)

    return _activated_layer(lw, acc, epilogue, qnode, make_layer)


def _integer_accumulator_offset(wh: np.ndarray, column_offsets: np.ndarray | None, a: float,
                                per_row: np.ndarray | None = None) -> np.ndarray | None:
    """The accumulator offset -wh @ z (integers, per output channel) when every input element's offset b is a whole
    number of input steps, b = -z * a (a zero point z); None otherwise.

    Then the layer's output is alpha * (acc + offset) + bias, and the activation is decided on that: where the
    true value is exactly 0 (inputs at their zero point), acc + offset is the integer 0 and so is the product,
    while the folded form alpha * acc + beta leaves float64 cancellation noise (1e-16) on either side of a
    quantizer boundary at 0. `per_row` gives one offset per output row instead (a depthwise layer)."""
    offsets = per_row if per_row is not None else column_offsets
    z = -np.asarray(offsets, dtype=np.float64) / a
    zi = np.round(z)
    if not np.allclose(z, zi, rtol=0, atol=1e-9) or not np.any(zi):
        return None
    zi = zi.astype(np.int64)
    if per_row is not None:
        return -(wh.astype(np.int64).sum(axis=1) * zi)
    return -(wh.astype(np.int64) @ zi)


class _Epilogue:
    """The per-channel real-valued map from a layer's accumulators to its quantizer's input.

    The compute output has MH channels at P pixels (stream element p*MH + c). The epilogue ops must treat
    every pixel of a channel alike (per-channel constants only; checked on random accumulators), so a
    channel's activation is a function of its accumulator alone. `q_positions` is the position map of the
    quantizer's input tensor (the layout ops in the epilogue move elements)."""

    def __init__(self, lw: _Lowering, node: onnx.NodeProto, alpha: np.ndarray, beta: np.ndarray, out_shape: tuple,
                 out_positions: np.ndarray, epilogue: list[onnx.NodeProto], label: str,
                 acc_offset: np.ndarray | None = None, bias: np.ndarray | None = None, per_channel_map: bool = False):
        self.lw, self.node, self.alpha, self.beta, self.epilogue = lw, node, alpha, beta, epilogue
        # a feature map (B, C, ...) whose C channels are the accumulators (a Conv, a pool, a residual Add)
        self.per_channel_map = per_channel_map and len(out_shape) > 2
        # with an integer accumulator offset (`_integer_accumulator_offset`) the compute output is
        # alpha * (acc + offset) + bias, the sum taken in integers first
        self.acc_offset = None if acc_offset is None else np.asarray(acc_offset, dtype=np.int64)
        self.bias = bias
        self.out_shape = tuple(out_shape)
        self.mh = mh = alpha.size
        layout = [n for n in epilogue if n.op_type in LAYOUT]
        q_positions = lw.evaluator.run(layout, out_positions[None].astype(np.float64), node.output[0])[0].astype(np.int64)
        self.q_positions = q_positions
        flat = q_positions.reshape(-1)
        # per-channel ops on a 1 x 1 image give one value per channel; layout ops need the whole tensor
        self.reduced = self.per_channel_map and not layout
        self.representative = np.array([int(np.flatnonzero(flat == c)[0]) for c in range(mh)])
        pixels = int(np.prod(out_shape[1:], dtype=np.int64)) // mh
        if pixels > 1 and epilogue:
            probe = np.random.default_rng(0).integers(-1000, 1000, size=(4, mh)).astype(np.float64)
            whole = self._full(probe).reshape(4, -1)
            try:
                picked = self.pre_activation(probe)
                same = picked.shape == (4, mh) and np.allclose(whole, picked[:, flat % mh], rtol=1e-12, atol=0, equal_nan=True)
            except ValueError:
                same = False
            if not same:
                raise RtlgenError(f"{label}: the ops after it ({', '.join(n.op_type for n in epilogue)}) differ per pixel; "
                                  f"only per-channel constants can become thresholds")

    def _compute_output(self, acc: np.ndarray) -> np.ndarray:
        """The compute node's real output per channel for accumulators (B, MH), float64."""
        if self.acc_offset is None:
            return self.alpha[None, :] * acc + self.beta[None, :]
        exact = np.asarray(acc).astype(np.int64) + self.acc_offset[None, :]
        return self.alpha[None, :] * exact + np.asarray(self.bias, dtype=np.float64)[None, :]

    def _full(self, acc: np.ndarray) -> np.ndarray:
        """Epilogue on the whole tensor, every pixel of channel c given accumulator acc[:, c]."""
        y = self._compute_output(acc)
        shape = self.out_shape
        if self.per_channel_map:
            y = np.broadcast_to(y.reshape(y.shape + (1,) * (len(shape) - 2)), (len(acc),) + shape[1:])
        else:
            y = y.reshape((len(acc),) + shape[1:])
        return self.lw.evaluator.run(self.epilogue, y, self.node.output[0])

    def _shaped(self, acc: np.ndarray) -> np.ndarray:
        """The quantizer's input as a tensor: (B, MH, 1, 1) when reduced, else the whole tensor."""
        if self.reduced:
            y = self._compute_output(acc).reshape((len(acc), self.mh) + (1,) * (len(self.out_shape) - 2))
            return self.lw.evaluator.run(self.epilogue, y, self.node.output[0])
        return self._full(acc)

    def _pick(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t).reshape(t.shape[0], -1)
        return t if self.reduced else t[:, self.representative]

    def pre_activation(self, acc: np.ndarray) -> np.ndarray:
        """Accumulators (B, MH) -> the quantizer's real input per channel (B, MH), float64."""
        return self._pick(self._shaped(acc))

    def level_index(self, q: Quantizer, acc: np.ndarray) -> np.ndarray:
        """Accumulators (B, MH) -> quantizer level indices (B, MH); the quantizer sees its own tensor layout."""
        return self._pick(q.index(self._shaped(acc)))

    def in_steps(self, q: Quantizer, acc: np.ndarray) -> np.ndarray:
        """Accumulators (B, MH) -> the quantizer's input in units of its scale (before rounding and clipping)."""
        return self._pick(self._shaped(acc) / np.asarray(q.scale, dtype=np.float64))  # ONNX broadcasting
