"""cocotb bench for `ip_cores.sliding_window.SlidingWindow`: every output word against the numpy reference.

Parameters (JSON via `sim.cocotb_runner.bench_params`), as `swg_params` in tests/test_conv_cores.py
writes them: fmt ({"kind", "width"}), channels, in_h, in_w, kernel_h, kernel_w, stride_h, stride_w,
pad_top, pad_left, pad_bottom, pad_right, simd, depthwise, pad_value, n_frames, seed, p_gap, p_stall,
n_throughput_frames and the core's documented figures: initial_latency, latency, cycles_per_frame and
model_times (the controller model's output cycles for the free-flowing run, `SlidingWindow.output_times`);
optionally patterns (pause pattern specs, default `stream_tb.DEFAULT_PATTERN_SPECS`) and
n_pattern_frames (default 1). The bench draws its own frames from `seed` (the first one all-maximum, the
second all-minimum where there are several), so the expected words come from `sliding_window_reference`
alone. Both stream edges run the protocol checker with the frame sizes (H*W*CF in, OH*OW*KH*KW*CF out).
"""
from __future__ import annotations

import cocotb
import numpy as np

from ip_cores.elements import ElementFormat, pack_words
from ip_cores.sliding_window import conv_output_size, sliding_window_reference
from sim.benches.stream_tb import (DEFAULT_PATTERN_SPECS, StreamTB, check_words_before_reset,
                                   recover_after_reset, run_pause_patterns, run_with_traffic)
from sim.cocotb_runner import bench_params

_GEOMETRY = ("kernel_h", "kernel_w", "stride_h", "stride_w", "pad_top", "pad_left", "pad_bottom", "pad_right")


class SwgCase:
    """The feature-map geometry and format of the DUT, read back from the bench parameters."""

    def __init__(self, p: dict):
        self.p = p
        self.fmt = ElementFormat(**p["fmt"])
        self.c, self.h, self.w, self.simd = p["channels"], p["in_h"], p["in_w"], p["simd"]
        self.oh = conv_output_size(self.h, p["kernel_h"], p["stride_h"], p["pad_top"], p["pad_bottom"])
        self.ow = conv_output_size(self.w, p["kernel_w"], p["stride_w"], p["pad_left"], p["pad_right"])
        self.window_words = p["kernel_h"] * p["kernel_w"] * self.c // self.simd
        self.in_words_per_frame = self.h * self.w * self.c // self.simd
        self.out_words_per_frame = self.oh * self.ow * self.window_words

    def frames(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        shape = (n, self.h, self.w, self.c)
        if self.fmt.is_bipolar:
            x = rng.choice([-1, 1], size=shape)
        else:
            x = rng.integers(self.fmt.min, self.fmt.max + 1, size=shape)
        x[0] = self.fmt.max
        if n > 1:
            x[1] = self.fmt.min
        return x

    def input_words(self, x: np.ndarray) -> list[int]:
        return pack_words(x.reshape(-1), self.fmt, self.simd)

    def expected_words(self, x: np.ndarray) -> list[int]:
        y = sliding_window_reference(x, **{k: self.p[k] for k in _GEOMETRY}, simd=self.simd,
                                     depthwise=self.p["depthwise"], pad_value=self.p["pad_value"])
        return pack_words(y.reshape(-1), self.fmt, self.simd)

    def describe(self, index: int) -> str:
        frame, rest = divmod(index, self.out_words_per_frame)
        pixel, word = divmod(rest, self.window_words)
        return f"frame {frame}, output pixel {divmod(pixel, self.ow)}, window word {word}"

    def timeout(self, n_frames: int) -> int:
        return 20 * n_frames * (self.in_words_per_frame + self.out_words_per_frame) + 1000

    def tb(self, dut) -> StreamTB:
        return StreamTB.amaranth(dut, in_words_per_frame=self.in_words_per_frame,
                                 out_words_per_frame=self.out_words_per_frame)


@cocotb.test()
async def random_gaps_and_backpressure(dut):
    """Every output word equals the reference under random input gaps and output stalls."""
    p = bench_params()
    case = SwgCase(p)
    await run_with_traffic(dut, case, case.frames(p["n_frames"], p["seed"]), p["seed"], p["p_gap"], p["p_stall"])


@cocotb.test()
async def full_throughput(dut):
    """Free-flowing streams: the first word after initial_latency input words, then a frame every
    cycles_per_frame cycles; every output cycle as the controller model predicts."""
    p = bench_params()
    case = SwgCase(p)
    n = p["n_throughput_frames"]
    tb = await run_with_traffic(dut, case, case.frames(n, p["seed"] + 1), p["seed"], 0.0, 0.0)
    start = tb.in_cycles[0]
    out = [c - start for c in tb.out_cycles]
    first_expected = p["initial_latency"] - 1 + p["latency"]
    ends = [out[(f + 1) * case.out_words_per_frame - 1] for f in range(n)]
    intervals = [b - a for a, b in zip(ends, ends[1:])]
    dut._log.info("SWG %dx%dx%d k%dx%d s%dx%d: first output at %d (expected %d), frame intervals %s "
                  "(expected %d)", case.h, case.w, case.c, p["kernel_h"], p["kernel_w"], p["stride_h"],
                  p["stride_w"], out[0], first_expected, intervals, p["cycles_per_frame"])
    assert out[0] == first_expected, f"first output word at cycle {out[0]}, expected {first_expected}"
    assert all(i == p["cycles_per_frame"] for i in intervals), \
        f"frame intervals {intervals}, expected {p['cycles_per_frame']} each"
    mismatch = next((k for k, (a, b) in enumerate(zip(out, p["model_times"])) if a != b), None)
    assert mismatch is None, (f"output word {mismatch} at cycle {out[mismatch]}, the controller model says "
                              f"{p['model_times'][mismatch]}")


@cocotb.test()
async def pause_patterns(dut):
    """Each named pause pattern (always ready, 50 % random, long stalls, mixed) in turn, reset between."""
    p = bench_params()
    case = SwgCase(p)
    await run_pause_patterns(dut, case, case.frames, p.get("n_pattern_frames", 1),
                             p.get("patterns", DEFAULT_PATTERN_SPECS), p["seed"], "frames")


@cocotb.test()
async def reset_mid_frame(dut):
    """Reset in the middle of a frame with the output back-pressured; then clean frames come out right.

    Catches state that survives the reset: the occupancy count, the window and address counters, a
    pending output word. Output words delivered before the reset must be a correct prefix.
    """
    p = bench_params()
    case = SwgCase(p)
    tb = case.tb(dut)
    await tb.do_reset()
    x = case.frames(2, p["seed"] + 20)
    partial = case.input_words(x)[:case.in_words_per_frame + case.in_words_per_frame // 2 + 1]
    report = await tb.reset_mid_frame(partial, seed=p["seed"])
    check_words_before_reset(tb, case, x, report, "frame")
    await recover_after_reset(tb, case, case.frames(2, p["seed"] + 22), p["seed"] + 21)
