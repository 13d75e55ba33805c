"""cocotb bench for `ip_cores.mvtu.MVTU`: every output word against `mvtu_reference`, and throughput.

Parameters (JSON via `sim.cocotb_runner.bench_params`), as `mvtu_params` in the tests writes them:
weights (MH x MW list), thresholds (MH x NT list or null), simd, pe, in_fmt / w_fmt / out_fmt
({"kind", "width"}), acc_width, out_offset, n_vectors, seed, p_gap, p_stall, n_throughput,
latency, and optionally patterns (pause pattern specs for `pause_patterns`, default
`stream_tb.DEFAULT_PATTERN_SPECS`) and n_pattern_vectors (vectors a pattern, default 4). The bench
draws its own input vectors from `seed`, including all-minimum and all-maximum vectors, so the
expected words come from the numpy reference alone.

Both stream edges run the protocol checker (input: SF words a frame, output: NF words a frame), so
every test also fails on a protocol violation or a wrong word count.
"""
from __future__ import annotations

import cocotb
import numpy as np

from ip_cores.elements import ElementFormat, pack_words
from ip_cores.mvtu import mvtu_reference
from sim.benches.stream_tb import (DEFAULT_PATTERN_SPECS, StreamTB, check_words_before_reset,
                                   recover_after_reset, run_pause_patterns, run_with_traffic)
from sim.cocotb_runner import bench_params


class MvtuCase:
    """The matrix, formats and folding of the DUT, read back from the bench parameters."""

    def __init__(self, p: dict):
        self.p = p
        self.weights = np.array(p["weights"], dtype=np.int64)
        self.thresholds = None if p["thresholds"] is None else np.array(p["thresholds"], dtype=np.int64)
        self.in_fmt, self.out_fmt = ElementFormat(**p["in_fmt"]), ElementFormat(**p["out_fmt"])
        self.mh, self.mw = self.weights.shape
        self.simd, self.pe = p["simd"], p["pe"]
        self.sf, self.nf = self.mw // self.simd, self.mh // self.pe

    def inputs(self, n: int, seed: int) -> np.ndarray:
        """n random input vectors; the first two are all-maximum and all-minimum (extreme sums)."""
        rng = np.random.default_rng(seed)
        fmt = self.in_fmt
        if fmt.is_bipolar:
            x = rng.choice([-1, 1], size=(n, self.mw))
        else:
            x = rng.integers(fmt.min, fmt.max + 1, size=(n, self.mw))
        x[0, :] = fmt.max
        if n > 1:
            x[1, :] = fmt.min
        return x

    def input_words(self, x: np.ndarray) -> list[int]:
        return pack_words(x.reshape(-1), self.in_fmt, self.simd)

    def expected_words(self, x: np.ndarray) -> list[int]:
        y = mvtu_reference(self.weights, x, self.thresholds, self.p["out_offset"], out_fmt=self.out_fmt)
        return pack_words(y.reshape(-1), self.out_fmt, self.pe)

    def describe(self, word_index: int) -> str:
        vector, nf = divmod(word_index, self.nf)
        return f"vector {vector}, output word {nf} (channels {nf * self.pe}..{nf * self.pe + self.pe - 1})"

    def timeout(self, n_vectors: int) -> int:
        return 20 * (n_vectors * self.nf * self.sf + 20) + 1000

    def tb(self, dut) -> StreamTB:
        return StreamTB.amaranth(dut, in_words_per_frame=self.sf, out_words_per_frame=self.nf)


@cocotb.test()
async def random_gaps_and_backpressure(dut):
    """Every output word equals the reference under random input gaps and output stalls."""
    p = bench_params()
    case = MvtuCase(p)
    await run_with_traffic(dut, case, case.inputs(p["n_vectors"], p["seed"]), p["seed"], p["p_gap"], p["p_stall"])


@cocotb.test()
async def full_throughput(dut):
    """Without gaps or stalls, N vectors take exactly N*NF*SF + latency cycles (II = 1, no bubbles)."""
    p = bench_params()
    case = MvtuCase(p)
    n = p["n_throughput"]
    tb = await run_with_traffic(dut, case, case.inputs(n, p["seed"] + 1), p["seed"], 0.0, 0.0)
    expected = n * case.nf * case.sf + p["latency"]
    dut._log.info("MVTU MH=%d MW=%d SIMD=%d PE=%d: %d vectors, NF*SF = %d, %d cycles (expected %d)",
                  case.mh, case.mw, case.simd, case.pe, n, case.nf * case.sf, tb.cycles(), expected)
    assert tb.cycles() == expected, f"{n} vectors took {tb.cycles()} cycles, expected {expected}"


@cocotb.test()
async def pause_patterns(dut):
    """Each named pause pattern (always ready, 50 % random, long stalls, mixed) in turn, reset between."""
    p = bench_params()
    case = MvtuCase(p)
    await run_pause_patterns(dut, case, case.inputs, p.get("n_pattern_vectors", 4),
                             p.get("patterns", DEFAULT_PATTERN_SPECS), p["seed"], "vectors")


@cocotb.test()
async def reset_mid_frame(dut):
    """Reset in the middle of a vector with the output back-pressured; then clean vectors come out right.

    Twice: inside an input vector (the first neuron fold) and inside an output vector (a later fold).
    Catches state that survives the reset: fold counters, accumulators, the input buffer, a pending
    output word. Output words delivered before the reset must be a correct prefix.
    """
    p = bench_params()
    case = MvtuCase(p)
    tb = case.tb(dut)
    for k, where in enumerate(("input", "output")):
        x = case.inputs(4, p["seed"] + 20 + k)
        partial = case.input_words(x)[:3 * case.sf + (case.sf + 1) // 2]
        report = await tb.reset_mid_frame(partial, seed=p["seed"] + k, where=where)
        check_words_before_reset(tb, case, x, report, "frame")
        await recover_after_reset(tb, case, case.inputs(3, p["seed"] + 40 + k), p["seed"] + 30 + k)
