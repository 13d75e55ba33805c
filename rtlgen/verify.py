"""`rtlgen verify`: hardware vs golden model (exact), golden model vs qonnx on the original model.

Three comparisons, on the same frames:
1. hardware == golden: the RTL's integers equal the integer golden model's, on every element. Binary.
2. golden == qonnx, layer by layer: each integer layer's levels equal the levels qonnx's own quantizer
   produced on the original model (read from qonnx's execution context). A frame whose first disagreement
   sits where qonnx's float32 pre-activation lies within `NEAR_TIE` quantizer steps of a decision boundary
   is reported as a near-tie with its distance (float32 rounding decided it), not as a failure, provided the
   golden level is what exact (float64) arithmetic gives for that layer.
3. the final output after the host tail equals qonnx's output: exactly when the hardware ends on a
   quantizer, within float32 rounding when the tail rescales accumulators.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import RtlgenError
from .frontend import InputFormat, LoweredModel, load_model, lower_model
from .reference import qonnx_execute
from .runner import check_inputs, host_head, host_tail, load_design, simulate

NEAR_TIE = 1e-3  # in units of the quantizer's step
FLOAT_RTOL = 1e-5


@dataclass
class NearTie:
    frame: int
    layer: str
    channel: int
    distance_steps: float


@dataclass
class VerifyResult:
    frames: int
    hw_golden_equal: int  # frames where hardware == golden exactly
    golden_qonnx_equal: int  # frames where every layer's levels and the final output agree
    near_ties: list[NearTie] = field(default_factory=list)
    unexplained: list[str] = field(default_factory=list)  # golden-vs-qonnx disagreements that are not near-ties
    hw_mismatches: list[str] = field(default_factory=list)  # frames where the hardware's output is not golden's
    max_output_diff: float = 0.0
    stats: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.hw_golden_equal == self.frames and not self.unexplained

    def summary(self, name: str) -> str:
        ties = ""
        if self.near_ties:
            shown = ", ".join(f"frame {t.frame} {t.layer}[{t.channel}] at {t.distance_steps:.2g} steps" for t in self.near_ties[:4])
            ties = f" ({len(self.near_ties)} near-tie frame(s): {shown}{'...' if len(self.near_ties) > 4 else ''})"
        bad = f"; UNEXPLAINED: {'; '.join(self.unexplained[:3])}" if self.unexplained else ""
        if self.hw_mismatches:
            bad = f"; HARDWARE != GOLDEN: {'; '.join(self.hw_mismatches[:3])}" + bad
        s = self.stats
        ii = f"{s['ii_cycles']:.1f}" if s.get("ii_cycles") is not None else "n/a"
        return (f"verify {name}: {self.frames} frames; hardware == golden on {self.hw_golden_equal}/{self.frames}; "
                f"golden == qonnx on {self.golden_qonnx_equal}/{self.frames}{ties}; max |output - qonnx| "
                f"{self.max_output_diff:.3g}; ii {ii} cycles (estimate {s['estimate']['ii_cycles']}), latency "
                f"{s['latency_cycles']} cycles (estimate {s['estimate']['latency_cycles']}){bad}")


def random_inputs(lowered: LoweredModel, frames: int, seed: int) -> np.ndarray:
    """Frames that exercise the input range: integer-annotated inputs get valid integers; float inputs get
    a mix of uniform [0, 1], uniform [-1, 1] and normal noise at several magnitudes."""
    rng = np.random.default_rng(seed)
    shape = (frames,) + tuple(lowered.input_shape[1:])
    fmt = lowered.network.input_fmt
    if lowered.input_quantizer is None and lowered.input_format is None:
        if fmt.kind == "bipolar":
            return rng.choice([-1.0, 1.0], size=shape).astype(np.float32)
        return rng.integers(fmt.min, fmt.max + 1, size=shape).astype(np.float32)
    if lowered.input_format is not None:
        span = lowered.input_format.scale * max(abs(fmt.min), abs(fmt.max))
        return rng.uniform(-1.1 * span, 1.1 * span, size=shape).astype(np.float32) if fmt.kind == "signed" else \
            rng.uniform(-0.1 * span, 1.1 * span, size=shape).astype(np.float32)
    x = np.empty(shape, dtype=np.float32)
    for f in range(frames):
        kind = f % 4
        if kind == 0:
            x[f] = rng.uniform(0, 1, size=shape[1:])
        elif kind == 1:
            x[f] = rng.uniform(-1, 1, size=shape[1:])
        else:
            x[f] = rng.normal(size=shape[1:]) * [0.5, 4.0, 32.0, 128.0][(f // 4) % 4]
    return x


def boundary_distance(q, pre: np.ndarray, index: tuple) -> float:
    """Distance from pre[index] to the nearest input where quantizer `q` changes level, in quantizer steps."""
    base = q.index(pre)[index]
    step = abs(q.uniform_scale() or 1.0)

    def changes(d: float) -> bool:
        for sign in (1, -1):
            moved = pre.astype(np.float64).copy()
            moved[index] += sign * d
            if q.index(moved)[index] != base:
                return True
        return False

    hi = step
    if not changes(hi):
        return float("inf")
    lo = 0.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if changes(mid) else (mid, hi)
    return hi / step


def verify(model_path: str | Path, out_dir: str | Path, x: np.ndarray | None = None, frames: int = 16,
           seed: int = 0, **sim_options) -> VerifyResult:
    design = load_design(out_dir)
    model_path = Path(model_path)
    if not model_path.is_file():
        raise RtlgenError(f"model file {model_path} not found")
    if hashlib.sha256(model_path.read_bytes()).hexdigest() != design.report["model"]["sha256"]:
        raise RtlgenError(f"{out_dir} was built from {design.report['model']['name']}, not from {model_path}; build it again")
    fmt = design.io.get("input_format")
    lowered = lower_model(load_model(model_path), name=design.report["top"],
                          input_format=InputFormat(fmt["dtype"], fmt["scale"]) if fmt else None)
    if x is None:
        if frames < 1:
            raise RtlgenError(f"--frames {frames}: must be at least 1")
        x = random_inputs(lowered, frames, seed)
    x = check_inputs(design, x)
    n = len(x)
    hw_in = host_head(design, x)
    hw_out, stats = simulate(design, hw_in, **{"seed": seed, **sim_options})
    golden = lowered.network.golden_per_layer(hw_in)

    result = compare_with_qonnx(lowered, x, hw_in, y_hw=host_tail(design, hw_out))
    result.hw_golden_equal = int(np.all(hw_out == golden[-1], axis=1).sum())
    result.hw_mismatches = hardware_mismatches(hw_out, golden[-1], lowered.network.layers[-1].name)
    result.stats = stats
    return result


def hardware_mismatches(hw_out: np.ndarray, golden_out: np.ndarray, layer: str) -> list[str]:
    """One line per frame whose hardware output differs from the golden model's: the frame, the layer whose
    output the hardware streams, the first differing element and how many differ."""
    lines = []
    for f in np.flatnonzero(np.any(hw_out != golden_out, axis=1)):
        differ = np.flatnonzero(hw_out[f] != golden_out[f])
        e = int(differ[0])
        lines.append(f"frame {f} output of {layer}, element {e}: hardware {hw_out[f][e]}, golden {golden_out[f][e]} "
                     f"({len(differ)} of {hw_out.shape[1]} elements differ)")
    return lines


def compare_with_qonnx(lowered: LoweredModel, x: np.ndarray, hw_in: np.ndarray, y_hw: np.ndarray | None = None) -> VerifyResult:
    """Golden model vs qonnx on the original model, layer by layer and at the output (see the module doc).

    `x` are the float inputs, `hw_in` the integers the head made of them. `y_hw` is the final output of the
    design (hardware + tail); when None, the golden model's output goes through the tail instead.
    """
    from .host import build_tail, execute_frames

    n = len(x)
    golden = lowered.network.golden_per_layer(hw_in)
    if y_hw is None:
        y_hw = execute_frames(build_tail(lowered), golden[-1].astype(np.float32))
    # the reference sees exactly what the hardware saw: with a host-side input format, the grid-snapped input
    x_ref = x if lowered.input_format is None else (hw_in * lowered.input_format.scale).reshape(x.shape).astype(np.float32)
    taps = []
    for src in lowered.layer_sources:
        if src.quantizer_node is not None:
            taps += [src.quantizer_node.input[0], src.quantizer_node.output[0]]
    y_ref, tapped = qonnx_execute(lowered.model, x_ref, taps)

    frame_ok = np.ones(n, dtype=bool)
    result = VerifyResult(frames=n, hw_golden_equal=0, golden_qonnx_equal=0)
    for li, (layer, src) in enumerate(zip(lowered.network.layers, lowered.layer_sources)):
        if src.quantizer_node is None:
            continue
        q = src.quantizer
        pre = tapped[src.quantizer_node.input[0]]
        post = tapped[src.quantizer_node.output[0]]
        # the levels qonnx's own quantizer produced: k = (value - offset) / step
        ref_model = np.round((post.reshape(n, -1) - _offset(q, post)) / _step(q, post)).astype(np.int64)
        ref = ref_model[:, src.out_order]  # in stream order, like the golden model's frames
        for f in np.flatnonzero(np.any(ref != golden[li], axis=1)):
            if not frame_ok[f]:
                continue  # already explained or reported at an earlier layer
            frame_ok[f] = False
            ch = int(np.flatnonzero(ref[f] != golden[li][f])[0])
            idx = np.unravel_index(int(src.out_order[ch]), pre.shape[1:])
            dist = boundary_distance(q, pre[f], idx)
            # the same layer in exact (float64) arithmetic, from the golden model's own input to this layer
            layer_in = hw_in[f] if li == 0 else golden[li - 1][f]
            pixel, channel = divmod(ch, layer.mh)
            acc = layer.accumulate(layer_in[None])[0][pixel] * np.where(src.negated, -1, 1)
            exact = q.k_of_index(src.level_index(acc[None, :])).reshape(-1)[channel]
            where = f"{layer.name}[{ch}]" if layer.vectors == 1 else f"{layer.name}[pixel {pixel}, channel {channel}]"
            if exact != golden[li][f][ch]:
                result.unexplained.append(f"frame {f} {where}: golden {golden[li][f][ch]} differs from "
                                          f"exact arithmetic ({exact}): threshold derivation is wrong")
            elif dist <= NEAR_TIE:
                result.near_ties.append(NearTie(int(f), layer.name, ch, dist))
            else:
                result.unexplained.append(f"frame {f} {where}: golden {golden[li][f][ch]} vs qonnx "
                                          f"{ref[f][ch]} ({dist:.3g} steps from a boundary)")
    y_hw = np.asarray(y_hw, dtype=np.float64).reshape(n, -1)
    y_ref64 = np.asarray(y_ref, dtype=np.float64).reshape(n, -1)
    diff = np.abs(y_hw - y_ref64)
    ends_on_quantizer = lowered.layer_sources[-1].quantizer_node is not None
    # float32 rounding in a float tail is relative to the largest value the tail handles, not to its result: a
    # bias or batch-norm mean can cancel a large MatMul output down to a small number
    last = lowered.layer_sources[-1]
    if ends_on_quantizer:
        tail_in = np.zeros(n)
    else:
        acc = golden[-1].reshape(n, -1, last.alpha.size)
        tail_in = np.abs(last.alpha * acc + last.beta).reshape(n, -1).max(axis=1)
    for f in range(n):
        if not frame_ok[f]:
            continue
        scale = max(1.0, float(np.abs(y_ref64[f]).max()), float(tail_in[f]))
        if diff[f].max() > (0.0 if ends_on_quantizer else FLOAT_RTOL * scale):
            frame_ok[f] = False
            result.unexplained.append(f"frame {f}: final output differs from qonnx by {diff[f].max():.3g}")
    result.max_output_diff = float(diff[frame_ok].max()) if frame_ok.any() else 0.0
    result.golden_qonnx_equal = int(frame_ok.sum())
    return result


def _step(q, post: np.ndarray) -> np.ndarray:
    k1, k2 = q.k_lo, q.k_lo + (2 if q.fmt.kind == "bipolar" else 1)
    shape = post.shape[1:]
    return ((q.value(np.full(shape, k2)) - q.value(np.full(shape, k1))) / (k2 - k1)).reshape(1, -1)


def _offset(q, post: np.ndarray) -> np.ndarray:
    shape = post.shape[1:]
    k1 = q.k_lo
    return (q.value(np.full(shape, k1)) - k1 * _step(q, post).reshape(shape)).reshape(1, -1)
