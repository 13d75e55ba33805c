"""cocotb bench for an rtlgen top level (AXI-Stream in, AXI-Stream out with TLAST per output frame).

Run through `sim/top_bench_runner.py`. The stimulus comes from a JSON file named by the environment
variable TOP_BENCH_DATA:

    {"in_words": ["1f", ...], "expected_out_words": ["3a0", ...],   # hex strings, one per stream word
     "in_words_per_frame": 12, "out_words_per_frame": 4,
     "seed": 0, "p_in_gap": 0.5, "p_out_stall": 0.5, "timeout_cycles": 100000,
     "pattern": null, "reset_mid_frame": true,
     "framing_cases": [{"drop": [1, 3], "expected_out_words": [...]}, {"extra": [1, 0], ...}]}

`pattern`, if given, replaces the random gaps/stalls by a named pause pattern ("always_ready",
"random50", "long_stalls", or "input/output" such as "always_ready/long_stalls", see
`sim/benches/stream_tb.py`). `reset_mid_frame: false` skips the reset test (the runner sets it for
repeated runs of one design).

The input goes to an `AxiStreamSource`, one frame after the other with TLAST on each frame's last word
(where the design has s_axis_tlast); an `AxiStreamSink` back-pressures the output and splits it at TLAST,
so every received packet must be exactly one expected output frame. Every beat is one whole word, so any
TDATA width works. The stream protocol checker (sim/benches/protocol.py) watches s_axis (the testbench's
driver, frames of in_words_per_frame, TLAST included) and m_axis (the design: valid held until accepted,
data stable under back-pressure, TLAST on exactly every out_words_per_frame-th word, the word count
exact). With well-formed frames the design's `error` output must stay low.

`framing_cases` (optional) test the input framer: each case sends the whole stimulus again after a reset
with one frame damaged (`sim.framing.corrupt_frames`: "drop": [F, J] removes word J of frame F, "extra":
[F, J] inserts a copy of it), under the protocol checker told to expect that frame's length. Every output
frame must equal the case's `expected_out_words` (the damaged frame's too: the framer pads a short frame
with zero words and cuts a long one, deterministically), `error` must stay low until the beat that
reveals the damage is accepted, rise right after it, and stay high to the end.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb
from cocotb.triggers import RisingEdge

from sim.benches.stream_tb import StreamTB, pattern_timeout
from sim.framing import corrupt_frames


def load_stimulus() -> dict:
    path = os.environ.get("TOP_BENCH_DATA")
    if not path:
        raise RuntimeError("TOP_BENCH_DATA is not set: run this bench through sim/top_bench_runner.py")
    data = json.loads(Path(path).read_text())
    data["in_words"] = [int(w, 16) for w in data["in_words"]]
    data["expected_out_words"] = [int(w, 16) for w in data["expected_out_words"]]
    for case in data.get("framing_cases") or []:
        case["expected_out_words"] = [int(w, 16) for w in case["expected_out_words"]]
    return data


def error_port(dut):
    """The design's `error` output, or None for a design built without input framing."""
    try:
        return dut.error
    except AttributeError:
        return None


class ErrorWatch:
    """Samples `error` and the s_axis handshakes at every clock edge: `beats_before_rise` is the number of
    input beats accepted at edges before the first edge at which `error` read 1 (None: it has not)."""

    def __init__(self, dut):
        self.dut, self.beats, self.beats_before_rise = dut, 0, None
        self._task = cocotb.start_soon(self._run())

    async def _run(self) -> None:
        dut = self.dut
        while True:
            await RisingEdge(dut.ap_clk)
            if self.beats_before_rise is None and str(dut.error.value) == "1":
                self.beats_before_rise = self.beats
            if str(dut.s_axis_tvalid.value) == "1" and str(dut.s_axis_tready.value) == "1":
                self.beats += 1

    def stop(self) -> None:
        self._task.cancel()


class TopStimulus:
    """The stimulus file, split into frames, and the traffic it asks for."""

    def __init__(self, data: dict):
        self.in_words, self.expected = data["in_words"], data["expected_out_words"]
        self.ipf, self.opf = int(data["in_words_per_frame"]), int(data["out_words_per_frame"])
        assert len(self.in_words) % self.ipf == 0, \
            f"{len(self.in_words)} input words are not whole frames of {self.ipf}"
        assert len(self.expected) % self.opf == 0, \
            f"{len(self.expected)} output words are not whole frames of {self.opf}"
        self.seed = int(data.get("seed", 0))
        self.p_in_gap, self.p_out_stall = float(data.get("p_in_gap", 0.0)), float(data.get("p_out_stall", 0.0))
        self.pattern = data.get("pattern")
        self.timeout_cycles = int(data.get("timeout_cycles", 100000))
        if self.pattern:
            self.timeout_cycles = pattern_timeout(self.pattern, len(self.in_words) + len(self.expected),
                                                  self.timeout_cycles)

    def tb(self, dut) -> StreamTB:
        return StreamTB.axis(dut, in_words_per_frame=self.ipf, out_words_per_frame=self.opf)

    def set_traffic(self, tb: StreamTB, seed_offset: int = 0) -> None:
        if self.pattern:
            tb.set_pattern(self.pattern, self.seed + seed_offset)
        else:
            tb.set_traffic(self.seed + seed_offset, self.p_in_gap, self.p_out_stall)


async def _check_frames(dut, tb: StreamTB, stim: TopStimulus, frames=None, expected=None) -> None:
    """Send every input frame, compare every output frame, then no extra word and no protocol violation.
    `frames` (lists of words, for damaged frames) and `expected` replace the stimulus's; without them the
    design's error flag must be low at the end."""
    corrupted = frames is not None
    frames = frames if corrupted else tb.split_frames(stim.in_words)
    expected = stim.expected if expected is None else expected
    opf, timeout_cycles = stim.opf, stim.timeout_cycles
    n_in = sum(len(f) for f in frames)
    await tb.send_frames(frames)
    n_frames = len(expected) // opf
    for f in range(n_frames):
        try:
            frame = (await tb.receive_frames(1, timeout_cycles))[0]
        except AssertionError:
            raise AssertionError(
                f"no TLAST-terminated output frame {f} within {timeout_cycles} cycles: "
                f"{tb.out_check.words} of {len(expected)} output words arrived (design stalled or TLAST missing); "
                f"{tb.protocol_summary()}"
            ) from None
        got = [int(w) for w in frame]
        want = expected[f * opf:(f + 1) * opf]
        for j, (g, w) in enumerate(zip(got, want)):
            assert g == w, f"output frame {f} word {j} (word {f * opf + j} overall): got {g:#x}, expected {w:#x}"
        assert len(got) == opf, (
            f"output frame {f} has {len(got)} words up to its TLAST, expected {opf} (TLAST misplaced)"
        )

    extra = await tb.drain(20)
    assert not extra and tb.out_check.words == len(expected), (
        f"the design sent {tb.out_check.words - len(expected)} output words more than the {len(expected)} expected"
    )
    tb.check_protocol(n_in, len(expected))
    error = error_port(dut)
    if error is not None and not corrupted:
        assert str(error.value) == "0", "the error flag is raised although every input frame was well formed"


@cocotb.test()
async def stream_frames(dut):
    """Every output word equals the expectation and TLAST closes exactly every output frame."""
    stim = TopStimulus(load_stimulus())
    tb = stim.tb(dut)
    stim.set_traffic(tb)
    await tb.do_reset()
    await _check_frames(dut, tb, stim)
    dut._log.info("top bench passed: %d input words, %d output frames", len(stim.in_words),
                  len(stim.expected) // stim.opf)


@cocotb.test()
async def reset_mid_frame(dut):
    """ap_rst_n low for a few cycles in the middle of a frame while the output is back-pressured, then
    the whole stimulus again: every frame exactly right, TLAST counted afresh, nothing of the cut frame.
    Twice: the reset aimed inside an input frame, then inside an output frame."""
    data = load_stimulus()
    if not data.get("reset_mid_frame", True):
        dut._log.info("reset_mid_frame not requested for this run")
        return
    stim = TopStimulus(data)
    tb = stim.tb(dut)
    await tb.do_reset()
    n_in_frames = len(stim.in_words) // stim.ipf
    cut = min(3, n_in_frames - 1) * stim.ipf + (stim.ipf + 1) // 2
    for k, where in enumerate(("input", "output")):
        report = await tb.reset_mid_frame(stim.in_words[:cut], seed=stim.seed + k, where=where)
        assert report.mid_frame, f"the reset did not hit a frame: {report}"
        for f, frame in enumerate(report.out_frames_received):
            want = stim.expected[f * stim.opf:(f + 1) * stim.opf]
            assert [int(w) for w in frame] == want, f"before the reset: output frame {f} differs from the expectation"
        tb.check_protocol()
        stim.set_traffic(tb, seed_offset=1 + k)
        await _check_frames(dut, tb, stim)
        dut._log.info("after the reset (%s) all %d output frames were right", report, len(stim.expected) // stim.opf)


@cocotb.test()
async def framing_errors(dut):
    """Per `framing_cases`: after a reset, the stimulus with one frame short or long by a word. All output
    frames as expected (the frames after the damaged one exactly the golden ones), `error` low before the
    beat that reveals the damage, high from the edge after it, cleared by the next reset."""
    data = load_stimulus()
    cases = data.get("framing_cases") or []
    if not cases:
        dut._log.info("framing_cases not requested for this run")
        return
    stim = TopStimulus(data)
    assert error_port(dut) is not None and len(stim.in_words) // stim.ipf >= 3
    tb = stim.tb(dut)
    for k, case in enumerate(cases):
        drops = [tuple(case["drop"])] if "drop" in case else []
        extras = [tuple(case["extra"])] if "extra" in case else []
        frames = corrupt_frames(stim.in_words, stim.ipf, drops, extras)
        bad = (drops or extras)[0][0]
        # the beat that reveals the damage: TLAST too early (short frame) or word N-1 without TLAST (long)
        reveal = sum(len(f) for f in frames[:bad]) + min(len(frames[bad]), stim.ipf) - 1
        stim.set_traffic(tb, seed_offset=10 + k)
        await tb.do_reset()
        assert str(dut.error.value) == "0", "the error flag survived the reset"
        tb.in_check.expect_frame_lengths([len(f) for f in frames])
        watch = ErrorWatch(dut)
        await _check_frames(dut, tb, stim, frames=frames, expected=case["expected_out_words"])
        watch.stop()
        assert watch.beats_before_rise is not None, f"{case}: the error flag never rose"
        assert watch.beats_before_rise == reveal + 1, (
            f"{case}: the error flag rose after {watch.beats_before_rise} input beats, expected right after beat "
            f"{reveal} (the one that shows frame {bad} is {'short' if drops else 'long'})")
        assert str(dut.error.value) == "1", f"{case}: the error flag fell again before a reset"
        dut._log.info("framing case %s: frames after the damaged one correct, error rose after beat %d", case, reveal)
