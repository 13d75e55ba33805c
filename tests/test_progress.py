"""Progress of long steps (rtlgen/progress.py): silent unless the command line enables it; on a terminal a line
redrawn in place on stderr (a bar when the step counts its work), elsewhere one quiet line at the end."""
from __future__ import annotations

import io
import sys

import pytest

from rtlgen import progress


@pytest.fixture
def enabled():
    progress.enable(True)
    yield
    progress.enable(False)


def test_library_calls_are_silent(capsys):
    with progress.step("compiling") as s:
        s.update(1)
    assert capsys.readouterr() == ("", "")


def test_not_a_terminal_one_line_when_the_step_took_a_while(enabled, capsys, monkeypatch):
    with progress.step("quick"):
        pass
    assert capsys.readouterr() == ("", "")
    monkeypatch.setattr(progress, "QUIET_AFTER_SECONDS", 0.0)
    with progress.step("Verilator: compiling the design"):
        pass
    out, err = capsys.readouterr()
    assert err == "" and out.startswith("Verilator: compiling the design: ") and out.endswith(" s\n")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_draws_a_bar_in_place(enabled, capsys, monkeypatch):
    fake = _Terminal()
    monkeypatch.setattr(sys, "stderr", fake)
    with progress.step("simulating", total=4) as s:
        s.update(2)
    drawn = fake.getvalue()
    assert "\rsimulating: [" + "#" * 12 + "." * 12 + "] 2/4" in drawn and drawn.endswith("\r\x1b[K")
    assert capsys.readouterr().out.startswith("simulating: ")
