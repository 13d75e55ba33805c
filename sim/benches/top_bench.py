"""cocotb bench for an rtlgen top level (AXI-Stream in, AXI-Stream out with TLAST per output frame).

Run through `sim/top_bench_runner.py`. The stimulus comes from a JSON file named by the environment
variable TOP_BENCH_DATA:

    {"in_words": ["1f", ...], "expected_out_words": ["3a0", ...],   # hex strings, one per stream word
     "in_words_per_frame": 12, "out_words_per_frame": 4,
     "seed": 0, "p_in_gap": 0.5, "p_out_stall": 0.5, "timeout_cycles": 100000}

Each input frame goes to an `AxiStreamSource` as one packet (s_axis has no TLAST, so packets simply follow
each other); an `AxiStreamSink` back-pressures the output and splits it at TLAST, so every received
packet must be exactly one expected output frame. Random gaps and stalls come from seeded pause
generators. Every beat is one whole word (`byte_lanes=1`), so any TDATA width works.
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

CLOCK_NS = 10


def _pauses(rng: random.Random, p: float):
    """Pause generator: True (stall this cycle) with probability p."""
    while True:
        yield rng.random() < p


def load_stimulus() -> dict:
    path = os.environ.get("TOP_BENCH_DATA")
    if not path:
        raise RuntimeError("TOP_BENCH_DATA is not set: run this bench through sim/top_bench_runner.py")
    data = json.loads(Path(path).read_text())
    data["in_words"] = [int(w, 16) for w in data["in_words"]]
    data["expected_out_words"] = [int(w, 16) for w in data["expected_out_words"]]
    return data


class TB:
    """Clock, reset, source and sink of one top level."""

    def __init__(self, dut, seed: int, p_in_gap: float, p_out_stall: float):
        self.dut = dut
        cocotb.start_soon(Clock(dut.ap_clk, CLOCK_NS, unit="ns").start())
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.ap_clk, dut.ap_rst_n,
                                      reset_active_level=False, byte_lanes=1)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.ap_clk, dut.ap_rst_n,
                                  reset_active_level=False, byte_lanes=1)
        if p_in_gap > 0:
            self.source.set_pause_generator(_pauses(random.Random(seed * 2 + 1), p_in_gap))
        if p_out_stall > 0:
            self.sink.set_pause_generator(_pauses(random.Random(seed * 2 + 2), p_out_stall))
        self.out_beats = 0  # output handshakes seen, for the failure messages
        cocotb.start_soon(self._count_output())

    async def _count_output(self) -> None:
        dut = self.dut
        while True:
            await RisingEdge(dut.ap_clk)
            if dut.m_axis_tvalid.value == 1 and dut.m_axis_tready.value == 1:
                self.out_beats += 1

    async def reset(self, cycles: int = 4) -> None:
        self.dut.ap_rst_n.value = 0
        await ClockCycles(self.dut.ap_clk, cycles)
        self.dut.ap_rst_n.value = 1
        await RisingEdge(self.dut.ap_clk)


@cocotb.test()
async def stream_frames(dut):
    """Every output word equals the expectation and TLAST closes exactly every output frame."""
    data = load_stimulus()
    in_words = data["in_words"]
    expected = data["expected_out_words"]
    ipf = int(data["in_words_per_frame"])
    opf = int(data["out_words_per_frame"])
    timeout_cycles = int(data.get("timeout_cycles", 100000))
    assert len(in_words) % ipf == 0, f"{len(in_words)} input words are not whole frames of {ipf}"
    assert len(expected) % opf == 0, f"{len(expected)} output words are not whole frames of {opf}"

    tb = TB(dut, int(data.get("seed", 0)), float(data.get("p_in_gap", 0.0)), float(data.get("p_out_stall", 0.0)))
    await tb.reset()

    for f in range(len(in_words) // ipf):
        tb.source.send_nowait(AxiStreamFrame(list(in_words[f * ipf:(f + 1) * ipf])))

    n_frames = len(expected) // opf
    for f in range(n_frames):
        try:
            frame = await with_timeout(tb.sink.recv(), timeout_cycles * CLOCK_NS, "ns")
        except TimeoutError:
            raise AssertionError(
                f"no TLAST-terminated output frame {f} within {timeout_cycles} cycles: "
                f"{tb.out_beats} of {len(expected)} output words arrived (design stalled or TLAST missing)"
            ) from None
        got = [int(w) for w in frame.tdata]
        want = expected[f * opf:(f + 1) * opf]
        for j, (g, w) in enumerate(zip(got, want)):
            assert g == w, f"output frame {f} word {j} (word {f * opf + j} overall): got {g:#x}, expected {w:#x}"
        assert len(got) == opf, (
            f"output frame {f} has {len(got)} words up to its TLAST, expected {opf} (TLAST misplaced)"
        )

    await ClockCycles(dut.ap_clk, 20)
    assert tb.sink.empty() and tb.out_beats == len(expected), (
        f"the design sent {tb.out_beats - len(expected)} output words more than the {len(expected)} expected"
    )
    dut._log.info("top bench passed: %d input words, %d output frames", len(in_words), n_frames)
