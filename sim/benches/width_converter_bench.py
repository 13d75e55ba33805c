"""cocotb bench for `ip_cores.width_converter.StreamWidthConverter`: element order is preserved.

Parameters: elem_width, in_elems, out_elems, n_elems (a multiple of both word sizes), seed, p_gap,
p_stall, n_throughput_elems, expected_cycles, and optionally patterns / n_pattern_elems for
`pause_patterns`. The expected output is the same element sequence re-packed with `pack_words`,
which is all a width converter may do. The protocol checkers count frames of lcm(in_elems,
out_elems) elements on both edges, the smallest unit both word sizes divide.
"""
from __future__ import annotations

import math

import cocotb
import numpy as np

from ip_cores.elements import ElementFormat, pack_words
from sim.benches.stream_tb import DEFAULT_PATTERN_SPECS, StreamTB, compare_words, pattern_timeout
from sim.cocotb_runner import bench_params


class Case:
    def __init__(self, p: dict):
        self.p = p
        self.fmt = ElementFormat.unsigned(p["elem_width"])
        self.frame_elems = math.lcm(p["in_elems"], p["out_elems"])

    def elements(self, n: int, seed: int) -> np.ndarray:
        elements = np.random.default_rng(seed).integers(0, self.fmt.max + 1, size=n)
        elements[:2] = [self.fmt.max, 0]
        return elements

    def tb(self, dut) -> StreamTB:
        return StreamTB.amaranth(dut, in_words_per_frame=self.frame_elems // self.p["in_elems"],
                                 out_words_per_frame=self.frame_elems // self.p["out_elems"])

    async def stream(self, tb: StreamTB, elements: np.ndarray, timeout: int) -> None:
        expected = pack_words(elements, self.fmt, self.p["out_elems"])
        words = pack_words(elements, self.fmt, self.p["in_elems"])
        await tb.send(words)
        got = await tb.receive_words(len(expected), timeout)
        compare_words(got, expected)
        await tb.finish(len(words), len(expected))


async def _run(dut, p: dict, n_elems: int, seed: int, p_gap: float, p_stall: float) -> StreamTB:
    case = Case(p)
    tb = case.tb(dut)
    tb.set_traffic(seed, p_gap, p_stall)
    await tb.do_reset()
    await case.stream(tb, case.elements(n_elems, seed), 40 * n_elems + 1000)
    return tb


@cocotb.test()
async def random_gaps_and_backpressure(dut):
    p = bench_params()
    await _run(dut, p, p["n_elems"], p["seed"], p["p_gap"], p["p_stall"])


@cocotb.test()
async def full_throughput(dut):
    p = bench_params()
    tb = await _run(dut, p, p["n_throughput_elems"], p["seed"] + 1, 0.0, 0.0)
    assert tb.cycles() == p["expected_cycles"], f"took {tb.cycles()} cycles, expected {p['expected_cycles']}"


@cocotb.test()
async def pause_patterns(dut):
    """Each named pause pattern in turn, with a reset between them."""
    p = bench_params()
    case = Case(p)
    tb = case.tb(dut)
    n = p.get("n_pattern_elems", 4 * case.frame_elems)
    for k, spec in enumerate(p.get("patterns", DEFAULT_PATTERN_SPECS)):
        tb.set_pattern(spec, p["seed"] + k)
        await tb.do_reset()
        n_words = n // p["in_elems"] + n // p["out_elems"]
        await case.stream(tb, case.elements(n, p["seed"] + 10 + k), pattern_timeout(spec, n_words, 40 * n + 1000))
        dut._log.info("pattern %s: %d elements passed", spec, n)


@cocotb.test()
async def reset_mid_frame(dut):
    """Reset with a part-split or part-gathered word inside and the output back-pressured (twice:
    aimed inside an input frame, then inside an output frame); clean frames must follow."""
    p = bench_params()
    case = Case(p)
    tb = case.tb(dut)
    await tb.do_reset()
    in_wpf = case.frame_elems // p["in_elems"]
    for k, where in enumerate(("input", "output")):
        elements = case.elements(4 * case.frame_elems, p["seed"] + 20 + k)
        words = pack_words(elements, case.fmt, p["in_elems"])
        report = await tb.reset_mid_frame(words[:3 * in_wpf + (in_wpf + 1) // 2], seed=p["seed"] + k, where=where)
        assert report.mid_frame, f"the reset did not hit a frame: {report}"
        before = [w for frame in report.out_frames_received for w in frame]
        expected = pack_words(elements, case.fmt, p["out_elems"])
        compare_words(before, expected[:len(before)], lambda i: f"before the reset, word {i}")
        tb.check_protocol()

        tb.set_pattern("random50", p["seed"] + 30 + k)
        n = 3 * case.frame_elems
        await case.stream(tb, case.elements(n, p["seed"] + 40 + k), 40 * n + 1000)
