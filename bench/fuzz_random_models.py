"""Fuzz rtlgen with random QONNX MLPs, CNNs or residual MLPs (generators: tests/random_models.py,
tests/cnn_models.py, tests/random_residuals.py).

Every seed names one model (random depth, widths, quantizers, rounding modes, scales, bias, BatchNorm, folding)
with its float inputs. Per seed:
1. golden vs qonnx: the integer golden model against qonnx's execution of the original model, layer by layer
   (`rtlgen.verify.compare_with_qonnx`); a difference is allowed only as a near-tie (qonnx's float32 within
   NEAR_TIE quantizer steps of a boundary, and the golden level equal to exact arithmetic);
2. unless --golden-only: build (package_ip=False, the model's random folding), run in Verilator with random
   input gaps / output stalls, hardware == golden on every element, and the design's outputs vs qonnx; a run
   without gaps or stalls (every run with --free-flowing) also checks measured ii == estimate and first-frame
   latency within 2 % of it.

Run from the repository root, e.g.

    .venv/bin/python bench/fuzz_random_models.py --seeds 1000-5000 --golden-only --jobs 2
    .venv/bin/python bench/fuzz_random_models.py --seeds 1000-1199 --jobs 1          # end to end
    .venv/bin/python bench/fuzz_random_models.py --seeds 0-999 --free-flowing        # cycles vs estimate (issue 14)
    .venv/bin/python bench/fuzz_random_models.py --cnn --seeds 0-999 --golden-only   # random CNNs
    .venv/bin/python bench/fuzz_random_models.py --residual --seeds 0-99 --jobs 2    # residual blocks, end to end
    .venv/bin/python bench/fuzz_random_models.py --latency --seeds 0-99               # latency mode, 2.5-8 ns
    .venv/bin/python bench/fuzz_random_models.py --seeds 0-999 --select-ci 56         # E2E_SEEDS for CI

It prints a summary (models, frames, golden == qonnx frames, near-ties with their distances, unexplained,
refused, crashes, hardware mismatches, exact rounding ties exercised, feature coverage) and one line per
failing seed with its reason, then the list of failing seeds to add to REGRESSION_SEEDS in
tests/test_random_models.py (also appended to --failures FILE when given). --json FILE writes the summary
and every seed's outcome. Exit status 1 when any seed failed.

--select-ci N lowers each model (no Verilator), estimates its Verilator cost (threshold constants and
multipliers: compile time grows with both) and picks N cheap seeds, greedily covering every feature tag seen
in the range; it prints the list for E2E_SEEDS.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part[1:]:
            lo, hi = part.split("-", 1) if not part.startswith("-") else (part, "")
            seeds.extend(range(int(lo), int(hi) + 1))
        else:
            seeds.append(int(part))
    return seeds


GENERATORS = {"mlp": ("random_models", "build_random_model"), "cnn": ("cnn_models", "build_random_cnn"),
              "residual": ("random_residuals", "build_random_residual")}


LATENCY_CLOCKS_NS = (2.5, 3.0, 4.0, 5.0, 6.0, 8.0)  # --latency: seed k builds at clock k mod 6


def _one(args: tuple[int, bool, str, str, bool, bool]) -> dict:
    seed, golden_only, workroot, family, free_flowing, latency = args
    import warnings

    warnings.filterwarnings("ignore")
    import importlib

    from random_models import check_end_to_end, check_golden

    start = time.monotonic()
    try:
        module, function = GENERATORS[family]
        rm = getattr(importlib.import_module(module), function)(seed)
    except Exception as err:  # noqa: BLE001 - a generator crash is reported like any other failure
        return {"seed": seed, "ok": False, "reason": f"generator error: {type(err).__name__}: {err}", "description": "",
                "features": [], "frames": 0, "golden_qonnx_equal": 0, "near_ties": [], "unexplained": 0,
                "refused": False, "error": True, "hw_checked": False, "hw_mismatch": False, "exact_ties": 0,
                "timing_checked": False, "timing_mismatch": None,
                "seconds": time.monotonic() - start}
    if golden_only:
        res, _ = check_golden(seed, rm)
    else:
        work = Path(tempfile.mkdtemp(prefix=f"fuzz_{seed}_", dir=workroot))
        try:
            clock = LATENCY_CLOCKS_NS[seed % len(LATENCY_CLOCKS_NS)] if latency else None
            res = check_end_to_end(seed, work, rm, free_flowing=free_flowing, latency_clock_ns=clock)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return {"seed": seed, "ok": res.ok, "reason": res.reason(), "description": res.description,
            "features": sorted(rm.features), "frames": res.frames, "golden_qonnx_equal": res.golden_qonnx_equal,
            "near_ties": [{"frame": t.frame, "layer": t.layer, "channel": t.channel, "distance_steps": t.distance_steps}
                          for t in res.near_ties],
            "unexplained": len(res.unexplained), "refused": res.refused is not None, "error": res.error is not None,
            "hw_checked": res.hw_checked, "hw_mismatch": res.hw_mismatch is not None, "exact_ties": res.exact_ties,
            "timing_checked": res.timing_checked, "timing_mismatch": res.timing_mismatch,
            "seconds": round(time.monotonic() - start, 3)}


def _cost(seed: int) -> dict:
    """Lower the model and estimate how expensive its Verilator build is (no Verilog generated)."""
    import warnings

    warnings.filterwarnings("ignore")
    import numpy as np
    from random_models import _count_exact_ties, build_random_model

    from rtlgen.errors import RtlgenError
    from rtlgen.host import build_head, execute_frames
    from rtlgen.folding import apply_folding, parse_folding
    from rtlgen.frontend import clean_model, lower_model

    rm = build_random_model(seed)
    try:
        lowered = lower_model(clean_model(rm.model))
        folding, _ = parse_folding(rm.folding, lowered.network)
        lowered = replace(lowered, network=apply_folding(lowered.network, folding))
        hw_in = np.round(execute_frames(build_head(lowered), rm.inputs).reshape(len(rm.inputs), -1)).astype(np.int64)
        ties = _count_exact_ties(lowered, hw_in)
    except RtlgenError as err:
        return {"seed": seed, "cost": None, "features": sorted(rm.features), "reason": str(err)}
    layers = lowered.network.layers
    thresholds = sum(0 if l.thresholds is None else l.thresholds.size for l in layers)
    macs = sum(l.pe * l.simd for l in layers)
    weights = sum(l.weights.size for l in layers)
    # Verilog size (and so Verilator + g++ time) grows about as 80 B a threshold, 180 B a multiplier
    return {"seed": seed, "cost": thresholds + 2 * macs + weights // 8, "exact_ties": ties,
            "features": sorted(rm.features) + (["exact_rounding_ties"] if ties else [])}


def select_ci(seeds: list[int], count: int, jobs: int, budget: int) -> list[int]:
    from multiprocessing import Pool

    with Pool(jobs) as pool:
        costs = list(pool.imap(_cost, seeds, chunksize=4))
    cheap = [c for c in costs if c["cost"] is not None and c["cost"] <= budget]
    all_tags = set().union(*(c["features"] for c in cheap)) if cheap else set()
    chosen: list[dict] = []
    covered: set[str] = set()
    # greedy: the seed adding the most uncovered tags, cheaper first on ties; then fill with the cheapest
    pool_left = sorted(cheap, key=lambda c: c["cost"])
    while pool_left and len(chosen) < count and covered != all_tags:
        best = max(pool_left, key=lambda c: (len(set(c["features"]) - covered), -c["cost"]))
        if not set(best["features"]) - covered:
            break
        chosen.append(best)
        covered |= set(best["features"])
        pool_left.remove(best)
    # then prefer models whose quantizers see exact rounding ties (where a tie rule decides), cheapest first
    for c in sorted(pool_left, key=lambda c: (c["exact_ties"] == 0, c["cost"])):
        if len(chosen) >= count:
            break
        chosen.append(c)
    missing = set().union(*(c["features"] for c in costs)) - covered
    print(f"{len(cheap)} of {len(seeds)} seeds cost <= {budget}; chosen {len(chosen)}, total cost "
          f"{sum(c['cost'] for c in chosen)}, {sum(c['exact_ties'] > 0 for c in chosen)} with exact rounding ties; tags not covered by the choice: {sorted(missing) or 'none'}")
    refused = [c for c in costs if c["cost"] is None]
    for c in refused:
        print(f"  seed {c['seed']} refused while lowering: {c['reason']}")
    return sorted(c["seed"] for c in chosen)


def _signature(reason: str) -> str:
    """A failure reason with node names and numbers blanked, to group failures by cause."""
    import re

    sig = re.sub(r"\b[A-Za-z]+_\d+\b", "<node>", reason)
    sig = re.sub(r"-?\d+(\.\d+)?(e-?\d+)?", "<n>", sig)
    return sig[:160]


def summarize(results: list[dict], golden_only: bool, seconds: float, jobs: int) -> dict:
    ties = [t for r in results for t in r["near_ties"]]
    tie_frames = sum(len({t["frame"] for t in r["near_ties"]}) for r in results)
    feats = Counter(f for r in results for f in r["features"])
    return {
        "mode": "golden-only" if golden_only else "end-to-end",
        "models": len(results),
        "ok": sum(r["ok"] for r in results),
        "failed": sum(not r["ok"] for r in results),
        "frames": sum(r["frames"] for r in results),
        "golden_qonnx_equal_frames": sum(r["golden_qonnx_equal"] for r in results),
        "near_tie_frames": tie_frames,
        "near_tie_models": sum(bool(r["near_ties"]) for r in results),
        "near_tie_max_distance_steps": max((t["distance_steps"] for t in ties), default=None),
        "near_tie_distance_histogram": {
            "0": sum(t["distance_steps"] == 0 for t in ties),
            "(0,1e-6]": sum(0 < t["distance_steps"] <= 1e-6 for t in ties),
            "(1e-6,1e-4]": sum(1e-6 < t["distance_steps"] <= 1e-4 for t in ties),
            "(1e-4,1e-3]": sum(1e-4 < t["distance_steps"] <= 1e-3 for t in ties),
        },
        "unexplained_models": sum(r["unexplained"] > 0 for r in results),
        "unexplained_frames": sum(r["unexplained"] for r in results),
        "refused": sum(r["refused"] for r in results),
        "errors": sum(r["error"] for r in results),
        "hw_checked": sum(r["hw_checked"] for r in results),
        "hw_mismatch": sum(r["hw_mismatch"] for r in results),
        "timing_checked": sum(r["timing_checked"] for r in results),
        "timing_mismatch": sum(bool(r["timing_mismatch"]) for r in results),
        "exact_tie_elements": sum(r["exact_ties"] for r in results),
        "models_with_exact_ties": sum(r["exact_ties"] > 0 for r in results),
        "seconds": round(seconds, 1),
        "jobs": jobs,
        "feature_counts": dict(sorted(feats.items())),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="1000-1099", help="seeds: ranges and lists, e.g. 1000-5000 or 3,17,200-299")
    ap.add_argument("--golden-only", action="store_true", help="golden vs qonnx only (fast, no Verilator)")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    ap.add_argument("--json", type=Path, help="write the summary and every seed's outcome here")
    ap.add_argument("--failures", type=Path, help="append failing seeds with their reasons to this file")
    ap.add_argument("--workdir", type=Path, help="where end-to-end builds go (default: the system temp folder)")
    ap.add_argument("--select-ci", type=int, metavar="N", help="print N cheap seeds covering every feature (for E2E_SEEDS)")
    ap.add_argument("--exclude", default="", help="seeds --select-ci must not pick (e.g. known rtlgen bugs)")
    ap.add_argument("--ci-budget", type=int, default=500, help="largest cost estimate --select-ci accepts")
    ap.add_argument("--quiet", action="store_true", help="no line per seed")
    ap.add_argument("--cnn", action="store_true", help="random CNNs (tests/cnn_models.py) instead of MLPs")
    ap.add_argument("--residual", action="store_true",
                    help="random residual MLPs (tests/random_residuals.py: forks, skip paths, residual Adds)")
    ap.add_argument("--free-flowing", action="store_true",
                    help="run every design without input gaps or output stalls and check the measured ii (equal) and "
                         "first-frame latency (within 2 %%) against the estimate (default: one seed in five)")
    ap.add_argument("--latency", action="store_true",
                    help="build in latency mode (every layer unrolled, one frame a cycle) at a clock target that "
                         "varies with the seed, instead of at the model's folding (MLPs only)")
    args = ap.parse_args(argv)
    if args.cnn and args.residual:
        ap.error("--cnn and --residual exclude each other")
    if args.latency and (args.cnn or args.residual or args.golden_only):
        ap.error("--latency builds random MLPs end to end: not with --cnn, --residual or --golden-only")
    family = "cnn" if args.cnn else "residual" if args.residual else "mlp"
    excluded = set(parse_seeds(args.exclude))
    seeds = [s for s in parse_seeds(args.seeds) if s not in excluded]
    if not seeds:
        ap.error("no seeds")
    if args.select_ci:
        print(select_ci(seeds, args.select_ci, max(1, args.jobs), args.ci_budget))
        return 0
    from multiprocessing import Pool

    workroot = str(args.workdir) if args.workdir else None
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    results: list[dict] = []
    with Pool(max(1, args.jobs), maxtasksperchild=50) as pool:
        jobs = [(s, args.golden_only, workroot, family, args.free_flowing, args.latency) for s in seeds]
        for i, r in enumerate(pool.imap_unordered(_one, jobs)):
            results.append(r)
            if not args.quiet or not r["ok"]:
                ties = f" near-ties {len(r['near_ties'])}" if r["near_ties"] else ""
                print(f"[{i + 1}/{len(seeds)}] seed {r['seed']} {r['seconds']:.1f}s {r['reason']}{ties}", flush=True)
    results.sort(key=lambda r: r["seed"])
    summary = summarize(results, args.golden_only, time.monotonic() - start, args.jobs)
    failures = [r for r in results if not r["ok"]]
    summary["failure_classes"] = dict(Counter(_signature(r["reason"]) for r in failures).most_common())
    print("\n== summary ==")
    for key, value in summary.items():
        if key not in ("feature_counts", "failure_classes"):
            print(f"{key}: {value}")
    print("feature coverage (models): " + ", ".join(f"{k} {v}" for k, v in summary["feature_counts"].items()))
    if failures:
        print("\n== failure classes ==")
        for sig, n in summary["failure_classes"].items():
            print(f"{n:6d}  {sig}")
        print(f"\n== {len(failures)} failing seed(s) ==")
        for r in failures:
            print(f"seed {r['seed']}: {r['reason']}\n    {r['description']}")
        print("\nadd to REGRESSION_SEEDS in tests/test_random_models.py: " + str([r["seed"] for r in failures]))
        if args.failures:
            with args.failures.open("a") as fh:
                for r in failures:
                    fh.write(f"{r['seed']}\t{summary['mode']}\t{r['reason']}\n")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "results": results}, indent=1) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
