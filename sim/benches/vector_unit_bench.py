"""cocotb bench for `ip_cores.vector_unit.VectorVectorUnit`: every output word against `vector_unit_reference`.

Parameters (JSON via `sim.cocotb_runner.bench_params`), as `vvu_params` in tests/test_conv_cores.py
writes them: weights (C x K list), thresholds (C x NT list or null), pe, in_fmt / w_fmt / out_fmt
({"kind", "width"}), acc_width, out_offset, n_pixels, seed, p_gap, p_stall, n_throughput_pixels,
latency, initial_latency; optionally patterns (pause pattern specs, default
`stream_tb.DEFAULT_PATTERN_SPECS`) and n_pattern_pixels (default 3). The bench draws its own windows
(P, K, C) from `seed`, the first all-maximum and the second all-minimum, and feeds them in the depthwise
window order. Both stream edges run the protocol checker (a frame = one pixel: CF*K words in, CF out).
"""
from __future__ import annotations

import cocotb
import numpy as np

from ip_cores.elements import ElementFormat, pack_words
from ip_cores.vector_unit import vector_unit_input_order, vector_unit_reference
from sim.benches.stream_tb import (DEFAULT_PATTERN_SPECS, StreamTB, check_words_before_reset,
                                   recover_after_reset, run_pause_patterns, run_with_traffic)
from sim.cocotb_runner import bench_params


class VvuCase:
    """The weights, thresholds, formats and folding of the DUT, read back from the bench parameters."""

    def __init__(self, p: dict):
        self.p = p
        self.weights = np.array(p["weights"], dtype=np.int64)
        self.thresholds = None if p["thresholds"] is None else np.array(p["thresholds"], dtype=np.int64)
        self.in_fmt, self.out_fmt = ElementFormat(**p["in_fmt"]), ElementFormat(**p["out_fmt"])
        self.c, self.k = self.weights.shape
        self.pe = p["pe"]
        self.cf = self.c // self.pe

    def windows(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        fmt = self.in_fmt
        if fmt.is_bipolar:
            x = rng.choice([-1, 1], size=(n, self.k, self.c))
        else:
            x = rng.integers(fmt.min, fmt.max + 1, size=(n, self.k, self.c))
        x[0] = fmt.max
        if n > 1:
            x[1] = fmt.min
        return x

    def input_words(self, x: np.ndarray) -> list[int]:
        return pack_words(vector_unit_input_order(x, self.pe), self.in_fmt, self.pe)

    def expected_words(self, x: np.ndarray) -> list[int]:
        y = vector_unit_reference(self.weights, x, self.thresholds, self.p["out_offset"], out_fmt=self.out_fmt)
        return pack_words(y.reshape(-1), self.out_fmt, self.pe)

    def describe(self, index: int) -> str:
        pixel, cf = divmod(index, self.cf)
        return f"pixel {pixel}, output word {cf} (channels {cf * self.pe}..{cf * self.pe + self.pe - 1})"

    def timeout(self, n_pixels: int) -> int:
        return 20 * (n_pixels * self.cf * self.k + 20) + 1000

    def tb(self, dut) -> StreamTB:
        return StreamTB.amaranth(dut, in_words_per_frame=self.cf * self.k, out_words_per_frame=self.cf)


@cocotb.test()
async def random_gaps_and_backpressure(dut):
    """Every output word equals the reference under random input gaps and output stalls."""
    p = bench_params()
    case = VvuCase(p)
    await run_with_traffic(dut, case, case.windows(p["n_pixels"], p["seed"]), p["seed"], p["p_gap"], p["p_stall"])


@cocotb.test()
async def full_throughput(dut):
    """Free-flowing streams: P pixels take P*CF*K + latency cycles; the first word after K input words."""
    p = bench_params()
    case = VvuCase(p)
    n = p["n_throughput_pixels"]
    tb = await run_with_traffic(dut, case, case.windows(n, p["seed"] + 1), p["seed"], 0.0, 0.0)
    expected = n * case.cf * case.k + p["latency"]
    first = tb.out_cycles[0] - tb.in_cycles[0]
    first_expected = p["initial_latency"] - 1 + p["latency"]
    dut._log.info("VVU C=%d K=%d PE=%d: %d pixels in %d cycles (expected %d), first output at %d (expected %d)",
                  case.c, case.k, case.pe, n, tb.cycles(), expected, first, first_expected)
    assert tb.cycles() == expected, f"{n} pixels took {tb.cycles()} cycles, expected {expected}"
    assert first == first_expected, f"first output word at cycle {first}, expected {first_expected}"


@cocotb.test()
async def pause_patterns(dut):
    """Each named pause pattern (always ready, 50 % random, long stalls, mixed) in turn, reset between."""
    p = bench_params()
    case = VvuCase(p)
    await run_pause_patterns(dut, case, case.windows, p.get("n_pattern_pixels", 3),
                             p.get("patterns", DEFAULT_PATTERN_SPECS), p["seed"], "pixels")


@cocotb.test()
async def reset_mid_frame(dut):
    """Reset in the middle of a pixel with the output back-pressured; then clean pixels come out right.

    Catches state that survives the reset: the fold counters, the accumulators, a pending output word.
    Output words delivered before the reset must be a correct prefix.
    """
    p = bench_params()
    case = VvuCase(p)
    tb = case.tb(dut)
    await tb.do_reset()
    x = case.windows(4, p["seed"] + 20)
    per_pixel = case.cf * case.k
    partial = case.input_words(x)[:2 * per_pixel + (per_pixel + 1) // 2]
    report = await tb.reset_mid_frame(partial, seed=p["seed"])
    check_words_before_reset(tb, case, x, report, "pixel")
    await recover_after_reset(tb, case, case.windows(3, p["seed"] + 22), p["seed"] + 21)
