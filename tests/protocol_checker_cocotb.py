"""cocotb tests for the stream protocol checker on tests/data/verilog/proto_dut.v (run by test_protocol_checker.py).

Each test sets the DUT's `fault` input, drives traffic through the usual `StreamTB` and asserts that the
checker reports exactly the broken rules (and nothing on the edge that is fine). A cocotb test here
passes when the checker behaved: it fails when a violation went unnoticed or a correct edge was flagged.
"""
from __future__ import annotations

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotb.types import LogicArray

from sim.benches.protocol import StreamProtocolChecker
from sim.benches.stream_tb import CLOCK_NS, DEFAULT_PATTERN_SPECS, StreamTB

WPF = 4  # proto_dut's frame: TLAST on every 4th word


def _words(n: int, seed: int = 0) -> list[int]:
    return [(seed * 37 + 5 * k + 1) & 0xFF for k in range(n)]


async def _tb(dut, fault: int, pattern: str = "random50", seed: int = 1) -> StreamTB:
    dut.fault.value = fault
    tb = StreamTB.axis(dut, in_words_per_frame=WPF, out_words_per_frame=WPF)
    tb.set_pattern(pattern, seed)
    await tb.do_reset()
    return tb


async def _traffic(tb: StreamTB, n: int = 16, seed: int = 0, max_cycles: int = 20000) -> list[int]:
    """Send n words, wait until all are accepted, then let the output run dry; return the output words."""
    await tb.send(_words(n, seed))
    for _ in range(max_cycles):
        if tb.in_check.words >= n:
            break
        await RisingEdge(tb.clock)
    return await tb.drain(40)


def _expect(checker: StreamProtocolChecker, rules: set, expected_words=None, who: str = "") -> None:
    """The checker saw exactly `rules` broken, says so in check(), and names `who` broke them."""
    broken = {v.rule for v in checker.problems(expected_words)}
    assert broken == rules, f"{checker.name}: rules broken {sorted(broken)}, expected {sorted(rules)}: " \
                            f"{[str(v) for v in checker.problems(expected_words)[:4]]}"
    if not rules:
        checker.check(expected_words)
        return
    try:
        checker.check(expected_words)
    except AssertionError as error:
        text = str(error)
        assert "stream protocol violation" in text and any(f"[{r}]" in text for r in rules), text
        if who:
            assert who in text, f"the report does not blame the {who}: {text}"
    else:
        raise AssertionError(f"{checker.name}: check() passed despite {sorted(rules)}")


@cocotb.test()
async def correct_dut_passes(dut):
    """No violation under every pause pattern, nor around a mid-frame reset; the counts are exact."""
    tb = await _tb(dut, 0)
    for k, spec in enumerate(DEFAULT_PATTERN_SPECS):
        tb.set_pattern(spec, k)
        await tb.do_reset()
        got = await _traffic(tb, 16, seed=k)
        tb.check_protocol(16, 16)
        assert got == _words(16, k), f"{spec}: wrong words {got}"
    report = await tb.reset_mid_frame(_words(14, 9), seed=3)
    assert report.mid_frame, str(report)
    tb.set_pattern("random50", 5)
    assert await _traffic(tb, 16, seed=4) == _words(16, 4)
    tb.check_protocol(16, 16)
    assert tb.out_check.resets >= len(DEFAULT_PATTERN_SPECS) + 1


@cocotb.test()
async def valid_drop(dut):
    tb = await _tb(dut, 1, "always_ready/long_stalls")
    await _traffic(tb)
    _expect(tb.out_check, {"valid-drop"}, 16, who="DUT bug")
    _expect(tb.in_check, set(), 16)


@cocotb.test()
async def payload_change_under_stall(dut):
    tb = await _tb(dut, 2, "always_ready/long_stalls")
    await _traffic(tb)
    _expect(tb.out_check, {"payload-change"}, 16, who="DUT bug")
    _expect(tb.in_check, set(), 16)


class _FourStateView:
    """A stand-in for a payload handle that reads as all X while `poison` is 1 (Verilator is two-state)."""

    def __init__(self, handle, poison):
        self.handle, self.poison = handle, poison

    @property
    def value(self):
        if str(self.poison.value) == "1":
            return LogicArray("X" * len(self.handle))
        return self.handle.value


@cocotb.test()
async def x_on_output(dut):
    dut.fault.value = 3
    view = StreamProtocolChecker(dut.ap_clk, dut.m_axis_tvalid, dut.m_axis_tready,
                                 _FourStateView(dut.m_axis_tdata, dut.m_axis_poison), name="m_axis (4-state view)",
                                 tlast=dut.m_axis_tlast, reset=dut.ap_rst_n, reset_active_level=False,
                                 words_per_frame=WPF)
    tb = await _tb(dut, 3)
    await _traffic(tb)
    _expect(view, {"x-z"}, 16, who="DUT drives it")
    assert sum(v.rule == "x-z" for v in view.violations) >= 4, "word 2 of each of the 4 frames is X"
    _expect(tb.out_check, set(), 16)  # what Verilator itself shows: no X


@cocotb.test()
async def wrong_tlast(dut):
    tb = await _tb(dut, 4)
    await _traffic(tb)
    _expect(tb.out_check, {"tlast"}, 16)
    assert tb.out_check.n_violations == 8, "TLAST early and then missing, in each of 4 frames"


@cocotb.test()
async def extra_word(dut):
    tb = await _tb(dut, 5)
    await _traffic(tb)
    assert tb.out_check.words == 17
    _expect(tb.out_check, {"tlast", "count"}, 16)
    assert any("1 more than the 16 expected" in v.message for v in tb.out_check.end_violations(16))


@cocotb.test()
async def missing_word(dut):
    tb = await _tb(dut, 6)
    await _traffic(tb)
    assert tb.out_check.words == 15
    _expect(tb.out_check, {"tlast", "count"}, 16)
    assert any("1 fewer than the 16 expected" in v.message for v in tb.out_check.end_violations(16))
    assert any("last frame incomplete: 3 of 4" in v.message for v in tb.out_check.end_violations(16))


@cocotb.test()
async def reset_keeps_tlast_counter(dut):
    """A DUT whose TLAST counter survives reset: the clean frames after a mid-frame reset show it."""
    tb = await _tb(dut, 7)
    report = await tb.reset_mid_frame(_words(14, 9), seed=3)
    assert report.in_words % WPF != 0, f"the reset must cut an input frame: {report}"
    _expect(tb.out_check, set())  # fine up to the reset
    tb.set_pattern("random50", 5)
    await _traffic(tb)
    _expect(tb.out_check, {"tlast"}, 16)


async def _manual_driver(dut):
    """Clock, reset and a checker on s_axis, with the output held (so the DUT stalls its input)."""
    dut.fault.value = 0
    cocotb.start_soon(Clock(dut.ap_clk, CLOCK_NS, unit="ns").start())
    dut.m_axis_tready.value = 0
    dut.s_axis_tvalid.value = 0
    dut.s_axis_tdata.value = 0
    check = StreamProtocolChecker(dut.ap_clk, dut.s_axis_tvalid, dut.s_axis_tready, dut.s_axis_tdata,
                                  name="s_axis", reset=dut.ap_rst_n, reset_active_level=False, dut_output=False)
    dut.ap_rst_n.value = 0
    await ClockCycles(dut.ap_clk, 3)
    dut.ap_rst_n.value = 1
    await ClockCycles(dut.ap_clk, 2)
    dut.s_axis_tvalid.value = 1
    dut.s_axis_tdata.value = 0x11
    await RisingEdge(dut.ap_clk)       # accepted: the output register was empty
    dut.s_axis_tdata.value = 0x22
    await ClockCycles(dut.ap_clk, 2)   # offered, not accepted: the output register is full
    assert check.words == 1 and not check.violations, [str(v) for v in check.violations]
    return check


@cocotb.test()
async def driver_drops_valid(dut):
    check = await _manual_driver(dut)
    dut.s_axis_tvalid.value = 0
    await ClockCycles(dut.ap_clk, 2)
    _expect(check, {"valid-drop"}, who="testbench bug")


@cocotb.test()
async def driver_changes_payload(dut):
    check = await _manual_driver(dut)
    dut.s_axis_tdata.value = 0x33
    await ClockCycles(dut.ap_clk, 2)
    _expect(check, {"payload-change"}, who="testbench bug")
