"""Large batches and scale-out: `rtlgen run` on 10,000 TFC-W1A1 frames on 1 and 2 Dask workers, and
`rtlgen sweep` of KWS-W3A3 at 8 foldings.

    .venv/bin/python bench/bench_run.py [--frames 10000] [--out build/bench_run]

Run: TFC-W1A1 at FINN's folding (ii 64 cycles), the harness compiled first (its seconds printed apart); then
for 1 worker (in this process) and 2 local workers: wall seconds of the whole `run_design` (host head and tail
in onnxruntime, packing, simulation; for 2 workers also the cluster's start-up), the simulation's share, frames/s
and simulated cycles/s (all shards' cycles over the simulation's wall time). Outputs of the two are compared.
Sweep: KWS-W3A3 at the folding search's choice for 8 cycle targets, built on 2 local workers, wall seconds, and
the table with the Pareto front. Third-party models come from ../shared/models.
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
from rtlgen.runner import harness_optimisation, load_design, run_design  # noqa: E402
from rtlgen.sweep import candidates, sweep, table  # noqa: E402
from sim.verilator_harness import CompiledHarness  # noqa: E402

MODELS = REPO.parent / "shared" / "models"
FINN_TFC_FOLDING = {"layers": {"MatMul_0": {"PE": 16, "SIMD": 49}, "MatMul_1": {"PE": 8, "SIMD": 8},
                               "MatMul_2": {"PE": 8, "SIMD": 8}, "MatMul_3": {"PE": 10, "SIMD": 8}}}
KWS_TARGETS = [256, 512, 1024, 2048, 4096, 8192, 16384, 32768]


def bench_run(out: Path, frames: int) -> None:
    root = out / "tfc_w1a1"
    build(MODELS / "tfc_w1a1.onnx", root, BuildOptions(folding_spec=FINN_TFC_FOLDING, force=True))
    design = load_design(root)
    start = time.monotonic()
    CompiledHarness.build(design.verilog, design.report["top"], root / "sim_build", opt=harness_optimisation(design))
    print(f"TFC-W1A1 at FINN's folding: harness compiled in {time.monotonic() - start:.1f} s")
    x = np.random.default_rng(0).uniform(-1, 1, (frames, 1, 28, 28)).astype(np.float32)
    results = {}
    print("| workers | frames | wall s | simulation s | frames/s (wall) | simulated cycles/s | ii cycles |")
    print("|---|---|---|---|---|---|---|")
    for workers in (None, 2):
        start = time.monotonic()
        result = run_design(root, x, workers=workers)
        wall = time.monotonic() - start
        s = result.stats
        results[workers] = result.outputs
        print(f"| {workers or 1} | {frames} | {wall:.2f} | {s['simulation_seconds']:.2f} | {frames / wall:,.0f} | "
              f"{s['total_cycles'] / s['simulation_seconds']:,.0f} | {s['ii_cycles']} |")
    same = np.array_equal(results[None], results[2])
    print(f"outputs on 1 and 2 workers identical: {same}")


def bench_sweep(out: Path) -> None:
    cands = candidates(None, KWS_TARGETS, BuildOptions(force=True))
    result = sweep(MODELS / "kws_w3a3_mlperftiny.onnx", out / "kws_sweep", cands, workers=2)
    print(f"\nKWS-W3A3 sweep, {len(cands)} foldings (targets {KWS_TARGETS}) on 2 local workers: "
          f"{result['wall_seconds']:.1f} s wall")
    print(table(result["candidates"]))
    print(f"Pareto front: {', '.join(result['pareto_front'])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10000)
    parser.add_argument("--out", default=str(REPO / "build" / "bench_run"))
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    bench_run(out, args.frames)
    bench_sweep(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
