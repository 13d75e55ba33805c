"""The test bench every stream core shares: clock, reset, a source, a sink and two protocol checkers.

The DUT is either an Amaranth component (ports `i__payload/valid/ready`, `o__...`, `clk`, `rst`)
or the AXI-Stream top level (`s_axis_*`, `m_axis_*`, `ap_clk`, `ap_rst_n`). cocotbext-axi's
source and sink drive both: the bus classes below only rename `tdata/tvalid/tready`. Each stream
word is one "byte" of the full word width, so a frame's `tdata` is a list of whole words.

Both stream edges carry a `StreamProtocolChecker` (sim/benches/protocol.py): the input edge checks
the testbench's source (dut_output=False; TLAST placement too where the input has TLAST), the output
edge the DUT (valid held until accepted, payload stable under back-pressure, TLAST placement, word
counts). Where the input has TLAST (the AXI-Stream top's s_axis_tlast), `send` sends every input frame
with TLAST on its last word; `send_frames` sends frames of any length (short or long ones on purpose). `check_protocol()` raises on any
violation; the checkers' handshake logs give the clock cycle of every transfer, so a bench can check
throughput exactly: from the first input transfer to the last output transfer.

Input gaps and output back-pressure come from seeded pause generators: either random with given
probabilities (`set_traffic`) or a named pattern (`set_pattern`, see `PATTERNS`): always ready, 50 %
random, and long stalls (bursts of 50-200 idle cycles). `reset_mid_frame` interrupts a stream with
a reset while the output is back-pressured.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Protocol

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, SimTimeoutError, with_timeout
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

from sim.benches.protocol import StreamProtocolChecker, check_all

__all__ = ["AmaranthStreamBus", "StreamTB", "pauses", "long_stalls", "pause_generator", "PATTERNS",
           "compare_words", "ResetReport", "ReferenceCase", "stream_and_compare", "run_with_traffic",
           "run_pause_patterns", "check_words_before_reset", "recover_after_reset"]

CLOCK_NS = 10

PATTERNS = ("always_ready", "random50", "long_stalls")
"""Named pause patterns. A pattern spec is one name (both sides) or "input_name/output_name"."""

DEFAULT_PATTERN_SPECS = ("always_ready", "random50", "long_stalls", "always_ready/long_stalls",
                         "long_stalls/always_ready")
"""What a bench's `pause_patterns` test runs unless its parameters say otherwise: each pattern on both
sides, then a saturating input against long output stalls (back-pressure reaches the input) and long
input gaps against an always-ready output (the DUT runs dry between words)."""


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


def long_stalls(rng: random.Random, min_idle: int = 50, max_idle: int = 200, max_run: int = 40) -> Iterator[bool]:
    """Endless pattern of long stalls: up to `max_run` mostly flowing cycles (10 % random pauses),
    then a burst of `min_idle`..`max_idle` paused cycles."""
    while True:
        for _ in range(rng.randint(1, max_run)):
            yield rng.random() < 0.1
        for _ in range(rng.randint(min_idle, max_idle)):
            yield True


def pause_generator(name: str, rng: random.Random) -> Optional[Iterator[bool]]:
    """The generator of a named pattern (None: never pause)."""
    if name in ("always_ready", "none"):
        return None
    if name == "random50":
        return pauses(rng, 0.5)
    if name == "long_stalls":
        return long_stalls(rng)
    raise ValueError(f"unknown pause pattern {name!r}: use one of {', '.join(PATTERNS)}")


def split_pattern(spec: str) -> tuple[str, str]:
    """"name" -> (name, name); "in/out" -> (in, out); both checked."""
    in_name, _, out_name = spec.partition("/")
    out_name = out_name or in_name
    for name in (in_name, out_name):
        if name not in PATTERNS and name != "none":
            raise ValueError(f"unknown pause pattern {name!r} in {spec!r}: use one of {', '.join(PATTERNS)}")
    return in_name, out_name


def pattern_timeout(spec: str, n_words: int, base_cycles: int) -> int:
    """A hang-detection timeout (cycles) for `n_words` transfers under pattern `spec`: long stalls let
    a word through in only a few percent of the cycles."""
    if "long_stalls" in spec:
        return base_cycles + 300 * n_words + 4000
    return base_cycles


@dataclass
class ResetReport:
    """Where a `reset_mid_frame` reset struck (counts since the previous reset)."""

    in_words: int                 # input words accepted before the reset
    out_words: int                # output words delivered before the reset
    out_frames_received: list     # whole output frames the sink had collected (the sink drops a partial one)
    in_words_per_frame: int
    out_words_per_frame: int
    where: str = "both"

    @property
    def mid_frame(self) -> bool:
        """The reset cut into a frame on one side, or a frame was inside the DUT."""
        in_mid = self.in_words % self.in_words_per_frame != 0
        out_mid = self.out_words % self.out_words_per_frame != 0
        in_frames_started = -(-self.in_words // self.in_words_per_frame)
        in_flight = in_frames_started > self.out_words // self.out_words_per_frame
        return in_mid or out_mid or in_flight

    def __str__(self) -> str:
        return (f"reset aimed at {self.where} mid-frame struck after {self.in_words} input words "
                f"(word {self.in_words % self.in_words_per_frame} of input frame "
                f"{self.in_words // self.in_words_per_frame}) and {self.out_words} output words "
                f"(word {self.out_words % self.out_words_per_frame} of output frame "
                f"{self.out_words // self.out_words_per_frame}), output back-pressured")


class StreamTB:
    """Drives one input stream and collects one output stream of a DUT, checking both edges.

    `in_words_per_frame` / `out_words_per_frame` switch on the frame rules of the checkers (TLAST
    placement where the sink bus has `tlast`, whole frames at the end).
    """

    def __init__(self, dut, source_bus, sink_bus, clock, reset, reset_active_level: bool,
                 in_words_per_frame: Optional[int] = None, out_words_per_frame: Optional[int] = None,
                 in_name: str = "input", out_name: str = "output"):
        self.dut, self.clock, self.reset = dut, clock, reset
        self.reset_active_level = reset_active_level
        cocotb.start_soon(Clock(clock, CLOCK_NS, unit="ns").start())
        self.source = AxiStreamSource(source_bus, clock, reset, reset_active_level,
                                      byte_size=len(source_bus.tdata))
        self.sink = AxiStreamSink(sink_bus, clock, reset, reset_active_level, byte_size=len(sink_bus.tdata))
        for endpoint in (self.source, self.sink):
            endpoint.log.setLevel(logging.ERROR)  # one INFO line per word, a warning per flushed frame
        self.in_check = StreamProtocolChecker(
            clock, source_bus.tvalid, source_bus.tready, source_bus.tdata, name=in_name,
            tlast=getattr(source_bus, "tlast", None), reset=reset, reset_active_level=reset_active_level,
            words_per_frame=in_words_per_frame, dut_output=False)
        self.out_check = StreamProtocolChecker(
            clock, sink_bus.tvalid, sink_bus.tready, sink_bus.tdata, name=out_name,
            tlast=getattr(sink_bus, "tlast", None), reset=reset, reset_active_level=reset_active_level,
            words_per_frame=out_words_per_frame, dut_output=True)

    @classmethod
    def amaranth(cls, dut, i: str = "i", o: str = "o", **frames) -> "StreamTB":
        """For an Amaranth component with default `sync` domain (`clk`, active-high `rst`)."""
        return cls(dut, AmaranthStreamBus.from_prefix(dut, i), AmaranthStreamBus.from_prefix(dut, o),
                   dut.clk, dut.rst, reset_active_level=True, in_name=i, out_name=o, **frames)

    @classmethod
    def axis(cls, dut, **frames) -> "StreamTB":
        """For the AXI-Stream top level (`ap_clk`, active-low `ap_rst_n`, `s_axis_*`, `m_axis_*`)."""
        return cls(dut, AxiStreamBus.from_prefix(dut, "s_axis"), AxiStreamBus.from_prefix(dut, "m_axis"),
                   dut.ap_clk, dut.ap_rst_n, reset_active_level=False, in_name="s_axis", out_name="m_axis",
                   **frames)

    @property
    def in_cycles(self) -> list[int]:
        """Cycles of the input transfers since the last reset."""
        return self.in_check.handshake_cycles

    @property
    def out_cycles(self) -> list[int]:
        return self.out_check.handshake_cycles

    async def do_reset(self, cycles: int = 4) -> None:
        self.reset.value = int(self.reset_active_level)
        await ClockCycles(self.clock, cycles)
        self.reset.value = int(not self.reset_active_level)
        await ClockCycles(self.clock, 2)

    def _set_pauses(self, endpoint, generator) -> None:
        if generator is None:
            endpoint.clear_pause_generator()
            endpoint.pause = False  # clearing the generator keeps its last value
        else:
            endpoint.set_pause_generator(generator)

    def set_traffic(self, seed: int, p_gap: float, p_stall: float) -> None:
        """Random input gaps (probability p_gap a cycle) and output back-pressure (p_stall)."""
        rng = random.Random(seed)
        self._set_pauses(self.source, pauses(rng, p_gap) if p_gap > 0 else None)
        self._set_pauses(self.sink, pauses(rng, p_stall) if p_stall > 0 else None)

    def set_pattern(self, spec: str, seed: int) -> None:
        """A named pattern on both sides ("random50") or one each ("always_ready/long_stalls")."""
        in_name, out_name = split_pattern(spec)
        self._set_pauses(self.source, pause_generator(in_name, random.Random(seed * 2 + 1)))
        self._set_pauses(self.sink, pause_generator(out_name, random.Random(seed * 2 + 2)))

    def stall_output(self) -> None:
        """Hold ready low from the next cycle on (until the next set_traffic/set_pattern)."""
        self.sink.clear_pause_generator()
        self.sink.pause = True

    @property
    def input_has_tlast(self) -> bool:
        return self.in_check.tlast is not None

    def split_frames(self, words: list[int]) -> list[list[int]]:
        """`words` as the input frames the source sends: frames of in_words_per_frame words where the input
        has TLAST (a partial last frame as a frame of its own), else one frame."""
        wpf = self.in_check.words_per_frame
        if not self.input_has_tlast or not wpf:
            return [list(words)]
        return [list(words[k:k + wpf]) for k in range(0, len(words), wpf)]

    async def send(self, words: list[int]) -> None:
        """Queue `words` on the input, back to back; where the input has TLAST, on every frame's last word."""
        await self.send_frames(self.split_frames(words))

    async def send_frames(self, frames: list[list[int]]) -> None:
        """Queue frames of any length back to back, TLAST (if the input has it) on each one's last word."""
        for frame in frames:
            if frame:
                await self.source.send(AxiStreamFrame(tdata=list(frame)))

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
                                 f"output frames received; {self.protocol_summary()}") from None
        return frames

    async def receive_words(self, n_words: int, timeout_cycles: int) -> list[int]:
        frames = await self.receive_frames(n_words, timeout_cycles)
        assert all(len(f) == 1 for f in frames), "a stream without TLAST returned a multi-word frame"
        return [f[0] for f in frames]

    def protocol_summary(self) -> str:
        try:
            check_all([self.in_check, self.out_check], limit=3)
        except AssertionError as error:
            return str(error)
        return "no protocol violation so far"

    async def drain(self, cycles: int = 40) -> list[int]:
        """Let the output run free for `cycles` and return any words that still arrive (should be none)."""
        self._set_pauses(self.sink, None)
        await ClockCycles(self.clock, cycles)
        extra: list[int] = []
        while not self.sink.empty():
            extra.extend(self.sink.recv_nowait().tdata)
        return extra

    def check_protocol(self, in_words: Optional[int] = None, out_words: Optional[int] = None) -> None:
        """Raise if either edge broke the protocol, or (given) the word counts since reset are off."""
        check_all([(self.in_check, in_words), (self.out_check, out_words)])

    async def finish(self, in_words: int, out_words: int, drain_cycles: int = 40) -> None:
        """After the expected output arrived: drain, then no extra word and every protocol rule held."""
        extra = await self.drain(drain_cycles)
        self.check_protocol(in_words, out_words)
        assert not extra, f"{len(extra)} output words more than the {out_words} expected: " \
                          f"{[hex(w) for w in extra[:4]]}"

    def cycles(self) -> int:
        """Cycles from the first input transfer to the last output transfer, both included."""
        return self.out_cycles[-1] - self.in_cycles[0] + 1

    def _inside_frame(self, where: str, relaxed: bool) -> bool:
        """The input edge, the output edge or both (`where`) inside a frame; `relaxed`: either edge.
        For one-word frames "inside" means a frame has entered the DUT and not yet left it."""
        in_wpf = self.in_check.words_per_frame or 1
        out_wpf = self.out_check.words_per_frame or 1
        n_in, n_out = self.in_check.words, self.out_check.words
        in_flight = -(-n_in // in_wpf) > n_out // out_wpf
        in_mid = n_in % in_wpf != 0 if in_wpf > 1 else in_flight
        out_mid = n_out % out_wpf != 0 if out_wpf > 1 else (n_out > 0 and in_flight)
        if relaxed:
            return in_mid or out_mid
        return {"input": in_mid, "output": out_mid, "both": in_mid and out_mid}[where]

    async def reset_mid_frame(self, words: list[int], *, seed: int = 0, where: str = "both",
                              reset_cycles: int = 3, max_cycles: int = 3000) -> ResetReport:
        """Stream `words` (a stream that ends inside a frame) and reset the DUT in the middle of it.

        After a first, idle reset the output is held (ready low) while the input runs until it is
        accepted or blocked, then released under 50 % random back-pressure until the input edge, the output edge or both
        (`where`: "input", "output", "both"; after a while either will do) are inside a frame and
        still are once the output is held again, and the reset asserted for `reset_cycles` cycles.
        ("input" and "output" reach different states: an MVTU, say, reads its input only in the first
        neuron fold, so a reset inside an input frame never finds it in a later fold.)
        What the source still holds is dropped. Returns where the reset struck and the whole frames
        the sink received before it (its queue is emptied; the sink drops a partial frame itself).
        Where the input has TLAST, the cut frame at the end carries TLAST on its last word (a source
        cannot leave it off), and the input checker is told to expect that short frame.
        """
        in_wpf = self.in_check.words_per_frame or 1
        out_wpf = self.out_check.words_per_frame or 1
        self._set_pauses(self.source, None)
        self.stall_output()
        await self.do_reset()  # a clean start, so the counts below are this stream's
        frames = self.split_frames(words)
        if self.input_has_tlast:
            self.in_check.expect_frame_lengths([len(f) for f in frames])
        for frame in frames:
            self.source.send_nowait(AxiStreamFrame(tdata=frame))
        idle = 0
        while self.in_check.words < len(words) and idle < 2 * in_wpf + 40:
            before = self.in_check.words
            await RisingEdge(self.clock)
            idle = 0 if self.in_check.words != before else idle + 1

        # ready reacts to the sink's pause flag two cycles late, so stall first, then look again
        rng = random.Random(seed)
        self.sink.set_pause_generator(pauses(rng, 0.5))
        for waited in range(max_cycles):
            await RisingEdge(self.clock)
            relaxed = waited > max_cycles // 3
            if self._inside_frame(where, relaxed):
                self.stall_output()
                await ClockCycles(self.clock, 3)
                if self._inside_frame(where, relaxed):
                    break
                self.sink.set_pause_generator(pauses(rng, 0.5))
        else:
            self.stall_output()
            await ClockCycles(self.clock, 3)
        n_in, n_out = self.in_check.words, self.out_check.words
        received = []
        while not self.sink.empty():
            received.append(list(self.sink.recv_nowait().tdata))
        if self.input_has_tlast and self.in_check.words_per_frame:
            # the cut frame went in as a short frame (TLAST on its last word): its output, if it came out
            # before the reset, is the framer's garbage frame, not one to compare
            received = received[:len(words) // in_wpf]

        self.reset.value = int(self.reset_active_level)
        await ClockCycles(self.clock, reset_cycles)
        self.source.clear()
        self.sink.clear()
        self.reset.value = int(not self.reset_active_level)
        await ClockCycles(self.clock, 2)
        report = ResetReport(n_in, n_out, received, in_wpf, out_wpf, where)
        self.dut._log.info("reset mid-frame: %s", report)
        return report


def compare_words(got: list[int], expected: list[int], describe=lambda index: f"word {index}") -> None:
    """Assert equal word lists, naming the first difference (via `describe(index)`) in hex."""
    assert len(got) == len(expected), f"got {len(got)} words, expected {len(expected)}"
    for index, (g, e) in enumerate(zip(got, expected)):
        assert g == e, f"{describe(index)}: got {g:#x}, expected {e:#x}"


# --- test bodies of the benches that check a core word by word against its numpy reference ---------
# A bench describes its DUT by a case object (`ReferenceCase`) and draws its own items: vectors, pixels
# or frames, one input frame and one output frame each (the checkers' words_per_frame).


class ReferenceCase(Protocol):
    """What the shared test bodies ask of a bench's case: the DUT's parameters, read back."""

    def input_words(self, x) -> list[int]: ...

    def expected_words(self, x) -> list[int]: ...

    def describe(self, word_index: int) -> str: ...

    def timeout(self, n_items: int) -> int: ...

    def tb(self, dut) -> StreamTB: ...


def _pattern_timeout(tb: StreamTB, case: ReferenceCase, spec: str, n_items: int) -> int:
    """`pattern_timeout` for `n_items` items, each one input frame and one output frame."""
    words_per_item = tb.in_check.words_per_frame + tb.out_check.words_per_frame
    return pattern_timeout(spec, n_items * words_per_item, case.timeout(n_items))


async def stream_and_compare(tb: StreamTB, case: ReferenceCase, x, timeout: int) -> None:
    """Send the items x, compare every output word, then check the protocol and the word counts."""
    expected = case.expected_words(x)
    words = case.input_words(x)
    await tb.send(words)
    got = await tb.receive_words(len(expected), timeout)
    compare_words(got, expected, case.describe)
    await tb.finish(len(words), len(expected))


async def run_with_traffic(dut, case: ReferenceCase, x, seed: int, p_gap: float, p_stall: float) -> StreamTB:
    """A new test bench with random input gaps and output stalls: reset, then `stream_and_compare` x."""
    tb = case.tb(dut)
    tb.set_traffic(seed, p_gap, p_stall)
    await tb.do_reset()
    await stream_and_compare(tb, case, x, case.timeout(len(x)))
    return tb


async def run_pause_patterns(dut, case: ReferenceCase, draw: Callable, n_items: int, specs, seed: int,
                             item_name: str) -> None:
    """Each pause pattern spec in turn, reset between: `n_items` items from `draw(n, seed)` stream through."""
    tb = case.tb(dut)
    for k, spec in enumerate(specs):
        tb.set_pattern(spec, seed + k)
        await tb.do_reset()
        x = draw(n_items, seed + 10 + k)
        await stream_and_compare(tb, case, x, _pattern_timeout(tb, case, spec, n_items))
        dut._log.info("pattern %s: %d %s passed", spec, n_items, item_name)


def check_words_before_reset(tb: StreamTB, case: ReferenceCase, x, report: ResetReport, item_name: str) -> None:
    """After `StreamTB.reset_mid_frame` streamed a prefix of x's words: the reset struck inside an item,
    the output words delivered before it are a correct prefix, and no protocol rule broke."""
    assert report.mid_frame, f"the reset did not hit a {item_name}: {report}"
    before = [w for frame in report.out_frames_received for w in frame]
    compare_words(before, case.expected_words(x)[:len(before)], lambda i: f"before the reset, {case.describe(i)}")
    tb.check_protocol()


async def recover_after_reset(tb: StreamTB, case: ReferenceCase, x, seed: int) -> None:
    """After a reset: the items x come out right under 50 % random traffic (no state survived)."""
    tb.set_pattern("random50", seed)
    await stream_and_compare(tb, case, x, _pattern_timeout(tb, case, "random50", len(x)))
