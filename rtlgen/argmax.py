"""`--argmax-in-hardware`: a classifier's TopK(k=1) or ArgMax as a label-select layer at the end of the chain.

A classifier exported with a TopK (FINN's InsertTopK) or ArgMax leaves the hardware as C scores a frame and the
host picks the label. In hardware, a label-select core (ip_cores/label_select.py) sends one narrow label word a
frame instead. That is exact only when the label of the hardware's integers is the label of the scores the
model compares: every channel's score must be the same strictly increasing function of its integer (a per-tensor
scale and bias, never per-channel ones), the scores must reach TopK in stream order (so equal maxima resolve to
the same index), and the label must be the model's output. Each is checked, and refused with its reason.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import onnx

from .errors import RtlgenError
from .frontend import LayerSource, LoweredModel, tensor_shape
from .graph import LabelSelectLayer, Network
from .onnx_eval import LAYOUT, display_name, node_attrs

LABEL_OPS = {"TopK", "ArgMax"}
ORDER_KEEPING_LAYOUT = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"}
PROBE_LEVELS = 9


def _label_node(lm: LoweredModel) -> tuple[onnx.NodeProto, list[onnx.NodeProto]]:
    """The TopK/ArgMax that makes the model's output, and the tail ops in front of it."""
    tail = list(lm.tail_nodes)
    found = [i for i, node in enumerate(tail) if node.op_type in LABEL_OPS]
    if not found:
        raise RtlgenError("--argmax-in-hardware: the model does not end in a TopK or ArgMax after its last layer; "
                          "export it with one (FINN's InsertTopK) or build without the option")
    node = tail[found[0]]
    label = f"{display_name(node)} ({node.op_type})"
    after = tail[found[0] + 1:]
    if after:
        raise RtlgenError(f"{label}: {', '.join(n.op_type for n in after)} follow(s) it; --argmax-in-hardware needs "
                          f"the label to be the model's output")
    return node, tail[:found[0]]


def _check_selection(lm: LoweredModel, node: onnx.NodeProto, channels: int) -> bool:
    """Checks the TopK/ArgMax itself; returns whether the last of equal maxima wins (ArgMax select_last_index)."""
    label = f"{display_name(node)} ({node.op_type})"
    a = node_attrs(node)
    shape = tensor_shape(lm.model, node.input[0])
    if shape is None or int(np.prod(shape)) != channels or sorted(shape)[:-1] != [1] * (len(shape) - 1):
        raise RtlgenError(f"{label}: selects over a tensor of shape {shape}; --argmax-in-hardware takes the label of "
                          f"the last layer's {channels} outputs, a (1, {channels}) vector")
    axis = int(a.get("axis", -1 if node.op_type == "TopK" else 0)) % len(shape)
    if shape[axis] != channels:
        raise RtlgenError(f"{label}: selects along axis {axis} of shape {shape}, not along its {channels} outputs")
    output = lm.model.graph.output[0].name
    if node.op_type == "TopK":
        k = lm.constant(node.input[1]) if len(node.input) > 1 else None
        if k is None or int(np.ravel(k)[0]) != 1:
            raise RtlgenError(f"{label}: k is {None if k is None else int(np.ravel(k)[0])}; the label select takes k = 1")
        if not int(a.get("largest", 1)):
            raise RtlgenError(f"{label}: largest=0 selects the smallest score; the label select takes the largest")
        if len(node.output) < 2 or node.output[1] != output:
            raise RtlgenError(f"{label}: the model outputs its values, not its indices; the label select sends the index")
        return False
    if node.output[0] != output:
        raise RtlgenError(f"{label}: its output is not the model's output")
    return bool(int(a.get("select_last_index", 0)))


def _check_scores_follow_integers(lm: LoweredModel, pre: list[onnx.NodeProto], node: onnx.NodeProto) -> None:
    """The scores TopK compares must be one strictly increasing function of the hardware's integers for every
    channel, in stream order: probed on frames of equal integers across the output format's range."""
    from .host import _value_info, build_tail, execute_frames

    label = f"{display_name(node)} ({node.op_type})"
    src = lm.layer_sources[-1]
    moved = [n for n in pre if n.op_type in LAYOUT and n.op_type not in ORDER_KEEPING_LAYOUT]
    if moved or not np.array_equal(src.out_order, np.arange(src.out_order.size)):
        raise RtlgenError(f"{label}: the scores reach it in another order than the hardware streams them; the label "
                          f"would differ where maxima are equal")
    fmt = lm.network.layers[-1].out_fmt
    lo, hi = (-1, 1) if fmt.kind == "bipolar" else (fmt.min, fmt.max)
    levels = np.unique(np.linspace(lo, hi, PROBE_LEVELS).round().astype(np.int64))
    if fmt.kind == "bipolar":
        levels = np.array([-1, 1])
    channels = src.out_order.size
    probe_lm = dataclasses.replace(lm, tail_nodes=list(pre))
    tail = build_tail(probe_lm, output=_value_info(node.input[0], tensor_shape(lm.model, node.input[0])))
    scores = execute_frames(tail, np.repeat(levels[:, None], channels, axis=1).astype(np.float32)).reshape(len(levels), -1)
    if not np.all(scores == scores[:, :1]):
        raise RtlgenError(f"{label}: its scores are not the same function of every channel's integer output (a "
                          f"per-channel scale or bias after the last layer); build without --argmax-in-hardware")
    if not np.all(np.diff(scores[:, 0]) > 0):
        raise RtlgenError(f"{label}: its scores do not grow with the hardware's integer outputs (a negative scale); "
                          f"build without --argmax-in-hardware")


def select_label_in_hardware(lm: LoweredModel) -> LoweredModel:
    """`lm` with a label-select layer appended: the hardware sends the label, the host tail only casts it."""
    node, pre = _label_node(lm)
    last = lm.network.layers[-1]
    channels = last.out_elems
    last_on_tie = _check_selection(lm, node, channels)
    _check_scores_follow_integers(lm, pre, node)
    layer = LabelSelectLayer(name=f"{node.name}_label", fmt=last.out_fmt, channels=channels, last_on_tie=last_on_tie,
                             sources={"node": node.name, "label_select": node.op_type})
    out = lm.model.graph.output[0]
    out_shape = tuple(d.dim_value for d in out.type.tensor_type.shape.dim) or (1, 1)
    src = LayerSource(node=node, epilogue=list(pre), quantizer_node=None, quantizer=None, alpha=np.ones(1),
                      beta=np.zeros(1), boundary=out.name, boundary_shape=out_shape, out_order=np.arange(1))
    network = Network(name=lm.network.name, layers=[*lm.network.layers, layer], input_fmt=lm.network.input_fmt,
                      output_fmt=layer.out_fmt)
    note = (f"--argmax-in-hardware: {display_name(node)} ({node.op_type}) runs in hardware as a label select over "
            f"{channels} outputs; the core sends one {layer.out_fmt.width}-bit label a frame")
    return dataclasses.replace(lm, network=network, layer_sources=[*lm.layer_sources, src], tail_nodes=[],
                               notes=[*lm.notes, note])
