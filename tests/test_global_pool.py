"""The global sum pool core (ip_cores/global_pool.py) in Amaranth's simulator: random frames through random input
gaps and output stalls, compared with each channel's sum over the frame computed here in plain numpy (then the
thresholds' count), never with the core's own reference; full rate and the stated latency when nothing stalls."""
from __future__ import annotations

import gc

import numpy as np
import pytest

from ip_cores.elements import ElementFormat, pack_words, unpack_words
from ip_cores.global_pool import GlobalSumPool, global_sum_pool_reference

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


@pytest.fixture(autouse=True)
def _collect_unused_cores():
    """Collect the cores a test made but never elaborated (the refused ones) while the filter above applies."""
    yield
    gc.collect()


def _run(core, words: list[int], want: int, p_gap: float, p_stall: float, seed: int, max_cycles: int = 20000):
    """Words into `core.i`, `want` words out of `core.o`; (outputs, cycles they left, cycles inputs were taken)."""
    from amaranth.sim import Simulator

    rng = np.random.default_rng(seed)
    got, out_times, in_times = [], [], []

    async def bench(ctx):
        sent, offer = 0, False
        for cycle in range(max_cycles):
            offer = sent < len(words) and (offer or rng.random() >= p_gap)  # held until taken (AXI)
            ctx.set(core.i.valid, int(offer))
            ctx.set(core.i.payload, int(words[sent]) if sent < len(words) else 0)
            ready = rng.random() >= p_stall
            ctx.set(core.o.ready, int(ready))
            if offer and ctx.get(core.i.ready):
                in_times.append(cycle)
                sent += 1
                offer = False
            if ready and ctx.get(core.o.valid):
                got.append(ctx.get(core.o.payload))
                out_times.append(cycle)
            await ctx.tick()
            if len(got) >= want:
                return
        raise AssertionError(f"stopped after {max_cycles} cycles with {len(got)} of {want} words (deadlock)")

    sim = Simulator(core)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got, out_times, in_times


CASES = [  # in format, channels, pixels, PE, thresholds per channel (0: the sums themselves)
    (ElementFormat.unsigned(4), 8, 9, 2, 3),    # 4 folds: the sums in a memory
    (ElementFormat.signed(3), 6, 5, 6, 7),      # one fold: the sums in registers
    (ElementFormat.unsigned(2), 4, 16, 1, 0),   # accumulators out
]


@pytest.mark.parametrize("fmt,channels,pixels,pe,n_t", CASES)
@pytest.mark.parametrize("p_gap,p_stall", [(0.0, 0.0), (0.3, 0.5)])
def test_global_sum_pool_matches_numpy(fmt, channels, pixels, pe, n_t, p_gap, p_stall):
    rng = np.random.default_rng(channels * pixels + pe)
    frames = 3
    x = rng.integers(fmt.min, fmt.max + 1, size=(frames, pixels, channels))
    x[0] = fmt.max  # the largest and smallest sums
    x[1] = fmt.min
    sums = x.sum(axis=1)  # (frames, C): the pool, by hand
    lo, hi = pixels * min(fmt.min, 0), pixels * max(fmt.max, 0)
    acc_width = int(max(abs(lo), hi + 1)).bit_length() + 1
    if n_t:
        thresholds = np.sort(rng.integers(lo, hi + 2, size=(channels, n_t)), axis=1)
        want = (sums[:, :, None] >= thresholds[None]).sum(axis=2) - 2
        out_fmt = ElementFormat.signed(max(2, int(n_t).bit_length() + 2))
        core = GlobalSumPool(fmt, channels, pixels, pe, acc_width, thresholds, out_fmt, out_offset=-2)
    else:
        thresholds, want, out_fmt = None, sums, ElementFormat.signed(acc_width)
        core = GlobalSumPool(fmt, channels, pixels, pe, acc_width)
    assert np.array_equal(global_sum_pool_reference(x.reshape(frames, -1), channels, thresholds, -2 if n_t else 0),
                          want)
    words = pack_words(x.reshape(-1), fmt, pe)
    out_words = frames * channels // pe
    got, out_times, in_times = _run(core, words, out_words, p_gap, p_stall, seed=pe)
    values = unpack_words(got, core.out_fmt, pe, frames * channels).reshape(frames, channels)
    assert np.array_equal(values, want)
    if p_gap == 0.0 and p_stall == 0.0:
        assert np.all(np.diff(in_times) == 1)  # one input word a cycle, never stalled
        cf = channels // pe
        last_pixel_words = [in_times[f * pixels * cf + (pixels - 1) * cf + k] for f in range(frames) for k in range(cf)]
        assert [t - s for t, s in zip(out_times, last_pixel_words)] == [core.latency] * out_words
        assert core.cycles_per_frame() == pixels * cf


def test_global_sum_pool_refuses_bad_parameters():
    with pytest.raises(ValueError, match="PE 3 must divide"):
        GlobalSumPool(ElementFormat.unsigned(4), 8, 4, 3, 10)
    with pytest.raises(ValueError, match="acc_width 5 cannot hold"):
        GlobalSumPool(ElementFormat.unsigned(4), 8, 4, 2, 5)
    with pytest.raises(ValueError, match="bipolar"):
        GlobalSumPool(ElementFormat.bipolar(), 8, 4, 2, 8)
