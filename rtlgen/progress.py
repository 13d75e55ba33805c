"""Progress of long steps (Verilator compile and simulation, Yosys synthesis, the folding search).

On a terminal (stderr is a TTY) a step is one line redrawn in place: a bar when the step knows how far it is,
the seconds so far otherwise (a ticker thread redraws it twice a second). Not on a terminal (CI logs, pipes):
no redraws, one quiet line on stdout when a step that took a while ends. Only the command line turns this on
(`enable`); library calls and tests print nothing.
"""
from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager

QUIET_AFTER_SECONDS = 2.0  # not on a terminal, steps shorter than this leave no line
BAR = 24

_enabled = False


def enable(on: bool = True) -> None:
    global _enabled
    _enabled = on


class _Step:
    def __init__(self, label: str, total: int | None):
        self.label, self.total, self.done = label, total, 0
        self.start = time.monotonic()
        self.tty = sys.stderr.isatty()
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def update(self, done: int) -> None:
        self.done = done
        if self.tty:
            self._draw()

    def _draw(self) -> None:
        seconds = time.monotonic() - self.start
        if self.total:
            filled = min(BAR, BAR * self.done // self.total)
            status = f"[{'#' * filled}{'.' * (BAR - filled)}] {self.done}/{self.total}"
        else:
            status = f"{seconds:5.1f} s"
        with self._lock:
            sys.stderr.write(f"\r{self.label}: {status}\x1b[K")
            sys.stderr.flush()

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            self._draw()

    def __enter__(self) -> "_Step":
        if self.tty:
            self._draw()
            threading.Thread(target=self._tick, daemon=True).start()
        return self

    def __exit__(self, kind, value, tb) -> None:
        self._stop.set()
        seconds = time.monotonic() - self.start
        if self.tty:
            with self._lock:
                sys.stderr.write("\r\x1b[K")
                sys.stderr.flush()
        if kind is None and (self.tty or seconds >= QUIET_AFTER_SECONDS):
            print(f"{self.label}: {seconds:.1f} s", flush=True)


class _Silent:
    def update(self, done: int) -> None:
        pass


@contextmanager
def step(label: str, total: int | None = None):
    """`with step("compiling the Verilator model"): ...`; `.update(k)` when the step counts its work."""
    if not _enabled:
        yield _Silent()
        return
    with _Step(label, total) as s:
        yield s
