"""Tests of the hardware library (`ip_cores`): pure-Python checks, then every core in Verilator.

The simulated cores are compared word by word with numpy references written independently of the
hardware (`mvtu_reference`, identity for the FIFO, `pack_words` re-packing for the width converter)
under random input gaps and output back-pressure, and their cycle counts with free-flowing streams
are checked against the contract. Every bench runs the stream protocol checker on both edges
(sim/benches/protocol.py), runs each pause pattern (always ready, 50 % random, long stalls, and
saturating input against long stalls and the reverse: `stream_tb.DEFAULT_PATTERN_SPECS`) in the
same simulation, and resets the core in the middle of a frame before streaming clean frames.
Builds live in `build/test_cores/<case>` (git-ignored); the compiled Verilator runtime is shared
between them (see `sim/cocotb_runner.py`).
"""
from __future__ import annotations

import dataclasses
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import UnusedElaboratable

from ip_cores.axis_top import AxisDataflowTop, axis_width, to_verilog
from ip_cores.elements import ElementFormat, pack_words, signed_width_for, unpack_words, unsigned_width_for
from ip_cores.mvtu import MVTU, accumulator_range, mvtu_reference
from ip_cores.stream_fifo import StreamFIFO
from ip_cores.width_converter import StreamWidthConverter
from sim.cocotb_runner import run_cocotb

S, U, B = ElementFormat.signed, ElementFormat.unsigned, ElementFormat.bipolar
BUILD_ROOT = Path(__file__).resolve().parent.parent / "build" / "test_cores"

# Cores built only to test their parameter checks are never elaborated; Amaranth warns about each.
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


# --- elements ----------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", [S(2), S(4), S(8), U(1), U(3), U(8), B(), S(70), U(65)], ids=str)
@pytest.mark.parametrize("per_word", [1, 3, 4])
def test_pack_unpack_round_trip(fmt, per_word):
    rng = np.random.default_rng(fmt.width * 10 + per_word)
    if fmt.is_bipolar:
        values = rng.choice([-1, 1], size=12)
    elif fmt.width > 60:
        values = np.array([fmt.min, fmt.max] + [int(v) for v in rng.integers(-100, 100, 10)
                                                 if fmt.min <= v], dtype=object)[:12]
        values = np.concatenate([values, np.array([fmt.max] * (12 - len(values)), dtype=object)])
    else:
        values = rng.integers(fmt.min, fmt.max + 1, size=12)
        values[:2] = [fmt.min, fmt.max]
    words = pack_words(values, fmt, per_word)
    assert len(words) == 12 // per_word
    assert all(0 <= w < 1 << (fmt.width * per_word) for w in words)
    assert list(unpack_words(words, fmt, per_word, 12)) == [int(v) for v in values]


def test_pack_layout_is_least_significant_first():
    assert pack_words([1, -1, 0, 7], S(4), 4) == [0x70F1]
    assert pack_words([1, -1, -1, 1], B(), 2) == [0b01, 0b10]
    assert pack_words([3, 0, 2], U(2), 3) == [0b100011]
    assert list(unpack_words([0x70F1], S(4), 4, 3)) == [1, -1, 0]


def test_format_ranges_and_codes():
    assert (S(4).min, S(4).max, U(3).min, U(3).max, B().min, B().max) == (-8, 7, 0, 7, -1, 1)
    assert list(S(3).encode([-4, -1, 0, 3])) == [4, 7, 0, 3]
    assert list(S(3).decode([4, 7, 0, 3])) == [-4, -1, 0, 3]
    assert list(B().encode([-1, 1])) == [0, 1] and list(B().decode([0, 1])) == [-1, 1]
    assert str(S(4)) == "signed4" and str(B()) == "bipolar"


@pytest.mark.parametrize("fmt, bad", [(S(4), 8), (S(4), -9), (U(2), 4), (U(2), -1), (B(), 0), (B(), 2)], ids=str)
def test_out_of_range_values_are_rejected(fmt, bad):
    with pytest.raises(ValueError, match="does not fit"):
        pack_words([0 if not fmt.is_bipolar else 1, bad], fmt, 2)


def test_malformed_arguments_are_rejected():
    with pytest.raises(ValueError):
        ElementFormat("float", 8)
    with pytest.raises(ValueError):
        ElementFormat("bipolar", 2)
    with pytest.raises(ValueError):
        S(0)
    with pytest.raises(ValueError, match="whole words"):
        pack_words([1, 2, 3], S(4), 2)
    with pytest.raises(ValueError, match="fewer than"):
        unpack_words([0], S(4), 2, 3)
    with pytest.raises(ValueError):
        pack_words([1.5, 2.0], S(4), 2)
    with pytest.raises(ValueError):
        S(4).decode([16])


def test_minimal_widths():
    assert [signed_width_for(lo, hi) for lo, hi in [(0, 0), (-1, 0), (-8, 7), (-9, 7), (-8, 8), (0, 1)]] == \
        [1, 1, 4, 5, 5, 2]
    assert [unsigned_width_for(hi) for hi in [0, 1, 2, 255, 256]] == [1, 1, 2, 8, 9]
    for lo in range(-40, 40):
        for hi in range(lo, 40):
            w = signed_width_for(lo, hi)
            assert S(w).min <= lo and hi <= S(w).max
            assert w == 1 or not (S(w - 1).min <= lo and hi <= S(w - 1).max)
    with pytest.raises(ValueError):
        unsigned_width_for(3, lo=-1)


# --- MVTU reference and parameter checks -----------------------------------------------------

def _naive_mvtu(weights, x_vectors, thresholds, out_offset):
    out = []
    for x in x_vectors:
        row = []
        for c in range(len(weights)):
            acc = 0
            for i in range(len(x)):
                acc += int(x[i]) * int(weights[c][i])
            if thresholds is None:
                row.append(acc)
            else:
                row.append(sum(1 for t in thresholds[c] if acc >= t) + out_offset)
        out.append(row)
    return np.array(out)


@pytest.mark.parametrize("seed", range(4))
def test_mvtu_reference_matches_naive_loops(seed):
    rng = np.random.default_rng(seed)
    w = rng.integers(-8, 8, size=(5, 7))
    x = rng.integers(-4, 4, size=(3, 7))
    t = np.sort(rng.integers(-60, 60, size=(5, 4)), axis=1)
    assert np.array_equal(mvtu_reference(w, x, None, 0), _naive_mvtu(w, x, None, 0))
    assert np.array_equal(mvtu_reference(w, x, t, -2), _naive_mvtu(w, x, t, -2))
    bip = mvtu_reference(w, x, t[:, :1], 0, out_fmt=B())
    assert np.array_equal(bip, np.where(_naive_mvtu(w, x, t[:, :1], 0) > 0, 1, -1))


def test_accumulator_range_is_reached():
    w = np.array([[3, -2], [-1, -1]])
    assert accumulator_range(w, S(4)) == (-8 * 3 - 2 * 7, 7 * 3 + 2 * 8)
    assert accumulator_range(w, U(2)) == (-6, 9)
    assert accumulator_range(w, B()) == (-5, 5)


def test_mvtu_rejects_bad_parameters():
    w = np.ones((4, 8), dtype=int)
    with pytest.raises(ValueError, match="SIMD"):
        MVTU(w, 3, 1, S(4), S(4), 8)
    with pytest.raises(ValueError, match="PE"):
        MVTU(w, 2, 3, S(4), S(4), 8)
    with pytest.raises(ValueError, match="acc_width"):
        MVTU(w, 2, 2, S(4), S(4), 6)  # range [-64, 56] needs 7 bits
    with pytest.raises(ValueError, match="weight"):
        MVTU(w * 8, 2, 2, S(4), S(4), 12)
    with pytest.raises(ValueError, match="non-decreasing"):
        MVTU(w, 2, 2, S(4), S(4), 7, np.array([[2, 1]] * 4), U(2))
    with pytest.raises(ValueError, match="do not fit"):
        MVTU(w, 2, 2, S(4), S(4), 7, np.zeros((4, 4), dtype=int), U(2))
    MVTU(w, 2, 2, S(4), S(4), 7)


# --- Verilog -----------------------------------------------------------------------------------

def _convert_quietly(component, name):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        text = to_verilog(component, name)
    caught = [w for w in caught if not issubclass(w.category, UnusedElaboratable)]  # other tests' objects
    assert not caught, [str(w.message) for w in caught]
    return text


def test_large_mvtu_converts_without_warnings():
    rng = np.random.default_rng(7)
    w = rng.integers(-8, 8, size=(32, 64))
    lo, hi = accumulator_range(w, S(4))
    t = np.sort(rng.integers(lo, hi, size=(32, 3)), axis=1)
    mvtu = MVTU(w, 8, 4, S(4), S(4), signed_width_for(lo, hi), t, U(2))
    text = _convert_quietly(mvtu, "mvtu_64x32")
    assert "module mvtu_64x32(" in text
    ports = set(re.findall(r"^\s*(?:input|output)\s+(?:wire|reg)?\s*(?:\[[^\]]*\])?\s*(\w+)", text, re.M))
    assert {"i__payload", "i__valid", "i__ready", "o__payload", "o__valid", "o__ready", "clk", "rst"} <= ports
    assert mvtu.cycles_per_vector == 8 * 8


def test_axis_top_has_exactly_the_vivado_ports():
    stages = [StreamFIFO(12, 4), StreamWidthConverter(3, 4, 2)]
    text = _convert_quietly(AxisDataflowTop(stages, 12, 6, 3, in_words_per_frame=5), "accel")
    header = re.search(r"module accel\((.*?)\);", text, re.S).group(1)
    assert sorted(p.strip() for p in header.split(",")) == sorted([
        "ap_clk", "ap_rst_n", "s_axis_tdata", "s_axis_tvalid", "s_axis_tready", "s_axis_tlast",
        "m_axis_tdata", "m_axis_tvalid", "m_axis_tready", "m_axis_tlast", "error"])
    assert re.search(r"input \[15:0\] s_axis_tdata;", text)
    assert re.search(r"output \[7:0\] m_axis_tdata;", text)
    assert re.search(r"input s_axis_tlast;", text) and re.search(r"output error;", text)
    # without input framing: no s_axis_tlast, and error is a constant 0
    text = _convert_quietly(AxisDataflowTop(stages, 12, 6, 3, input_tlast=False), "accel")
    header = re.search(r"module accel\((.*?)\);", text, re.S).group(1)
    assert "s_axis_tlast" not in header and "error" in header
    assert re.search(r"assign error = 1'h0;", text)


def test_axis_width_is_a_dma_stream_width():
    """TDATA is the smallest AXI DMA stream width (8..1024 bits, powers of two) holding the payload; above 1024
    bits the next multiple of 1024."""
    assert [axis_width(w) for w in (1, 8, 9, 16, 17, 24, 33, 49, 56, 64, 65, 80, 129, 200, 257, 513, 1000, 1024)] == \
        [8, 8, 16, 16, 32, 32, 64, 64, 64, 64, 128, 128, 256, 256, 512, 1024, 1024, 1024]
    assert [axis_width(w) for w in (1025, 2048, 2049, 6272)] == [2048, 2048, 3072, 7168]
    with pytest.raises(ValueError):
        axis_width(0)


# --- simulated cores ---------------------------------------------------------------------------

def _fmt_json(fmt: ElementFormat) -> dict:
    return dataclasses.asdict(fmt)


def random_mac_weights(rng: np.random.Generator, rows: int, cols: int, w_fmt: ElementFormat) -> np.ndarray:
    """Random (rows, cols) weights in `w_fmt`; unless bipolar, row 0 all maximum and the last row all
    minimum, so the accumulator range is reached. (Also used by tests/test_conv_cores.py.)"""
    if w_fmt.is_bipolar:
        return rng.choice([-1, 1], size=(rows, cols))
    w = rng.integers(w_fmt.min, w_fmt.max + 1, size=(rows, cols))
    w[0, :] = w_fmt.max
    w[-1, :] = w_fmt.min
    return w


def mac_out_fmt(acc_width: int, n_thresholds: int, out_offset: int, bipolar_out: bool) -> ElementFormat:
    """The narrowest output format of a multiply-accumulate-threshold core: the accumulator's without
    thresholds, else one that holds out_offset .. out_offset + n_thresholds (or bipolar)."""
    if not n_thresholds:
        return S(acc_width)
    if bipolar_out:
        return B()
    if out_offset < 0:
        return S(signed_width_for(out_offset, out_offset + n_thresholds))
    return U(unsigned_width_for(out_offset + n_thresholds))


def affine_thresholds(rng: np.random.Generator, channels: int, n_thresholds: int, lo: int, hi: int,
                      saturate: bool = False) -> np.ndarray:
    """Thresholds of a uniform quantizer behind a per-channel scale and bias (ties to even, like ROUND), spread
    over the accumulator range [lo, hi]; with `saturate`, one channel jumps to the top level early (the shape
    some exports have). The exact multiply-shift of ip_cores/threshold_fit.py exists for these."""
    t = np.empty((channels, n_thresholds), dtype=np.int64)
    span = hi - lo
    for c in range(channels):
        step = rng.uniform(0.3, 1.2) * span / (n_thresholds + 1)
        start = lo + rng.uniform(0.0, 0.3) * span
        # level(a) = round_half_even((a - start) / step): level k from a >= start + (k - 0.5) * step (tie: even k)
        for k in range(1, n_thresholds + 1):
            edge = start + (k - 0.5) * step
            first = int(np.ceil(edge))
            t[c, k - 1] = first + 1 if (first == edge and k % 2 == 1) else first
    if saturate:
        t[0, n_thresholds // 2:] = t[0, n_thresholds // 2]
    return t


def mvtu_params(mw, mh, simd, pe, in_fmt, w_fmt, n_thresholds, *, out_offset=0, bipolar_out=False,
                n_vectors=12, n_throughput=6, seed=0, p_gap=0.3, p_stall=0.4, affine=False, saturate=False,
                implementation=None):
    """Random weights (with the format's extremes) and sorted thresholds (some out of range), or the thresholds
    of an affine quantizer (`affine`); `implementation` holds the MVTU's mac_resource/threshold_style/memory_style."""
    rng = np.random.default_rng(seed)
    w = random_mac_weights(rng, mh, mw, w_fmt)
    if not w_fmt.is_bipolar:
        w[1 % mh, 0] = w_fmt.min
    lo, hi = accumulator_range(w, in_fmt)
    acc_width = signed_width_for(lo, hi)
    out_fmt = mac_out_fmt(acc_width, n_thresholds, out_offset, bipolar_out)
    thresholds = None
    if n_thresholds and affine:
        thresholds = affine_thresholds(rng, mh, n_thresholds, lo, hi, saturate)
    elif n_thresholds:
        t = rng.integers(lo - 3, hi + 4, size=(mh, n_thresholds))
        t[0, 0] = lo - 5                  # always reached
        t[-1, -1] = hi + 1                # never reached
        t[mh // 2, :] = [-(10 ** 6), 10 ** 6][:n_thresholds] + [0] * (n_thresholds - 2)
        thresholds = np.sort(t, axis=1)
    return {
        "weights": w.tolist(), "thresholds": None if thresholds is None else thresholds.tolist(),
        "simd": simd, "pe": pe, "in_fmt": _fmt_json(in_fmt), "w_fmt": _fmt_json(w_fmt),
        "out_fmt": _fmt_json(out_fmt), "acc_width": acc_width, "out_offset": out_offset,
        "n_vectors": n_vectors, "n_throughput": n_throughput, "seed": seed,
        "p_gap": p_gap, "p_stall": p_stall, "implementation": implementation or {},
    }


def mvtu_from_params(p: dict) -> MVTU:
    return MVTU(np.array(p["weights"]), p["simd"], p["pe"], ElementFormat(**p["in_fmt"]),
                ElementFormat(**p["w_fmt"]), p["acc_width"],
                None if p["thresholds"] is None else np.array(p["thresholds"]),
                ElementFormat(**p["out_fmt"]), p["out_offset"], **p.get("implementation", {}))


def _simulate(case_id: str, component, bench: str, params: dict, toplevel: str = "dut"):
    build_dir = BUILD_ROOT / case_id
    build_dir.mkdir(parents=True, exist_ok=True)
    source = build_dir / f"{toplevel}.v"
    source.write_text(_convert_quietly(component, toplevel))
    run_cocotb([source], toplevel, f"sim.benches.{bench}", build_dir, params=params,
               runtime_cache=BUILD_ROOT.parent / ".verilator_runtime")


MVTU_CASES = {
    # id: (MW, MH, SIMD, PE, in_fmt, w_fmt, thresholds, extra)
    "s4xs4_simd1_pe1_thr3": (8, 4, 1, 1, S(4), S(4), 3, {}),
    "u2xs3_fully_parallel_acc": (12, 6, 12, 6, U(2), S(3), 0, {}),
    "bipxbip_xnor_bipolar_out": (16, 8, 4, 2, B(), B(), 1, {"bipolar_out": True}),
    "bipxbip_xnor_acc": (16, 6, 8, 3, B(), B(), 0, {}),
    "bipxs4_thr2": (8, 6, 2, 3, B(), S(4), 2, {}),
    "s5xbip_thr3_negative_offset": (10, 4, 5, 2, S(5), B(), 3, {"out_offset": -2}),
    "u8xs8_thr7": (12, 8, 3, 4, U(8), S(8), 7, {}),
    "s2xu2_nf1_acc": (8, 8, 2, 8, S(2), U(2), 0, {}),
    "s8xs8_sf1_thr2": (6, 4, 6, 1, S(8), S(8), 2, {}),
    # implementations: every style of activation, DSP and LUT products, LUT and block-RAM memories
    "u8xs8_dsp_binary_block": (16, 8, 4, 2, U(8), S(8), 255, {"implementation": {
        "mac_resource": "dsp", "threshold_style": "binary", "memory_style": "block"}}),
    "u8xs8_lut_binary_logic": (16, 8, 4, 2, U(8), S(8), 255, {"implementation": {
        "mac_resource": "lut", "threshold_style": "binary", "memory_style": "logic"}}),
    "u4xs4_binary_deep_banked": (8, 128, 2, 1, U(4), S(4), 15, {"implementation": {"threshold_style": "binary"}}),
    "u8xs3_affine_requant_fit": (24, 12, 6, 3, U(8), S(3), 255, {"affine": True, "out_offset": -128,
                                                                  "implementation": {"threshold_style": "requant"}}),
    "s4xs4_affine_saturating": (10, 6, 5, 2, S(4), S(4), 15, {"affine": True, "saturate": True,
                                                              "implementation": {"threshold_style": "requant"}}),
    "bipxbip_affine_requant_xnor": (32, 4, 8, 2, B(), B(), 7, {"affine": True,
                                                              "implementation": {"threshold_style": "requant"}}),
    "s8xs8_dsp_simd1_acc": (8, 4, 1, 4, S(8), S(8), 0, {"implementation": {"mac_resource": "dsp"}}),
    # two 8-bit products to a DSP48, the fifth lane alone; three 4-bit products to one, the fourth alone
    "u8xs8_dsp_packed_pe5": (12, 10, 3, 5, U(8), S(8), 7, {"implementation": {"mac_resource": "dsp_packed"}}),
    "s4xs4_dsp_packed_pe4_acc": (8, 8, 2, 4, S(4), S(4), 0, {"implementation": {"mac_resource": "dsp_packed"}}),
    "u3xs3_pe20_input_copies": (8, 40, 4, 20, U(3), S(3), 7, {}),  # 3 copies of the input word for 20 lanes
    "u4xs4_parallel_popcount": (12, 8, 4, 2, U(4), S(4), 15, {"implementation": {"threshold_style": "parallel"}}),
}


@pytest.mark.parametrize("case_id", list(MVTU_CASES))
def test_mvtu_in_verilator(case_id):
    mw, mh, simd, pe, in_fmt, w_fmt, n_t, extra = MVTU_CASES[case_id]
    params = mvtu_params(mw, mh, simd, pe, in_fmt, w_fmt, n_t, seed=len(case_id), **extra)
    core = mvtu_from_params(params)
    params["latency"] = core.latency
    wanted = params["implementation"].get("threshold_style")
    if wanted in ("binary", "requant", "parallel"):  # the core built what was asked for
        expected = {"requant": "multiply-shift", "binary": "binary search", "parallel": "parallel comparators"}
        assert expected[wanted] in core.activation.describe()
    _simulate(f"mvtu_{case_id}", core, "mvtu_bench", params)


@pytest.mark.parametrize("depth", [2, 8])
def test_stream_fifo_in_verilator(depth):
    fifo = StreamFIFO(10, depth)
    n = 24
    params = {"width": 10, "n_words": 200, "seed": depth, "p_gap": 0.3, "p_stall": 0.5, "depth": depth,
              "n_throughput": n, "expected_cycles": n + fifo.latency}
    _simulate(f"fifo_depth{depth}", fifo, "fifo_bench", params)


@pytest.mark.parametrize("in_elems, out_elems", [(6, 2), (2, 6)], ids=["split", "gather"])
def test_width_converter_in_verilator(in_elems, out_elems):
    n = 36
    params = {"elem_width": 3, "in_elems": in_elems, "out_elems": out_elems, "n_elems": 240, "seed": in_elems,
              "p_gap": 0.3, "p_stall": 0.4, "n_throughput_elems": n,
              # a word a cycle on the wider side's counterpart, plus the one register stage
              "expected_cycles": max(n // in_elems, n // out_elems) + 1}
    _simulate(f"width_{in_elems}to{out_elems}", StreamWidthConverter(3, in_elems, out_elems),
              "width_converter_bench", params)


def test_axis_top_in_verilator():
    params = mvtu_params(6, 8, 3, 2, S(4), S(3), 5, n_vectors=10, seed=11)
    mvtu = mvtu_from_params(params)
    out_bits = mvtu.out_fmt.width
    stages = [mvtu, StreamFIFO(2 * out_bits, 4), StreamWidthConverter(out_bits, 2, 4)]
    in_width = 3 * 4
    params.update(out_elems=4, in_width=in_width)
    top = AxisDataflowTop(stages, in_width, 4 * out_bits, out_words_per_frame=8 // 4, in_words_per_frame=6 // 3)
    _simulate("axis_top", top, "axis_top_bench", params, toplevel="accel")
