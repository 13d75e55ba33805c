"""The test bench every stream core shares: clock, reset, a source, a sink and a handshake log.

The DUT is either an Amaranth component (ports `i__payload/valid/ready`, `o__...`, `clk`, `rst`)
or the AXI-Stream top level (`s_axis_*`, `m_axis_*`, `ap_clk`, `ap_rst_n`). cocotbext-axi's
source and sink drive both: the bus classes below only rename `tdata/tvalid/tready`. Each stream
word is one "byte" of the full word width, so a frame's `tdata` is a list of whole words.

Random gaps on the input and random back-pressure on the output come from seeded pause
generators. The handshake log records the clock cycle of every input and output transfer, so a
bench can check throughput exactly: from the first input transfer to the last output transfer.
"""
from __future__ import annotations

import logging
import random
from typing import Iterator

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, SimTimeoutError, with_timeout
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

__all__ = ["AmaranthStreamBus", "StreamTB", "pauses", "compare_words"]

CLOCK_NS = 10


class AmaranthStreamBus(AxiStreamBus):
    """An `amaranth.lib.stream` port seen as AXI-Stream: `<name>__payload/valid/ready`."""

    _signals = {"tdata": "payload"}
    _optional_signals = {"tvalid": "valid", "tready": "ready"}

    def __init__(self, entity=None, prefix=None, **kwargs):
        kwargs.setdefault("bus_separator", "__")
        super().__init__(entity, prefix, **kwargs)


def pauses(rng: random.Random, probability: float) -> Iterator[bool]:
    """Endless pause pattern: True (pause this cycle) with `probability`, from a seeded generator."""
    while True:
        yield rng.random() < probability


def _high(signal) -> bool:
    """A 1-bit signal is 1 (X/Z count as 0; they only occur before reset)."""
    return str(signal.value) == "1"


class StreamTB:
    """Drives one input stream and collects one output stream of a DUT, counting cycles."""

    def __init__(self, dut, source_bus, sink_bus, clock, reset, reset_active_level: bool):
        self.dut, self.clock, self.reset = dut, clock, reset
        self.reset_active_level = reset_active_level
        cocotb.start_soon(Clock(clock, CLOCK_NS, unit="ns").start())
        self.source = AxiStreamSource(source_bus, clock, reset, reset_active_level,
                                      byte_size=len(source_bus.tdata))
        self.sink = AxiStreamSink(sink_bus, clock, reset, reset_active_level, byte_size=len(sink_bus.tdata))
        for endpoint in (self.source, self.sink):
            endpoint.log.setLevel(logging.WARNING)  # one INFO line per word otherwise
        self._source_bus, self._sink_bus = source_bus, sink_bus
        self.in_cycles: list[int] = []
        self.out_cycles: list[int] = []
        self.protocol_errors: list[str] = []
        cocotb.start_soon(self._log_handshakes())

    @classmethod
    def amaranth(cls, dut, i: str = "i", o: str = "o") -> "StreamTB":
        """For an Amaranth component with default `sync` domain (`clk`, active-high `rst`)."""
        return cls(dut, AmaranthStreamBus.from_prefix(dut, i), AmaranthStreamBus.from_prefix(dut, o),
                   dut.clk, dut.rst, reset_active_level=True)

    @classmethod
    def axis(cls, dut) -> "StreamTB":
        """For the AXI-Stream top level (`ap_clk`, active-low `ap_rst_n`, `s_axis_*`, `m_axis_*`)."""
        return cls(dut, AxiStreamBus.from_prefix(dut, "s_axis"), AxiStreamBus.from_prefix(dut, "m_axis"),
                   dut.ap_clk, dut.ap_rst_n, reset_active_level=False)

    async def _log_handshakes(self) -> None:
        """Per cycle: note transfers; check the DUT holds its output while it is not accepted."""
        cycle = 0
        src, snk = self._source_bus, self._sink_bus
        held = None  # output payload offered but not taken in the previous cycle
        while True:
            await RisingEdge(self.clock)
            if _high(src.tvalid) and _high(src.tready):
                self.in_cycles.append(cycle)
            out_valid = _high(snk.tvalid)
            if held is not None and self._out_of_reset():
                if not out_valid:
                    self.protocol_errors.append(f"cycle {cycle}: output valid dropped before it was accepted")
                elif str(snk.tdata.value) != held:
                    self.protocol_errors.append(f"cycle {cycle}: output payload changed while waiting for ready")
            if out_valid and _high(snk.tready):
                self.out_cycles.append(cycle)
            held = str(snk.tdata.value) if out_valid and not _high(snk.tready) else None
            cycle += 1

    def _out_of_reset(self) -> bool:
        return str(self.reset.value) == str(int(not self.reset_active_level))

    async def do_reset(self, cycles: int = 4) -> None:
        self.reset.value = int(self.reset_active_level)
        await ClockCycles(self.clock, cycles)
        self.reset.value = int(not self.reset_active_level)
        await ClockCycles(self.clock, 2)
        self.in_cycles.clear()
        self.out_cycles.clear()

    def set_traffic(self, seed: int, p_gap: float, p_stall: float) -> None:
        """Random input gaps (probability p_gap a cycle) and output back-pressure (p_stall)."""
        rng = random.Random(seed)
        if p_gap > 0:
            self.source.set_pause_generator(pauses(rng, p_gap))
        else:
            self.source.clear_pause_generator()
        if p_stall > 0:
            self.sink.set_pause_generator(pauses(rng, p_stall))
        else:
            self.sink.clear_pause_generator()

    async def send(self, words: list[int]) -> None:
        """Queue `words` on the input (one frame: TLAST, if the DUT had one, on the last word)."""
        await self.source.send(AxiStreamFrame(tdata=list(words)))

    async def receive_frames(self, n_frames: int, timeout_cycles: int) -> list[list[int]]:
        """The next `n_frames` output frames (without TLAST every word is a frame of its own)."""
        frames: list[list[int]] = []

        async def collect():
            while len(frames) < n_frames:
                frames.append(list((await self.sink.recv()).tdata))

        try:
            await with_timeout(collect(), timeout_cycles * CLOCK_NS, "ns")
        except SimTimeoutError:
            raise AssertionError(f"timed out after {timeout_cycles} cycles with {len(frames)} of {n_frames} "
                                 f"output frames received") from None
        return frames

    async def receive_words(self, n_words: int, timeout_cycles: int) -> list[int]:
        frames = await self.receive_frames(n_words, timeout_cycles)
        assert all(len(f) == 1 for f in frames), "a stream without TLAST returned a multi-word frame"
        return [f[0] for f in frames]

    def check_protocol(self) -> None:
        assert not self.protocol_errors, "stream protocol violated: " + "; ".join(self.protocol_errors[:5])

    def cycles(self) -> int:
        """Cycles from the first input transfer to the last output transfer, both included."""
        return self.out_cycles[-1] - self.in_cycles[0] + 1


def compare_words(got: list[int], expected: list[int], describe=lambda index: f"word {index}") -> None:
    """Assert equal word lists, naming the first difference (via `describe(index)`) in hex."""
    assert len(got) == len(expected), f"got {len(got)} words, expected {len(expected)}"
    for index, (g, e) in enumerate(zip(got, expected)):
        assert g == e, f"{describe(index)}: got {g:#x}, expected {e:#x}"
