"""cocotb bench for `ip_cores.axis_top.AxisDataflowTop` around MVTU -> StreamFIFO -> width converter.

Checks the AXI-Stream edge: Vivado port names, the active-low reset, input padding bits ignored
(the bench fills them with random garbage), output padding zero, and TLAST on exactly the last
word of every output frame (each received frame must be one output vector).

Parameters: the MVTU parameters of `mvtu_bench` plus out_elems (elements per output word after
the width converter), in_width (inner input width), n_vectors, seed, p_gap, p_stall.
"""
from __future__ import annotations

import random

import cocotb

from ip_cores.elements import pack_words
from ip_cores.mvtu import mvtu_reference
from sim.benches.mvtu_bench import MvtuCase
from sim.benches.stream_tb import StreamTB, compare_words
from sim.cocotb_runner import bench_params


async def _run(dut, p: dict, seed: int, p_gap: float, p_stall: float) -> None:
    case = MvtuCase(p)
    n = p["n_vectors"]
    x = case.inputs(n, seed)
    y = mvtu_reference(case.weights, x, case.thresholds, p["out_offset"], out_fmt=case.out_fmt)
    expected_frames = [pack_words(row, case.out_fmt, p["out_elems"]) for row in y]

    garbage = random.Random(seed)
    pad_bits = len(dut.s_axis_tdata) - p["in_width"]
    words = [w | (garbage.getrandbits(pad_bits) << p["in_width"]) if pad_bits else w
             for w in pack_words(x.reshape(-1), case.in_fmt, case.simd)]

    tb = StreamTB.axis(dut)
    tb.set_traffic(seed, p_gap, p_stall)
    await tb.do_reset()
    await tb.send(words)
    frames = await tb.receive_frames(n, 20 * (n * case.nf * case.sf + 20) + 1000)
    for index, (got, expected) in enumerate(zip(frames, expected_frames)):
        assert len(got) == len(expected), \
            f"frame {index}: TLAST after {len(got)} words, expected after {len(expected)}"
        compare_words(got, expected, lambda k: f"frame {index}, word {k}")
    tb.check_protocol()


@cocotb.test()
async def random_gaps_and_backpressure(dut):
    p = bench_params()
    await _run(dut, p, p["seed"], p["p_gap"], p["p_stall"])


@cocotb.test()
async def no_gaps(dut):
    p = bench_params()
    await _run(dut, p, p["seed"] + 1, 0.0, 0.0)
