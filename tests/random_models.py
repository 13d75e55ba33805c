"""Random QONNX multi-layer perceptrons for fuzzing rtlgen end to end.

`random_model(seed)` builds a small fully-connected QONNX graph with `onnx.helper` and the qonnx custom ops
(domain `qonnx.custom_op.general`), plus float inputs that exercise it, a random folding and a one-line
description. Everything is drawn from `numpy.random.default_rng(seed)`, so a seed names a model forever
(as long as this file's drawing order is unchanged: append new choices at the end of a block, never in the
middle, or old regression seeds stop meaning what their comments say; activation zero points, added later,
come from a stream of their own, `default_rng([seed, layer, 0x5A])`, for that reason).

What varies (all within rtlgen's limits: weights and every quantizer after the first layer at most 8 bits):
- depth 1-4, input 1-40 features, layer widths 1-32, shape [1, F], batch 1, opset 13;
- optional host preprocessing before the input quantizer (Add / Mul by per-feature or scalar constants);
- the input quantizer: Quant (1-8 bits, rarely 9-12; signed/unsigned, narrow or not, every rounding mode,
  scale a power of two or arbitrary, sometimes negative) or BipolarQuant (scale of either sign);
- optional affine ops between a quantizer and the next MatMul (scalar Mul of either sign, per-feature Add);
- each layer MatMul or Gemm (transB, alpha), weights through Quant (1-8 bits, signed/unsigned, narrow,
  any rounding mode, per-tensor or per-output-channel scale, power of two or arbitrary, rarely negative per
  channel, some weights exactly on rounding ties, sometimes with a Transpose between Quant and MatMul) or
  BipolarQuant;
- bias: none, Add/Sub of a constant (either operand order) or Gemm C; zero, random or on the accumulator grid
  (so rounding ties occur in the integers), per channel or scalar;
- optional BatchNormalization (gamma of either sign, so some channels decrease), Relu, Mul/Div by a constant
  (scalar or per channel, negative allowed);
- activation quantizer: Quant (1-8 bits, signed/unsigned, narrow, every rounding mode, scale of either sign;
  per-channel only on the last layer) or BipolarQuant; the last layer ends on a quantizer or on the raw
  MatMul/bias with the float ops after it left to the host tail;
- folding: per layer PE | MH and SIMD | MW, each serial, fully parallel or in between (width converters);
- inputs: uniform over the input quantizer's range, some outside it, some exactly on levels and on rounding
  ties (k + 0.5) * scale, some exact zeros.

Scales are calibrated on a batch of random inputs pushed through the model as it is built (float64), so the
quantizers see a spread over many of their levels rather than all-clipped values, like a trained network.

`refused_model(kind, seed)` builds models just outside the limits, which rtlgen must refuse with a clear
`RtlgenError` (see `REFUSED_KINDS`).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from rtlgen.quantizers import apply_rounding

QONNX_DOMAIN = "qonnx.custom_op.general"
OPSET = 13
ROUNDING_MODES = ("ROUND", "HALF_EVEN", "CEIL", "FLOOR", "UP", "DOWN", "HALF_UP", "HALF_DOWN")
N_FRAMES = 8
N_CALIBRATION = 96


# ------------------------------------------------------------------------------------------- quantizers

# calibration only (expected values come from qonnx), so the generator may share rtlgen's rounding table
_round = apply_rounding


class QSpec:
    """A quantizer as the generator sees it (for calibration and description, float64)."""

    def __init__(self, kind: str, scale, bits: int = 0, signed: bool = True, narrow: bool = False,
                 rounding: str = "ROUND", zeropt: int = 0):
        self.kind = kind  # "quant" or "bipolar"
        self.scale = np.asarray(scale, dtype=np.float32)
        self.bits, self.signed, self.narrow, self.rounding = bits, signed, narrow, rounding
        self.zeropt = int(zeropt)  # qonnx Quant: round(x / scale + zeropt), value (k - zeropt) * scale

    @property
    def bipolar(self) -> bool:
        return self.kind == "bipolar" or (self.bits == 1 and self.signed)

    def int_range(self) -> tuple[int, int]:
        if self.bipolar:
            return -1, 1
        if self.signed:
            return -(2 ** (self.bits - 1)) + int(self.narrow), 2 ** (self.bits - 1) - 1
        return 0, 2**self.bits - 1 - int(self.narrow)

    def apply(self, x: np.ndarray) -> np.ndarray:
        s = self.scale.astype(np.float64)
        x = np.asarray(x, dtype=np.float64)
        if self.kind == "bipolar":
            return np.where(x >= 0, 1.0, -1.0) * s
        y = x / s
        if self.bipolar:
            return np.where(y >= 0, 1.0, -1.0) * s
        lo, hi = self.int_range()
        return (_round(np.clip(y + self.zeropt, lo, hi), self.rounding) - self.zeropt) * s

    def describe(self) -> str:
        s = self.scale.ravel()
        sc = f"s={s[0]:.4g}" if s.size == 1 else f"s=pc[{s.min():.3g}..{s.max():.3g}]"
        if self.kind == "bipolar":
            return f"BipolarQuant {sc}"
        flags = ("INT" if self.signed else "UINT") + str(self.bits) + ("n" if self.narrow else "")
        return f"Quant {flags} {self.rounding} {sc}" + (f" z={self.zeropt}" if self.zeropt else "")


# ------------------------------------------------------------------------------------------- graph builder

class _Graph:
    """Collects nodes and initializers; tensor and node names are unique and readable."""

    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0
        self.op_count: dict[str, int] = {}

    def _name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{self._n}"

    def const(self, value, prefix: str = "c") -> str:
        name = self._name(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], domain: str = "", **attrs) -> str:
        out = self._name(op.lower() + "_out")
        # the name qonnx's GiveUniqueNodeNames will give this node (op type and per-type count, in order)
        name = f"{op}_{self.op_count.get(op, 0)}"
        self.op_count[op] = self.op_count.get(op, 0) + 1
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, domain=domain, **attrs))
        return out

    def quant(self, x: str, q: QSpec) -> str:
        if q.kind == "bipolar":
            return self.node("BipolarQuant", [x, self.const(q.scale, "scale")], domain=QONNX_DOMAIN)
        return self.node("Quant", [x, self.const(q.scale, "scale"), self.const(float(q.zeropt), "zeropt"),
                                   self.const(float(q.bits), "bitwidth")], domain=QONNX_DOMAIN,
                         signed=int(q.signed), narrow=int(q.narrow), rounding_mode=q.rounding)


def _scalar_shape(rng) -> tuple:
    return [(), (1,), (1, 1)][rng.integers(3)]


def _pick_scale(rng, magnitude: float, pow2: bool) -> float:
    """A positive scale near `magnitude`: a power of two or an 'arbitrary' float."""
    if not np.isfinite(magnitude) or magnitude < 2.0**-16:  # nothing to calibrate on (a dead channel)
        magnitude = float(rng.uniform(0.1, 2.0))
    magnitude = float(np.clip(magnitude, 2.0**-16, 2.0**20))
    if pow2:
        return float(2.0 ** np.round(np.log2(magnitude)))
    return float(np.float32(magnitude * rng.uniform(0.8, 1.25)))


def _up(minimum: float, pow2: bool) -> float:
    """The smallest scale allowed above `minimum` (a power of two when `pow2`), or 0 for no bound."""
    if minimum <= 0:
        return 0.0
    return float(2.0 ** np.ceil(np.log2(minimum))) if pow2 else float(np.float32(minimum * 1.01))


def _random_quant(rng, pow2: bool, *, max_bits: int = 8, allow_bipolar: bool = True, p_bipolar: float = 0.12) -> QSpec:
    """A quantizer spec with unit-free scale 1 (the caller sets the scale)."""
    if allow_bipolar and rng.random() < p_bipolar:
        return QSpec("bipolar", 1.0)
    bits = int(rng.integers(1, max_bits + 1))
    signed = bool(rng.random() < 0.5)
    narrow = bool(rng.random() < 0.3)
    if bits == 1 and not signed and narrow and rng.random() < 0.8:
        narrow = False  # a one-level quantizer (always 0): keep it rare
    rounding = ROUNDING_MODES[rng.integers(len(ROUNDING_MODES))]
    return QSpec("quant", 1.0, bits, signed, narrow, rounding)


def _act_scale_magnitude(q: QSpec, vals: np.ndarray, negative: bool, rng) -> np.ndarray:
    """Per-channel scale magnitudes so the quantizer spreads calibration values `vals` (N, C) over its levels."""
    lo, hi = q.int_range()
    v = -vals if negative else vals
    top = max(abs(lo), abs(hi), 1) + 0.5  # the values up to the quantile land on the outer levels
    frac = rng.uniform(0.6, 1.0)
    if q.signed or q.bipolar:
        m = np.quantile(np.abs(v), frac, axis=0)
    else:
        m = np.quantile(np.clip(v, 0, None), frac, axis=0)
        m = np.where(m > 0, m, np.quantile(np.abs(v), frac, axis=0))
    return m / top * rng.uniform(0.7, 1.4)


# ------------------------------------------------------------------------------------------- the model

class RandomModel:
    """What `random_model` returns, plus the details tests and the fuzz bench want."""

    def __init__(self, model, inputs, folding, description, layers, features):
        self.model, self.inputs, self.folding, self.description, self.layers = model, inputs, folding, description, layers
        self.features: set[str] = features  # coverage tags (see `_quant_features` and the generator body)


def random_model(seed: int) -> tuple[onnx.ModelProto, np.ndarray, dict, str]:
    """(model, float inputs (N_FRAMES, 1, F), folding spec, description) for one seed."""
    r = build_random_model(seed)
    return r.model, r.inputs, r.folding, r.description


def build_random_model(seed: int) -> RandomModel:
    rng = np.random.default_rng(seed)
    g = _Graph()
    desc: list[str] = []
    feat: set[str] = set()
    pow2_rate = [0.0, 0.5, 1.0, 1.0][rng.integers(4)]  # per model: how often scales are powers of two

    def pow2() -> bool:
        return bool(rng.random() < pow2_rate)

    depth = int(rng.integers(1, 5))
    n_in = int(rng.integers(1, 41))
    widths = [int(rng.integers(1, 33)) for _ in range(depth)]

    # calibration inputs: a rough stand-in for real data, in the input quantizer's units later
    x_name = "global_in"
    cur = x_name
    cal = rng.normal(size=(N_CALIBRATION, n_in)) * rng.choice([0.5, 1.0, 4.0])

    # ---------------------------------------------------------------- host preprocessing (optional)
    head_ops: list[tuple[str, np.ndarray]] = []
    if rng.random() < 0.2:
        for _ in range(int(rng.integers(1, 3))):
            op = ["Add", "Mul", "Div"][rng.integers(3)]
            shape = (1, n_in) if rng.random() < 0.5 else _scalar_shape(rng)
            if op == "Add":
                c = rng.normal(size=shape).astype(np.float32)
            else:
                c = (rng.uniform(0.25, 4.0, size=shape) * rng.choice([-1, 1])).astype(np.float32)
            cur = g.node(op, [cur, g.const(c, "pre")])
            cal = {"Add": np.add, "Mul": np.multiply, "Div": np.divide}[op](cal, c.astype(np.float64))
            head_ops.append((op, c))
        desc.append("head " + "/".join(op for op, _ in head_ops))
        feat.add("head_ops")

    # ---------------------------------------------------------------- input quantizer
    qin = _random_quant(rng, pow2(), max_bits=8, p_bipolar=0.12)
    if qin.kind == "quant" and rng.random() < 0.05:
        qin.bits = int(rng.integers(9, 13))  # wider inputs are fine (no thresholds on the input)
    neg_in = bool(rng.random() < 0.1)
    mag = _act_scale_magnitude(qin, cal, neg_in, rng)
    qin.scale = np.asarray(_pick_scale(rng, float(np.max(mag)), pow2()) * (-1 if neg_in else 1), dtype=np.float32).reshape(_scalar_shape(rng))
    cur = g.quant(cur, qin)
    # calibrate the layers on inputs drawn like the test inputs (through the head ops and the quantizer)
    cal = _random_inputs(rng, qin, head_ops, n_in, N_CALIBRATION).reshape(N_CALIBRATION, n_in).astype(np.float64)
    for op, c in head_ops:
        cal = {"Add": np.add, "Mul": np.multiply, "Div": np.divide}[op](cal, c.astype(np.float64))
    cal = qin.apply(cal)
    # `sh` shadows `cal` in float32 (as qonnx computes) from each quantizer on: the float32 error at the next
    # quantizer bounds its step from below, so no quantizer is finer than float32 can resolve its input
    sh = cal.astype(np.float32)
    in_step = abs(float(qin.scale.ravel()[0]))  # real step between the integers entering the next layer
    desc.append(f"in {n_in} {qin.describe()}")
    feat |= _quant_features("in", qin)

    layer_names: list[str] = []
    fan_in = n_in
    for li, n_out in enumerate(widths):
        last = li == depth - 1
        parts = []
        # ------------------------------------------------------------ affine ops before the MatMul
        if li > 0 or rng.random() < 0.5:
            if rng.random() < 0.15:
                c = np.float32(rng.choice([-1, 1]) * _pick_scale(rng, rng.uniform(0.2, 3.0), pow2()))
                cur = g.node("Mul", [cur, g.const(np.full(_scalar_shape(rng), c), "premul")])
                cal = cal * np.float64(c)
                sh = sh * np.float32(c)
                in_step *= abs(float(c))
                parts.append(f"pre*{c:.3g}")
                feat.add("pre_mul" + ("_neg" if c < 0 else ""))
            if rng.random() < 0.1:
                c = (rng.normal(size=(1, fan_in)) * float(np.std(cal) + 1e-3)).astype(np.float32)
                cur = g.node("Add", [cur, g.const(c, "preadd")])
                cal = cal + c.astype(np.float64)
                sh = sh + c
                parts.append("pre+c")
                feat.add("pre_add")

        # ------------------------------------------------------------ weights
        op = "Gemm" if rng.random() < 0.4 else "MatMul"
        trans_b = op == "Gemm" and bool(rng.random() < 0.5)
        w = rng.normal(size=(fan_in, n_out))
        wq = _random_quant(rng, pow2(), p_bipolar=0.12)
        if wq.kind == "quant" and not wq.signed and rng.random() < 0.5:
            w = np.abs(w)
        per_channel = bool(rng.random() < 0.5)
        lo, hi = wq.int_range()
        top = max(abs(lo), abs(hi), 1)
        if per_channel:
            base = np.max(np.abs(w), axis=0) / top
            scale = np.array([_pick_scale(rng, b * rng.uniform(0.7, 1.3), pow2()) for b in base], dtype=np.float64)
            if rng.random() < 0.08:  # negative weight scales on some channels (legal in qonnx)
                scale = scale * rng.choice([-1, 1], size=n_out)
        else:
            scale = np.array(_pick_scale(rng, float(np.max(np.abs(w))) / top * rng.uniform(0.7, 1.3), pow2()))
        wq.scale = scale.astype(np.float32)
        if wq.kind == "quant" and not wq.bipolar and rng.random() < 0.3:
            # some weights exactly on rounding ties (k + 0.5) * scale
            ties = rng.random(w.shape) < 0.25
            k = rng.integers(lo, max(hi, lo + 1), size=w.shape) + 0.5
            w = np.where(ties, k * np.broadcast_to(wq.scale.astype(np.float64), w.shape) if per_channel else k * float(wq.scale), w)
        w = w.astype(np.float32)
        w_levels_real = wq.apply(w)  # (fan_in, n_out), float64
        transpose_node = False
        if trans_b:
            w_t = np.ascontiguousarray(w.T)
            s = wq.scale.reshape(n_out, 1) if per_channel else wq.scale.reshape(_scalar_shape(rng))
            wq_t = QSpec(wq.kind, s, wq.bits, wq.signed, wq.narrow, wq.rounding)
            w_name = g.quant(g.const(w_t, "w"), wq_t)
        else:
            transpose_node = bool(rng.random() < 0.1)
            if transpose_node:  # Quant on W^T, then a Transpose (qonnx cleanup folds it into the initializer)
                s = wq.scale.reshape(n_out, 1) if per_channel else wq.scale.reshape(_scalar_shape(rng))
                wq_t = QSpec(wq.kind, s, wq.bits, wq.signed, wq.narrow, wq.rounding)
                w_name = g.node("Transpose", [g.quant(g.const(np.ascontiguousarray(w.T), "w"), wq_t)], perm=[1, 0])
            else:
                s = (wq.scale.reshape(1, n_out) if rng.random() < 0.5 else wq.scale.reshape(n_out)) if per_channel \
                    else wq.scale.reshape(_scalar_shape(rng))
                w_name = g.quant(g.const(w, "w"), QSpec(wq.kind, s, wq.bits, wq.signed, wq.narrow, wq.rounding))
        wdesc = wq.describe().replace("BipolarQuant ", "W:bipolar ").replace("Quant ", "W:")

        # ------------------------------------------------------------ MatMul / Gemm (+ bias)
        y = cal @ w_levels_real
        alpha, use_c = 1.0, False
        if op == "Gemm" and rng.random() < 0.15:
            alpha = float(np.float32(rng.choice([0.5, 2.0, 0.75, -1.0, 1.5])))
        y = alpha * y
        y32 = np.float32(alpha) * (sh @ w_levels_real.astype(np.float32))
        # the activation quantizer's kind is drawn first (its scale is calibrated last) so the ops before it
        # can avoid making it constant
        ends_on_quantizer = not last or rng.random() < 0.65
        qa = _random_quant(rng, pow2(), p_bipolar=0.12) if ends_on_quantizer else None
        negative = bool(rng.random() < 0.12)
        # after a Relu, a sign quantizer (decision at 0) or an unsigned one with a negative scale is constant
        dead_after_relu = qa is not None and (qa.bipolar or (not qa.signed and negative))
        bias_kind = ["none", "zero", "random", "grid"][rng.integers(4)]
        bias = None
        if bias_kind != "none":
            shape = (n_out,) if rng.random() < 0.8 else (1,)
            if bias_kind == "zero":
                bias = np.zeros(shape)
            elif bias_kind == "random":
                if rng.random() < 0.7 or dead_after_relu:
                    # like a trained bias: centre each channel somewhere inside its spread (both sides used)
                    centre = np.quantile(y, rng.uniform(0.2, 0.8), axis=0) + \
                        rng.normal(size=n_out) * 0.1 * (np.std(y, axis=0) + 1e-6)
                    bias = -centre if shape == (n_out,) else -np.median(centre, keepdims=True)
                else:
                    bias = rng.normal(size=shape) * (float(np.std(y)) + 1e-3)
            else:
                wstep = np.min(np.abs(wq.scale.astype(np.float64)))
                bias = rng.integers(-8, 9, size=shape) * 0.5 * in_step * wstep * abs(alpha)
            bias = bias.astype(np.float32)
        if op == "Gemm":
            attrs = {"transB": int(trans_b)}
            if alpha != 1.0:
                attrs["alpha"] = alpha
            inputs = [cur, w_name]
            use_c = bias is not None and rng.random() < 0.7
            if use_c:
                inputs.append(g.const(bias.reshape(1, -1) if bias.size == n_out and rng.random() < 0.5 else bias, "gemm_c"))
            cur = g.node("Gemm", inputs, **attrs)
            name = f"Gemm_{g.op_count['Gemm'] - 1}"
            if use_c:
                y = y + bias.astype(np.float64)
            elif bias is not None:
                cur, y = _bias_node(g, rng, cur, y, bias)
        else:
            cur = g.node("MatMul", [cur, w_name])
            name = f"MatMul_{g.op_count['MatMul'] - 1}"
            if bias is not None:
                cur, y = _bias_node(g, rng, cur, y, bias)
        if bias is not None:
            y32 = y32 + bias
        layer_names.append(name)
        feat |= _quant_features("w", wq) | {op, f"bias_{bias_kind}"}
        feat |= {"w_per_channel"} if per_channel else set()
        feat |= {"w_neg_scale"} if np.any(wq.scale < 0) else set()
        feat |= {"gemm_transB"} if trans_b else set()
        feat |= {"w_transpose_node"} if transpose_node else set()
        feat |= {"gemm_alpha"} if alpha != 1.0 else set()
        feat |= {"gemm_c"} if op == "Gemm" and use_c else set()
        parts.append(f"{name} {fan_in}->{n_out}{' tB' if trans_b else ''}{' T' if transpose_node else ''}"
                     f"{f' a={alpha:g}' if alpha != 1.0 else ''} {wdesc}{' pc' if per_channel else ''}"
                     f"{'' if bias is None else ' +b(' + bias_kind + ')'}")

        # ------------------------------------------------------------ epilogue
        if rng.random() < 0.3:
            mean = (np.mean(y, axis=0) + rng.normal(size=n_out) * (np.std(y, axis=0) + 1e-3) * 0.3).astype(np.float32)
            var = (np.var(y, axis=0) * rng.uniform(0.5, 2.0, size=n_out) + 1e-2 * (np.std(y) + 1e-3) ** 2 + 1e-4).astype(np.float32)
            gamma = (rng.uniform(0.3, 2.0, size=n_out) * rng.choice([-1, 1], size=n_out, p=[0.3, 0.7])).astype(np.float32)
            beta = rng.normal(size=n_out).astype(np.float32) * 0.5
            eps = float(np.float32(rng.choice([1e-5, 1e-3])))
            cur = g.node("BatchNormalization", [cur, g.const(gamma, "bn_g"), g.const(beta, "bn_b"),
                                                g.const(mean, "bn_m"), g.const(var, "bn_v")], epsilon=eps)
            y = gamma * (y - mean) / np.sqrt(var.astype(np.float64) + eps) + beta
            y32 = gamma * (y32 - mean) / np.sqrt(var + np.float32(eps)) + beta
            parts.append("BN" + ("-" if np.any(gamma < 0) else ""))
            feat |= {"batchnorm"} | ({"batchnorm_neg_gamma"} if np.any(gamma < 0) else set())
        if rng.random() < (0.03 if dead_after_relu else 0.35):
            cur = g.node("Relu", [cur])
            y = np.maximum(y, 0)
            y32 = np.maximum(y32, np.float32(0))
            parts.append("Relu")
            feat.add("relu")
        if rng.random() < 0.2:
            mop = "Mul" if rng.random() < 0.6 else "Div"
            shape = (n_out,) if rng.random() < 0.5 else _scalar_shape(rng)
            c = (np.array([_pick_scale(rng, rng.uniform(0.25, 4.0), pow2()) for _ in range(int(np.prod(shape)))])
                 .reshape(shape) * np.where(rng.random(shape) < 0.3, -1, 1)).astype(np.float32)
            cur = g.node(mop, [cur, g.const(c, "epi")])
            y = y * c.astype(np.float64) if mop == "Mul" else y / c.astype(np.float64)
            y32 = y32 * c if mop == "Mul" else y32 / c
            parts.append(f"{mop}{'-' if np.any(c < 0) else ''}")
            feat |= {f"epilogue_{mop.lower()}"} | ({f"epilogue_{mop.lower()}_neg"} if np.any(c < 0) else set())

        # ------------------------------------------------------------ activation quantizer (scale calibrated)
        if qa is not None:
            per_ch = last and rng.random() < 0.2
            mag = _act_scale_magnitude(qa, y, negative, rng)
            # float32 error of this layer on the calibration data, per channel; the step stays >= 4000x it
            floor = 4000.0 * np.max(np.abs(y - y32.astype(np.float64)), axis=0)
            if per_ch:
                sc = np.array([max(_pick_scale(rng, m, pow2()), _up(f, pow2())) for m, f in zip(mag, floor)])
                if negative:  # all channels negative, or a mix of signs
                    sc = -sc if rng.random() < 0.5 else sc * rng.choice([-1, 1], size=n_out)
                qa.scale = sc.astype(np.float32).reshape((1, n_out) if rng.random() < 0.5 else (n_out,))
            else:
                qa.scale = np.asarray(max(_pick_scale(rng, float(np.max(mag)), pow2()), _up(float(np.max(floor)), pow2()))
                                      * (-1 if negative else 1),
                                      dtype=np.float32).reshape(_scalar_shape(rng))
            # asymmetric: an integer zero point inside the range shifts which levels the values use. Drawn from
            # a stream of its own, so every seed keeps naming the model it named before zero points existed.
            zp_rng = np.random.default_rng([seed, li, 0x5A])
            if not per_ch and not qa.bipolar and qa.bits >= 3 and zp_rng.random() < 0.2:
                lo_k, hi_k = qa.int_range()
                qa.zeropt = int(zp_rng.integers(lo_k + 1, hi_k))
                feat.add("act_zero_point")
            cur = g.quant(cur, qa)
            y = qa.apply(y)
            in_step = float(np.min(np.abs(qa.scale)))
            parts.append("A:" + qa.describe().replace("BipolarQuant ", "bipolar ").replace("Quant ", ""))
            feat |= _quant_features("act", qa) | ({"act_per_channel"} if per_ch else set())
        else:
            parts.append("float tail")
            feat.add("float_tail")
        desc.append(" ".join(parts))
        cal = y
        sh = cal.astype(np.float32)
        fan_in = n_out

    in_vi = helper.make_tensor_value_info(x_name, TensorProto.FLOAT, [1, n_in])
    out_vi = helper.make_tensor_value_info(cur, TensorProto.FLOAT, [1, widths[-1]])
    graph = helper.make_graph(g.nodes, f"random_mlp_{seed}", [in_vi], [out_vi], initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(QONNX_DOMAIN, 1)],
                              producer_name="rtlgen-random-models")
    model.ir_version = 8

    folding = _random_folding(rng, layer_names, [n_in] + widths)
    x = _random_inputs(rng, qin, head_ops, n_in)
    dims = [n_in] + widths
    pes = [dims[i + 1] if v["PE"] == "max" else v["PE"] for i, v in enumerate(folding["layers"].values())]
    simds = [dims[i] if v["SIMD"] == "max" else v["SIMD"] for i, v in enumerate(folding["layers"].values())]
    for i in range(depth):
        feat |= {"fold_pe_serial" if pes[i] == 1 else "fold_pe_full" if pes[i] == dims[i + 1] else "fold_pe_partial"}
        feat |= {"fold_simd_serial" if simds[i] == 1 else "fold_simd_full" if simds[i] == dims[i] else "fold_simd_partial"}
        if i + 1 < depth and pes[i] != simds[i + 1]:
            feat.add("width_converter")
            if pes[i] % simds[i + 1] and simds[i + 1] % pes[i]:
                feat.add("width_converter_gcd")
    feat.add(f"depth_{depth}")
    fold_txt = ",".join(f"{v.get('PE')}x{v.get('SIMD')}" for v in folding["layers"].values())
    description = f"seed {seed}: " + "; ".join(desc) + f"; fold PExSIMD {fold_txt}"
    return RandomModel(model, x, folding, description, layer_names, feat)


def _quant_features(where: str, q: QSpec) -> set[str]:
    if q.kind == "bipolar":
        return {f"{where}_bipolarquant"} | ({f"{where}_neg_scale"} if np.any(q.scale < 0) else set())
    out = {f"{where}_quant", f"{where}_{'signed' if q.signed else 'unsigned'}", f"{where}_bits_{q.bits}"}
    if q.bipolar:
        out.add(f"{where}_1bit_signed")
    else:
        out.add(f"{where}_round_{q.rounding}")
    if q.narrow:
        out.add(f"{where}_narrow")
    if np.any(q.scale < 0):
        out.add(f"{where}_neg_scale")
    s = np.abs(q.scale.astype(np.float64))
    out.add(f"{where}_scale_{'pow2' if np.all(np.log2(s) == np.round(np.log2(s))) else 'arbitrary'}")
    return out


def _bias_node(g: _Graph, rng, cur: str, y: np.ndarray, bias: np.ndarray):
    r = rng.random()
    if r < 0.6:
        return g.node("Add", [cur, g.const(bias, "bias")]), y + bias
    if r < 0.8:
        return g.node("Add", [g.const(bias, "bias"), cur]), y + bias
    return g.node("Sub", [cur, g.const(-bias, "bias")]), y + bias


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _random_folding(rng, names: list[str], dims: list[int]) -> dict:
    layers = {}
    for i, name in enumerate(names):
        mw, mh = dims[i], dims[i + 1]
        entry = {}
        for key, full in (("PE", mh), ("SIMD", mw)):
            r = rng.random()
            if r < 0.3:
                entry[key] = 1
            elif r < 0.55:
                entry[key] = "max" if rng.random() < 0.5 else full
            else:
                entry[key] = int(rng.choice(_divisors(full)))
        layers[name] = entry
    # width converters through gcd(PE, SIMD) (neither divides the other) need a shared dimension with two such
    # divisors (e.g. 2 and 3 of 6): pick them on purpose at some layer boundaries
    for i in range(len(names) - 1):
        dim = dims[i + 1]
        pairs = [(p, q) for p in _divisors(dim) for q in _divisors(dim) if p % q and q % p]
        if pairs and rng.random() < 0.35:
            p, q = pairs[rng.integers(len(pairs))]
            layers[names[i]]["PE"], layers[names[i + 1]]["SIMD"] = int(p), int(q)
    return {"layers": layers}


def _random_inputs(rng, q: QSpec, head_ops, n_in: int, n_frames: int = N_FRAMES) -> np.ndarray:
    """Float inputs (n_frames, 1, n_in): in range, outside it, on levels, on ties, zeros."""
    s = q.scale.astype(np.float64).ravel()[0]
    lo, hi = q.int_range()
    if q.kind == "bipolar" or q.bipolar:
        lo, hi = -4, 4
    # values at the quantizer's input, in its units (t = x_q / scale)
    cat = rng.choice(5, size=(n_frames, n_in), p=[0.5, 0.15, 0.1, 0.2, 0.05])
    t = rng.uniform(lo - 0.49, hi + 0.49, size=(n_frames, n_in))
    span = max(hi - lo, 1)
    outside = np.where(rng.random((n_frames, n_in)) < 0.5, lo - rng.uniform(0.5, span + 1, size=(n_frames, n_in)),
                       hi + rng.uniform(0.5, span + 1, size=(n_frames, n_in)))
    t = np.where(cat == 1, outside, t)
    t = np.where(cat == 2, rng.integers(lo, hi + 1, size=(n_frames, n_in)), t)
    t = np.where(cat == 3, rng.integers(lo - 1, hi + 1, size=(n_frames, n_in)) + 0.5, t)
    t = np.where(cat == 4, 0.0, t)
    xq = t * s
    # undo the host preprocessing so these values arrive at the quantizer (up to float rounding)
    for op, c in reversed(head_ops):
        c = c.astype(np.float64)
        xq = xq - c if op == "Add" else (xq / c if op == "Mul" else xq * c)
    return xq.astype(np.float32).reshape(n_frames, 1, n_in)


# ------------------------------------------------------------------------------------------- refused models

REFUSED_KINDS = {
    # kind: (what is out of limits, words the error message must contain)
    "weight_bits_9": ("9-16 bit weights", ["at most 8"]),
    # wider activations are requantized exactly only behind a fixed-point rescale; scale 0.3 is not one
    "act_bits_9": ("9-16 bit activation quantizer with a non-power-of-two scale", ["at most 8-bit activations"]),
    # an integer zero point is supported (asymmetric quantization); a fractional one has no integer level
    "zero_point": ("fractional zero point on an activation quantizer", ["zero point", "not one integer"]),
    "per_channel_act_between_layers": ("per-channel activation scale feeding a MatMul", ["per-channel activation scale"]),
    "float_weights": ("MatMul on float (unquantized) weights", ["not quantized"]),
    "no_input_quantizer": ("float input straight into the first MatMul", ["--input-dtype"]),
    "gemm_trans_a": ("Gemm with transA=1", ["transA"]),
    "fractional_bits": ("non-integer bit width", ["bit width"]),
}


def refused_model(kind: str, seed: int) -> tuple[onnx.ModelProto, str]:
    """A small MLP that breaks exactly one of rtlgen's limits; returns (model, name of the offending node)."""
    rng = np.random.default_rng(seed)
    g = _Graph()
    n_in, n_hid, n_out = int(rng.integers(2, 12)), int(rng.integers(2, 12)), int(rng.integers(1, 8))
    cur = "global_in"
    if kind == "gemm_trans_a":
        n_in = 1  # (1, 1) transposed is (1, 1): the only refusal is transA itself
    in_shape = [1, n_in]
    offender = ""
    if kind != "no_input_quantizer":
        cur = g.quant(cur, QSpec("quant", np.float32(2.0**-3), 8, True, False, "ROUND"))

    def weights(fan_in, fan_out, bits=4):
        w = rng.normal(size=(fan_in, fan_out)).astype(np.float32)
        return g.quant(g.const(w, "w"), QSpec("quant", np.float32(np.max(np.abs(w)) / (2 ** (bits - 1) - 1)), bits, True, False, "ROUND"))

    if kind == "weight_bits_9":
        bits = int(rng.integers(9, 17))
        offender = f"Quant_{g.op_count.get('Quant', 0)}"
        w1 = weights(n_in, n_hid, bits)
    elif kind == "float_weights":
        offender = "MatMul_0"
        w1 = g.const(rng.normal(size=(n_in, n_hid)), "w")
    elif kind == "gemm_trans_a":
        offender = "Gemm_0"
        w1 = weights(n_in, n_hid)
    else:
        w1 = weights(n_in, n_hid)
    if kind == "gemm_trans_a":
        cur = g.node("Gemm", [cur, w1], transA=1)
    else:
        cur = g.node("MatMul", [cur, w1])
        if kind == "no_input_quantizer":
            offender = "MatMul_0"
    qname = f"Quant_{g.op_count.get('Quant', 0)}"
    if kind == "act_bits_9":
        offender = qname
        cur = g.quant(cur, QSpec("quant", np.float32(0.3), int(rng.integers(9, 17)), bool(rng.random() < 0.5), False, "ROUND"))
    elif kind == "zero_point":
        offender = qname
        cur = g.node("Quant", [cur, g.const(np.float32(0.25), "scale"), g.const(np.float32(rng.integers(1, 4) + 0.5), "zeropt"),
                               g.const(4.0, "bitwidth")], domain=QONNX_DOMAIN, signed=0, narrow=0, rounding_mode="ROUND")
    elif kind == "fractional_bits":
        offender = qname
        cur = g.node("Quant", [cur, g.const(np.float32(0.25), "scale"), g.const(0.0, "zeropt"),
                               g.const(3.5, "bitwidth")], domain=QONNX_DOMAIN, signed=1, narrow=0, rounding_mode="ROUND")
    elif kind == "per_channel_act_between_layers":
        offender = "MatMul_1"
        cur = g.quant(cur, QSpec("quant", rng.uniform(0.1, 1.0, size=(1, n_hid)).astype(np.float32), 4, True, False, "ROUND"))
    else:
        cur = g.quant(cur, QSpec("quant", np.float32(0.5), 4, False, False, "ROUND"))
    if kind == "gemm_trans_a":
        out_shape = [1, n_hid]  # a single layer
    else:
        cur = g.node("MatMul", [cur, weights(n_hid, n_out)])
        out_shape = [1, n_out]
    in_vi = helper.make_tensor_value_info("global_in", TensorProto.FLOAT, in_shape)
    out_vi = helper.make_tensor_value_info(cur, TensorProto.FLOAT, out_shape)
    graph = helper.make_graph(g.nodes, f"refused_{kind}_{seed}", [in_vi], [out_vi], initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(QONNX_DOMAIN, 1)],
                              producer_name="rtlgen-random-models")
    model.ir_version = 8
    return model, offender


# ------------------------------------------------------------------------------------------- checks
# Shared by tests/test_random_models.py and bench/fuzz_random_models.py.

class CheckResult:
    """Outcome of checking one random model."""

    def __init__(self, seed: int, description: str):
        self.seed, self.description = seed, description
        self.frames = 0
        self.golden_qonnx_equal = 0
        self.near_ties: list = []  # rtlgen.verify.NearTie
        self.unexplained: list[str] = []
        self.refused: str | None = None  # RtlgenError message of an in-limit model (a failure)
        self.error: str | None = None  # any other exception (a failure)
        self.exact_ties = 0  # quantizer inputs exactly on a decision boundary (exact arithmetic), all layers
        self.hw_checked = False
        self.hw_mismatch: str | None = None
        self.timing_checked = False  # a free-flowing run (no gaps, no stalls): measured ii and latency vs estimate
        self.timing_mismatch: str | None = None
        self.seconds = 0.0

    @property
    def ok(self) -> bool:
        return not (self.unexplained or self.refused or self.error or self.hw_mismatch or self.timing_mismatch)

    def reason(self) -> str:
        if self.refused:
            return f"refused: {self.refused}"
        if self.error:
            return f"error: {self.error}"
        if self.hw_mismatch:
            return f"hardware != golden: {self.hw_mismatch}"
        if self.timing_mismatch:
            return f"cycles != estimate: {self.timing_mismatch}"
        if self.unexplained:
            return f"golden != qonnx: {self.unexplained[0]}" + (f" (+{len(self.unexplained) - 1} more)" if len(self.unexplained) > 1 else "")
        return "ok"


def _count_exact_ties(lowered, hw_in: np.ndarray) -> int:
    """How many quantizer inputs (frames x channels x layers) sit exactly on a decision boundary in exact
    (float64) arithmetic: the cases where the tie rule of the rounding mode matters."""
    from rtlgen.quantizers import BipolarQuantizer, IntQuantizer

    count = 0
    network = lowered.network
    outs = network.golden_per_layer(hw_in)
    for index, (layer, src) in enumerate(zip(network.layers, lowered.layer_sources)):
        q = src.quantizer
        if q is not None:
            inputs = [outs[p] if p >= 0 else hw_in for p in network.producers(index)]  # a residual Add reads two
            acc = layer.accumulate(*inputs) * np.where(src.negated, -1, 1)  # (frames, pixels, channels)
            acc = acc.reshape(-1, acc.shape[-1])
            pre = np.asarray(src.pre_activation(acc), dtype=np.float64).reshape(len(acc), -1)
            if isinstance(q, BipolarQuantizer) or q.fmt.kind == "bipolar":
                y = pre / np.broadcast_to(q.scale.astype(np.float64).reshape(-1), (pre.shape[1],)) if isinstance(q, IntQuantizer) else pre
                count += int(np.count_nonzero(y == 0))
            elif isinstance(q, IntQuantizer):
                y = pre / np.broadcast_to(q.scale.astype(np.float64).reshape(-1), (pre.shape[1],))
                inside = (y > q.k_lo) & (y < q.k_hi)
                if q.rounding in ("ROUND", "HALF_EVEN", "HALF_UP", "HALF_DOWN"):
                    count += int(np.count_nonzero(inside & (np.abs(y - np.floor(y)) == 0.5)))
                else:
                    count += int(np.count_nonzero(inside & (y == np.round(y))))
    return count


def check_golden(seed: int, rm: RandomModel | None = None) -> tuple[CheckResult, object]:
    """Golden model vs qonnx on the model's inputs; returns (result, lowered model or None)."""
    import time

    from rtlgen.errors import RtlgenError
    from rtlgen.frontend import clean_model, lower_model
    from rtlgen.host import build_head, execute_frames
    from rtlgen.verify import compare_with_qonnx

    start = time.monotonic()
    rm = rm or build_random_model(seed)
    res = CheckResult(seed, rm.description)
    res.frames = len(rm.inputs)
    lowered = None
    try:
        lowered = lower_model(clean_model(onnx.ModelProto.FromString(rm.model.SerializeToString())))
        names = [layer.name for layer in lowered.network.layers]
        if names != rm.layers:
            raise AssertionError(f"layer names {names} differ from the generator's {rm.layers}")
        hw_in = np.round(execute_frames(build_head(lowered), rm.inputs).reshape(len(rm.inputs), -1)).astype(np.int64)
        cmp = compare_with_qonnx(lowered, rm.inputs, hw_in)
        res.golden_qonnx_equal, res.near_ties, res.unexplained = cmp.golden_qonnx_equal, cmp.near_ties, list(cmp.unexplained)
        res.exact_ties = _count_exact_ties(lowered, hw_in)
    except RtlgenError as err:
        res.refused = str(err)
    except Exception as err:  # noqa: BLE001 - a fuzzer reports every crash
        res.error = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    res.seconds = time.monotonic() - start
    return res, lowered


LATENCY_TOLERANCE = 0.02  # measured first-frame latency within 2 % of the estimate (issue 14)


def check_timing(stats: dict) -> str | None:
    """None when a free-flowing run's measured interval equals the estimate and its first-frame latency is
    within LATENCY_TOLERANCE of it; else what differs."""
    est = stats["estimate"]
    if stats["ii_cycles"] != est["ii_cycles"]:
        return f"ii {stats['ii_cycles']} measured, {est['ii_cycles']} estimated"
    if abs(stats["latency_cycles"] - est["latency_cycles"]) > LATENCY_TOLERANCE * est["latency_cycles"]:
        return f"latency {stats['latency_cycles']} measured, {est['latency_cycles']} estimated"
    return None


def check_end_to_end(seed: int, workdir, rm: RandomModel | None = None, free_flowing: bool = False,
                     latency_clock_ns: float | None = None) -> CheckResult:
    """Golden vs qonnx, then build + Verilator run: hardware == golden on every element, and the design's
    final outputs vs qonnx (through compare_with_qonnx with the hardware's outputs). A run without input gaps
    or output stalls (one in five seeds, every seed with `free_flowing`) also checks the measured cycles
    against the estimate (`check_timing`). `latency_clock_ns`: built in latency mode (every layer unrolled,
    registers placed for that clock) instead of at the model's folding."""
    import time
    from pathlib import Path

    from rtlgen.build import BuildOptions, build
    from rtlgen.errors import RtlgenError
    from rtlgen.frontend import load_model, lower_model
    from rtlgen.runner import run_design
    from rtlgen.verify import compare_with_qonnx

    start = time.monotonic()
    rm = rm or build_random_model(seed)
    res, lowered = check_golden(seed, rm)
    if not res.ok:
        return res
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"random_{seed}.onnx"
    onnx.save(rm.model, str(path))
    out = workdir / f"design_{seed}"
    sim_rng = np.random.default_rng(seed + 7919)
    gaps = [(0.0, 0.0), (0.0, 0.0), (0.3, 0.0), (0.0, 0.4), (0.5, 0.5)][sim_rng.integers(5)]
    if free_flowing:
        gaps = (0.0, 0.0)
    try:
        if latency_clock_ns is not None:
            options = BuildOptions(latency=True, clock_ns=latency_clock_ns, package_ip=False, force=True)
        else:
            options = BuildOptions(folding_spec=rm.folding, package_ip=False, force=True)
        report = build(path, out, options)
        for entry in report["layers"] if latency_clock_ns is None else []:
            want = rm.folding["layers"].get(entry["name"], {})
            for key in ("PE", "SIMD"):
                if want.get(key, "max") != "max" and entry[key] != want[key]:
                    raise AssertionError(f"{entry['name']}: {key}={entry[key]} instead of {want[key]}")
        inputs = rm.inputs
        if gaps == (0.0, 0.0):  # the measured interval is the second half's: run past the pipeline's fill
            est = report["estimate"]
            needed = 2 * (-(-est["latency_cycles"] // max(1, est["ii_cycles"]))) + 4
            inputs = np.concatenate([inputs] * -(-needed // len(inputs)))
        run = run_design(out, inputs, p_in_gap=gaps[0], p_out_stall=gaps[1], seed=seed)
        lowered = lower_model(load_model(path))
        golden = lowered.network.golden(run.hw_in)
        res.hw_checked = True
        if gaps == (0.0, 0.0) and len(inputs) >= 3:
            res.timing_checked = True
            res.timing_mismatch = check_timing(run.stats)
        bad = np.argwhere(run.hw_out != golden)
        if bad.size:
            f, c = bad[0]
            res.hw_mismatch = (f"{len(bad)} element(s) differ, first frame {f} channel {c}: hw {run.hw_out[f, c]} "
                               f"golden {golden[f, c]}")
        cmp = compare_with_qonnx(lowered, inputs, run.hw_in, y_hw=run.outputs)
        if cmp.unexplained:
            res.unexplained = list(cmp.unexplained)
    except RtlgenError as err:
        res.refused = str(err)
    except Exception as err:  # noqa: BLE001
        res.error = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    res.seconds = time.monotonic() - start
    return res
