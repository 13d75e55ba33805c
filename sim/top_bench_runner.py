"""Run the cocotb top-level bench (`sim/benches/top_bench.py`) on a generated top level with Verilator.

    run_top_bench([Path("out/ip/hdl/top.v")], "top", Path("build/top_bench"), in_words, expected_out_words,
                  in_words_per_frame=12, out_words_per_frame=4, seed=1, p_in_gap=0.5, p_out_stall=0.5)

Builds and runs through `sim.cocotb_runner.run_cocotb` (cocotb's Verilator runner with the Verilator
runtime objects cached) and raises `SimulationError` with a one-line message (the failing assertion,
or the build error) on any failure.
"""
from __future__ import annotations

import json
import re
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from sim.cocotb_runner import SimulationFailed, run_cocotb
from sim.verilator_harness import SimulationError, _one_line, _verilator_errors, default_runtime_cache

BENCH_MODULE = "sim.benches.top_bench"
DATA_ENV = "TOP_BENCH_DATA"


@dataclass
class TopBenchResult:
    seconds: float  # build + simulation
    results_xml: Path
    log_file: Path


def _failure_messages(results_xml: Path) -> list[str]:
    """The first line of the message of every failed test case in cocotb's JUnit results file."""
    try:
        root = ElementTree.parse(results_xml).getroot()
    except (OSError, ElementTree.ParseError):
        return []
    messages = []
    for case in root.iter("testcase"):
        for tag in ("failure", "error"):
            for node in case.findall(tag):
                text = (node.get("message") or node.text or tag).strip()
                text = text.splitlines()[0] if text else tag  # drop pytest's "assert a == b" rewrite
                messages.append(f"{case.get('name')}: {text}")
    return messages


def _log_reason(log_file: Path) -> str:
    """The most telling lines of a cocotb/simulator log when the results file says nothing."""
    try:
        lines = log_file.read_text(errors="replace").splitlines()
    except OSError:
        return "no log"
    picked = [l for l in lines if re.search(r"AssertionError|Error|FAIL", l)]
    return _one_line("; ".join(l.strip() for l in (picked or lines)[-3:]))


def run_top_bench(
    verilog_files: Sequence[Path],
    top: str,
    build_dir: Path,
    in_words: Sequence[int],
    expected_out_words: Sequence[int],
    in_words_per_frame: int,
    out_words_per_frame: int,
    seed: int = 0,
    p_in_gap: float = 0.0,
    p_out_stall: float = 0.0,
    *,
    timeout_cycles: int = 100000,
    waves: bool = False,
    opt: str = "-O0",
    pattern: str | None = None,
    reset_mid_frame: bool = True,
    framing_cases: Sequence[dict] = (),
) -> TopBenchResult:
    """Build and run the cocotb top bench; raise `SimulationError` unless it passes.

    `opt` is appended to the C++ flags of the model: `-O0` compiles fastest, and a cocotb run spends
    its time in Python, not in the model. `pattern` (a pause pattern of `sim/benches/stream_tb.py`,
    e.g. "long_stalls" or "always_ready/long_stalls") replaces `p_in_gap`/`p_out_stall`;
    `reset_mid_frame=False` skips the bench's mid-frame reset test (for repeated runs of one design).
    `framing_cases`: dicts {"drop": (F, J)} or {"extra": (F, J)} with "expected_out_words" (the whole output
    with that frame damaged), run by the bench's `framing_errors` test (see sim/benches/top_bench.py).
    Runs in the same `build_dir` reuse the Verilator build.
    """
    verilog_files = [Path(p).resolve() for p in verilog_files]
    build_dir = Path(build_dir).resolve()
    for path in verilog_files:
        if not path.is_file():
            raise SimulationError(f"Verilog file not found: {path}")
    build_dir.mkdir(parents=True, exist_ok=True)
    data_file = build_dir / "top_bench_data.json"
    data_file.write_text(json.dumps({
        "in_words": [format(int(w), "x") for w in in_words],
        "expected_out_words": [format(int(w), "x") for w in expected_out_words],
        "in_words_per_frame": int(in_words_per_frame),
        "out_words_per_frame": int(out_words_per_frame),
        "seed": int(seed),
        "p_in_gap": float(p_in_gap),
        "p_out_stall": float(p_out_stall),
        "timeout_cycles": int(timeout_cycles),
        "pattern": pattern,
        "reset_mid_frame": bool(reset_mid_frame),
        "framing_cases": [
            {**{key: [int(v) for v in case[key]] for key in ("drop", "extra") if key in case},
             "expected_out_words": [format(int(w), "x") for w in case["expected_out_words"]]}
            for case in framing_cases
        ],
    }))
    results_xml = build_dir / "results.xml"
    results_xml.unlink(missing_ok=True)
    build_log, test_log = build_dir / "build.log", build_dir / "test.log"
    start = time.monotonic()
    try:
        run_cocotb(
            verilog_files, top, BENCH_MODULE, build_dir,
            extra_env={DATA_ENV: str(data_file)},
            build_args=["--x-assign", "fast", "--x-initial", "fast", "-CFLAGS", opt],
            seed=seed,
            waves=waves,
            runtime_cache=default_runtime_cache() / "cocotb",
        )
    except SimulationFailed as err:
        messages = _failure_messages(results_xml)
        if messages:
            reason = "; ".join(messages)
        elif not results_xml.exists() and str(err).startswith("Verilator build"):
            text = build_log.read_text(errors="replace") if build_log.exists() else str(err)
            raise SimulationError(f"cocotb build of {top} failed: {_verilator_errors(text)} (log: {build_log})") \
                from None
        else:
            reason = _log_reason(test_log)
        raise SimulationError(f"top bench on {top} failed: {_one_line(reason)} (log: {test_log})") from None
    return TopBenchResult(time.monotonic() - start, results_xml, test_log)
