"""Fan-out and fan-in cores for residual networks (ip_cores/branches.py) in Amaranth's simulator, under random
input gaps and independent random output stalls: every word arrives, in order, on every branch; no deadlock;
full rate when nothing stalls."""
from __future__ import annotations

import numpy as np
import pytest

from ip_cores.branches import StreamDuplicator, StreamInterleave
from ip_cores.elements import ElementFormat, pack_words, unpack_words

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def _run(core, sources: dict, sinks: list, p_gap: float, p_stall: list[float], seed: int, max_cycles: int):
    """Drive `sources` (port -> words) and read `sinks` (ports) with random valid/ready; returns the words each
    sink got and the cycles at which they left."""
    from amaranth.sim import Simulator

    rng = np.random.default_rng(seed)
    want = sum(len(v) for v in sources.values()) if len(sinks) == 1 else len(next(iter(sources.values())))
    got = [[] for _ in sinks]
    times = [[] for _ in sinks]

    async def bench(ctx):
        sent = {port: 0 for port in sources}
        offers = {}
        for cycle in range(max_cycles):
            for port, words in sources.items():  # AXI-Stream: an offered word stays offered until it is taken
                offer = sent[port] < len(words) and (offers.get(port, False) or rng.random() >= p_gap)
                ctx.set(port.valid, int(offer))
                ctx.set(port.payload, int(words[sent[port]]) if sent[port] < len(words) else 0)
                offers[port] = offer
            readies = [rng.random() >= p for p in p_stall]
            for sink, ready in zip(sinks, readies):
                ctx.set(sink.ready, int(ready))
            for port, offer in list(offers.items()):
                if offer and ctx.get(port.ready):
                    sent[port] += 1
                    offers[port] = False
            for k, (sink, ready) in enumerate(zip(sinks, readies)):
                if ready and ctx.get(sink.valid):
                    got[k].append(ctx.get(sink.payload))
                    times[k].append(cycle)
            await ctx.tick()
            if all(len(g) >= (want if len(sinks) == 1 else len(next(iter(sources.values())))) for g in got):
                return
        raise AssertionError(f"stopped after {max_cycles} cycles: got {[len(g) for g in got]} (deadlock)")

    sim = Simulator(core)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got, times


@pytest.mark.parametrize("depths,p_gap,stalls", [([2, 2], 0.3, [0.4, 0.1]), ([2, 9], 0.0, [0.0, 0.8]),
                                                 ([4, 2, 3], 0.2, [0.5, 0.5, 0.2])])
def test_duplicator_every_branch_gets_every_word(depths, p_gap, stalls):
    words = list(np.random.default_rng(len(depths)).integers(0, 1 << 12, size=300))
    core = StreamDuplicator(12, depths)
    got, _ = _run(core, {core.i: words}, core.outputs, p_gap, stalls, seed=sum(depths), max_cycles=20000)
    for branch in got:
        assert branch == words


def test_duplicator_full_rate():
    words = list(range(200))
    core = StreamDuplicator(8, [2, 2])
    _, times = _run(core, {core.i: words}, core.outputs, 0.0, [0.0, 0.0], seed=0, max_cycles=1000)
    assert all(np.all(np.diff(t) == 1) for t in times) and times[0][0] == StreamDuplicator.latency


@pytest.mark.parametrize("p_gap,p_stall", [(0.0, 0.0), (0.4, 0.3), (0.1, 0.7)])
def test_interleave_alternates(p_gap, p_stall):
    rng = np.random.default_rng(5)
    a, b = list(rng.integers(0, 1 << 10, size=150)), list(rng.integers(0, 1 << 10, size=150))
    core = StreamInterleave(10, out_depth=3)
    got, times = _run(core, {core.a: a, core.b: b}, [core.o], p_gap, [p_stall], seed=7, max_cycles=20000)
    assert got[0] == [w for pair in zip(a, b) for w in pair]
    if p_gap == 0.0 and p_stall == 0.0:
        assert np.all(np.diff(times[0]) == 1)


def test_interleave_widens_each_input_to_the_output_format():
    """A signed INT3 long path and an unsigned UINT3 skip, 2 elements a word, into INT4 elements: every element
    keeps its value (expected values from the element codec, not from the core)."""
    a_fmt, b_fmt, out_fmt = ElementFormat.signed(3), ElementFormat.unsigned(3), ElementFormat.signed(4)
    rng = np.random.default_rng(11)
    a_vals, b_vals = rng.integers(-4, 4, size=(60, 2)), rng.integers(0, 8, size=(60, 2))
    a = pack_words(a_vals.reshape(-1), a_fmt, 2)
    b = pack_words(b_vals.reshape(-1), b_fmt, 2)
    core = StreamInterleave(8, widen=(a_fmt, b_fmt, out_fmt, 2))
    got, _ = _run(core, {core.a: a, core.b: b}, [core.o], 0.2, [0.3], seed=3, max_cycles=5000)
    values = unpack_words(got[0], out_fmt, 2, 240).reshape(60, 2, 2)
    assert np.array_equal(values[:, 0], a_vals) and np.array_equal(values[:, 1], b_vals)


def test_parameter_checks():
    with pytest.raises(ValueError, match="at least two branches"):
        StreamDuplicator(8, [4])
    with pytest.raises(ValueError, match="at least 2"):
        StreamDuplicator(8, [4, 1])
    with pytest.raises(ValueError, match="at least 2"):
        StreamInterleave(8, out_depth=1)
    with pytest.raises(ValueError, match="without changing their values"):
        StreamInterleave(8, widen=(ElementFormat.unsigned(4), ElementFormat.unsigned(4), ElementFormat.signed(4), 2))
