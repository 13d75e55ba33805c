"""cocotb bench for `ip_cores.axis_top.AxisDataflowTop` around MVTU -> StreamFIFO -> width converter.

Checks the AXI-Stream edge: Vivado port names, the active-low reset, input padding bits ignored
(the bench fills them with random garbage), output padding zero, and TLAST on exactly the last
word of every output frame (each received frame must be one output vector). The protocol checker
runs on `s_axis` (SF words a frame, TLAST on each frame's last word) and `m_axis` (TLAST every output
frame). `framing_errors` sends frames a word short and a word long: the input framer must realign, the
frames after them must be right, and `error` must rise right after the beat that shows the damage.

Parameters: the MVTU parameters of `mvtu_bench` plus out_elems (elements per output word after
the width converter), in_width (inner input width), n_vectors, seed, p_gap, p_stall, and
optionally patterns / n_pattern_vectors for `pause_patterns`.
"""
from __future__ import annotations

import random

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from ip_cores.elements import pack_words, unpack_words
from ip_cores.input_framer import input_framer_reference
from ip_cores.mvtu import mvtu_reference
from sim.benches.mvtu_bench import MvtuCase
from sim.benches.stream_tb import DEFAULT_PATTERN_SPECS, StreamTB, compare_words, pattern_timeout
from sim.cocotb_runner import bench_params
from sim.framing import corrupt_frames


class TopCase(MvtuCase):
    def __init__(self, p: dict, dut):
        super().__init__(p)
        self.out_wpf = self.mh // p["out_elems"]
        self.pad_bits = len(dut.s_axis_tdata) - p["in_width"]

    def frames(self, n: int, seed: int) -> tuple[list[int], list[list[int]]]:
        """Input words (padding bits random) and expected output frames of n vectors."""
        x = self.inputs(n, seed)
        y = mvtu_reference(self.weights, x, self.thresholds, self.p["out_offset"], out_fmt=self.out_fmt)
        expected_frames = [pack_words(row, self.out_fmt, self.p["out_elems"]) for row in y]
        garbage = random.Random(seed)
        words = [w | (garbage.getrandbits(self.pad_bits) << self.p["in_width"]) if self.pad_bits else w
                 for w in self.input_words(x)]
        return words, expected_frames

    def tb(self, dut) -> StreamTB:
        return StreamTB.axis(dut, in_words_per_frame=self.sf, out_words_per_frame=self.out_wpf)

    def output_frames(self, in_frames: list[list[int]]) -> list[list[int]]:
        """The expected output frames of input frames of exactly SF words (padding bits ignored)."""
        mask = (1 << self.p["in_width"]) - 1
        x = np.stack([unpack_words([w & mask for w in f], self.in_fmt, self.simd, self.mw) for f in in_frames])
        y = mvtu_reference(self.weights, x, self.thresholds, self.p["out_offset"], out_fmt=self.out_fmt)
        return [pack_words(row, self.out_fmt, self.p["out_elems"]) for row in y]


async def _stream(tb: StreamTB, case: TopCase, n: int, seed: int, timeout: int) -> None:
    words, expected_frames = case.frames(n, seed)
    await tb.send(words)
    frames = await tb.receive_frames(n, timeout)
    for index, (got, expected) in enumerate(zip(frames, expected_frames)):
        assert len(got) == len(expected), \
            f"frame {index}: TLAST after {len(got)} words, expected after {len(expected)}"
        compare_words(got, expected, lambda k: f"frame {index}, word {k}")
    await tb.finish(len(words), n * case.out_wpf)


async def _run(dut, p: dict, seed: int, p_gap: float, p_stall: float) -> None:
    case = TopCase(p, dut)
    tb = case.tb(dut)
    tb.set_traffic(seed, p_gap, p_stall)
    await tb.do_reset()
    n = p["n_vectors"]
    await _stream(tb, case, n, seed, case.timeout(n))


@cocotb.test()
async def random_gaps_and_backpressure(dut):
    p = bench_params()
    await _run(dut, p, p["seed"], p["p_gap"], p["p_stall"])


@cocotb.test()
async def no_gaps(dut):
    p = bench_params()
    await _run(dut, p, p["seed"] + 1, 0.0, 0.0)


@cocotb.test()
async def pause_patterns(dut):
    """Each named pause pattern in turn, with a reset (ap_rst_n low) between them."""
    p = bench_params()
    case = TopCase(p, dut)
    tb = case.tb(dut)
    n = p.get("n_pattern_vectors", 4)
    for k, spec in enumerate(p.get("patterns", DEFAULT_PATTERN_SPECS)):
        tb.set_pattern(spec, p["seed"] + k)
        await tb.do_reset()
        await _stream(tb, case, n, p["seed"] + 10 + k,
                      pattern_timeout(spec, n * (case.sf + case.out_wpf), case.timeout(n)))
        dut._log.info("pattern %s: %d vectors passed", spec, n)


@cocotb.test()
async def reset_mid_frame(dut):
    """ap_rst_n low in the middle of a frame under output back-pressure (aimed inside an input frame,
    then inside an output frame); then clean frames, TLAST counted from the first word after the reset."""
    p = bench_params()
    case = TopCase(p, dut)
    tb = case.tb(dut)
    await tb.do_reset()
    for k, where in enumerate(("input", "output")):
        words, expected_frames = case.frames(4, p["seed"] + 20 + k)
        report = await tb.reset_mid_frame(words[:3 * case.sf + (case.sf + 1) // 2], seed=p["seed"] + k, where=where)
        assert report.mid_frame, f"the reset did not hit a frame: {report}"
        for index, frame in enumerate(report.out_frames_received):
            compare_words(frame, expected_frames[index], lambda j: f"before the reset, frame {index}, word {j}")
        tb.check_protocol()

        tb.set_pattern("random50", p["seed"] + 30 + k)
        await _stream(tb, case, 3, p["seed"] + 40 + k,
                      pattern_timeout("random50", 3 * (case.sf + case.out_wpf), case.timeout(3)))


async def _error_rise(dut, beats: list) -> None:
    """Counts s_axis handshakes into beats[0]; beats[1] becomes the count before the edge `error` first read 1."""
    while True:
        await RisingEdge(dut.ap_clk)
        if beats[1] is None and str(dut.error.value) == "1":
            beats[1] = beats[0]
        if str(dut.s_axis_tvalid.value) == "1" and str(dut.s_axis_tready.value) == "1":
            beats[0] += 1


@cocotb.test()
async def framing_errors(dut):
    """Frame 1 a word short (its middle word dropped; the framer pads it with zero words), then, after a reset,
    frame 1 a word long (a word doubled; the framer drops beats up to TLAST): every output frame equals the
    reference of what the framer hands the MVTU (the frames after the damaged one: their own reference), and
    `error` is low until the revealing beat is accepted, high from the next edge on, low again after reset."""
    p = bench_params()
    case = TopCase(p, dut)
    tb = case.tb(dut)
    n = 5
    middle = case.sf // 2
    corruptions = ([("drop", (1, middle))] if case.sf > 1 else []) + [("extra", (1, middle))]
    for k, (kind, where) in enumerate(corruptions):
        words, clean = case.frames(n, p["seed"] + 50 + k)
        frames = corrupt_frames(words, case.sf, [where] if kind == "drop" else [], [where] if kind == "extra" else [])
        seen, bad = input_framer_reference(frames, case.sf)
        assert bad == [1]
        expected = case.output_frames(seen)
        assert expected[0] == clean[0] and expected[2:] == clean[2:]  # the damage stays in frame 1
        tb.set_traffic(p["seed"] + k, p["p_gap"], p["p_stall"])
        await tb.do_reset()
        assert str(dut.error.value) == "0", "error survived the reset"
        tb.in_check.expect_frame_lengths([len(f) for f in frames])
        beats = [0, None]
        watch = cocotb.start_soon(_error_rise(dut, beats))
        await tb.send_frames(frames)
        got = await tb.receive_frames(n, case.timeout(n))
        for index, (g, e) in enumerate(zip(got, expected)):
            compare_words(g, e, lambda j: f"{kind}: frame {index}, word {j}")
        await tb.finish(sum(len(f) for f in frames), n * case.out_wpf)
        watch.cancel()
        reveal = len(frames[0]) + min(len(frames[1]), case.sf) - 1
        assert beats[1] == reveal + 1, f"{kind}: error rose after {beats[1]} beats, expected after beat {reveal}"
        assert str(dut.error.value) == "1", f"{kind}: error fell before a reset"
