"""Exact rational evaluation of a cleaned QONNX graph: the referee when qonnx's float32 and the golden model disagree.

qonnx executes the original model in float32, so where a quantizer's input lies within float32 noise of a
decision boundary, qonnx may pick the other level than exact arithmetic would. `rtlgen verify` then needs a
third opinion that does not share rtlgen's own lowering (its float64 evaluation, thresholds and quantizer
objects): this module. It evaluates the ONNX nodes themselves, from their attributes, on exact rationals:
every float32 constant and input is a dyadic rational, and so is everything computed from them by
Add/Sub/Mul/MatMul/Conv; Div and quantizer rounding stay exact rationals too. The one approximation is the
square root in BatchNormalization, taken to 200 bits (far below any float32 effect). Quantized weights are
the exception by definition: their levels are what qonnx's float32 quantizer gives (they define the model,
as in rtlgen's frontend), dequantized exactly.

A tensor is a pair of object arrays of Python integers, numerators and positive denominators (elementwise
rationals). Matrix products and convolutions run on integers: each row and column is brought to one
denominator and divided by its common factor, so a quantized tensor becomes small integers and the product
can use int64 when it provably fits (Python integers otherwise).

Quantizer nodes also record each element's distance to the nearest decision boundary, in quantizer steps
(`margins`), so a disagreement with qonnx can be shown to sit within float32 noise of a boundary.
"""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["Rational", "ExactEvaluator", "ExactEvaluationError"]

SQRT_BITS = 200
INT64_SAFE = 2 ** 62


class ExactEvaluationError(Exception):
    """A node this evaluator does not implement (or a non-finite constant)."""


class Rational:
    """An array of exact rationals num/den (object arrays of Python ints, den > 0), numpy broadcasting."""

    def __init__(self, num, den=None):
        self.num = np.asarray(num, dtype=object)
        self.den = np.ones(self.num.shape, dtype=object) if den is None else np.broadcast_to(np.asarray(den, dtype=object), self.num.shape).copy()

    @staticmethod
    def from_float(values) -> "Rational":
        """The exact value of each float (float32 and float64 values are dyadic rationals)."""
        arr = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(arr)):
            raise ExactEvaluationError("a constant or input is not finite")
        pairs = [v.as_integer_ratio() for v in arr.ravel().tolist()]
        num = np.empty(len(pairs), dtype=object)
        den = np.empty(len(pairs), dtype=object)
        num[:] = [p[0] for p in pairs]
        den[:] = [p[1] for p in pairs]
        return Rational(num.reshape(arr.shape), den.reshape(arr.shape))

    @property
    def shape(self) -> tuple:
        return self.num.shape

    def reduced(self) -> "Rational":
        g = np.gcd(self.num, self.den)
        g = np.where(g == 0, 1, g)
        return Rational(self.num // g, self.den // g)

    def to_float(self) -> np.ndarray:
        return np.array([n / d for n, d in zip(self.num.ravel().tolist(), self.den.ravel().tolist())],
                        dtype=np.float64).reshape(self.shape)

    def layout(self, fn) -> "Rational":
        """Apply a layout-only numpy function (reshape, transpose, ...) to numerators and denominators."""
        return Rational(fn(self.num), fn(self.den))

    def __add__(self, o: "Rational") -> "Rational":
        return Rational(self.num * o.den + o.num * self.den, self.den * o.den).reduced()

    def __sub__(self, o: "Rational") -> "Rational":
        return Rational(self.num * o.den - o.num * self.den, self.den * o.den).reduced()

    def __mul__(self, o: "Rational") -> "Rational":
        return Rational(self.num * o.num, self.den * o.den).reduced()

    def __truediv__(self, o: "Rational") -> "Rational":
        if np.any(o.num == 0):
            raise ExactEvaluationError("division by zero")
        sign = np.where(o.num < 0, -1, 1).astype(object)
        return Rational(self.num * o.den * sign, self.den * o.num * sign).reduced()

    def ge(self, o: "Rational") -> np.ndarray:
        """self >= o, elementwise (exact)."""
        return (self.num * o.den - o.num * self.den) >= 0

    def floor(self) -> np.ndarray:
        return np.asarray(self.num // self.den, dtype=object)

    def ceil(self) -> np.ndarray:
        return np.asarray(-((-self.num) // self.den), dtype=object)


def _int(value: int) -> Rational:
    return Rational(np.array(value, dtype=object))


def _where(cond, a: Rational, b: Rational) -> Rational:
    return Rational(np.where(cond, a.num, b.num), np.where(cond, a.den, b.den))


# ------------------------------------------------------------------------------------------------ products

def _integer_rows(r: Rational) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 2-D rational matrix as (integers, row multipliers num/den) with r[i, :] = ints[i, :] * num[i] / den[i]:
    each row over its common denominator, divided by the common factor of its numerators."""
    rows, cols = r.shape
    ints = np.empty((rows, cols), dtype=object)
    mult_num = np.empty(rows, dtype=object)
    mult_den = np.empty(rows, dtype=object)
    for i in range(rows):
        dens = r.den[i].tolist()
        lcm = math.lcm(*dens) if dens else 1
        row = [n * (lcm // d) for n, d in zip(r.num[i].tolist(), dens)]
        g = math.gcd(*row) or 1
        ints[i] = [v // g for v in row]
        mult_num[i], mult_den[i] = g, lcm
    return ints, mult_num, mult_den


def _int_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact integer matrix product: int64 when every partial sum provably fits, Python integers otherwise."""
    k = a.shape[1]
    amax = max((abs(v) for v in a.ravel().tolist()), default=0)
    bmax = max((abs(v) for v in b.ravel().tolist()), default=0)
    if amax * bmax * max(k, 1) < INT64_SAFE:
        return (a.astype(np.int64) @ b.astype(np.int64)).astype(object)
    return a.dot(b)


def rational_matmul(a: Rational, b: Rational) -> Rational:
    """(M, K) x (K, N) exactly."""
    ai, an, ad = _integer_rows(a)
    bt, bn, bd = _integer_rows(Rational(b.num.T, b.den.T))
    prod = _int_matmul(ai, bt.T)
    return Rational(prod * an[:, None] * bn[None, :], ad[:, None] * bd[None, :]).reduced()


# ------------------------------------------------------------------------------------------------ rounding

def _round(y: Rational, mode: str) -> np.ndarray:
    """Integer rounding of exact rationals, the qonnx IntQuant modes."""
    mode = mode.upper()
    f, c = y.floor(), y.ceil()
    if mode in ("ROUND", "HALF_EVEN"):
        twice_rest = 2 * (y.num - f * y.den)  # 2*(y - floor(y)) * den
        up = (twice_rest > y.den) | ((twice_rest == y.den) & (f % 2 == 1))
        return np.where(up, f + 1, f)
    if mode == "CEIL":
        return c
    if mode == "FLOOR":
        return f
    neg = y.num < 0
    if mode == "UP":
        return np.where(neg, f, c)
    if mode == "DOWN":
        return np.where(neg, c, f)
    if mode in ("HALF_UP", "HALF_DOWN"):
        absy = Rational(np.abs(y.num), y.den)
        half = Rational(np.array(1, dtype=object), np.array(2, dtype=object))
        mag = (absy + half).floor() if mode == "HALF_UP" else (absy - half).ceil()
        return np.where(neg, -mag, mag)
    raise ExactEvaluationError(f"rounding mode {mode} is not known")


def _boundary_margin(y: Rational, lo: int, hi: int, half: bool) -> np.ndarray:
    """Distance (float, in steps) from y to the nearest point where the rounded and clipped level changes:
    half-integers (round-to-nearest modes) or integers (directed modes) within the clip range. Measured on the
    float64 value of the exact y: its error (~1e-16 relative) is far below the near-tie tolerance it is held to."""
    yf = y.to_float()
    if half:
        cands = [np.floor(yf - 0.5) + 0.5, np.floor(yf - 0.5) + 1.5]
        lo_b, hi_b = lo + 0.5, hi - 0.5
    else:
        cands = [np.floor(yf), np.floor(yf) + 1]
        lo_b, hi_b = lo + 0.0, float(hi)
    if hi_b < lo_b:
        return np.full(yf.shape, np.inf)
    return np.min([np.abs(yf - np.clip(c, lo_b, hi_b)) for c in cands], axis=0)


# ------------------------------------------------------------------------------------------------ evaluator

def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


class ExactEvaluator:
    """Evaluates a cleaned ONNX/QONNX model (its nodes in topological order) on exact rationals.

    `run(feeds, targets)` computes the tensors in `targets` from the tensors in `feeds` (float arrays or
    `Rational`s with the model's shapes: the graph input or any intermediate tensor, which then replaces its
    producer).
    Constant subgraphs (weights through their quantizers) are evaluated once and kept.
    """

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.nodes = list(model.graph.node)
        self._producer = {o: n for n in self.nodes for o in n.output}
        self._inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        self._const: dict[str, object] = {}
        self.margins: dict[str, np.ndarray] = {}

    # ---- values
    def _initializer(self, name: str):
        arr = self._inits[name]
        if arr.dtype.kind in "iub":
            return Rational(arr.astype(object))
        return Rational.from_float(arr)

    def _is_constant(self, name: str, feeds) -> bool:
        if name in feeds:
            return False
        if name in self._inits or name in self._const:
            return True
        node = self._producer.get(name)
        return node is not None and all(not i or self._is_constant(i, feeds) for i in node.input)

    def run(self, feeds: dict[str, np.ndarray], targets: list[str]) -> dict[str, Rational]:
        values = {k: v if isinstance(v, Rational) else Rational.from_float(v) for k, v in feeds.items()}
        needed = self._needed(set(targets), set(feeds))
        for node in self.nodes:
            if not any(o in needed for o in node.output) or all(o in values for o in node.output):
                continue
            constant = all(not i or self._is_constant(i, feeds) for i in node.input)
            if constant and node.output[0] in self._const:
                values[node.output[0]] = self._const[node.output[0]]
                continue
            ins = [self._value(i, values) if i else None for i in node.input]
            if constant and node.op_type in ("Quant", "IntQuant") and all(i in self._inits for i in node.input[:4]):
                out = self._constant_quant(node, ins)
            else:
                out = self._eval(node, ins)
            values[node.output[0]] = out
            if constant:
                self._const[node.output[0]] = out
        for t in targets:
            if t not in values and (t in self._inits or t in self._const):
                values[t] = self._value(t, values)
        missing = [t for t in targets if t not in values]
        if missing:
            raise ExactEvaluationError(f"tensor(s) {missing} are not computed by the model")
        return {t: values[t] for t in targets}

    def _needed(self, targets: set[str], fed: set[str]) -> set[str]:
        needed, stack = set(), list(targets)
        while stack:
            t = stack.pop()
            if t in needed:
                continue
            needed.add(t)
            node = self._producer.get(t)
            if node is not None and t not in fed:
                stack += [i for i in node.input if i]
        return needed

    def _value(self, name: str, values: dict) -> Rational:
        if name in values:
            return values[name]
        if name in self._const:
            return self._const[name]
        if name in self._inits:
            self._const[name] = self._initializer(name)
            return self._const[name]
        raise ExactEvaluationError(f"tensor {name} has no value")

    # ---- ops
    def _eval(self, node: onnx.NodeProto, ins: list) -> Rational:
        op = node.op_type
        fn = getattr(self, f"_op_{op}", None)
        if fn is None:
            raise ExactEvaluationError(f"{node.name or op}: op {op} has no exact evaluation")
        return fn(node, _attrs(node), ins)

    @staticmethod
    def _ints(r: Rational) -> list[int]:
        return [int(v) for v in r.floor().ravel().tolist()]

    def _op_Identity(self, node, a, ins):
        return ins[0]

    def _op_Add(self, node, a, ins):
        return ins[0] + ins[1]

    def _op_Sub(self, node, a, ins):
        return ins[0] - ins[1]

    def _op_Mul(self, node, a, ins):
        return ins[0] * ins[1]

    def _op_Div(self, node, a, ins):
        return ins[0] / ins[1]

    def _op_Relu(self, node, a, ins):
        x = ins[0]
        return _where(x.num > 0, x, _int(0))

    def _op_LeakyRelu(self, node, a, ins):
        x = ins[0]
        alpha = Rational.from_float(np.float32(a.get("alpha", 0.01)))
        return _where(x.num >= 0, x, x * alpha)

    def _op_Clip(self, node, a, ins):
        x = ins[0]
        lo = ins[1] if len(ins) > 1 and ins[1] is not None else (Rational.from_float(np.float32(a["min"])) if "min" in a else None)
        hi = ins[2] if len(ins) > 2 and ins[2] is not None else (Rational.from_float(np.float32(a["max"])) if "max" in a else None)
        if lo is not None:
            x = _where(x.ge(lo), x, Rational(np.broadcast_to(lo.num, x.shape), np.broadcast_to(lo.den, x.shape)))
        if hi is not None:
            x = _where(hi.ge(x), x, Rational(np.broadcast_to(hi.num, x.shape), np.broadcast_to(hi.den, x.shape)))
        return x

    def _op_Reshape(self, node, a, ins):
        x, shape = ins[0], self._ints(ins[1])
        shape = [x.shape[i] if s == 0 and not a.get("allowzero", 0) else s for i, s in enumerate(shape)]
        return x.layout(lambda v: v.reshape(shape))

    def _op_Flatten(self, node, a, ins):
        x, axis = ins[0], a.get("axis", 1)
        axis = axis % len(x.shape) if axis < 0 else axis
        lead = int(np.prod(x.shape[:axis]))
        return x.layout(lambda v: v.reshape(lead, -1))

    def _op_Transpose(self, node, a, ins):
        perm = a.get("perm")
        return ins[0].layout(lambda v: np.transpose(v, perm))

    def _axes(self, a, ins) -> list[int] | None:
        if len(ins) > 1 and ins[1] is not None:
            return self._ints(ins[1])
        return a.get("axes")

    def _op_Squeeze(self, node, a, ins):
        axes = self._axes(a, ins)
        return ins[0].layout(lambda v: np.squeeze(v, axis=None if axes is None else tuple(axes)))

    def _op_Unsqueeze(self, node, a, ins):
        axes = self._axes(a, ins)
        rank = len(ins[0].shape) + len(axes)
        return ins[0].layout(lambda v: np.expand_dims(v, tuple(sorted(ax % rank for ax in axes))))

    def _op_MatMul(self, node, a, ins):
        x, w = ins
        if len(w.shape) != 2:
            raise ExactEvaluationError(f"{node.name}: MatMul with a {len(w.shape)}-D right operand")
        lead = x.shape[:-1]
        flat = x.layout(lambda v: v.reshape(-1, x.shape[-1]))
        out = rational_matmul(flat, w)
        return out.layout(lambda v: v.reshape(*lead, w.shape[1]))

    def _op_Gemm(self, node, a, ins):
        x, w = ins[0], ins[1]
        if a.get("transA", 0):
            x = x.layout(lambda v: v.T)
        if a.get("transB", 0):
            w = w.layout(lambda v: v.T)
        y = rational_matmul(x, w)
        alpha = a.get("alpha", 1.0)
        if alpha != 1.0:
            y = y * Rational.from_float(np.float32(alpha))
        if len(ins) > 2 and ins[2] is not None:
            c = ins[2]
            beta = a.get("beta", 1.0)
            if beta != 1.0:
                c = c * Rational.from_float(np.float32(beta))
            y = y + c
        return y

    def _op_Conv(self, node, a, ins):
        x, w = ins[0], ins[1]
        if x.shape[0] != 1:
            raise ExactEvaluationError(f"{node.name}: Conv on a batch of {x.shape[0]}")
        spatial = len(x.shape) - 2
        kernel = list(w.shape[2:])
        strides = a.get("strides", [1] * spatial)
        dil = a.get("dilations", [1] * spatial)
        pads = a.get("pads", [0] * (2 * spatial))
        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise ExactEvaluationError(f"{node.name}: Conv auto_pad is not evaluated exactly")
        group = a.get("group", 1)
        pad_width = [(0, 0)] + [(pads[i], pads[i + spatial]) for i in range(spatial)]
        num = np.pad(x.num[0], pad_width, constant_values=0)
        den = np.pad(x.den[0], pad_width, constant_values=1)
        out_sizes = [(num.shape[1 + i] - dil[i] * (kernel[i] - 1) - 1) // strides[i] + 1 for i in range(spatial)]
        positions = list(np.ndindex(*out_sizes))
        c_in, m = x.shape[1], w.shape[0]
        cg, mg = c_in // group, m // group
        outs_num = np.empty((m, len(positions)), dtype=object)
        outs_den = np.empty((m, len(positions)), dtype=object)
        for g in range(group):
            cols_num, cols_den = [], []
            for pos in positions:
                sl = tuple(slice(pos[i] * strides[i], pos[i] * strides[i] + dil[i] * (kernel[i] - 1) + 1, dil[i])
                           for i in range(spatial))
                cols_num.append(num[(slice(g * cg, (g + 1) * cg),) + sl].ravel())
                cols_den.append(den[(slice(g * cg, (g + 1) * cg),) + sl].ravel())
            windows = Rational(np.array(cols_num, dtype=object), np.array(cols_den, dtype=object))
            wg = w.layout(lambda v: v[g * mg:(g + 1) * mg].reshape(mg, -1).T)
            prod = rational_matmul(windows, wg)  # (positions, mg)
            outs_num[g * mg:(g + 1) * mg] = prod.num.T
            outs_den[g * mg:(g + 1) * mg] = prod.den.T
        y = Rational(outs_num.reshape(1, m, *out_sizes), outs_den.reshape(1, m, *out_sizes))
        if len(ins) > 2 and ins[2] is not None:
            b = ins[2].layout(lambda v: v.reshape(1, m, *([1] * spatial)))
            y = y + b
        return y

    def _op_MaxPool(self, node, a, ins):
        x = ins[0]
        if any(a.get("pads", [0])) or a.get("ceil_mode", 0) or any(d != 1 for d in a.get("dilations", [1])):
            raise ExactEvaluationError(f"{node.name}: MaxPool with padding, ceil mode or dilation")
        kernel = a["kernel_shape"]
        spatial = len(kernel)
        strides = a.get("strides", [1] * spatial)
        out_sizes = [(x.shape[2 + i] - kernel[i]) // strides[i] + 1 for i in range(spatial)]
        best = None
        for off in np.ndindex(*kernel):
            sl = (slice(None), slice(None)) + tuple(slice(off[i], off[i] + strides[i] * (out_sizes[i] - 1) + 1, strides[i])
                                                    for i in range(spatial))
            cand = x.layout(lambda v: v[sl])
            best = cand if best is None else _where(cand.ge(best) & ~best.ge(cand), cand, best)
        return best

    def _window_sum(self, x: Rational, kernel: list[int], strides: list[int], pads: list[int]) -> Rational:
        """Sum of every (zero-padded) window, exactly."""
        spatial = len(kernel)
        pad_width = [(0, 0), (0, 0)] + [(pads[i], pads[i + spatial]) for i in range(spatial)]
        padded = Rational(np.pad(x.num, pad_width, constant_values=0), np.pad(x.den, pad_width, constant_values=1))
        out_sizes = [(padded.shape[2 + i] - kernel[i]) // strides[i] + 1 for i in range(spatial)]
        total = None
        for off in np.ndindex(*kernel):
            sl = (slice(None), slice(None)) + tuple(slice(off[i], off[i] + strides[i] * (out_sizes[i] - 1) + 1, strides[i])
                                                    for i in range(spatial))
            cand = padded.layout(lambda v: v[sl])
            total = cand if total is None else total + cand
        return total

    def _op_AveragePool(self, node, a, ins):
        kernel = a["kernel_shape"]
        spatial = len(kernel)
        pads = a.get("pads", [0] * (2 * spatial))
        if a.get("ceil_mode", 0) or any(d != 1 for d in a.get("dilations", [1])) or (any(pads) and not a.get("count_include_pad", 0)):
            raise ExactEvaluationError(f"{node.name}: AveragePool with ceil mode, dilation or pads not counted")
        total = self._window_sum(ins[0], kernel, a.get("strides", [1] * spatial), pads)
        return total / _int(int(np.prod(kernel)))

    def _op_GlobalAveragePool(self, node, a, ins):
        x = ins[0]
        kernel = list(x.shape[2:])
        return self._window_sum(x, kernel, [1] * len(kernel), [0] * (2 * len(kernel))) / _int(int(np.prod(kernel)))

    def _op_ReduceMean(self, node, a, ins):
        x = ins[0]
        axes = self._axes(a, ins)
        rank = len(x.shape)
        if axes is None or sorted(ax % rank for ax in axes) != list(range(2, rank)):
            raise ExactEvaluationError(f"{node.name}: ReduceMean over axes {axes}, not the spatial axes")
        y = self._op_GlobalAveragePool(node, a, ins)
        return y if a.get("keepdims", 1) else y.layout(lambda v: v.reshape(v.shape[:2]))

    def _op_Trunc(self, node, a, ins):
        """qonnx Trunc v1/v2 (the version the model's opset names for its domain; the newest when none)."""
        version = next((o.version for o in self.model.opset_import if o.domain == node.domain), 2)
        x, scale, zeropt, in_bits = ins[:4]
        mode = a.get("rounding_mode", b"FLOOR")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        y0 = x / scale + zeropt
        first = Rational(_round(y0, "ROUND"))
        if version == 1:
            shift = self._ints(in_bits)[0] - self._ints(ins[4])[0]
            y = first / _int(2 ** shift)
            k = _round(y, mode)
            half = mode.upper() in ("ROUND", "HALF_EVEN", "HALF_UP", "HALF_DOWN")
            self.margins[node.output[0]] = np.minimum(_boundary_margin(y, -2 ** 62, 2 ** 62, half),
                                                      _boundary_margin(y0, -2 ** 62, 2 ** 62, True) / 2.0 ** shift)
            return (Rational(k) - zeropt) * scale
        out_scale, out_bits = ins[4], self._ints(ins[5])[0]
        shift = np.round(np.log2(out_scale.to_float() / scale.to_float()))
        trunc_scale = Rational(np.asarray(2 ** shift.astype(np.int64), dtype=object)) if np.all(shift >= 0) else \
            Rational(np.ones(shift.shape, dtype=object), np.asarray(2 ** (-shift).astype(np.int64), dtype=object))
        signed, narrow = bool(a.get("signed", 1)), bool(a.get("narrow", 0))
        lo = -(2 ** (out_bits - 1)) + (1 if narrow else 0) if signed else 0
        hi = 2 ** (out_bits - 1) - 1 if signed else 2 ** out_bits - 1 - (1 if narrow else 0)
        y = first / trunc_scale
        k = np.clip(_round(y, mode), lo, hi)
        half = mode.upper() in ("ROUND", "HALF_EVEN", "HALF_UP", "HALF_DOWN")
        self.margins[node.output[0]] = np.minimum(_boundary_margin(y, lo, hi, half),
                                                  _boundary_margin(y0, -2 ** 62, 2 ** 62, True) / trunc_scale.to_float())
        return (Rational(k) - zeropt / trunc_scale) * out_scale

    def _op_BatchNormalization(self, node, a, ins):
        x, gamma, beta, mean, var = ins[:5]
        eps = Rational.from_float(np.float32(a.get("epsilon", 1e-5)))
        denom = var + eps
        root_num = np.empty(denom.shape, dtype=object)
        root_den = np.empty(denom.shape, dtype=object)
        for i, (n, d) in enumerate(zip(denom.num.ravel().tolist(), denom.den.ravel().tolist())):
            root_num.flat[i] = math.isqrt(n * d * 4 ** SQRT_BITS)  # sqrt(n/d) = sqrt(n*d)/d
            root_den.flat[i] = d * 2 ** SQRT_BITS
        root = Rational(root_num, root_den)
        shape = (1, -1) + (1,) * (len(x.shape) - 2)
        per_channel = lambda r: r.layout(lambda v: v.reshape(shape))  # noqa: E731
        return (x - per_channel(mean)) / per_channel(root) * per_channel(gamma) + per_channel(beta)

    # ---- quantizers
    def _constant_quant(self, node, ins) -> Rational:
        """Quantized weights: the levels qonnx's own float32 quantizer gives them (they define the model, as
        in rtlgen's frontend: a weight on a float32 rounding tie rounds as qonnx rounds it), dequantized exactly."""
        from qonnx.custom_op.general.intquant import int_quant

        a = _attrs(node)
        mode = a.get("rounding_mode", b"ROUND")
        x, scale, zeropt, bits = (self._inits[i] for i in node.input[:4])
        out32 = np.asarray(int_quant(x, scale, zeropt, bits, a.get("signed", 1), a.get("narrow", 0),
                                     mode.decode() if isinstance(mode, bytes) else mode), dtype=np.float32)
        k = np.round(out32.astype(np.float64) / scale.astype(np.float64) + zeropt.astype(np.float64))
        return (Rational(k.astype(np.int64).astype(object)) - ins[2]) * ins[1]

    def _op_Quant(self, node, a, ins):
        x, scale, zeropt, bits = ins[:4]
        bits = self._ints(bits)[0]
        signed, narrow = bool(a.get("signed", 1)), bool(a.get("narrow", 0))
        y = x / scale + zeropt
        if bits == 1 and signed:  # qonnx: a 1-bit signed quantizer is bipolar
            q = np.where(y.num >= 0, 1, -1).astype(object)
            self.margins[node.output[0]] = np.abs(y.to_float())
        else:
            lo = -(2 ** (bits - 1)) + (1 if narrow else 0) if signed else 0
            hi = 2 ** (bits - 1) - 1 if signed else 2 ** bits - 1 - (1 if narrow else 0)
            mode = a.get("rounding_mode", b"ROUND")
            mode = mode.decode() if isinstance(mode, bytes) else mode
            q = np.clip(_round(y, mode), lo, hi)
            half = mode.upper() in ("ROUND", "HALF_EVEN", "HALF_UP", "HALF_DOWN")
            self.margins[node.output[0]] = _boundary_margin(y, lo, hi, half)
        return (Rational(q) - zeropt) * scale

    _op_IntQuant = _op_Quant

    def _op_BipolarQuant(self, node, a, ins):
        x, scale = ins[:2]
        self.margins[node.output[0]] = np.abs((x / scale).to_float())
        return Rational(np.where(x.num >= 0, 1, -1).astype(object)) * scale

    def _op_MultiThreshold(self, node, a, ins):
        x, thr = ins[:2]
        layout = a.get("data_layout", b"")
        layout = layout.decode() if isinstance(layout, bytes) else layout
        if not layout:
            layout = {2: "NC", 3: "NWC", 4: "NCHW"}.get(len(x.shape), "")
        cdim = layout.index("C") if "C" in layout else 1
        xm = x.layout(lambda v: np.moveaxis(v, cdim, -1)[..., None])  # (..., C, 1)
        count = xm.ge(thr).sum(axis=-1).astype(object)  # thresholds (C or 1, T) broadcast
        # distance to the nearest threshold in units of the channel's threshold spacing
        xf, tf = xm.to_float(), thr.to_float()
        spacing = np.where(tf.shape[-1] > 1, np.ptp(tf, axis=-1) / max(tf.shape[-1] - 1, 1), np.maximum(np.abs(tf[..., 0]), 1.0))
        spacing = np.where(spacing > 0, spacing, 1.0)
        margin = np.abs(xf - tf).min(axis=-1) / spacing
        self.margins[node.output[0]] = np.moveaxis(margin, -1, cdim)
        out = Rational(np.moveaxis(count, -1, cdim))
        scale = Rational.from_float(np.float32(a.get("out_scale", 1.0)))
        bias = Rational.from_float(np.float32(a.get("out_bias", 0.0)))
        return out * scale + bias
