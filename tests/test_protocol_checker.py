"""The stream protocol checker (sim/benches/protocol.py) can fail: each rule against a DUT that breaks it.

tests/data/verilog/proto_dut.v is one small AXI-Stream stage whose `fault` input selects the violation
(dropped valid, payload changed under back-pressure, X on the payload, misplaced TLAST, an extra and a
missing word, a TLAST counter that survives reset); tests/protocol_checker_cocotb.py drives it through the
usual `StreamTB` and asserts the checker reports exactly the broken rules, and nothing for the correct
DUT under every pause pattern and a mid-frame reset. One Verilator build and one simulation serve all of
them; the pytest cases below read the result of each cocotb test. Verilator is two-state, so the X case
reads the payload through a stand-in that shows X where a four-state simulator would; the checker's own
X/Z logic is also tested directly below, on plain values.
"""
from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from sim.benches.protocol import StreamProtocolChecker, check_all
from sim.cocotb_runner import SimulationFailed, run_cocotb

REPO = Path(__file__).resolve().parents[1]
PROTO_V = REPO / "tests" / "data" / "verilog" / "proto_dut.v"

COCOTB_TESTS = ["correct_dut_passes", "valid_drop", "payload_change_under_stall", "x_on_output", "wrong_tlast",
                "extra_word", "missing_word", "reset_keeps_tlast_counter", "driver_drops_valid",
                "driver_changes_payload"]


@pytest.fixture(scope="module")
def cocotb_results(tmp_path_factory) -> dict[str, str | None]:
    """Build proto_dut once and run every cocotb test: test name -> None (passed) or the failure text."""
    build_dir = tmp_path_factory.mktemp("proto_dut")
    failure = None
    try:
        run_cocotb([PROTO_V], "proto_dut", "protocol_checker_cocotb", build_dir,
                   runtime_cache=REPO / "build" / ".verilator_runtime")
    except SimulationFailed as error:
        failure = str(error)  # each case below reports its own failure from the results file
    results_xml = build_dir / "results.xml"
    if not results_xml.exists():
        pytest.fail(f"no results from the simulation: {failure}")
    results: dict[str, str | None] = {}
    for case in ElementTree.parse(results_xml).getroot().iter("testcase"):
        failures = case.findall("failure") + case.findall("error")
        results[case.get("name")] = (failures[0].get("message") or failures[0].text or "failed") if failures else None
    return results


def test_every_cocotb_case_ran(cocotb_results):
    assert sorted(cocotb_results) == sorted(COCOTB_TESTS)


@pytest.mark.parametrize("name", COCOTB_TESTS)
def test_checker_on_proto_dut(cocotb_results, name):
    assert name in cocotb_results, f"cocotb test {name} did not run"
    assert cocotb_results[name] is None, f"{name}: {cocotb_results[name]}"


# --- the checker's logic on plain sampled values (no simulator) ---------------------------------------

def _checker(**kwargs) -> StreamProtocolChecker:
    kwargs.setdefault("reset", "reset handle")
    return StreamProtocolChecker(None, None, None, None, name=kwargs.pop("name", "o"), start=False, **kwargs)


def _run(checker, samples):
    """samples: (reset, valid, ready, payload, tlast) per cycle."""
    for sample in samples:
        checker.sample(*sample)
    return checker


def test_x_and_z_after_reset_are_reported_and_blamed():
    out = _run(_checker(dut_output=True, words_per_frame=2), [
        (True, "x", "x", None, "x"),                 # in reset: anything goes
        (False, "0", "1", None, "0"),
        (False, "1", "1", "01x0", "0"),              # payload with X while valid
        (False, "z", "1", "0000", "0"),              # valid Z
        (False, "0", "x", None, "0"),                # ready X: the testbench drives it on an output edge
        (False, "0", "1", None, "z"),                # tlast Z (checked even without valid)
        (False, "0", "1", "xxxx", "0"),              # payload X while valid is low: fine
    ])
    messages = [str(v) for v in out.violations]
    assert [v.rule for v in out.violations] == ["x-z"] * 4, messages
    assert [v.cycle for v in out.violations] == [2, 3, 4, 5]
    assert "payload is 01x0 while valid (DUT drives it)" in messages[0]
    assert "valid is z (DUT drives it)" in messages[1]
    assert "ready is x (testbench drives it)" in messages[2]
    assert "tlast is z" in messages[3]

    inp = _run(_checker(dut_output=False), [(False, "0", "1", None), (True, "0", "0", None), (False, "1", "z", "01")])
    assert [str(v).split(": ", 1)[1] for v in inp.violations] == ["[x-z] ready is z (DUT drives it)"]


def test_nothing_is_checked_before_the_first_reset():
    c = _run(_checker(), [(False, "x", "x", "xx"), (False, "1", "0", "01"), (False, "0", "0", None),
                          (True, "0", "0", None), (False, "0", "0", None)])
    assert not c.violations and c.armed and c.resets == 1
    unknown = _run(_checker(), [(None, "1", "0", "01"), (False, "0", "0", None)])  # reset X/Z counts as active
    assert not unknown.violations and unknown.armed and unknown.resets == 1
    no_reset = _run(_checker(reset=None), [(None, "x", "1", None)])  # without a reset signal: from the start
    assert [v.rule for v in no_reset.violations] == ["x-z"]


def test_stall_rules_and_reset_clears_an_offered_word():
    c = _run(_checker(), [
        (True, "0", "0", None), (False, "1", "0", "0101"), (False, "1", "0", "0101"),   # held: fine
        (False, "1", "0", "0110"),                                                     # changed
        (False, "0", "0", None),                                                       # dropped
        (False, "1", "0", "1111"), (True, "0", "0", None), (False, "0", "0", None),    # reset: forgiven
        (False, "1", "0", "0001"), (False, "1", "1", "0001"), (False, "0", "0", None),  # accepted, then idle
    ])
    assert [(v.cycle, v.rule) for v in c.violations] == [(3, "payload-change"), (4, "valid-drop")]
    assert "from 0x5 to 0x6" in c.violations[0].message and "offered since cycle 1" in c.violations[0].message
    assert "word 0x6 offered since cycle 3 was withdrawn (DUT bug)" in c.violations[1].message
    assert c.words == 1 and c.handshake_cycles == [9] and c.resets == 2


def test_tlast_change_under_stall():
    c = _run(_checker(words_per_frame=2), [(True, "0", "0", None, "0"), (False, "1", "0", "01", "0"),
                                          (False, "1", "0", "01", "1")])
    assert [v.rule for v in c.violations] == ["payload-change"] and "tlast changed" in c.violations[0].message


def test_tlast_and_counts_restart_after_reset():
    hs = lambda last: (False, "1", "1", "00", last)  # noqa: E731  one handshake
    c = _run(_checker(words_per_frame=3), [(True, "0", "0", None, "0"), hs("0"), hs("0"), hs("1"), hs("0"),
                                          (True, "0", "0", None, "0"),    # reset after word 0 of frame 1
                                          (False, "0", "0", None, "0"), hs("0"), hs("1"), hs("0"), hs("0")])
    assert c.interrupted == [(5, 1)]
    assert [(v.cycle, v.rule) for v in c.violations] == [(8, "tlast"), (9, "tlast")]
    assert "TLAST on word 1 of frame 0: the frame would end after 2 of 3 words" in c.violations[0].message
    assert "no TLAST on word 2, the last of frame 0" in c.violations[1].message
    assert c.words == 4 and c.frames == 1 and c.words_into_frame == 1
    ends = [v.message for v in c.end_violations(expected_words=3)]
    assert ends == ["4 words since reset, 1 more than the 3 expected",
                    "last frame incomplete: 1 of 3 words (frame 1, 4 words since reset)"]


def test_check_lists_the_first_violations_of_all_edges():
    a = _run(_checker(name="s_axis", dut_output=False, reset=None),
             [(False, "1", "0", "1"), (False, "0", "0", None)] * 4)
    b = _run(_checker(name="m_axis", reset=None), [(None, "1", "1", "1")])
    assert a.n_violations == 4
    with pytest.raises(AssertionError) as error:
        check_all([a, (b, 2)], limit=3)
    text = str(error.value)
    assert text.startswith("5 stream protocol violations: s_axis cycle 1: [valid-drop]") and "(and 2 more)" in text
    assert "testbench bug" in text and "m_axis at the end" not in text
    with pytest.raises(AssertionError, match=r"m_axis at the end: \[count\] 1 word since reset, 1 fewer than the 2 exp"):
        b.check(expected_words=2)
    b.check(expected_words=1)  # passes


def test_recording_is_capped_but_everything_is_counted():
    c = _run(_checker(reset=None, max_recorded=3), [(None, "1", "0", "1"), (None, "0", "0", None)] * 10)
    assert len(c.violations) == 3 and c.n_violations == 10
    with pytest.raises(AssertionError, match=r"^10 stream protocol violations"):
        c.check()
