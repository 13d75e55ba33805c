"""cocotb bench for `ip_cores.stream_fifo.StreamFIFO`: words come out unchanged and in order.

Parameters: width, n_words, seed, p_gap, p_stall, n_throughput, expected_cycles (for n_throughput
words with no gaps or stalls, from the first input transfer to the last output transfer).
"""
from __future__ import annotations

import random

import cocotb

from sim.benches.stream_tb import StreamTB, compare_words
from sim.cocotb_runner import bench_params


def _words(width: int, n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    edge = [0, (1 << width) - 1]
    return (edge + [rng.getrandbits(width) for _ in range(n)])[:n]


async def _run(dut, words: list[int], seed: int, p_gap: float, p_stall: float) -> StreamTB:
    tb = StreamTB.amaranth(dut)
    tb.set_traffic(seed, p_gap, p_stall)
    await tb.do_reset()
    await tb.send(words)
    got = await tb.receive_words(len(words), 40 * len(words) + 1000)
    compare_words(got, words)
    tb.check_protocol()
    return tb


@cocotb.test()
async def random_gaps_and_backpressure(dut):
    p = bench_params()
    await _run(dut, _words(p["width"], p["n_words"], p["seed"]), p["seed"], p["p_gap"], p["p_stall"])


@cocotb.test()
async def full_throughput(dut):
    p = bench_params()
    tb = await _run(dut, _words(p["width"], p["n_throughput"], p["seed"] + 1), p["seed"], 0.0, 0.0)
    assert tb.cycles() == p["expected_cycles"], f"took {tb.cycles()} cycles, expected {p['expected_cycles']}"
