"""A valid/ready stream protocol checker for cocotb benches: one monitor per stream edge.

    check = StreamProtocolChecker(dut.clk, dut.o__valid, dut.o__ready, dut.o__payload, name="o",
                                  reset=dut.rst, reset_active_level=True, words_per_frame=4)
    ...                                      # drive the DUT
    check.check(expected_words=12)           # raises AssertionError listing the first violations

At every rising edge of `clock` the monitor samples the edge's signals (the values just before the
edge, as cocotb reads them at `RisingEdge`) and checks:

  valid-drop      once valid is high it stays high until the handshake (valid & ready at an edge);
  payload-change  payload (and tlast) do not change while valid is high and ready low;
  x-z             no X/Z on valid, ready and tlast, nor on the payload while valid is high;
  tlast           with `tlast` and `words_per_frame`: tlast is high exactly on every
                  words_per_frame-th handshake (a short or long frame shows as a misplaced TLAST);
  count           (in `check()`) the words since the last reset form whole frames of
                  `words_per_frame` words and number `expected_words`.

A test that sends short or long frames on purpose (to test a DUT's framing) says so with
`expect_frame_lengths([...])`: frame f since the last reset then has that many words (later frames
`words_per_frame`), and the rules above hold for those lengths.

`dut_output=True` says the DUT drives valid/payload/tlast (an output edge) and the testbench drives
ready; `dut_output=False` is an input edge, where the same rules check the testbench's driver (a
source that drops valid is a testbench bug) and X/Z on ready is the DUT's. Each violation names
who broke the rule.

Reset: cycles in which `reset` is active (or X/Z) are not checked; a reset clears the word and frame
counts (so the first frame after a reset starts at word 0 again) and an offered, unaccepted word.
Checking starts at the first edge after the first reset is released (`reset=None`: at once), so
the X/Z rule only applies once reset has been released.

Verilator is a two-state simulator: X and Z read back as 0 or 1 there, so the x-z rule can only fire
on a four-state simulator (Icarus, ...). `sample()` is the checker's whole logic on plain strings;
tests/test_protocol_checker.py feeds it X/Z values directly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

import cocotb
from cocotb.triggers import RisingEdge

__all__ = ["StreamProtocolChecker", "Violation", "check_all", "RULES"]

RULES = ("valid-drop", "payload-change", "x-z", "tlast", "count")


@dataclass(frozen=True)
class Violation:
    """One broken rule: the clock cycle (edges since the checker started), the rule, what happened."""

    edge: str
    cycle: int
    rule: str
    message: str

    def __str__(self) -> str:
        where = f"cycle {self.cycle}" if self.cycle >= 0 else "at the end"
        return f"{self.edge} {where}: [{self.rule}] {self.message}"


def _show(bits: Optional[str]) -> str:
    """A sampled value for a message: hex when it is all 0/1, else the binary string with X/Z."""
    if bits is None:
        return "-"
    if bits and all(b in "01" for b in bits):
        return hex(int(bits, 2))
    return bits


def _resolved(bits: Optional[str]) -> bool:
    return bits is not None and all(b in "01" for b in bits)


class StreamProtocolChecker:
    """Monitors one valid/ready stream edge; see the module docstring for the rules.

    `clock`, `valid`, `ready`, `payload`, `tlast`, `reset` are cocotb handles (anything whose
    `.value` prints as a binary string). `words_per_frame` enables the tlast and per-frame count
    rules. The monitor starts at once (`start=False` to drive `sample()` by hand) and keeps the
    first `max_recorded` violations (all of them are counted).
    """

    def __init__(self, clock, valid, ready, payload, *, name: str, tlast=None, reset=None,
                 reset_active_level: bool = True, words_per_frame: Optional[int] = None,
                 dut_output: bool = True, max_recorded: int = 100, start: bool = True):
        if words_per_frame is not None and words_per_frame < 1:
            raise ValueError(f"words_per_frame must be positive, not {words_per_frame}")
        self.clock, self.valid, self.ready, self.payload, self.tlast = clock, valid, ready, payload, tlast
        self.reset, self.reset_active = reset, "1" if reset_active_level else "0"
        self.name, self.words_per_frame, self.dut_output = name, words_per_frame, dut_output
        self.max_recorded = max_recorded
        driver = "DUT" if dut_output else "testbench"
        self._sender, self._receiver = driver, "testbench" if dut_output else "DUT"

        self.violations: list[Violation] = []
        self.n_violations = 0
        self.cycle = 0                      # edges sampled so far
        self.armed = reset is None          # checking: after the first reset has been released
        self.resets = 0                     # reset periods seen (a reset of several cycles is one)
        self.words = 0                      # handshakes since the last reset
        self.handshake_cycles: list[int] = []  # their cycles
        self.interrupted: list[tuple[int, int]] = []  # (cycle, words into the frame) cut by a reset
        self.frame_lengths: list[int] = []  # lengths of the first frames since reset, if not words_per_frame
        self._frames = 0                    # whole frames since the last reset
        self._position = 0                  # words into the current frame
        self._in_reset = False
        self._pending: Optional[tuple[int, str, Optional[str]]] = None  # (since cycle, payload, tlast)
        self._task = cocotb.start_soon(self._run()) if start else None

    # --- results -----------------------------------------------------------------------------

    @property
    def frames(self) -> int:
        """Whole frames transferred since the last reset (words_per_frame None: words)."""
        return self._frames

    @property
    def words_into_frame(self) -> int:
        return self._position

    def frame_length(self, frame: int) -> int:
        """Words in frame `frame` (counted since the last reset)."""
        if frame < len(self.frame_lengths):
            return self.frame_lengths[frame]
        return self.words_per_frame or 1

    def expect_frame_lengths(self, lengths) -> None:
        """The next frames since the last reset have these lengths (on purpose); a reset forgets them."""
        lengths = [int(n) for n in lengths]
        if any(n < 1 for n in lengths):
            raise ValueError(f"frame lengths must be positive: {lengths}")
        self.frame_lengths = lengths

    def rules_broken(self) -> set[str]:
        return {v.rule for v in self.violations}

    def end_violations(self, expected_words: Optional[int] = None) -> list[Violation]:
        """The count rule as of now (it depends on what the test expected, so it is not recorded)."""
        found = []
        if expected_words is not None and self.words != expected_words:
            more = "more" if self.words > expected_words else "fewer"
            found.append(Violation(self.name, -1, "count",
                                   f"{self.words} word{'s' if self.words != 1 else ''} since reset, "
                                   f"{abs(self.words - expected_words)} {more} "
                                   f"than the {expected_words} expected"))
        if self.words_per_frame and self.words_into_frame:
            found.append(Violation(self.name, -1, "count",
                                   f"last frame incomplete: {self.words_into_frame} of "
                                   f"{self.frame_length(self.frames)} words (frame {self.frames}, {self.words} "
                                   f"words since reset)"))
        return found

    def problems(self, expected_words: Optional[int] = None) -> list[Violation]:
        return self.violations + self.end_violations(expected_words)

    def check(self, expected_words: Optional[int] = None, limit: int = 5) -> None:
        """Raise AssertionError naming the first `limit` violations, if there are any."""
        check_all([(self, expected_words)], limit=limit)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    # --- sampling ------------------------------------------------------------------------------

    async def _run(self) -> None:
        edge = RisingEdge(self.clock)
        while True:
            await edge
            reset = None
            if self.reset is not None:
                bit = str(self.reset.value)
                reset = (bit == self.reset_active) if bit in ("0", "1") else None
            valid = str(self.valid.value)
            ready = str(self.ready.value)
            # the payload only matters while valid (X/Z rule) or while a stalled word is held
            payload = str(self.payload.value) if (valid != "0" or self._pending) else None
            tlast = str(self.tlast.value) if self.tlast is not None else None
            self.sample(reset, valid, ready, payload, tlast)

    def _violate(self, rule: str, message: str) -> None:
        self.n_violations += 1
        if len(self.violations) < self.max_recorded:
            self.violations.append(Violation(self.name, self.cycle, rule, message))

    def sample(self, reset: Optional[bool], valid: str, ready: str, payload: Optional[str],
               tlast: Optional[str] = None) -> None:
        """One rising edge: `reset` True/False (None: X/Z, counted as active), the other signals as
        binary strings ('0', '1', 'x', 'z', ... as cocotb prints them); `payload` may be None while
        valid is low and no word is held."""
        try:
            self._sample(reset, valid, ready, payload, tlast)
        finally:
            self.cycle += 1

    def _sample(self, reset, valid, ready, payload, tlast) -> None:
        if self.reset is not None and reset is not False:   # in reset (or reset unknown)
            if not self._in_reset:
                self._in_reset = True
                self.resets += 1
                if self.armed and self.words_per_frame and self.words_into_frame:
                    self.interrupted.append((self.cycle, self.words_into_frame))
            self.words = 0
            self.handshake_cycles = []
            self._pending = None
            self._frames = self._position = 0
            self.frame_lengths = []
            return
        if self._in_reset:
            self._in_reset = False
            self.armed = True
        if not self.armed:
            return

        sender, receiver = self._sender, self._receiver
        if not _resolved(valid):
            self._violate("x-z", f"valid is {valid} ({sender} drives it)")
        if not _resolved(ready):
            self._violate("x-z", f"ready is {ready} ({receiver} drives it)")
        if tlast is not None and not _resolved(tlast):
            self._violate("x-z", f"tlast is {tlast} ({sender} drives it)")
        v, r = valid == "1", ready == "1"
        if v and not _resolved(payload):
            self._violate("x-z", f"payload is {_show(payload)} while valid ({sender} drives it)")

        held = self._pending
        if held is not None:
            since, old_payload, old_tlast = held
            if not v:
                self._violate("valid-drop", f"valid dropped before the handshake: word {_show(old_payload)} "
                                            f"offered since cycle {since} was withdrawn ({sender} bug)")
            elif payload != old_payload:
                self._violate("payload-change", f"payload changed from {_show(old_payload)} to {_show(payload)} "
                                                f"while valid and not ready (offered since cycle {since}, "
                                                f"{sender} bug)")
            elif tlast != old_tlast:
                self._violate("payload-change", f"tlast changed from {old_tlast} to {tlast} while valid and "
                                                f"not ready (offered since cycle {since}, {sender} bug)")

        if v and r:
            position, frame = self._position, self._frames
            length = self.frame_length(frame)
            expected_last = position == length - 1
            if self.words_per_frame and tlast is not None:
                if tlast == "1" and not expected_last:
                    self._violate("tlast", f"TLAST on word {position} of frame {frame}: the frame would end "
                                           f"after {position + 1} of {length} words")
                elif tlast == "0" and expected_last:
                    self._violate("tlast", f"no TLAST on word {position}, the last of frame {frame} "
                                           f"({length} words a frame)")
            if expected_last:
                self._frames, self._position = frame + 1, 0
            else:
                self._position = position + 1
            self.words += 1
            self.handshake_cycles.append(self.cycle)
            self._pending = None
        elif v:
            self._pending = held if held is not None and held[1] == payload and held[2] == tlast \
                else (self.cycle, payload, tlast)
        else:
            self._pending = None


def check_all(checks: Iterable, limit: int = 5) -> None:
    """Check several edges at once: `checks` holds checkers or (checker, expected_words) pairs.

    Raises one AssertionError with the total and the first `limit` violations over all edges.
    """
    problems: list[Violation] = []
    total = 0
    for item in checks:
        checker, expected = item if isinstance(item, tuple) else (item, None)
        end = checker.end_violations(expected)
        problems += checker.violations + end
        total += checker.n_violations + len(end)
    if total:
        problems.sort(key=lambda v: (v.cycle < 0, v.cycle))
        shown = "; ".join(str(v) for v in problems[:limit])
        more = f" (and {total - limit} more)" if total > limit else ""
        raise AssertionError(f"{total} stream protocol violation{'s' if total > 1 else ''}: {shown}{more}")
