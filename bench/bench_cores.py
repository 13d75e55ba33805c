"""The hardware library's cores on their own, at the sizes ../shared/HARDWARE.md measured them: Yosys xc7 counts
and the estimated worst register-to-register path (rtlgen/delay_model.py, +-30 %), beside each core's analytic
estimate (`resources()`), and what one 8-bit activation lane costs besides its threshold memory.

    python bench/bench_cores.py              # every core (a few minutes)
    python bench/bench_cores.py --only mvtu_thresholds_binary
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from amaranth.back import verilog  # noqa: E402

from ip_cores.elements import ElementFormat, signed_width_for  # noqa: E402
from ip_cores.branches import StreamDuplicator, StreamInterleave  # noqa: E402
from ip_cores.global_pool import GlobalSumPool  # noqa: E402
from ip_cores.label_select import LabelSelect  # noqa: E402
from ip_cores.maxpool import StreamingMaxPool  # noqa: E402
from ip_cores.mvtu import MVTU, accumulator_range  # noqa: E402
from ip_cores.requantize import Requantization  # noqa: E402
from ip_cores.sliding_window import SlidingWindow  # noqa: E402
from ip_cores.stream_fifo import StreamFIFO  # noqa: E402
from ip_cores.vector_unit import VectorVectorUnit  # noqa: E402
from ip_cores.width_converter import StreamWidthConverter  # noqa: E402
from rtlgen.memfiles import externalize_rom_contents  # noqa: E402
from rtlgen.synth import synthesize_verilog  # noqa: E402

U, S = ElementFormat.unsigned, ElementFormat.signed


def _mvtu(activation: str, **options) -> MVTU:
    """HARDWARE.md's MVTU: 64x16 (MW x MH), SIMD 8, PE 1, UINT8 inputs, INT8 weights."""
    rng = np.random.default_rng(0)
    w = rng.integers(-128, 128, size=(16, 64))
    lo, hi = accumulator_range(w, U(8))
    acc_w = signed_width_for(lo, hi)
    if activation == "none":
        return MVTU(w, 8, 1, U(8), S(8), acc_w, **options)
    if activation == "requant":
        rq = Requantization.from_arrays(rng.integers(1 << 10, 1 << 14, 16), rng.integers(-(1 << 20), 1 << 20, 16),
                                        18, "ROUND", 0, 255)
        return MVTU(w, 8, 1, U(8), S(8), acc_w, None, U(8), 0, rq, **options)
    t = np.sort(rng.integers(lo, hi, size=(16, 255)), axis=1)  # not affine: no multiply-shift exists
    return MVTU(w, 8, 1, U(8), S(8), acc_w, t, U(8), 0, threshold_style=activation, **options)


def _mvtu_pe8(mac_resource: str) -> MVTU:
    """An 8-bit MVTU with 8 PE lanes (64x16, SIMD 4, UINT8 x INT8, no activation): one DSP48 a product, or two
    lanes' products to one DSP48 ("dsp_packed")."""
    rng = np.random.default_rng(2)
    w = rng.integers(-128, 128, size=(16, 64))
    return MVTU(w, 4, 8, U(8), S(8), signed_width_for(*accumulator_range(w, U(8))), mac_resource=mac_resource)


def _global_pool(pe: int):
    """ResNet-8's global average pool: 8x8 pixels of 64 UINT4 channels, to 6 bits by thresholds (binary search);
    and, for comparison, what it was before the dedicated core: a whole-map sliding window + a 64-tap vector unit."""
    rng = np.random.default_rng(2)
    acc_width = signed_width_for(0, 64 * 15 + 1)
    t = np.sort(rng.integers(0, 64 * 15, size=(64, 63)), axis=1)
    return GlobalSumPool(U(4), 64, 64, pe, acc_width, t, U(6), threshold_style="binary")


def _global_pool_as_window_sum(pe: int):
    rng = np.random.default_rng(2)
    acc_width = signed_width_for(0, 64 * 15 + 1)
    t = np.sort(rng.integers(0, 64 * 15, size=(64, 63)), axis=1)
    return VectorVectorUnit(np.ones((64, 64), dtype=np.int64), pe, U(4), U(1), acc_width, t, U(6),
                            threshold_style="binary")


def _vvu() -> VectorVectorUnit:
    rng = np.random.default_rng(1)
    w = rng.integers(-8, 8, size=(64, 9))
    lo, hi = accumulator_range(w, U(4))
    t = np.sort(rng.integers(lo, hi, size=(64, 15)), axis=1)
    return VectorVectorUnit(w, 8, U(4), S(4), signed_width_for(lo, hi), t, U(4), threshold_style="binary")


CORES = {
    "mvtu_no_activation": lambda: _mvtu("none"),
    "mvtu_thresholds_binary": lambda: _mvtu("binary"),
    "mvtu_thresholds_parallel": lambda: _mvtu("parallel"),
    "mvtu_requantizer": lambda: _mvtu("requant"),
    "mvtu_pe8_simd4_dsp": lambda: _mvtu_pe8("dsp"),
    "mvtu_pe8_simd4_dsp_packed": lambda: _mvtu_pe8("dsp_packed"),
    "vvu_64ch_k9_pe8_4bit": _vvu,
    "sliding_window_32x32x64_k3_pad1_simd8": lambda: SlidingWindow(U(4), 64, 32, 32, 3, 3, 1, 1, 1, 1, 1, 1, simd=8),
    "maxpool_2x2_32x32x64_simd8": lambda: StreamingMaxPool(U(4), 64, 32, 32, 2, 2, 2, 2, simd=8),
    "global_pool_8x8x64_pe1": lambda: _global_pool(1),
    "global_pool_8x8x64_pe8": lambda: _global_pool(8),
    # the same pool as a window sum (before ip_cores/global_pool.py): the window generator and the vector unit
    "global_pool_8x8x64_pe1_as_window_sum_swg": lambda: SlidingWindow(U(4), 64, 8, 8, 8, 8, 1, 1, 0, 0, 0, 0, simd=1,
                                                                      depthwise=True),
    "global_pool_8x8x64_pe1_as_window_sum_vvu": lambda: _global_pool_as_window_sum(1),
    # --argmax-in-hardware on a classifier's scores: 10 INT16 scores at SIMD 10 (ii 1), 1,000 INT12 at SIMD 8
    "label_select_10xint16_simd10": lambda: LabelSelect(10, 10, S(16)),
    "label_select_1000xint12_simd8": lambda: LabelSelect(1000, 8, S(12)),
    # residual blocks: fan-out of 16 x 4-bit channels a word with a 1-row skip buffer of a 32x32 map, and the join
    "duplicator_64bit_skip34": lambda: StreamDuplicator(64, [2, 34]),
    "interleave_64bit": lambda: StreamInterleave(64),
    "fifo_64x32": lambda: StreamFIFO(32, 64),
    "fifo_1024x64": lambda: StreamFIFO(64, 1024),
    "width_converter_8to32": lambda: StreamWidthConverter(4, 8, 32),
    "width_converter_32to8": lambda: StreamWidthConverter(4, 32, 8),
}


def measure(name: str, workdir: Path) -> dict:
    core = CORES[name]()
    estimate = core.resources()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = verilog.convert(core, name="core", emit_src=False)
    text, files = externalize_rom_contents(text)
    folder = workdir / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "core.v").write_text(text)
    for file_name, contents in files.items():
        (folder / file_name).write_text(contents)
    result = synthesize_verilog(folder / "core.v", "core", folder / "synth")
    result["estimate"] = estimate.as_dict()
    result["memory_luts"] = sum(p.luts for p in getattr(getattr(core, "activation", None), "memories", lambda: [])())
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(CORES), default=list(CORES))
    args = parser.parse_args(argv)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="bench_cores_") as tmp:
        for name in args.only:
            rows[name] = measure(name, Path(tmp))
            r = rows[name]
            e = r["estimate"]
            print(f"{name:40s} LUT {r['LUT']:>6} ({e['luts']:>6}) LUTRAM {r['LUTRAM']:>4} ({e['lutram']:>4}) "
                  f"FF {r['FF']:>6} ({e['ffs']:>6}) BRAM36 {r['BRAM36_equivalent']:>5} ({e['bram36']:>5}) "
                  f"DSP {r['DSP48']:>3} ({e['dsp']:>3})  {r['worst_path_ns']:.2f} ns  "
                  f"{r['worst_path']['start']} -> {r['worst_path']['end']}", flush=True)
    if "mvtu_no_activation" in rows and "mvtu_thresholds_binary" in rows:
        base, act = rows["mvtu_no_activation"], rows["mvtu_thresholds_binary"]
        lane = act["LUT"] - base["LUT"] - act["memory_luts"]
        print(f"one 8-bit activation lane (binary search) besides its threshold memory: {lane} LUT "
              f"({act['LUT']} - {base['LUT']} without activation - {act['memory_luts']} of LUT threshold tables)")
    print("(Yosys counts, analytic estimate in parentheses; worst path: estimate +-30 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
