"""The compiled Verilator harness (sim/harness.cpp, sim/verilator_harness.py) and the cocotb top bench
(sim/benches/top_bench.py, sim/top_bench_runner.py), on hand-written tops in tests/data/verilog/.

acc_top.v: `acc_core` sums K input words (weighted bytes) into one output word, through a 2-deep output
FIFO, with TLAST on every F-th output. Without back-pressure input word j is accepted in cycle j and
output word n leaves in cycle (n + 1) * K, which fixes the cycle figures checked below. These tops have
neither s_axis_tlast nor error (the harness then drives and watches neither).

A framed FIFO (`AxisDataflowTop` around one `StreamFIFO`, with the input framer) checks what the harness
adds for it: s_axis_tlast on every frame's last word, corrupted frames (`--drop-word`/`--extra-word`),
the cycle `error` rose, and DMA-side pacing (`--in-cycles-per-word`/`--out-cycles-per-word`).
"""
from __future__ import annotations

import random
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from ip_cores.axis_top import AxisDataflowTop, to_verilog
from ip_cores.input_framer import input_framer_reference
from ip_cores.stream_fifo import StreamFIFO
from sim.framing import corrupt_frames
from sim.top_bench_runner import run_top_bench
from sim.verilator_harness import (CompiledHarness, SimulationError, _ports_by_regex, _RuntimeCache, read_port_widths,
                                   read_top_ports)

DATA = Path(__file__).parent / "data" / "verilog"
ACC_V = DATA / "acc_top.v"
STALL_V = DATA / "stall_top.v"


@dataclass(frozen=True)
class AccTop:
    name: str
    in_w: int
    out_w: int
    k: int  # input words per output word
    f: int  # output words per frame (TLAST period)

    @property
    def in_per_frame(self) -> int:
        return self.k * self.f


WIDE = AccTop("acc_top_wide", 200, 72, 3, 4)
NARROW = AccTop("acc_top_narrow", 8, 24, 2, 3)
MID = AccTop("acc_top_mid", 48, 40, 1, 5)
ALL_TOPS = [WIDE, NARROW, MID]


def acc_model(top: AccTop, in_words: list[int]) -> tuple[list[int], list[bool]]:
    """Python reference of acc_core: output words and their TLAST bits."""
    sw = top.out_w - 16
    outs, lasts = [], []
    for n in range(len(in_words) // top.k):
        total = 0
        for w in in_words[n * top.k:(n + 1) * top.k]:
            total += sum((b + 1) * ((w >> (8 * b)) & 0xFF) for b in range(top.in_w // 8))
        outs.append(((n & 0xFFFF) << sw) | (total % (1 << sw)))
        lasts.append(n % top.f == top.f - 1)
    return outs, lasts


def random_words(top: AccTop, n_frames: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.getrandbits(top.in_w) for _ in range(n_frames * top.in_per_frame)]


@pytest.fixture(scope="module")
def build_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("harness")


@pytest.fixture(scope="module")
def runtime_cache() -> Path | None:
    return None  # the shared default (~/.cache/rtlgen/verilator-runtime): compiled once per machine


@pytest.fixture(scope="module")
def harnesses(build_root, runtime_cache) -> dict[str, CompiledHarness]:
    built = {}
    for top in ALL_TOPS:
        built[top.name] = CompiledHarness.build([ACC_V], top.name, build_root / top.name, runtime_cache=runtime_cache)
    return built


# ---------------------------------------------------------------------------------------------------


def test_port_widths_from_declarations_and_from_verilator():
    assert read_port_widths([ACC_V], "acc_top_wide") == (200, 72)  # ANSI ports
    assert read_port_widths([ACC_V], "acc_top_narrow") == (8, 24)  # Yosys-style non-ANSI ports
    assert read_port_widths([ACC_V], "acc_top_mid") == (48, 40)
    assert read_port_widths([STALL_V, ACC_V], "stall_top") == (32, 16)
    # acc_core's ranges are parameterised: the regex gives up and Verilator elaborates the defaults
    assert _ports_by_regex([ACC_V], "acc_core") is None
    assert read_port_widths([ACC_V], "acc_core") == (200, 72)
    with pytest.raises(SimulationError, match="nope"):
        read_port_widths([ACC_V], "nope")


@pytest.mark.parametrize("top", ALL_TOPS, ids=lambda t: t.name)
@pytest.mark.parametrize("p_in,p_out,seed", [(0.0, 0.0, 0), (0.5, 0.5, 1), (0.5, 0.5, 2), (0.0, 0.9, 3)])
def test_outputs_match_model(harnesses, top, p_in, p_out, seed):
    h = harnesses[top.name]
    assert (h.in_w, h.out_w) == (top.in_w, top.out_w)
    n_frames = 7
    in_words = random_words(top, n_frames, seed)
    want, want_last = acc_model(top, in_words)
    r = h.run(in_words, len(want), top.in_per_frame, top.f, p_in_gap=p_in, p_out_stall=p_out, seed=seed)
    assert r.out_words == want
    assert r.out_last == want_last
    assert r.in_words_accepted == len(in_words)
    assert len(r.frame_first_in_cycle) == len(r.frame_last_out_cycle) == n_frames
    if p_in or p_out:
        # gaps and stalls really happened: slower than the 1 input word a cycle of the free-running case
        assert r.total_cycles > len(in_words) + 1


def test_widest_values(harnesses):
    """All-ones words: every bit of the 200-bit VlWide input (200 % 32 = 8) and of the 72-bit output."""
    top = WIDE
    h = harnesses[top.name]
    in_words = [(1 << top.in_w) - 1] * top.in_per_frame + [1 << (top.in_w - 1)] * top.in_per_frame
    want, _ = acc_model(top, in_words)
    assert h.run(in_words, len(want), top.in_per_frame, top.f).out_words == want


@pytest.mark.parametrize("top", ALL_TOPS, ids=lambda t: t.name)
def test_cycle_figures_without_stalls(harnesses, top):
    h = harnesses[top.name]
    n_frames = 5
    in_words = random_words(top, n_frames, 7)
    r = h.run(in_words, n_frames * top.f, top.in_per_frame, top.f)
    kf = top.in_per_frame
    # input word j accepted in cycle j; output word n leaves in cycle (n + 1) * K
    assert r.frame_first_in_cycle == [f * kf for f in range(n_frames)]
    assert r.out_cycles == [(n + 1) * top.k for n in range(n_frames * top.f)]
    assert r.frame_last_out_cycle == [(f + 1) * kf for f in range(n_frames)]
    assert r.latency_cycles == kf + 1
    assert r.ii_cycles == kf
    assert r.total_cycles == n_frames * kf + 1


def test_watchdog_reports_a_design_that_never_answers(build_root, runtime_cache):
    h = CompiledHarness.build([STALL_V], "stall_top", build_root / "stall", runtime_cache=runtime_cache)
    with pytest.raises(SimulationError) as err:
        h.run(list(range(8)), 4, 2, 1, watchdog_cycles=500)
    # no output since cycle 0: the watchdog fires when 501 cycles have passed
    assert "deadlock/stall after cycle 501: 0 of 4 words (8 of 8 input beats accepted" in str(err.value)
    assert "\n" not in str(err.value)


def test_watchdog_reports_missing_output(harnesses):
    """One input frame but two frames of output expected: stuck after the 4 words of frame 0."""
    top = WIDE
    in_words = random_words(top, 1, 3)
    with pytest.raises(SimulationError, match=r"deadlock/stall after cycle 113: 4 of 8 words \(12 of 12 input beats"):
        harnesses[top.name].run(in_words, 2 * top.f, top.in_per_frame, top.f, watchdog_cycles=100)


def test_misplaced_tlast_is_an_error(harnesses):
    top = WIDE
    in_words = random_words(top, 2, 4)
    with pytest.raises(SimulationError, match=r"TLAST is 0 on output word 1 \(frame 0, word 1 of 2\), expected 1"):
        harnesses[top.name].run(in_words, 2 * top.f, top.in_per_frame, 2)


def test_bad_input_words(harnesses, tmp_path):
    h = harnesses[WIDE.name]
    with pytest.raises(ValueError, match="does not fit in 200 bits"):
        h.run([1 << 200] * 12, 4, 12, 4)
    # the executable checks its input file too
    for text, reason in [("12\nxyz\n", "in.hex:2: not a hex word"), (f"{1 << 200:x}\n", "at most 200 bits")]:
        (tmp_path / "in.hex").write_text(text)
        proc = subprocess.run([str(h.executable), "--in", str(tmp_path / "in.hex"), "--out", str(tmp_path / "o"),
                               "--n-out", "1"], capture_output=True, text=True)
        assert proc.returncode != 0 and proc.stderr.startswith("harness: ") and reason in proc.stderr


def test_build_cache(harnesses, build_root, runtime_cache, tmp_path):
    again = CompiledHarness.build([ACC_V], WIDE.name, build_root / WIDE.name, runtime_cache=runtime_cache)
    assert again.cached and again.build_seconds < 1.0
    assert again.executable == harnesses[WIDE.name].executable
    # the Verilator runtime objects went to the shared cache
    runtime = _RuntimeCache(runtime_cache, build_root / WIDE.name / "obj", "-O1")
    assert "verilated.o" in runtime.objects and all((runtime.dir / o).is_file() for o in runtime.objects)

    # a changed source rebuilds (only the model: the runtime library comes from the cache)
    changed = tmp_path / "acc_top.v"
    shutil.copy(ACC_V, changed)
    first = CompiledHarness.build([changed], NARROW.name, tmp_path / "b", runtime_cache=runtime_cache)
    assert not first.cached
    assert CompiledHarness.build([changed], NARROW.name, tmp_path / "b", runtime_cache=runtime_cache).cached
    changed.write_text(changed.read_text() + "\n// edited\n")
    rebuilt = CompiledHarness.build([changed], NARROW.name, tmp_path / "b", runtime_cache=runtime_cache)
    assert not rebuilt.cached
    in_words = random_words(NARROW, 2, 5)
    assert rebuilt.run(in_words, 2 * NARROW.f, NARROW.in_per_frame, NARROW.f).out_words == acc_model(NARROW, in_words)[0]


def test_build_error_is_one_line(build_root, runtime_cache, tmp_path):
    bad = tmp_path / "bad.v"
    bad.write_text(ACC_V.read_text().replace("assign m_axis_tlast  = q0[OUT_W];", "assign m_axis_tlast = q0[OUT_W]"))
    with pytest.raises(SimulationError) as err:
        CompiledHarness.build([bad], WIDE.name, tmp_path / "bad", runtime_cache=runtime_cache)
    message = str(err.value)
    assert "\n" not in message and "%Error" in message and "bad.v" in message
    with pytest.raises(SimulationError) as err:
        run_top_bench([bad], WIDE.name, tmp_path / "bad_bench", [0] * 12, [0] * 4, 12, 4)
    message = str(err.value)
    assert message.startswith("cocotb build of acc_top_wide failed: %Error") and "\n" not in message


def test_vcd_trace(build_root, runtime_cache, tmp_path):
    h = CompiledHarness.build([ACC_V], NARROW.name, build_root / "trace", trace="vcd", runtime_cache=runtime_cache)
    in_words = random_words(NARROW, 1, 6)
    wave = tmp_path / "wave.vcd"
    r = h.run(in_words, NARROW.f, NARROW.in_per_frame, NARROW.f, trace_path=wave)
    assert r.out_words == acc_model(NARROW, in_words)[0]
    assert "m_axis_tlast" in wave.read_text()


def test_cocotb_top_bench(build_root):
    top = WIDE
    in_words = random_words(top, 4, 8)
    want, _ = acc_model(top, in_words)
    bench_dir = build_root / "top_bench"
    args = dict(in_words_per_frame=top.in_per_frame, out_words_per_frame=top.f, seed=5,
                p_in_gap=0.5, p_out_stall=0.5)
    result = run_top_bench([ACC_V], top.name, bench_dir, in_words, want, **args)
    assert "top bench passed" in result.log_file.read_text()

    wrong = list(want)
    wrong[5] ^= 1 << 40
    with pytest.raises(SimulationError, match=r"output frame 1 word 1 \(word 5 overall\): got 0x[0-9a-f]+, expected"):
        run_top_bench([ACC_V], top.name, bench_dir, in_words, wrong, **args)

    # the design's TLAST every 4 words disagrees with frames of 2 words
    args["out_words_per_frame"] = 2
    with pytest.raises(SimulationError, match="output frame 0 has 4 words up to its TLAST, expected 2"):
        run_top_bench([ACC_V], top.name, bench_dir, in_words, want, **args)


# ---------------------------------------------------------------------------------------------------
# A framed FIFO: output = what the input framer hands the chain, TLAST every N words

FIFO_W, FIFO_N = 12, 4  # payload bits (TDATA 16), words a frame


@pytest.fixture(scope="module")
def framed_fifo(build_root, runtime_cache) -> CompiledHarness:
    top = AxisDataflowTop([StreamFIFO(FIFO_W, 8)], FIFO_W, FIFO_W, FIFO_N, in_words_per_frame=FIFO_N)
    path = build_root / "framed_fifo.v"
    path.write_text(to_verilog(top, "framed_fifo"))
    return CompiledHarness.build([path], "framed_fifo", build_root / "framed_fifo", runtime_cache=runtime_cache)


def fifo_words(n_frames: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.getrandbits(FIFO_W) | 1 for _ in range(n_frames * FIFO_N)]  # never 0, so padding shows


def test_optional_ports_are_found(framed_fifo, build_root):
    assert (framed_fifo.has_tlast, framed_fifo.has_error) == (True, True)
    assert (framed_fifo.in_w, framed_fifo.out_w) == (16, 16)
    ports = read_top_ports([ACC_V], WIDE.name)
    assert (ports.has_tlast, ports.has_error) == (False, False)


@pytest.mark.parametrize("p_in,p_out,seed", [(0.0, 0.0, 1), (0.5, 0.5, 2)])
def test_well_formed_frames_keep_error_low(framed_fifo, p_in, p_out, seed):
    words = fifo_words(6, seed)
    r = framed_fifo.run(words, len(words), FIFO_N, FIFO_N, p_in_gap=p_in, p_out_stall=p_out, seed=seed)
    assert r.out_words == words and not r.error_raised and r.error_cycle is None
    assert r.in_beats == r.in_words_accepted == len(words)


@pytest.mark.parametrize("kind,frame,word", [("drop", 1, 2), ("drop", 2, 0), ("drop", 0, 3), ("extra", 1, 0),
                                             ("extra", 3, 3), ("extra", 2, 1)])
@pytest.mark.parametrize("p_in,p_out,seed", [(0.0, 0.0, 3), (0.4, 0.6, 4)])
def test_corrupted_frame_is_realigned(framed_fifo, kind, frame, word, p_in, p_out, seed):
    """The harness sends the damaged frame `sim.framing.corrupt_frames` describes; every frame still gives one
    output frame (the framer's view of it), and error rises at the edge that accepts the revealing beat."""
    words = fifo_words(5, seed)
    drops, extras = ([(frame, word)], []) if kind == "drop" else ([], [(frame, word)])
    sent = corrupt_frames(words, FIFO_N, drops, extras)
    seen, bad = input_framer_reference(sent, FIFO_N)
    assert bad == [frame]
    r = framed_fifo.run(words, len(words), FIFO_N, FIFO_N, p_in_gap=p_in, p_out_stall=p_out, seed=seed,
                        drop_words=drops, extra_words=extras)
    assert r.out_words == [w for f in seen for w in f]
    assert r.in_beats == sum(len(f) for f in sent)
    reveal = sum(len(f) for f in sent[:frame]) + min(len(sent[frame]), FIFO_N) - 1
    assert r.error_raised and r.error_in_beats == reveal + 1
    if not p_in and not p_out:  # free-flowing: beat k is accepted in cycle k, except while the framer pads
        padding = FIFO_N - len(sent[frame]) if kind == "drop" else 0
        assert r.error_cycle == reveal
        assert r.frame_first_in_cycle[frame + 1] == sum(len(f) for f in sent[:frame + 1]) + padding


def test_corruption_options_are_checked(framed_fifo):
    words = fifo_words(2, 0)
    with pytest.raises(ValueError, match="no such word"):
        framed_fifo.run(words, len(words), FIFO_N, FIFO_N, drop_words=[(2, 0)])
    with pytest.raises(ValueError, match="at most one corruption a frame"):
        framed_fifo.run(words, len(words), FIFO_N, FIFO_N, drop_words=[(1, 0)], extra_words=[(1, 2)])


@pytest.mark.parametrize("k_in,k_out", [(1, 1), (3, 1), (1, 2), (4, 3)])
def test_dma_side_pacing(framed_fifo, k_in, k_out):
    """At most one input word every k_in cycles and one output word every k_out cycles; at k = 1 every cycle."""
    words = fifo_words(4, 9)
    r = framed_fifo.run(words, len(words), FIFO_N, FIFO_N, in_cycles_per_word=k_in, out_cycles_per_word=k_out)
    assert r.out_words == words
    gaps = [b - a for a, b in zip(r.out_cycles, r.out_cycles[1:])]
    assert min(gaps) == max(k_in, k_out)  # the FIFO passes one word a cycle: the slower side sets the pace
    assert r.frame_first_in_cycle[0] == 0
    if k_out == 1:
        assert r.frame_first_in_cycle == [f * FIFO_N * k_in for f in range(4)]
