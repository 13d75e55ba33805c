"""cocotb bench for `ip_cores.width_converter.StreamWidthConverter`: element order is preserved.

Parameters: elem_width, in_elems, out_elems, n_elems (a multiple of both word sizes), seed, p_gap,
p_stall, n_throughput_elems, expected_cycles. The expected output is the same element sequence
re-packed with `pack_words`, which is all a width converter may do.
"""
from __future__ import annotations

import cocotb
import numpy as np

from ip_cores.elements import ElementFormat, pack_words
from sim.benches.stream_tb import StreamTB, compare_words
from sim.cocotb_runner import bench_params


async def _run(dut, p: dict, n_elems: int, seed: int, p_gap: float, p_stall: float) -> StreamTB:
    fmt = ElementFormat.unsigned(p["elem_width"])
    elements = np.random.default_rng(seed).integers(0, fmt.max + 1, size=n_elems)
    elements[:2] = [fmt.max, 0]
    tb = StreamTB.amaranth(dut)
    tb.set_traffic(seed, p_gap, p_stall)
    await tb.do_reset()
    expected = pack_words(elements, fmt, p["out_elems"])
    await tb.send(pack_words(elements, fmt, p["in_elems"]))
    got = await tb.receive_words(len(expected), 40 * n_elems + 1000)
    compare_words(got, expected)
    tb.check_protocol()
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
