"""`rtlgen run`: host head -> the built RTL in Verilator (cycle-accurate) -> host tail."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from .errors import RtlgenError
from .progress import step
from .frontend import parse_dtype
from .host import execute_frames
from .stream_packing import StreamFormat, frames_to_words, unpack_frames, words_to_bytes


@dataclass
class Design:
    """A built output folder, as `rtlgen run` and `rtlgen verify` read it."""

    root: Path
    report: dict
    head: onnx.ModelProto
    tail: onnx.ModelProto

    @property
    def io(self) -> dict:
        return self.report["io"]

    @property
    def verilog(self) -> list[Path]:
        return [self.root / v for v in self.report["verilog"]]


@dataclass
class RunResult:
    outputs: np.ndarray  # shaped like the original model's output, batch axis first
    hw_in: np.ndarray  # integers entering the hardware (N, in_elems)
    hw_out: np.ndarray  # integers leaving the hardware (N, out_elems)
    stats: dict


def load_design(out_dir: str | Path) -> Design:
    root = Path(out_dir)
    report_path = root / "report.json"
    if not report_path.is_file():
        raise RtlgenError(f"{root} is not an rtlgen build folder (no report.json); run `rtlgen build -o {root}` first")
    try:
        report = json.loads(report_path.read_text())
        head = onnx.load(str(root / report["host"]["head"]))
        tail = onnx.load(str(root / report["host"]["tail"]))
    except (OSError, KeyError, json.JSONDecodeError, onnx.onnx_cpp2py_export.checker.ValidationError) as exc:
        raise RtlgenError(f"{root}: build folder is incomplete or damaged ({type(exc).__name__}); build it again") from None
    design = Design(root, report, head, tail)
    for path in design.verilog:
        if not path.is_file():
            raise RtlgenError(f"{root}: {path.name} is missing; build it again")
    return design


def load_inputs(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise RtlgenError(f"inputs file {path} not found")
    try:
        x = np.load(str(path), allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise RtlgenError(f"inputs file {path} is not a .npy array ({exc})") from None
    return x


def check_inputs(design: Design, x: np.ndarray) -> np.ndarray:
    """Inputs as (N, *model_input_shape[1:]) float32, or a one-line error naming the expected shape."""
    shape = tuple(design.io["input_shape"])
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "fiub":
        raise RtlgenError(f"inputs must be a numeric array, not dtype {getattr(x, 'dtype', type(x))}")
    per_frame = shape[1:]
    if x.ndim == len(shape) + 1 and x.shape[1:] == shape:
        x = x.reshape((x.shape[0],) + per_frame)
    if x.ndim != len(per_frame) + 1 or tuple(x.shape[1:]) != tuple(per_frame) or x.shape[0] < 1:
        raise RtlgenError(f"inputs have shape {x.shape}; expected (N, {', '.join(map(str, per_frame))}) "
                          f"like the model input {design.io['input_name']} {list(shape)} with the batch axis first")
    if not np.all(np.isfinite(x)):
        raise RtlgenError("inputs contain NaN or infinite values")
    return x.astype(np.float32)


def host_head(design: Design, x: np.ndarray) -> np.ndarray:
    """The integers the hardware takes, (N, in_elems), checked against the input format."""
    k = execute_frames(design.head, x).reshape(len(x), -1)
    fmt = parse_dtype(design.io["input_dtype"])
    lo, hi = (-1, 1) if fmt.kind == "bipolar" else (fmt.min, fmt.max)
    bad = (k != np.round(k)) | (k < lo) | (k > hi) | ((k == 0) if fmt.kind == "bipolar" else False)
    if np.any(bad):
        frame = int(np.argwhere(bad)[0][0])
        raise RtlgenError(f"input frame {frame} has values that are not {design.io['input_dtype']} "
                          f"(the model's input type); give valid inputs")
    return np.round(k).astype(np.int64)


def host_tail(design: Design, hw_out: np.ndarray) -> np.ndarray:
    y = execute_frames(design.tail, hw_out.astype(np.float32))
    out_shape = design.io.get("output_shape")
    if out_shape:
        y = y.reshape((len(hw_out),) + tuple(out_shape[1:]))
    return y


LARGE_VERILOG_BYTES = 150_000
FEW_COMPARATORS = 512
HUGE_VERILOG_BYTES = 16_000_000


def threshold_comparators(report: dict) -> int:
    """Threshold comparators in the design: PE lanes times thresholds per channel, over all layers."""
    return sum(layer.get("PE", 1) * layer.get("thresholds_per_channel", 0) for layer in report["layers"])


def harness_optimisation(design: Design) -> str:
    """C++ optimisation for the Verilated model: -O1 simulates 10-20x faster, but g++ -O1 on the huge functions
    Verilator makes of wide threshold banks takes many minutes (RadioML, ~2800 comparators: 265 s against 65 s at
    -O0), where -O0 takes seconds. Large designs with few comparators (CNV-W1A1: 3.7 MB of Verilog, 92
    comparators) compile quickly at -O1 (25 s) and simulate at 6.6 frames/s instead of 0.5."""
    size = sum(path.stat().st_size for path in design.verilog)
    if size < LARGE_VERILOG_BYTES:
        return "-O1"
    if threshold_comparators(design.report) <= FEW_COMPARATORS and size < HUGE_VERILOG_BYTES:
        return "-O1"
    return "-O0"


def input_words(design: Design, hw_in: np.ndarray) -> list[int]:
    """The s_axis words of integer frames (N, in_elems), packed as a DMA sends them (`rtlgen.stream_packing`)."""
    return frames_to_words(hw_in, StreamFormat.of_input(design.io))


def simulate(design: Design, hw_in: np.ndarray, *, p_in_gap: float = 0.0, p_out_stall: float = 0.0, seed: int = 0,
             watchdog_cycles: int | None = None) -> tuple[np.ndarray, dict]:
    """Run the compiled Verilator harness on integer frames; returns (hw_out, stats).

    Every frame is sent whole with TLAST on its last word, so the core's error flag must stay low; a raised
    flag fails the run (RtlgenError)."""
    from sim.verilator_harness import CompiledHarness, SimulationError
    from sim.toolchain import ToolchainError

    io = design.io
    out_fmt = StreamFormat.of_output(io)
    words = input_words(design, hw_in)
    n = len(hw_in)
    if watchdog_cycles is None:  # no output word for this long means a stall, not a slow design
        est = design.report["estimate"]
        watchdog_cycles = max(100000, 8 * (est["latency_cycles"] + est["ii_cycles"]))
    try:
        with step("Verilator: compiling the design"):
            harness = CompiledHarness.build(design.verilog, design.report["top"], design.root / "sim_build",
                                            opt=harness_optimisation(design))
        with step(f"Verilator: simulating {n} frame{'s' * (n != 1)}"):
            result = harness.run(words, n * io["out_words_per_frame"], io["in_words_per_frame"], io["out_words_per_frame"],
                                 p_in_gap=p_in_gap, p_out_stall=p_out_stall, seed=seed, watchdog_cycles=watchdog_cycles)
    except (SimulationError, ToolchainError) as exc:
        raise RtlgenError(f"simulation failed: {exc}") from None
    if result.error_raised:
        # every frame above is whole and carries TLAST on its last word: the framer must never complain
        frame = (result.error_in_beats - 1) // io["in_words_per_frame"]
        raise RtlgenError(f"simulation failed: the core raised its error flag (input framing) in cycle "
                          f"{result.error_cycle}, at input frame {frame}, although every frame had exactly "
                          f"{io['in_words_per_frame']} words with TLAST on the last; the design is faulty")
    hw_out = unpack_frames(np.frombuffer(words_to_bytes(result.out_words, out_fmt.tdata_bits), dtype=np.uint8), out_fmt)
    stats = {
        "frames": n,
        "latency_cycles": result.latency_cycles,
        "ii_cycles": result.ii_cycles,
        "total_cycles": result.total_cycles,
        "error_flag": result.error_raised,
        "p_in_gap": p_in_gap, "p_out_stall": p_out_stall, "seed": seed,
        "estimate": {k: design.report["estimate"][k] for k in ("ii_cycles", "latency_cycles")},
        "verilator_build_seconds": round(harness.compile_seconds, 3),
        "simulation_seconds": round(result.wall_seconds, 3),
    }
    return np.asarray(hw_out, dtype=np.int64), stats


def run_design(out_dir: str | Path, x: np.ndarray, *, workers: int | None = None, scheduler: str | None = None,
               **sim_options) -> RunResult:
    """Host head, the design in Verilator, host tail. With `workers` or `scheduler`, the frames are sharded over a
    Dask cluster (`rtlgen.cluster`); the outputs are the same."""
    design = load_design(out_dir)
    x = check_inputs(design, x)
    hw_in = host_head(design, x)
    if workers is None and scheduler is None:
        hw_out, stats = simulate(design, hw_in, **sim_options)
    else:
        from .cluster import dask_client, simulate_sharded

        with step(f"Dask: simulating {len(hw_in)} frames on {scheduler or f'{workers} local workers'}"):
            with dask_client(workers, scheduler) as client:
                hw_out, stats = simulate_sharded(design.root, hw_in, client, sim_options)
    return RunResult(host_tail(design, hw_out), hw_in, hw_out, stats)
