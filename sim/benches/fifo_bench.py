"""cocotb bench for `ip_cores.stream_fifo.StreamFIFO`: words come out unchanged and in order.

Parameters: width, n_words, seed, p_gap, p_stall, n_throughput, expected_cycles (for n_throughput
words with no gaps or stalls, from the first input transfer to the last output transfer), depth,
and optionally patterns / n_pattern_words for `pause_patterns`. Both stream edges run the protocol
checker (no frames: every word stands alone; the word count must be exact).
"""
from __future__ import annotations

import random

import cocotb

from sim.benches.stream_tb import DEFAULT_PATTERN_SPECS, StreamTB, compare_words, pattern_timeout
from sim.cocotb_runner import bench_params


def _words(width: int, n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    edge = [0, (1 << width) - 1]
    return (edge + [rng.getrandbits(width) for _ in range(n)])[:n]


async def _stream(tb: StreamTB, words: list[int], timeout: int) -> None:
    await tb.send(words)
    got = await tb.receive_words(len(words), timeout)
    compare_words(got, words)
    await tb.finish(len(words), len(words))


async def _run(dut, words: list[int], seed: int, p_gap: float, p_stall: float) -> StreamTB:
    tb = StreamTB.amaranth(dut)
    tb.set_traffic(seed, p_gap, p_stall)
    await tb.do_reset()
    await _stream(tb, words, 40 * len(words) + 1000)
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


@cocotb.test()
async def pause_patterns(dut):
    """Each named pause pattern in turn, with a reset between them."""
    p = bench_params()
    tb = StreamTB.amaranth(dut)
    n = p.get("n_pattern_words", 40)
    for k, spec in enumerate(p.get("patterns", DEFAULT_PATTERN_SPECS)):
        tb.set_pattern(spec, p["seed"] + k)
        await tb.do_reset()
        await _stream(tb, _words(p["width"], n, p["seed"] + 10 + k), pattern_timeout(spec, 2 * n, 40 * n + 1000))
        dut._log.info("pattern %s: %d words passed", spec, n)


@cocotb.test()
async def reset_mid_frame(dut):
    """Reset while the FIFO holds words and the output is back-pressured: they must all be gone."""
    p = bench_params()
    tb = StreamTB.amaranth(dut)
    for k, where in enumerate(("input", "output")):
        partial = _words(p["width"], 2 * p.get("depth", 4) + 3, p["seed"] + 20 + k)
        report = await tb.reset_mid_frame(partial, seed=p["seed"] + k, where=where)
        assert report.mid_frame, f"the FIFO was empty at the reset: {report}"
        before = [w for frame in report.out_frames_received for w in frame]
        compare_words(before, partial[:len(before)], lambda i: f"before the reset, word {i}")
        tb.check_protocol()

        tb.set_pattern("random50", p["seed"] + 30 + k)
        await _stream(tb, _words(p["width"], 30, p["seed"] + 40 + k), 40 * 30 + 1000)
