"""Build, simulate and verify the residual networks (and the MobileNet-style and QCDQ ones: issue 11's models);
print the figures for each.

    .venv/bin/python bench/bench_residual.py [--models resnet_w4a4,resnet8_w4a4] [--frames 8] [--backpressure 0.3]
                                             [--out build/bench_residual]

Per model and folding: rtlgen build seconds, estimated vs measured ii and first-frame latency (free-running), the
same under random back-pressure (no deadlock), hardware-vs-golden and output-vs-qonnx agreement on the stored
reference frames, FIFO bits (analysed, rule) and the bits of the FIFOs in front of the residual Adds (the skip
paths), and the analytic LUT/FF/BRAM36/DSP estimate. Models are the project's own Brevitas exports
(tests/models/export_test_resnets.py, export_test_pools.py, export_test_qcdq.py).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
warnings.filterwarnings("ignore")

from rtlgen.build import BuildOptions, build  # noqa: E402
from rtlgen.frontend import clean_model, load_model, lower_model  # noqa: E402
from rtlgen.runner import run_design  # noqa: E402

OWN = REPO / "tests" / "models"
MODELS = {
    "resnet_w4a4": [("default", None), ("serial", "serial"), ("wide_adds", {"layers": {
        "Add_0": {"PE": 8}, "Add_1": {"PE": 4}, "Add_2": {"PE": 16}, "Conv_3": {"PE": 4, "SIMD": 8}}})],
    "resnet8_w4a4": [("default", None)],
    "mobilenet_w4a4": [("default", None), ("wide", {"layers": {
        "Conv_0": {"PE": 16, "SIMD": 3}, "Conv_1": {"PE": 16}, "Conv_2": {"PE": 8, "SIMD": 16}, "Conv_3": {"PE": 16},
        "Conv_4": {"PE": 8, "SIMD": 32}, "AveragePool_0": {"PE": 8}, "Gemm_0": {"PE": 2, "SIMD": 32}}})],
    "qcdq_mlp_w4a4": [("default", None)],
    "qcdq_cnn_w4a4": [("default", None)],
}


def _folding(name: str, spec):
    if spec != "serial":
        return spec
    network = lower_model(clean_model(load_model(OWN / f"{name}.onnx"))).network
    return {"layers": {layer.name: {"PE": 1, "SIMD": 1} for layer in network.layers}}


def bench(name: str, fold_name: str, spec, out_root: Path, frames: int, backpressure: float) -> str:
    path = OWN / f"{name}.onnx"
    x = np.load(OWN / f"{name}_in.npy")[:frames]
    y_ref = np.load(OWN / f"{name}_out.npy")[:frames]
    out = out_root / f"{name}-{fold_name}"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.monotonic()
    report = build(path, out, BuildOptions(folding_spec=_folding(name, spec)))
    build_s = time.monotonic() - t0
    free = run_design(out, x)
    pressed = run_design(out, x, p_in_gap=backpressure, p_out_stall=backpressure, seed=1)
    golden = lower_model(clean_model(load_model(path))).network.golden(free.hw_in)
    hw_ok = np.array_equal(free.hw_out, golden) and np.array_equal(pressed.hw_out, golden)
    out_diff = float(np.abs(free.outputs.reshape(len(x), -1) - y_ref.reshape(len(x), -1)).max())
    est, sizing, total = report["estimate"], report["fifo_sizing"], report["resources"]["total"]
    adds = sum(1 for layer in report["layers"] if layer["op"] == "Add")
    return (f"| {name} | {fold_name} | {adds} | {build_s:.1f} | {est['ii_cycles']} / {free.stats['ii_cycles']:.1f} / "
            f"{pressed.stats['ii_cycles']:.1f} | {est['latency_cycles']} / {free.stats['latency_cycles']} | "
            f"{'yes' if hw_ok else 'NO'} | {out_diff:.1e} | {sizing['bits']:,} / {sizing['rule_bits']:,} | "
            f"{sizing.get('skip_path_bits', 0):,} | {total['luts']:,} / {total['ffs']:,} / {total['bram36']:g} / "
            f"{total['dsp']} |")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--backpressure", type=float, default=0.3)
    ap.add_argument("--out", type=Path, default=REPO / "build" / "bench_residual")
    args = ap.parse_args(argv)
    print("| model | folding | Adds | build s | ii est / measured / back-pressure | latency est / measured | "
          "hw == golden | max out - qonnx | FIFO bits analysed / rule | skip-path FIFO bits | "
          "LUT / FF / BRAM36 / DSP (analytic) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        for fold_name, spec in MODELS[name]:
            print(bench(name, fold_name, spec, args.out, args.frames, args.backpressure), flush=True)


if __name__ == "__main__":
    main()
