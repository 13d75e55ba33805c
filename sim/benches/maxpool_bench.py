"""cocotb bench for `ip_cores.maxpool.StreamingMaxPool`: every output word against `maxpool_reference`.

Parameters (JSON via `sim.cocotb_runner.bench_params`), as `maxpool_params` in tests/test_conv_cores.py
writes them: fmt ({"kind", "width"}), channels, in_h, in_w, kernel_h, kernel_w, stride_h, stride_w, simd,
n_frames, seed, p_gap, p_stall, n_throughput_frames and the documented figures initial_latency,
latency, cycles_per_frame, last_output_word; optionally patterns (pause pattern specs, default
`stream_tb.DEFAULT_PATTERN_SPECS`) and n_pattern_frames (default 1). The bench draws its own frames from
`seed` (the first all-maximum, the second all-minimum, then random values with the extremes frequent).
Both stream edges run the protocol checker with the frame sizes (H*W*CF in, OH*OW*CF out).
"""
from __future__ import annotations

import cocotb
import numpy as np

from ip_cores.elements import ElementFormat, pack_words
from ip_cores.maxpool import maxpool_reference
from sim.benches.stream_tb import (DEFAULT_PATTERN_SPECS, StreamTB, check_words_before_reset,
                                   recover_after_reset, run_pause_patterns, run_with_traffic)
from sim.cocotb_runner import bench_params


class MaxPoolCase:
    """The feature-map geometry and format of the DUT, read back from the bench parameters."""

    def __init__(self, p: dict):
        self.p = p
        self.fmt = ElementFormat(**p["fmt"])
        self.c, self.h, self.w, self.simd = p["channels"], p["in_h"], p["in_w"], p["simd"]
        self.kernel = (p["kernel_h"], p["kernel_w"], p["stride_h"], p["stride_w"])
        self.oh = (self.h - p["kernel_h"]) // p["stride_h"] + 1
        self.ow = (self.w - p["kernel_w"]) // p["stride_w"] + 1
        self.cf = self.c // self.simd
        self.in_words_per_frame = self.h * self.w * self.cf
        self.out_words_per_frame = self.oh * self.ow * self.cf

    def frames(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        fmt = self.fmt
        if fmt.is_bipolar:
            x = rng.choice([-1, 1], size=(n, self.h, self.w, self.c), p=[0.7, 0.3])
        else:
            x = rng.integers(fmt.min, fmt.max + 1, size=(n, self.h, self.w, self.c))
            # extremes often, so a wrong comparison (signedness) shows
            x = np.where(rng.random(x.shape) < 0.2, rng.choice([fmt.min, fmt.max], size=x.shape), x)
        x[0] = fmt.max
        if n > 1:
            x[1] = fmt.min
        return x

    def input_words(self, x: np.ndarray) -> list[int]:
        return pack_words(x.reshape(-1), self.fmt, self.simd)

    def expected_words(self, x: np.ndarray) -> list[int]:
        return pack_words(maxpool_reference(x, *self.kernel).reshape(-1), self.fmt, self.simd)

    def describe(self, index: int) -> str:
        frame, rest = divmod(index, self.out_words_per_frame)
        pixel, cf = divmod(rest, self.cf)
        return f"frame {frame}, output pixel {divmod(pixel, self.ow)}, channel fold {cf}"

    def timeout(self, n_frames: int) -> int:
        return 20 * n_frames * self.in_words_per_frame + 1000

    def tb(self, dut) -> StreamTB:
        return StreamTB.amaranth(dut, in_words_per_frame=self.in_words_per_frame,
                                 out_words_per_frame=self.out_words_per_frame)


@cocotb.test()
async def random_gaps_and_backpressure(dut):
    """Every output word equals the reference under random input gaps and output stalls."""
    p = bench_params()
    case = MaxPoolCase(p)
    await run_with_traffic(dut, case, case.frames(p["n_frames"], p["seed"]), p["seed"], p["p_gap"], p["p_stall"])


@cocotb.test()
async def full_throughput(dut):
    """Free-flowing streams: one input word a cycle, so frames end cycles_per_frame apart; the first
    word after initial_latency input words, the last `latency` cycles after the word completing it."""
    p = bench_params()
    case = MaxPoolCase(p)
    n = p["n_throughput_frames"]
    tb = await run_with_traffic(dut, case, case.frames(n, p["seed"] + 1), p["seed"], 0.0, 0.0)
    start = tb.in_cycles[0]
    out = [c - start for c in tb.out_cycles]
    ends = [out[(f + 1) * case.out_words_per_frame - 1] for f in range(n)]
    intervals = [b - a for a, b in zip(ends, ends[1:])]
    first_expected = p["initial_latency"] - 1 + p["latency"]
    total_expected = (n - 1) * p["cycles_per_frame"] + p["last_output_word"] + p["latency"] + 1
    dut._log.info("maxpool %dx%dx%d k%dx%d s%dx%d: first output at %d (expected %d), frame intervals %s "
                  "(expected %d), %d cycles (expected %d)", case.h, case.w, case.c, *case.kernel, out[0],
                  first_expected, intervals, p["cycles_per_frame"], tb.cycles(), total_expected)
    assert out[0] == first_expected, f"first output word at cycle {out[0]}, expected {first_expected}"
    assert all(i == p["cycles_per_frame"] for i in intervals), \
        f"frame intervals {intervals}, expected {p['cycles_per_frame']} each"
    assert tb.in_cycles == list(range(start, start + len(tb.in_cycles))), "input was not taken every cycle"
    assert tb.cycles() == total_expected, f"took {tb.cycles()} cycles, expected {total_expected}"


@cocotb.test()
async def pause_patterns(dut):
    """Each named pause pattern (always ready, 50 % random, long stalls, mixed) in turn, reset between."""
    p = bench_params()
    case = MaxPoolCase(p)
    await run_pause_patterns(dut, case, case.frames, p.get("n_pattern_frames", 1),
                             p.get("patterns", DEFAULT_PATTERN_SPECS), p["seed"], "frames")


@cocotb.test()
async def reset_mid_frame(dut):
    """Reset in the middle of a frame with the output back-pressured; then clean frames come out right.

    Catches state that survives the reset: the position counters, the stage valid bits, a pending
    output word (the partial maxima are rewritten before they are read). Output words delivered
    before the reset must be a correct prefix.
    """
    p = bench_params()
    case = MaxPoolCase(p)
    tb = case.tb(dut)
    await tb.do_reset()
    x = case.frames(2, p["seed"] + 20)
    partial = case.input_words(x)[:case.in_words_per_frame + case.in_words_per_frame // 2 + 1]
    report = await tb.reset_mid_frame(partial, seed=p["seed"])
    check_words_before_reset(tb, case, x, report, "frame")
    await recover_after_reset(tb, case, case.frames(2, p["seed"] + 22), p["seed"] + 21)
