"""Folding to a target: for each benchmark model, the target (FINN's published interval where there is one), the
folding rtlgen's search picks, its estimated and measured interval, resources (analytic; Yosys with --synth),
FIFO bits sized by analysis against the old rule's, and the seconds the search and the sizing took. Beside it,
FINN's published folding costed by the same analytic model, where there is one.

    python bench/bench_folding.py                 # every model, Verilator runs included (~10 minutes)
    python bench/bench_folding.py --models tfc_w1a1 kws_w3a3 --synth
    python bench/bench_folding.py --no-sim        # estimates only (seconds)
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from bench_hardware import DESIGNS, _model_and_folding  # noqa: E402
from rtlgen.build import BuildOptions, build  # noqa: E402
from rtlgen.cost import CostModel, usage  # noqa: E402
from rtlgen.fold_search import search_folding  # noqa: E402
from rtlgen.folding import apply_folding, parse_folding  # noqa: E402
from rtlgen.frontend import load_model, lower_model  # noqa: E402
from rtlgen.timing import sized_stages  # noqa: E402

# model -> (bench_hardware design holding the model and FINN's folding, target cycles per frame)
MODELS = {"tfc_w1a1": ("tfc_w1a1", 64), "kws_w3a3": ("kws_w3a3", 392), "unsw_w2a2": ("unsw_w2a2", 64),
          "cnv_w1a1": ("cnv_w1a1", 32768), "radioml_w8a8": ("radioml_w8a8", 98304)}
FINN_FOLDED = {"tfc_w1a1", "kws_w3a3", "cnv_w1a1"}  # designs whose bench_hardware folding is FINN's published one


def _fifo_bits(stages) -> int:
    return sum(s.depth * s.in_elems_per_word * s.elem_width_in for s in stages if s.kind == "fifo")


def run(name: str, workdir: Path, simulate: bool, synth: bool) -> list[str]:
    design_name, target = MODELS[name]
    design = DESIGNS[design_name]
    path, finn_spec = _model_and_folding(design, workdir)
    network = lower_model(load_model(path)).network
    start = time.monotonic()
    found = search_folding(network, target, None)
    search_s = time.monotonic() - start
    network = apply_folding(network, found.folding)
    start = time.monotonic()
    sized, _ = sized_stages(network)
    sizing_s = time.monotonic() - start
    rule_bits = _fifo_bits(sized_stages(network, sizing="rule")[0])
    report = build(path, workdir / name, BuildOptions(target_cycles=target, synth=synth, package_ip=False))
    measured = "—"
    if simulate:
        from rtlgen.runner import run_design
        from rtlgen.verify import random_inputs
        lowered = lower_model(load_model(path))
        x = random_inputs(lowered, 3, 0)
        measured = f"{run_design(workdir / name, x).stats['ii_cycles']:g}"
    used = usage_of(report["resources"]["total"])
    yosys = "—"
    if synth:
        t = report["synthesis"]["total"]
        yosys = f"{t['LUT']:,} / {t['BRAM36_equivalent']:g} / {t['DSP48']}"
    folds = " ".join(f"{c.pe}/{c.simd}" for c in found.folding.values())
    finn = "—"
    if name in FINN_FOLDED and finn_spec is not None:
        finn_net = lower_model(load_model(path)).network
        finn_cost = usage(CostModel(finn_net).network_total(parse_folding(finn_spec, finn_net)[0]))
        finn = f"{finn_cost['LUT']:,.0f} / {finn_cost['BRAM36']:g} / {finn_cost['DSP']:,.0f}"
    return [name, f"{target:,}", folds, f"{report['estimate']['ii_cycles']:,}", measured,
            f"{used['LUT']:,.0f} / {used['BRAM36']:g} / {used['DSP']:,.0f}", yosys, finn,
            f"{report['fifo_sizing']['bits']:,} / {rule_bits:,}", f"{search_s:.2f} / {sizing_s:.2f}"]


def usage_of(total: dict) -> dict:
    return {"LUT": total["luts"] + total["lutram"], "BRAM36": total["bram36"], "DSP": total["dsp"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--no-sim", action="store_true", help="skip the Verilator runs (no measured ii)")
    parser.add_argument("--synth", action="store_true", help="Yosys counts too (minutes per model)")
    args = parser.parse_args()
    header = ["model", "target", "chosen PE/SIMD per layer", "est. ii", "measured ii", "analytic LUT / BRAM36 / DSP",
              "Yosys LUT / BRAM36 / DSP", "FINN folding, analytic LUT / BRAM36 / DSP", "FIFO bits analysed / rule",
              "search / sizing s"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            print("| " + " | ".join(run(name, Path(tmp), not args.no_sim, args.synth)) + " |", flush=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
