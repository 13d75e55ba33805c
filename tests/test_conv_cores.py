"""Tests of the convolution cores: sliding-window generator, vector-vector unit, streaming max-pool.

First pure numpy: the references against naive loops (im2col rows times a weight matrix == a direct
convolution, the depthwise order through the vector unit == a direct depthwise convolution, max-pool
== its loop), the sliding-window controller model's timing over random geometries, parameter checks.
Then each core in Verilator: every output word against its reference under random input gaps and
output back-pressure, under each named pause pattern (`stream_tb.DEFAULT_PATTERN_SPECS`, long stalls
included) and after a reset in the middle of a frame, with the stream protocol checker on both edges;
and the free-flowing cycle counts against the figures the cores document (`cycles_per_frame`,
`initial_latency`, `latency`). Builds live in `build/test_conv_cores/<case>`.
"""
from __future__ import annotations

import dataclasses
import gc
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import UnusedElaboratable

from ip_cores.axis_top import to_verilog
from ip_cores.elements import ElementFormat, signed_width_for
from ip_cores.maxpool import StreamingMaxPool, maxpool_reference
from ip_cores.mvtu import accumulator_range, mvtu_reference
from ip_cores.sliding_window import SlidingWindow, conv_output_size, sliding_window_reference
from ip_cores.vector_unit import VectorVectorUnit, vector_unit_input_order, vector_unit_reference
from sim.cocotb_runner import run_cocotb
from test_cores import mac_out_fmt, random_mac_weights

S, U, B = ElementFormat.signed, ElementFormat.unsigned, ElementFormat.bipolar
BUILD_ROOT = Path(__file__).resolve().parent.parent / "build" / "test_conv_cores"

# Cores built only to test their parameter checks are never elaborated; Amaranth warns about each.
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")



@pytest.fixture(autouse=True)
def _collect_unused_cores():
    """Collect the cores a test made but never elaborated while the filter above still applies."""
    yield
    gc.collect()


GEOMETRY = ("kernel_h", "kernel_w", "stride_h", "stride_w", "pad_top", "pad_left", "pad_bottom", "pad_right")


# --- references against naive loops ------------------------------------------------------------

def _naive_conv(x, w, stride, pads):
    """Direct convolution, x (H, W, C), w (M, C, KH, KW) -> (OH, OW, M), zero padding."""
    h, wd, c = x.shape
    m, _, kh_n, kw_n = w.shape
    pt, pl, pb, pr = pads
    oh_n = (h + pt + pb - kh_n) // stride[0] + 1
    ow_n = (wd + pl + pr - kw_n) // stride[1] + 1
    out = np.zeros((oh_n, ow_n, m), dtype=np.int64)
    for oh in range(oh_n):
        for ow in range(ow_n):
            for o in range(m):
                acc = 0
                for kh in range(kh_n):
                    for kw in range(kw_n):
                        ih, iw = oh * stride[0] - pt + kh, ow * stride[1] - pl + kw
                        if 0 <= ih < h and 0 <= iw < wd:
                            for ci in range(c):
                                acc += int(x[ih, iw, ci]) * int(w[o, ci, kh, kw])
                out[oh, ow, o] = acc
    return out


CONV_GEOMETRIES = {
    # id: (H, W, C, KH, KW, sh, sw, (pad_top, pad_left, pad_bottom, pad_right))
    "k3_s1_pad1": (5, 6, 3, 3, 3, 1, 1, (1, 1, 1, 1)),
    "k3_s2_pad_asym": (7, 6, 2, 3, 3, 2, 2, (0, 0, 1, 1)),
    "k2_s2": (6, 4, 2, 2, 2, 2, 2, (0, 0, 0, 0)),
    "k3x1_1d": (9, 1, 2, 3, 1, 1, 1, (1, 0, 1, 0)),
    "k2x3_s1x2": (4, 7, 2, 2, 3, 1, 2, (0, 1, 1, 1)),
}


@pytest.mark.parametrize("geometry", list(CONV_GEOMETRIES))
def test_im2col_times_weights_is_direct_convolution(geometry):
    h, w, c, kh, kw, sh, sw, pads = CONV_GEOMETRIES[geometry]
    rng = np.random.default_rng(len(geometry))
    x = rng.integers(-8, 8, size=(h, w, c))
    weights = rng.integers(-4, 4, size=(5, c, kh, kw))
    rows = sliding_window_reference(x, kh, kw, sh, sw, *pads)
    # im2col element (kh*KW + kw)*C + c: the MVTU's weight matrix is W transposed to (M, KH, KW, C).
    matrix = weights.transpose(0, 2, 3, 1).reshape(5, -1)
    got = mvtu_reference(matrix, rows.reshape(-1, rows.shape[-1])).reshape(rows.shape[0], rows.shape[1], 5)
    assert np.array_equal(got, _naive_conv(x, weights, (sh, sw), pads))


@pytest.mark.parametrize("geometry", list(CONV_GEOMETRIES))
def test_depthwise_order_through_vector_unit_is_depthwise_convolution(geometry):
    h, w, c, kh, kw, sh, sw, pads = CONV_GEOMETRIES[geometry]
    c *= 2
    rng = np.random.default_rng(len(geometry) + 1)
    x = rng.integers(-8, 8, size=(h, w, c))
    weights = rng.integers(-4, 4, size=(c, kh, kw))
    expected = np.stack([_naive_conv(x[:, :, [ch]], weights[None, [ch]], (sh, sw), pads)[:, :, 0]
                         for ch in range(c)], axis=-1)
    for pe in (1, 2, c):
        stream = sliding_window_reference(x, kh, kw, sh, sw, *pads, simd=pe, depthwise=True)
        # The same elements as the unit's input order of the standard windows (P, K, C).
        windows = sliding_window_reference(x, kh, kw, sh, sw, *pads).reshape(-1, kh * kw, c)
        assert np.array_equal(stream.reshape(-1), vector_unit_input_order(windows, pe))
        got = vector_unit_reference(weights.reshape(c, -1), windows)
        assert np.array_equal(got.reshape(expected.shape), expected)


def test_sliding_window_reference_pads_with_pad_value():
    x = np.arange(4).reshape(2, 2, 1)
    rows = sliding_window_reference(x, 2, 2, 1, 1, 1, 1, 0, 0, pad_value=-5)
    assert rows.shape == (2, 2, 4)
    assert list(rows[0, 0]) == [-5, -5, -5, 0]
    assert list(rows[1, 1]) == [0, 1, 2, 3]
    assert conv_output_size(7, 3, 2, 0, 1) == 3


def _naive_maxpool(x, kh, kw, sh, sw):
    h, w, c = x.shape
    out = np.zeros(((h - kh) // sh + 1, (w - kw) // sw + 1, c), dtype=np.int64)
    for oh in range(out.shape[0]):
        for ow in range(out.shape[1]):
            for ch in range(c):
                out[oh, ow, ch] = max(int(x[oh * sh + i, ow * sw + j, ch]) for i in range(kh) for j in range(kw))
    return out


@pytest.mark.parametrize("shape, kernel", [((6, 6, 3), (2, 2, 2, 2)), ((7, 8, 2), (3, 3, 2, 2)),
                                           ((8, 1, 2), (2, 1, 2, 1)), ((5, 6, 1), (3, 2, 1, 3))], ids=str)
@pytest.mark.parametrize("fmt", [S(4), U(3), B()], ids=str)
def test_maxpool_reference_matches_loops(shape, kernel, fmt):
    rng = np.random.default_rng(shape[0] * 10 + fmt.width)
    x = rng.choice([-1, 1], size=shape) if fmt.is_bipolar else rng.integers(fmt.min, fmt.max + 1, size=shape)
    assert np.array_equal(maxpool_reference(x, *kernel), _naive_maxpool(x, *kernel))
    batch = np.stack([x, -x if fmt.is_signed or fmt.is_bipolar else x[::-1]])
    assert np.array_equal(maxpool_reference(batch, *kernel)[1], _naive_maxpool(batch[1], *kernel))


def test_vector_unit_reference_thresholds():
    w = np.array([[1, -2], [3, 0]])
    x = np.array([[[2, 1], [1, 4]]])  # (P=1, K=2, C=2): acc = [2*1 + 1*-2, 1*3 + 4*0] = [0, 3]
    assert vector_unit_reference(w, x).tolist() == [[0, 3]]
    t = np.array([[-1, 1], [0, 3]])
    assert vector_unit_reference(w, x, t, out_offset=-1).tolist() == [[0, 1]]
    assert vector_unit_reference(w, x, t[:, :1], out_fmt=B()).tolist() == [[1, 1]]


# --- the sliding-window controller's timing --------------------------------------------------------

def _random_geometry(rng: random.Random):
    kh, kw = rng.choice([1, 2, 3, 4]), rng.choice([1, 2, 3, 5])
    sh, sw = rng.choice([1, 2, 3]), rng.choice([1, 2, 3])
    h, w = rng.randint(kh, 9), rng.randint(kw, 12)
    if rng.random() < 0.2:
        w, kw, sw = 1, 1, 1
    pt = rng.randint(0, kh - 1)
    pb = rng.randint(0, kh - 1 - pt)
    pl = rng.randint(0, kw - 1)
    pr = rng.randint(0, kw - 1 - pl)
    c = rng.choice([1, 2, 3])
    return dict(channels=c, in_h=h, in_w=w, kernel_h=kh, kernel_w=kw, stride_h=sh, stride_w=sw,
                pad_top=pt, pad_left=pl, pad_bottom=pb, pad_right=pr, simd=1, depthwise=rng.random() < 0.5)


def test_sliding_window_timing_figures_over_random_geometries():
    """The controller model (checked cycle for cycle against the hardware in the Verilator benches)
    reaches cycles_per_frame = max(input, output words) from the first frame on, with no per-row bubbles,
    and starts after initial_latency input words, for any geometry the core accepts."""
    rng = random.Random(2)
    for _ in range(150):
        g = _random_geometry(rng)
        swg = SlidingWindow(S(4), **g)
        frames = 3
        times = swg.output_times([0] * (frames * swg.in_words_per_frame))
        ends = [times[(f + 1) * swg.out_words_per_frame - 1] for f in range(frames)]
        assert [b - a for a, b in zip(ends, ends[1:])] == [swg.cycles_per_frame()] * (frames - 1), g
        assert times[0] == swg.initial_latency() - 1 + swg.latency, g
        rows = 2 * g["kernel_h"] + g["stride_h"] - 2  # the bound the module docstring states
        assert swg.min_buffer_depth <= (rows * g["in_w"] + g["kernel_w"]) * g["channels"] + swg.window_words, g
        assert swg.min_buffer_depth <= swg.buffer_depth < 2 * swg.min_buffer_depth, g  # the next power of two
        assert swg.buffer_depth & (swg.buffer_depth - 1) == 0, g


def test_sliding_window_model_follows_input_gaps():
    swg = SlidingWindow(U(2), 1, 4, 4, 3, 3, 1, 1, 1, 1, 1, 1)
    steady = swg.output_times([0] * 16)
    late = swg.output_times([0] * 5 + [100] * 11)  # the first window needs 6 words
    assert late[0] == 100 + swg.latency and late[0] > steady[0]
    assert len(late) == swg.out_words_per_frame


# --- parameter checks ------------------------------------------------------------------------------

def test_cores_reject_bad_parameters():
    with pytest.raises(ValueError, match="SIMD"):
        SlidingWindow(S(4), 3, 5, 5, 3, 3, simd=2)
    with pytest.raises(ValueError, match="padding"):
        SlidingWindow(S(4), 2, 5, 5, 3, 3, pad_top=2, pad_bottom=1)
    with pytest.raises(ValueError, match="does not fit"):
        SlidingWindow(S(4), 2, 2, 5, 4, 3, pad_top=1, pad_bottom=0)
    with pytest.raises(ValueError, match="pad_value"):
        SlidingWindow(U(4), 2, 5, 5, 3, 3, pad_top=1, pad_bottom=1, pad_value=-1)
    with pytest.raises(ValueError, match="PE"):
        VectorVectorUnit(np.ones((6, 9), dtype=int), 4, S(4), S(4), 8)
    with pytest.raises(ValueError, match="kernel_elems"):
        VectorVectorUnit(np.ones((4, 9), dtype=int), 2, S(4), S(4), 8, kernel_elems=4)
    with pytest.raises(ValueError, match="acc_width"):
        VectorVectorUnit(np.ones((4, 9), dtype=int), 2, S(4), S(4), 6)
    with pytest.raises(ValueError, match="SIMD"):
        StreamingMaxPool(S(4), 3, 6, 6, 2, 2, 2, 2, simd=2)
    with pytest.raises(ValueError, match="does not fit"):
        StreamingMaxPool(S(4), 2, 6, 1, 2, 2, 2, 2)


# --- simulated cores ---------------------------------------------------------------------------------

def _fmt_json(fmt: ElementFormat) -> dict:
    return dataclasses.asdict(fmt)


def _simulate(case_id: str, component, bench: str, params: dict):
    build_dir = BUILD_ROOT / case_id
    build_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        text = to_verilog(component, "dut")
    caught = [w for w in caught if not issubclass(w.category, UnusedElaboratable)]
    assert not caught, [str(w.message) for w in caught]
    source = build_dir / "dut.v"
    source.write_text(text)
    run_cocotb([source], "dut", f"sim.benches.{bench}", build_dir, params=params,
               runtime_cache=BUILD_ROOT.parent / ".verilator_runtime")


SWG_CASES = {
    # id: (fmt, C, H, W, KH, KW, sh, sw, (pt, pl, pb, pr), SIMD, depthwise, pad_value)
    "k3_s1_pad1_simd1": (S(4), 2, 6, 5, 3, 3, 1, 1, (1, 1, 1, 1), 1, False, 0),
    "k3_s2_pad_asym_simdC": (U(3), 4, 7, 7, 3, 3, 2, 2, (0, 0, 1, 1), 4, False, 5),
    "k2_s2_nopad": (S(5), 4, 6, 6, 2, 2, 2, 2, (0, 0, 0, 0), 2, False, 0),
    "k3x1_1d_w1": (S(3), 3, 9, 1, 3, 1, 1, 1, (1, 0, 1, 0), 3, False, -1),
    "depthwise_k3_s1_pad1": (S(4), 4, 5, 4, 3, 3, 1, 1, (1, 1, 1, 1), 2, True, 0),
}


def swg_params(fmt, c, h, w, kh, kw, sh, sw, pads, simd, depthwise, pad_value, *, n_frames=3,
               n_throughput_frames=3, seed=0, p_gap=0.3, p_stall=0.4):
    geometry = dict(zip(GEOMETRY, (kh, kw, sh, sw, *pads)))
    params = {"fmt": _fmt_json(fmt), "channels": c, "in_h": h, "in_w": w, **geometry, "simd": simd,
              "depthwise": depthwise, "pad_value": pad_value, "n_frames": n_frames, "seed": seed,
              "p_gap": p_gap, "p_stall": p_stall, "n_throughput_frames": n_throughput_frames}
    swg = swg_from_params(params)
    params.update(initial_latency=swg.initial_latency(), latency=swg.latency,
                  cycles_per_frame=swg.cycles_per_frame(),
                  model_times=swg.output_times([0] * (n_throughput_frames * swg.in_words_per_frame)))
    return params, swg


def swg_from_params(p: dict) -> SlidingWindow:
    return SlidingWindow(ElementFormat(**p["fmt"]), p["channels"], p["in_h"], p["in_w"],
                         **{k: p[k] for k in GEOMETRY}, simd=p["simd"], depthwise=p["depthwise"],
                         pad_value=p["pad_value"])


@pytest.mark.parametrize("case_id", list(SWG_CASES))
def test_sliding_window_in_verilator(case_id):
    params, swg = swg_params(*SWG_CASES[case_id], seed=len(case_id))
    _simulate(f"swg_{case_id}", swg, "sliding_window_bench", params)


VVU_CASES = {
    # id: (C, K, PE, in_fmt, w_fmt, thresholds, extra)
    "s4xs4_pe2_thr3": (4, 9, 2, S(4), S(4), 3, {}),
    "bipxbip_xnor_bipolar_out": (8, 9, 4, B(), B(), 1, {"bipolar_out": True}),
    "u3xs3_pe_all_acc": (6, 4, 6, U(3), S(3), 0, {}),
    "u2xbip_pe1_thr2_offset": (3, 3, 1, U(2), B(), 2, {"out_offset": -1}),
}


def vvu_params(c, k, pe, in_fmt, w_fmt, n_thresholds, *, out_offset=0, bipolar_out=False, n_pixels=12,
               n_throughput_pixels=6, seed=0, p_gap=0.3, p_stall=0.4):
    """Random weights with the format's extremes; sorted thresholds, some never or always reached."""
    rng = np.random.default_rng(seed)
    w = random_mac_weights(rng, c, k, w_fmt)
    lo, hi = accumulator_range(w, in_fmt)
    acc_width = signed_width_for(lo, hi)
    out_fmt = mac_out_fmt(acc_width, n_thresholds, out_offset, bipolar_out)
    thresholds = None
    if n_thresholds:
        t = rng.integers(lo - 2, hi + 3, size=(c, n_thresholds))
        t[0, 0], t[-1, -1] = lo - 5, hi + 1
        thresholds = np.sort(t, axis=1)
    return {"weights": w.tolist(), "thresholds": None if thresholds is None else thresholds.tolist(), "pe": pe,
            "in_fmt": _fmt_json(in_fmt), "w_fmt": _fmt_json(w_fmt), "out_fmt": _fmt_json(out_fmt),
            "acc_width": acc_width, "out_offset": out_offset, "n_pixels": n_pixels,
            "n_throughput_pixels": n_throughput_pixels, "seed": seed, "p_gap": p_gap, "p_stall": p_stall,
            "initial_latency": k}


def vvu_from_params(p: dict) -> VectorVectorUnit:
    w = np.array(p["weights"])
    return VectorVectorUnit(w, p["pe"], ElementFormat(**p["in_fmt"]), ElementFormat(**p["w_fmt"]), p["acc_width"],
                            None if p["thresholds"] is None else np.array(p["thresholds"]),
                            ElementFormat(**p["out_fmt"]), p["out_offset"], kernel_elems=w.shape[1])


@pytest.mark.parametrize("case_id", list(VVU_CASES))
def test_vector_unit_in_verilator(case_id):
    c, k, pe, in_fmt, w_fmt, n_t, extra = VVU_CASES[case_id]
    params = vvu_params(c, k, pe, in_fmt, w_fmt, n_t, seed=len(case_id), **extra)
    vvu = vvu_from_params(params)
    params["latency"] = vvu.latency  # the bench measures it, cycle-exact
    assert vvu.initial_latency() == params["initial_latency"]
    _simulate(f"vvu_{case_id}", vvu, "vector_unit_bench", params)


MAXPOOL_CASES = {
    # id: (fmt, C, H, W, KH, KW, sh, sw, SIMD)
    "k2_s2_signed_simd2": (S(4), 4, 6, 7, 2, 2, 2, 2, 2),
    "k3_s2_unsigned_overlap_simd1": (U(3), 2, 7, 8, 3, 3, 2, 2, 1),
    "k2x1_1d_signed_simdC": (S(3), 3, 9, 1, 2, 1, 2, 1, 3),
}


def maxpool_params(fmt, c, h, w, kh, kw, sh, sw, simd, *, n_frames=3, n_throughput_frames=3, seed=0,
                   p_gap=0.3, p_stall=0.4):
    params = {"fmt": _fmt_json(fmt), "channels": c, "in_h": h, "in_w": w, "kernel_h": kh, "kernel_w": kw,
              "stride_h": sh, "stride_w": sw, "simd": simd, "n_frames": n_frames, "seed": seed, "p_gap": p_gap,
              "p_stall": p_stall, "n_throughput_frames": n_throughput_frames}
    pool = maxpool_from_params(params)
    params.update(initial_latency=pool.initial_latency(), latency=pool.latency,
                  cycles_per_frame=pool.cycles_per_frame(), last_output_word=pool.last_output_word())
    return params, pool


def maxpool_from_params(p: dict) -> StreamingMaxPool:
    return StreamingMaxPool(ElementFormat(**p["fmt"]), p["channels"], p["in_h"], p["in_w"], p["kernel_h"],
                            p["kernel_w"], p["stride_h"], p["stride_w"], p["simd"])


@pytest.mark.parametrize("case_id", list(MAXPOOL_CASES))
def test_maxpool_in_verilator(case_id):
    params, pool = maxpool_params(*MAXPOOL_CASES[case_id], seed=len(case_id))
    _simulate(f"maxpool_{case_id}", pool, "maxpool_bench", params)
