"""Latency mode on the jet tagger (16-64-32-32-5, QKeras 6-bit, INT16 host input at 2^-8): build, synthesize,
simulate and verify at each target clock; print the figures beside hls4ml's.

    .venv/bin/python bench/bench_latency.py [--clocks 5 6] [--frames 200] [--out build/bench_latency]

Per target clock: the pipeline's cycles from a frame's input handshake to its output word (the registers on the
path: what HLS reports as latency) and the stream top's latency by rtlgen's report convention (first input cycle
to output cycle, both counted), both measured in Verilator on the stored reference frames; Yosys LUT/FF/CARRY4/DSP
and the delay model's worst register-to-register path (`--synth`); the analytic LUT/FF estimate; hardware ==
golden and golden == qonnx on random frames under 30 % back-pressure (`rtlgen verify`); build and synthesis
seconds. The model comes from ../shared/models.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "models"
MODEL = SHARED / "jettagging_qkeras_w6a6.onnx"
REFS = SHARED / "refs" / "jettagging_qkeras_w6a6_fx_in.npy"
HLS4ML = "hls4ml tutorial (QKeras 6-bit, pruned; Vitis HLS estimate, xcu250): 12 cycles at 5 ns, II 1, 42,160 LUT, 34 DSP"


def rtlgen(*args) -> str:
    result = subprocess.run([sys.executable, "-m", "rtlgen.cli", *map(str, args)], cwd=REPO, capture_output=True,
                            text=True)
    if result.returncode:
        raise SystemExit(f"rtlgen {' '.join(map(str, args[:2]))} failed: {result.stderr.strip()}")
    return result.stdout


def bench(clock_ns: float, frames: int, out_root: Path) -> dict:
    out = out_root / f"jet-{clock_ns:g}ns"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.monotonic()
    stdout = rtlgen("build", MODEL, "-o", out, "--latency", "--clock-ns", clock_ns, "--input-dtype", "INT16",
                    "--input-scale", 2.0 ** -8, "--synth")
    seconds = time.monotonic() - t0
    report = json.loads((out / "report.json").read_text())
    synth = report["synthesis"]["total"]
    synth_s = float(re.search(r"synthesis \(Yosys xc7, ([\d.]+) s\)", stdout).group(1))
    verify = rtlgen("verify", MODEL, out, "--frames", frames, "--backpressure", 0.3, "--seed", 1)
    stats = out / "stats.json"
    rtlgen("run", out, "--inputs", REFS, "--out", out / "y.npy", "--stats", stats)
    measured = json.loads(stats.read_text())
    pipeline = report["stages"][0]["pipeline_cycles"]
    return {
        "clock": clock_ns, "pipeline": pipeline, "top_est": report["estimate"]["latency_cycles"],
        "top_meas": measured["latency_cycles"], "ii": measured["ii_cycles"],
        "levels": "/".join(str(layer["implementation"]["counter_levels"]) for layer in report["layers"]),
        "lut": synth["LUT"], "ff": synth["FF"], "carry4": synth["CARRY4"], "dsp": synth["DSP48"],
        "path": synth["worst_path_ns"], "lut_est": report["resources"]["total"]["luts"],
        "ff_est": report["resources"]["total"]["ffs"],
        "exact": re.search(r"hardware == golden on (\d+/\d+)", verify).group(1),
        "qonnx": re.search(r"golden == qonnx on (\d+/\d+)", verify).group(1),
        "build_s": seconds - synth_s, "synth_s": synth_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clocks", type=float, nargs="+", default=[5.0, 6.0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench_latency")
    args = parser.parse_args()
    if not MODEL.is_file():
        raise SystemExit(f"{MODEL} not found: the jet tagger lives in ../shared/models")
    print("| target | pipeline cycles (in -> out) | stream top: est / measured | ii | counter levels | Yosys LUT / FF / "
          "CARRY4 / DSP | analytic LUT / FF | worst path | hw == golden | golden == qonnx | build s | synth s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for clock in args.clocks:
        r = bench(clock, args.frames, args.out)
        print(f"| {r['clock']:g} ns | {r['pipeline']} | {r['top_est']} / {r['top_meas']} | {r['ii']} | {r['levels']} | "
              f"{r['lut']:,} / {r['ff']:,} / {r['carry4']:,} / {r['dsp']} | {r['lut_est']:,} / {r['ff_est']:,} | "
              f"{r['path']:.2f} ns | {r['exact']} | {r['qonnx']} | {r['build_s']:.1f} | {r['synth_s']:.0f} |",
              flush=True)
    print(HLS4ML)


if __name__ == "__main__":
    main()
