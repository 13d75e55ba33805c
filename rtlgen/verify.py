"""`rtlgen verify`: hardware vs golden model (exact), golden model vs qonnx on the original model.

Three comparisons, on the same frames:
1. hardware == golden: the RTL's integers equal the integer golden model's, on every element. Binary.
2. golden == qonnx, layer by layer: each integer layer's levels equal the levels qonnx's own quantizer
   produced on the original model (read from qonnx's execution context). A frame where they disagree anywhere
   is decided by exact rational arithmetic on the original model (`ExactReferee`, `rtlgen.exact_eval`): the
   golden model must equal it on every element of every layer, and qonnx may differ from it only where the
   exact quantizer input lies within `NEAR_TIE` steps of a decision boundary (a near-tie, reported with its
   distance: float32 rounding decided it) and in what follows from that in later layers.
3. the final output after the host tail equals qonnx's output: exactly when the hardware ends on a
   quantizer, within float32 rounding when the tail rescales accumulators. For a QCDQ model (`rtlgen.qcdq`),
   whose qonnx reference is the model converted to Quant nodes, the final output is also compared, by the same
   rule, with onnxruntime running the original QCDQ graph as it was exported.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from .argmax import select_label_in_hardware
from .errors import RtlgenError
from .exact_eval import ExactEvaluationError, ExactEvaluator, Rational
from .frontend import InputFormat, LoweredModel, load_model, lower_model, parse_dtype
from .qcdq import is_qcdq
from .reference import onnxruntime_execute, qonnx_execute
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
    memory_changes: list[str] = field(default_factory=list)  # when it is not: memory files changed since the build
    refereed: int = 0  # frames decided in exact arithmetic (`ExactReferee`), every element of every layer
    max_output_diff: float = 0.0
    original_runtime_diff: float | None = None  # QCDQ: max |output - onnxruntime on the original graph|
    stats: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.hw_golden_equal == self.frames and not self.unexplained

    def summary(self, name: str) -> str:
        ties = f"; {self.refereed} frame(s) where they disagree checked in exact arithmetic" if self.refereed else ""
        if self.near_ties:
            shown = ", ".join(f"frame {t.frame} {t.layer}[{t.channel}] at {t.distance_steps:.2g} steps" for t in self.near_ties[:4])
            ties += f" ({len(self.near_ties)} near-tie frame(s): {shown}{'...' if len(self.near_ties) > 4 else ''})"
        bad = f"; UNEXPLAINED: {'; '.join(self.unexplained[:3])}" if self.unexplained else ""
        if self.hw_mismatches:
            where = f" ({'; '.join(self.memory_changes[:3])})" if self.memory_changes else ""
            bad = f"; HARDWARE != GOLDEN: {'; '.join(self.hw_mismatches[:3])}{where}" + bad
        original = ("" if self.original_runtime_diff is None else
                    f", max |output - onnxruntime on the original QCDQ graph| {self.original_runtime_diff:.3g}")
        s = self.stats
        ii = f"{s['ii_cycles']:.1f}" if s.get("ii_cycles") is not None else "n/a"
        return (f"verify {name}: {self.frames} frames; hardware == golden on {self.hw_golden_equal}/{self.frames}; "
                f"golden == qonnx on {self.golden_qonnx_equal}/{self.frames}{ties}; max |output - qonnx| "
                f"{self.max_output_diff:.3g}{original}; ii {ii} cycles (estimate {s['estimate']['ii_cycles']}), latency "
                f"{s['latency_cycles']} cycles (estimate {s['estimate']['latency_cycles']}){bad}")


def random_inputs(lowered: LoweredModel, frames: int, seed: int) -> np.ndarray:
    """Frames that exercise the input range: integer-annotated inputs get valid integers; float inputs get
    a mix of uniform [0, 1], uniform [-1, 1] and normal noise at several magnitudes."""
    rng = np.random.default_rng(seed)
    shape = (frames,) + tuple(lowered.input_shape[1:])
    fmt = lowered.network.input_fmt
    annotation = (lowered.input_annotation or "").upper()
    if annotation and annotation not in ("FLOAT32", "FLOAT16") and lowered.input_format is None:
        fmt = parse_dtype(annotation)  # qonnx refuses anything else for an integer-annotated input
    if (lowered.input_quantizer is None or annotation not in ("", "FLOAT32", "FLOAT16")) and lowered.input_format is None:
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
    if design.io.get("argmax_in_hardware"):
        lowered = select_label_in_hardware(lowered)
    if x is None:
        if frames < 1:
            raise RtlgenError(f"--frames {frames}: must be at least 1")
        x = random_inputs(lowered, frames, seed)
    x = check_inputs(design, x)
    hw_in = host_head(design, x)
    hw_out, stats = simulate(design, hw_in, **{"seed": seed, **sim_options})
    golden = lowered.network.golden_per_layer(hw_in)

    y_hw = host_tail(design, hw_out)
    result = compare_with_qonnx(lowered, x, hw_in, y_hw=y_hw)
    original = onnx.load(str(model_path))
    if is_qcdq(original):
        compare_with_original_runtime(result, lowered, original, x, hw_in, hw_out, y_hw)
    result.hw_golden_equal = int(np.all(hw_out == golden[-1], axis=1).sum())
    result.hw_mismatches = hardware_mismatches(hw_out, golden[-1], lowered.network.layers[-1].name)
    if result.hw_mismatches:
        result.memory_changes = changed_memories(design)
    result.stats = stats
    return result


def compare_with_original_runtime(result: VerifyResult, lowered: LoweredModel, original, x: np.ndarray,
                                  hw_in: np.ndarray, acc_out: np.ndarray, y_hw: np.ndarray) -> None:
    """The final output against onnxruntime on the original (QCDQ) graph, by `compare_with_qonnx`'s rule:
    exact when the hardware ends on a quantizer, else within float32 rounding of the largest value the tail
    handles. Records the largest difference; a frame beyond the rule is unexplained."""
    n = len(x)
    y_ort = onnxruntime_execute(original, _reference_inputs(lowered, x, hw_in)).astype(np.float64).reshape(n, -1)
    diff = np.abs(np.asarray(y_hw, dtype=np.float64).reshape(n, -1) - y_ort)
    result.original_runtime_diff = float(diff.max())
    allowed = _output_tolerances(lowered, acc_out, y_ort)
    for f in range(n):
        if diff[f].max() > allowed[f]:
            result.unexplained.append(f"frame {f}: final output differs from onnxruntime on the original QCDQ graph "
                                      f"by {diff[f].max():.3g}")


def _reference_inputs(lowered: LoweredModel, x: np.ndarray, hw_in: np.ndarray) -> np.ndarray:
    """What the references run on: the frames exactly as the hardware saw them (with a host-side input format,
    the grid-snapped input)."""
    if lowered.input_format is None:
        return x
    return (hw_in * lowered.input_format.scale).reshape(x.shape).astype(np.float32)


def _output_tolerances(lowered: LoweredModel, acc_out: np.ndarray, y_ref: np.ndarray) -> np.ndarray:
    """Per frame, the largest final-output difference from a reference that is float32 rounding: none when the
    hardware ends on a quantizer; else relative to the largest value the float tail handles, not to its result
    (a bias or batch-norm mean can cancel a large MatMul output down to a small number)."""
    n = len(y_ref)
    last = lowered.layer_sources[-1]
    if last.quantizer_node is not None:
        return np.zeros(n)
    acc = np.asarray(acc_out).reshape(n, -1, last.alpha.size)
    tail_in = np.abs(last.alpha * acc + last.beta).reshape(n, -1).max(axis=1)
    scale = np.maximum(np.maximum(1.0, np.abs(np.asarray(y_ref, dtype=np.float64)).reshape(n, -1).max(axis=1)), tail_in)
    return FLOAT_RTOL * scale


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


def changed_memories(design) -> list[str]:
    """The read-only memory files whose contents are no longer what the build wrote (report.json's
    `memory_files` hashes), named with their layer: where to look when the hardware disagrees."""
    lines = []
    for entry in design.report.get("memory_files", []):
        path = design.root / "ip" / "hdl" / entry["file"]
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            digest = None
        if digest != entry["sha256"]:
            state = "is missing" if digest is None else "changed since the build"
            lines.append(f"layer {entry['layer']}: memory file {entry['file']} {state}")
    if design.report.get("memory_files") and not lines:
        lines.append("every memory file is as built: the difference comes from the logic")
    return lines


def compare_with_qonnx(lowered: LoweredModel, x: np.ndarray, hw_in: np.ndarray, y_hw: np.ndarray | None = None,
                       referee_all: bool = False) -> VerifyResult:
    """Golden model vs qonnx on the original model, layer by layer and at the output (see the module doc).

    `x` are the float inputs, `hw_in` the integers the head made of them. `y_hw` is the final output of the
    design (hardware + tail); when None, the golden model's output goes through the tail instead. Frames where
    qonnx and the golden model disagree at any layer are decided by `ExactReferee`; `referee_all` sends every
    frame there (slow for large CNNs; the tests use it to show the referee and the golden model agree).
    """
    from .host import build_tail, execute_frames

    n = len(x)
    golden = lowered.network.golden_per_layer(hw_in)
    if y_hw is None:
        y_hw = execute_frames(build_tail(lowered), golden[-1].astype(np.float32))
    x_ref = _reference_inputs(lowered, x, hw_in)
    taps = []
    for src in lowered.layer_sources:
        if src.quantizer_node is not None:
            taps.append(src.quantizer_node.output[0])
    y_ref, tapped = qonnx_execute(lowered.model, x_ref, taps)

    frame_ok = np.ones(n, dtype=bool)
    result = VerifyResult(frames=n, hw_golden_equal=0, golden_qonnx_equal=0)
    refs = {}  # layer index -> qonnx's levels, in stream order
    for li, src in enumerate(lowered.layer_sources):
        if src.quantizer_node is None:
            continue
        post = tapped[src.quantizer_node.output[0]]
        refs[li] = _levels(src.quantizer, post.reshape(n, -1).astype(np.float64), post)[:, src.out_order]
        frame_ok &= np.all(refs[li] == golden[li], axis=1)
    # a frame where qonnx and the golden model disagree anywhere is decided by exact arithmetic, all of it
    disagreeing = np.arange(n) if referee_all else np.flatnonzero(~frame_ok)
    if len(disagreeing):
        referee = ExactReferee(lowered, x_ref)
        for f in disagreeing:
            referee.account(int(f), hw_in, golden, refs, result)
        result.refereed = len(disagreeing)
    y_hw = np.asarray(y_hw, dtype=np.float64).reshape(n, -1)
    y_ref64 = np.asarray(y_ref, dtype=np.float64).reshape(n, -1)
    diff = np.abs(y_hw - y_ref64)
    allowed = _output_tolerances(lowered, golden[-1], y_ref64)
    for f in range(n):
        if not frame_ok[f]:
            continue
        if diff[f].max() > allowed[f]:
            frame_ok[f] = False
            result.unexplained.append(f"frame {f}: final output differs from qonnx by {diff[f].max():.3g}")
    result.max_output_diff = float(diff[frame_ok].max()) if frame_ok.any() else 0.0
    result.golden_qonnx_equal = int(frame_ok.sum())
    return result


class ExactReferee:
    """Decides the frames where qonnx and the golden model disagree: the original model evaluated in exact
    rational arithmetic (`rtlgen.exact_eval`, which shares nothing with rtlgen's lowering) from the integers
    the hardware took, every element of every layer accounted for.

    - golden != exact anywhere: the lowering is wrong there (unexplained, with layer, frame and element);
    - qonnx != exact at the first layer where they differ: each such element must lie within `NEAR_TIE` steps
      of its quantizer's decision boundary (float32 rounding decided it: a recorded near-tie), else unexplained;
      later layers see a different input in qonnx, so their differences from exact are consequences of it;
    - a layer that streams accumulators (no quantizer) must equal the exact tensor as alpha*acc + beta.
    """

    def __init__(self, lowered: LoweredModel, x_ref: np.ndarray):
        self.lowered = lowered
        self.evaluator = ExactEvaluator(lowered.model)
        self.x_ref = x_ref
        self.targets = [src.quantizer_node.output[0] if src.quantizer_node is not None else src.boundary
                        for src in lowered.layer_sources]

    def _input_feed(self, f: int, hw_in: np.ndarray) -> dict:
        """Where the exact evaluation starts: the exact values of the levels the hardware took (the head is
        qonnx's float32, whose dequantized output is itself rounded), or the float input when there is no head."""
        lowered = self.lowered
        if not lowered.head_nodes:
            return {lowered.input_name: np.asarray(self.x_ref[f]).reshape(lowered.input_shape)}
        node = lowered.head_nodes[-1]
        flat = np.empty(hw_in.shape[1], dtype=object)
        order = lowered.hw_in_order if lowered.hw_in_order is not None else np.arange(hw_in.shape[1])
        flat[order] = [int(v) for v in hw_in[f]]
        k = Rational(flat.reshape(lowered.hw_in_shape))
        consts = self.evaluator.run({}, [i for i in node.input[1:] if i])
        if node.op_type in ("Quant", "IntQuant"):
            value = (k - consts[node.input[2]]) * consts[node.input[1]]
        elif node.op_type == "BipolarQuant":
            value = k * consts[node.input[1]]
        else:  # MultiThreshold: its level -> value map (float64 of float32 attributes times small integers: exact)
            value = Rational.from_float(lowered.input_quantizer.value(np.asarray(flat.reshape(lowered.hw_in_shape), dtype=np.int64)))
        return {node.output[0]: value}

    def account(self, f: int, hw_in: np.ndarray, golden: list[np.ndarray], refs: dict[int, np.ndarray],
                result: VerifyResult) -> None:
        try:
            exact = self.evaluator.run(self._input_feed(f, hw_in), self.targets)
        except ExactEvaluationError as exc:
            result.unexplained.append(f"frame {f}: qonnx and the golden model disagree and exact arithmetic cannot decide ({exc})")
            return
        diverged = False
        for li, (layer, src) in enumerate(zip(self.lowered.network.layers, self.lowered.layer_sources)):
            if src.quantizer_node is not None:
                name = src.quantizer_node.output[0]
                value = exact[name]
                k = _levels(src.quantizer, value.to_float().reshape(1, -1), value.num)[0, src.out_order]
                margin = self.evaluator.margins[name].reshape(-1)[src.out_order]
                wrong = np.flatnonzero(golden[li][f] != k)
                if wrong.size:
                    e = int(wrong[0])
                    result.unexplained.append(f"frame {f} {_where(layer, e)}: golden {golden[li][f][e]}, exact arithmetic "
                                              f"{k[e]} ({wrong.size} of {k.size} elements differ): the lowering is wrong")
                flips = np.flatnonzero(refs[li][f] != k)
                if flips.size and not diverged:
                    diverged = True
                    far = flips[margin[flips] > NEAR_TIE]
                    if far.size:
                        e = int(far[0])
                        result.unexplained.append(f"frame {f} {_where(layer, e)}: qonnx {refs[li][f][e]}, exact arithmetic "
                                                  f"{k[e]}, {margin[e]:.3g} steps from a boundary: more than float32 rounding")
                    else:
                        e = int(flips[np.argmax(margin[flips])])
                        result.near_ties.append(NearTie(f, layer.name, e, float(margin[e])))
            elif src.alpha is not None:
                # the exact tensor taken back through the layer's rescale lands on the golden accumulator; the
                # rescale is float32-rounded, so within a small residual, where an off-by-one is a whole unit away
                exact_out = exact[src.boundary].to_float().reshape(-1)[src.out_order]
                channel = np.arange(exact_out.size) % layer.mh
                acc = (exact_out - src.beta.reshape(-1)[channel]) / src.alpha.reshape(-1)[channel]
                off = np.flatnonzero(np.abs(acc - golden[li][f]) > 0.25)
                if off.size:
                    e = int(off[0])
                    result.unexplained.append(f"frame {f} {_where(layer, e)}: golden accumulator {golden[li][f][e]}, exact "
                                              f"arithmetic {acc[e]:.6g} ({off.size} of {acc.size} elements differ): the lowering is wrong")


def _where(layer, e: int) -> str:
    """An element of a layer's output frame (stream order), named for a message."""
    if layer.vectors == 1:
        return f"{layer.name}[{e}]"
    pixel, channel = divmod(e, layer.mh)
    return f"{layer.name}[pixel {pixel}, channel {channel}]"


def _levels(q, values: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Quantizer output values (frames, elements) -> level indices k = (value - offset) / step."""
    return np.round((values - _offset(q, like)) / _step(q, like)).astype(np.int64)


def _step(q, post: np.ndarray) -> np.ndarray:
    k1, k2 = q.k_lo, q.k_lo + (2 if q.fmt.kind == "bipolar" else 1)
    shape = post.shape[1:]
    return ((q.value(np.full(shape, k2)) - q.value(np.full(shape, k1))) / (k2 - k1)).reshape(1, -1)


def _offset(q, post: np.ndarray) -> np.ndarray:
    shape = post.shape[1:]
    k1 = q.k_lo
    return (q.value(np.full(shape, k1)) - k1 * _step(q, post).reshape(shape)).reshape(1, -1)
