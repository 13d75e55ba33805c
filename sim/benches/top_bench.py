"""cocotb bench for an rtlgen top level (AXI-Stream in, AXI-Stream out with TLAST per output frame).

Run through `sim/top_bench_runner.py`. The stimulus comes from a JSON file named by the environment
variable TOP_BENCH_DATA:

    {"in_words": ["1f", ...], "expected_out_words": ["3a0", ...],   # hex strings, one per stream word
     "in_words_per_frame": 12, "out_words_per_frame": 4,
     "seed": 0, "p_in_gap": 0.5, "p_out_stall": 0.5, "timeout_cycles": 100000,
     "pattern": null, "reset_mid_frame": true}

`pattern`, if given, replaces the random gaps/stalls by a named pause pattern ("always_ready",
"random50", "long_stalls", or "input/output" such as "always_ready/long_stalls", see
`sim/benches/stream_tb.py`). `reset_mid_frame: false` skips the reset test (the runner sets it for
repeated runs of one design).

The input goes to an `AxiStreamSource` (s_axis has no TLAST, so frames simply follow each other); an
`AxiStreamSink` back-pressures the output and splits it at TLAST, so every received packet must be
exactly one expected output frame. Every beat is one whole word, so any TDATA width works. The
stream protocol checker (sim/benches/protocol.py) watches s_axis (the testbench's driver, frames of
in_words_per_frame) and m_axis (the design: valid held until accepted, data stable under
back-pressure, TLAST on exactly every out_words_per_frame-th word, the word count exact).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb

from sim.benches.stream_tb import StreamTB, pattern_timeout


def load_stimulus() -> dict:
    path = os.environ.get("TOP_BENCH_DATA")
    if not path:
        raise RuntimeError("TOP_BENCH_DATA is not set: run this bench through sim/top_bench_runner.py")
    data = json.loads(Path(path).read_text())
    data["in_words"] = [int(w, 16) for w in data["in_words"]]
    data["expected_out_words"] = [int(w, 16) for w in data["expected_out_words"]]
    return data


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


async def _check_frames(dut, tb: StreamTB, stim: TopStimulus) -> None:
    """Send every input frame, compare every output frame, then no extra word and no protocol violation."""
    expected, opf, timeout_cycles = stim.expected, stim.opf, stim.timeout_cycles
    await tb.send(stim.in_words)
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
    tb.check_protocol(len(stim.in_words), len(expected))


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
