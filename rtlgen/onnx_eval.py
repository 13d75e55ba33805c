"""Float64 evaluation of the per-element and layout-only ONNX ops that sit between integer layers.

The compiler evaluates these chains many times over with a *batch* of candidate values (the leading axis of
every tensor, size 1 in the model, stands for B candidates here): to probe how a layer's input depends on
the previous quantizer's levels, and to search thresholds. So the only rule beyond ONNX semantics is that
axis 0 is the batch and no op may move or reshape it.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .errors import Offence

# Ops that act on each element independently and never decrease-then-increase (so a composition of them
# maps an accumulator monotonically onto a quantizer input, per channel).
MONOTONE_ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "BatchNormalization", "Relu", "Sigmoid", "Clip",
                        "LeakyRelu", "Identity", "Tanh", "HardSigmoid"}
LAYOUT = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity"}


def node_attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


class ChainEvaluator:
    """Evaluates chains of nodes of one model on batched float64 tensors.

    `constant(name)` gives an initializer (or a constant computed by `constant_fn`); `quantizer_fn` maps a
    quantizer node to a `Quantizer` object so quantizers in a chain use rtlgen's float64 semantics.
    """

    def __init__(self, initializers: dict[str, np.ndarray], quantizer_fn: Callable, constant_fn: Callable | None = None):
        self._inits = initializers
        self._quantizer_fn = quantizer_fn
        self._constant_fn = constant_fn

    def constant(self, name: str) -> np.ndarray | None:
        if name in self._inits:
            return self._inits[name]
        if self._constant_fn is not None:
            return self._constant_fn(name)
        return None

    def check(self, node: onnx.NodeProto, dynamic_input: str) -> str | None:
        """Why `node` cannot be evaluated here (or None if it can)."""
        op = node.op_type
        if op in ("Quant", "IntQuant", "BipolarQuant", "MultiThreshold"):
            return None
        if op not in MONOTONE_ELEMENTWISE | LAYOUT:
            return f"op {op} is not supported between integer layers"
        others = [i for i in node.input if i and i != dynamic_input]
        if op in ("Add", "Sub", "Mul", "Div"):
            if len(others) != 1 or self.constant(others[0]) is None:
                return f"{op} needs one constant operand"
            if op == "Div" and node.input[0] != dynamic_input:
                return "Div of a constant by a tensor is not monotone"
        if op == "Transpose":
            perm = node_attrs(node).get("perm")
            if perm is not None and perm[0] != 0:
                return "Transpose moves the batch axis"
        return None

    def run(self, nodes: list[onnx.NodeProto], x: np.ndarray, input_name: str) -> np.ndarray:
        """Evaluate `nodes` (a chain, each consuming the previous output) on batched tensor `x`."""
        cur_name, cur = input_name, np.asarray(x, dtype=np.float64)
        for node in nodes:
            cur = self._eval(node, cur, cur_name)
            cur_name = node.output[0]
        return cur

    def _const(self, name: str) -> np.ndarray:
        value = self.constant(name)
        if value is None:
            raise ValueError(f"tensor {name} is not constant")
        return np.asarray(value)

    def _eval(self, node: onnx.NodeProto, x: np.ndarray, x_name: str) -> np.ndarray:
        op, a = node.op_type, node_attrs(node)
        batch = x.shape[0]
        if op in ("Quant", "IntQuant", "BipolarQuant", "MultiThreshold"):
            return self._quantizer_fn(node).apply(x)
        if op in ("Add", "Sub", "Mul", "Div"):
            first_dynamic = node.input[0] == x_name
            c = self._const(node.input[1] if first_dynamic else node.input[0]).astype(np.float64)
            lhs, rhs = (x, c) if first_dynamic else (c, x)
            return {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op](lhs, rhs)
        if op == "BatchNormalization":
            scale, bias, mean, var = (self._const(n).astype(np.float64) for n in node.input[1:5])
            eps = float(a.get("epsilon", 1e-5))
            shape = (1, -1) + (1,) * (x.ndim - 2)
            r = lambda v: v.reshape(shape)  # noqa: E731
            return r(scale) * (x - r(mean)) / np.sqrt(r(var) + eps) + r(bias)
        if op == "Relu":
            return np.maximum(x, 0.0)
        if op == "LeakyRelu":
            alpha = float(a.get("alpha", 0.01))
            return np.where(x >= 0, x, alpha * x)
        if op == "Sigmoid":
            return 1.0 / (1.0 + np.exp(-x))
        if op == "Tanh":
            return np.tanh(x)
        if op == "HardSigmoid":
            return np.clip(float(a.get("alpha", 0.2)) * x + float(a.get("beta", 0.5)), 0, 1)
        if op == "Clip":
            lo = a.get("min", -np.inf)
            hi = a.get("max", np.inf)
            if len(node.input) > 1 and node.input[1]:
                lo = float(self._const(node.input[1]))
            if len(node.input) > 2 and node.input[2]:
                hi = float(self._const(node.input[2]))
            return np.clip(x, lo, hi)
        if op == "Identity":
            return x
        if op == "Reshape":
            shape = [int(s) for s in self._const(node.input[1])]
            if shape and shape[0] == 1:
                shape[0] = batch
            elif shape and shape[0] == 0:
                shape[0] = batch
            return x.reshape(shape)
        if op == "Flatten":
            axis = int(a.get("axis", 1))
            if axis != 1:
                raise ValueError("Flatten with axis != 1")
            return x.reshape(batch, -1)
        if op in ("Squeeze", "Unsqueeze"):
            axes = a.get("axes")
            if axes is None and len(node.input) > 1:
                axes = [int(v) for v in self._const(node.input[1])]
            if op == "Squeeze":
                if axes is None:
                    axes = [i for i in range(1, x.ndim) if x.shape[i] == 1]
                return np.squeeze(x, axis=tuple(ax % x.ndim for ax in axes))
            out_ndim = x.ndim + len(axes)
            for ax in sorted(ax % out_ndim for ax in axes):
                x = np.expand_dims(x, ax)
            return x
        if op == "Transpose":
            perm = a.get("perm", list(range(x.ndim))[::-1])
            return np.transpose(x, perm)
        raise ValueError(f"cannot evaluate {op}")


def initializer_arrays(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in graph.initializer}


ORIGINAL_NAME_TAG = "rtlgen-original-name:"


def display_name(node: onnx.NodeProto) -> str:
    """The node's name after qonnx cleanup, plus its name in the user's file when cleanup renamed it."""
    name = node.name or node.output[0]
    doc = node.doc_string or ""
    if doc.startswith(ORIGINAL_NAME_TAG):
        original = doc[len(ORIGINAL_NAME_TAG):]
        if original and original != name:
            return f"{name} ('{original}' in the model file)"
    return name


def offence(node: onnx.NodeProto, why: str) -> Offence:
    return Offence(display_name(node), node.op_type, why)
