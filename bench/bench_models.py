"""Build, simulate and verify the fully-connected models (and the ECON-T-like encoder); print the figures for each.

    .venv/bin/python bench/bench_models.py [--models tfc_w1a1,kwsmlp_w3a3] [--frames 200] [--out build/bench]

Per model and folding: rtlgen build seconds (load, lower, fold, Verilog, host models, IP folder), Verilator
build seconds (fresh build folder; the Verilator runtime library cache may be warm), estimated vs measured
ii and latency (cycles, input always valid, output always ready), hardware-vs-golden and golden-vs-qonnx
agreement on the reference frames, and simulation speed in frames per second of the compiled harness.
Third-party models come from ../shared/models.
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

from rtlgen.build import DEFAULT_MODEL, BuildOptions, build  # noqa: E402
from rtlgen.frontend import InputFormat  # noqa: E402
from rtlgen.runner import check_inputs, host_head, load_design, simulate  # noqa: E402
from rtlgen.verify import random_inputs, verify  # noqa: E402

SHARED = REPO.parent / "shared" / "models"
OWN = REPO / "tests" / "models"
SERIAL = {"defaults": {"PE": 1, "SIMD": 1}}

# name -> (model path, reference inputs, input format, [(folding name, folding spec)])
MODELS = {
    "default_digits": (DEFAULT_MODEL, REPO / "rtlgen" / "models" / "default_digits_inputs.npy", None,
                       [("default", None), ("serial", SERIAL)]),
    "tfc_w1a1": (SHARED / "tfc_w1a1.onnx", SHARED / "refs" / "tfc_w1a1_in.npy", None, [("default", None), ("serial", SERIAL)]),
    "tfc_w2a2": (SHARED / "tfc_w2a2.onnx", SHARED / "refs" / "tfc_w2a2_in.npy", None, [("default", None), ("serial", SERIAL)]),
    "kwsmlp_w3a3": (SHARED / "kwsmlp_w3a3.onnx", SHARED / "refs" / "kwsmlp_w3a3_in.npy", None, [("default", None), ("serial", SERIAL)]),
    "kws_w3a3_mlperftiny": (SHARED / "kws_w3a3_mlperftiny.onnx", None, None, [("default", None)]),
    "unsw_nb15_mlp_w2a2": (SHARED / "unsw_nb15_mlp_w2a2.onnx", SHARED / "refs" / "unsw_nb15_mlp_w2a2_in.npy", None,
                           [("default", None), ("serial", SERIAL)]),
    "jettagging_qkeras_w6a6": (SHARED / "jettagging_qkeras_w6a6.onnx", SHARED / "refs" / "jettagging_qkeras_w6a6_in.npy",
                               InputFormat("INT16", 2.0**-8), [("default", None)]),
    "econt_encoder_w6a8": (OWN / "econt_encoder_w6a8.onnx", OWN / "econt_encoder_w6a8_in.npy", None,
                           [("default", None), ("serial", SERIAL)]),
}


def bench(name: str, fold_name: str, folding, out_root: Path, speed_frames: int) -> str:
    path, inputs, input_format, _ = MODELS[name]
    out = out_root / f"{name}-{fold_name}"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.monotonic()
    report = build(path, out, BuildOptions(folding_spec=folding, input_format=input_format))
    build_s = time.monotonic() - t0
    design = load_design(out)
    x = np.load(inputs) if inputs is not None else None
    result = verify(path, out, x, frames=16)
    agreement = f"hw==golden {result.hw_golden_equal}/{result.frames}, golden==qonnx {result.golden_qonnx_equal}/{result.frames}"
    if result.near_ties:
        agreement += f" ({len(result.near_ties)} near-tie: " + ", ".join(
            f"frame {t.frame} {t.layer}[{t.channel}] {t.distance_steps:.1e} steps" for t in result.near_ties) + ")"
    # simulation speed on a longer batch (random frames through the host head)
    from rtlgen.frontend import load_model, lower_model

    lowered = lower_model(load_model(path), input_format=input_format)
    xs = check_inputs(design, random_inputs(lowered, speed_frames, seed=7))
    hw_in = host_head(design, xs)
    _, stats = simulate(design, hw_in)
    fps = speed_frames / max(stats["simulation_seconds"], 1e-9)
    est = report["estimate"]
    return (f"{name:24s} {fold_name:8s} build {build_s:5.2f} s  verilator {result.stats['verilator_build_seconds']:6.2f} s  "
            f"ii est {est['ii_cycles']:6d} meas {result.stats['ii_cycles']:8.1f}  latency est {est['latency_cycles']:6d} "
            f"meas {result.stats['latency_cycles']:6d}  sim {fps:9.0f} frames/s  {agreement}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--frames", type=int, default=200, help="frames for the simulation-speed run")
    parser.add_argument("--out", default=str(REPO / "build" / "bench"))
    args = parser.parse_args()
    out_root = Path(args.out)
    out_root.mkdir(parents=True, exist_ok=True)
    for name in args.models.split(","):
        path = MODELS[name][0]
        if not Path(path).is_file():
            print(f"{name}: skipped, {path} not found")
            continue
        for fold_name, folding in MODELS[name][3]:
            print(bench(name, fold_name, folding, out_root, args.frames), flush=True)


if __name__ == "__main__":
    main()
