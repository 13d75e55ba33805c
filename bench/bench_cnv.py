"""CNV-class network (CIFAR-10 sized: 32x32x3, 6 conv + 3 dense layers) at FINN's published CNV-W1A1 folding.

Prints, per variant: rtlgen build seconds, Verilator compile seconds, estimated and measured cycles per
frame and latency, simulated frames per second (Verilator wall time of the frames only), and whether the
hardware equals the golden model and qonnx on every frame. The model is the project's own QONNX CNV
(tests/cnn_models.py: FINN/Brevitas CNV topology, weights and BatchNorm drawn and calibrated from a seed).

    python bench/bench_cnv.py [--frames 8] [--variants w1a1 w2a2]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from cnn_models import cnv_folding_spec, cnv_layer_names, cnv_model  # noqa: E402
from rtlgen.build import BuildOptions, build  # noqa: E402
from rtlgen.frontend import load_model, lower_model  # noqa: E402
from rtlgen.runner import run_design  # noqa: E402
from rtlgen.verify import compare_with_qonnx  # noqa: E402

VARIANTS = {"w1a1": (1, 1), "w2a2": (2, 2)}


def bench(variant: str, frames: int, workdir: Path) -> None:
    w_bits, a_bits = VARIANTS[variant]
    model, x = cnv_model(w_bits, a_bits, seed=0)
    x = np.concatenate([x] * (-(-frames // len(x))))[:frames]
    path = workdir / f"cnv_{variant}.onnx"
    onnx.save(model, str(path))
    compute, pools = cnv_layer_names()
    start = time.monotonic()
    report = build(path, workdir / variant, BuildOptions(folding_spec=cnv_folding_spec(compute, pools)))
    build_s = time.monotonic() - start
    result = run_design(workdir / variant, x)
    s = result.stats
    lowered = lower_model(load_model(path))
    hw_ok = np.array_equal(result.hw_out, lowered.network.golden(result.hw_in))
    cmp = compare_with_qonnx(lowered, x, result.hw_in, y_hw=result.outputs)
    est = report["estimate"]
    fps = frames / s["simulation_seconds"] if s["simulation_seconds"] else float("nan")
    print(f"CNV-{variant.upper()}: build {build_s:.1f} s; Verilator compile {s['verilator_build_seconds']:.1f} s; "
          f"ii estimated {est['ii_cycles']} / measured {s['ii_cycles']:.0f} cycles (bottleneck {est['bottleneck']}); "
          f"latency estimated {est['latency_cycles']} / measured {s['latency_cycles']}; "
          f"{frames} frames in {s['simulation_seconds']:.2f} s = {fps:.2f} frames/s in Verilator "
          f"({frames * est['ii_cycles'] / s['simulation_seconds'] / 1e3:.0f} kcycles/s); "
          f"hardware == golden: {hw_ok}; golden == qonnx on {cmp.golden_qonnx_equal}/{frames} frames"
          f"{' (' + str(len(cmp.near_ties)) + ' near-ties)' if cmp.near_ties else ''}")
    for layer in report["layers"]:
        print(f"    {layer['name']:10s} PE={layer['PE']:<3d} SIMD={layer['SIMD']:<3d} {layer['cycles_per_frame']:>6d} cycles/frame")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--variants", nargs="+", default=["w1a1", "w2a2"], choices=sorted(VARIANTS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_cnv_") as tmp:
        for variant in args.variants:
            bench(variant, args.frames, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
