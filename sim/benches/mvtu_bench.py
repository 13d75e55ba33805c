"""cocotb bench for `ip_cores.mvtu.MVTU`: every output word against `mvtu_reference`, and throughput.

Parameters (JSON via `sim.cocotb_runner.bench_params`), as `mvtu_params` in the tests writes them:
weights (MH x MW list), thresholds (MH x NT list or null), simd, pe, in_fmt / w_fmt / out_fmt
({"kind", "width"}), acc_width, out_offset, n_vectors, seed, p_gap, p_stall, n_throughput,
latency. The bench draws its own input vectors from `seed`, including all-minimum and
all-maximum vectors, so the expected words come from the numpy reference alone.
"""
from __future__ import annotations

import cocotb
import numpy as np

from ip_cores.elements import ElementFormat, pack_words
from ip_cores.mvtu import mvtu_reference
from sim.benches.stream_tb import StreamTB, compare_words
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

    def expected_words(self, x: np.ndarray) -> list[int]:
        y = mvtu_reference(self.weights, x, self.thresholds, self.p["out_offset"], out_fmt=self.out_fmt)
        return pack_words(y.reshape(-1), self.out_fmt, self.pe)

    def describe(self, word_index: int) -> str:
        vector, nf = divmod(word_index, self.nf)
        return f"vector {vector}, output word {nf} (channels {nf * self.pe}..{nf * self.pe + self.pe - 1})"


async def _run(dut, case: MvtuCase, x: np.ndarray, seed: int, p_gap: float, p_stall: float) -> StreamTB:
    tb = StreamTB.amaranth(dut)
    tb.set_traffic(seed, p_gap, p_stall)
    await tb.do_reset()
    expected = case.expected_words(x)
    await tb.send(pack_words(x.reshape(-1), case.in_fmt, case.simd))
    timeout = 20 * (len(x) * case.nf * case.sf + 20) + 1000
    got = await tb.receive_words(len(expected), timeout)
    compare_words(got, expected, case.describe)
    tb.check_protocol()
    return tb


@cocotb.test()
async def random_gaps_and_backpressure(dut):
    """Every output word equals the reference under random input gaps and output stalls."""
    p = bench_params()
    case = MvtuCase(p)
    await _run(dut, case, case.inputs(p["n_vectors"], p["seed"]), p["seed"], p["p_gap"], p["p_stall"])


@cocotb.test()
async def full_throughput(dut):
    """Without gaps or stalls, N vectors take exactly N*NF*SF + latency cycles (II = 1, no bubbles)."""
    p = bench_params()
    case = MvtuCase(p)
    n = p["n_throughput"]
    tb = await _run(dut, case, case.inputs(n, p["seed"] + 1), p["seed"], 0.0, 0.0)
    expected = n * case.nf * case.sf + p["latency"]
    dut._log.info("MVTU MH=%d MW=%d SIMD=%d PE=%d: %d vectors, NF*SF = %d, %d cycles (expected %d)",
                  case.mh, case.mw, case.simd, case.pe, n, case.nf * case.sf, tb.cycles(), expected)
    assert tb.cycles() == expected, f"{n} vectors took {tb.cycles()} cycles, expected {expected}"
