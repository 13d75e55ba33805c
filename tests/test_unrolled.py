"""Tests of the unrolled (latency-mode) pipeline: canonical signed digits, the rounded-shift fit of thresholds,
and `UnrolledNetwork` in Amaranth's simulator against sums and threshold counts written here.

Expected values never come from `ip_cores.unrolled`: the dense layers are recomputed with numpy (x @ W.T, then
the count of thresholds reached, or the requantization's rule spelled out with Fractions), and the fit is checked
against a brute force over every accumulator value of the range.
"""
from __future__ import annotations

import math
import random
from fractions import Fraction

import numpy as np
import pytest
from amaranth.sim import Simulator

from ip_cores.bit_heap import csd_digits
from ip_cores.elements import ElementFormat, pack_words, unpack_words
from ip_cores.requantize import ROUNDING_MODES, Requantization
from ip_cores.threshold_fit import fit_rounded_shift
from ip_cores.unrolled import DenseSpec, UnrolledNetwork

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def test_csd_digits_sum_to_the_value_with_no_adjacent_digits():
    for value in range(-600, 601):
        digits = csd_digits(value)
        assert sum(sign * (1 << shift) for sign, shift in digits) == value
        shifts = [shift for _, shift in digits]
        assert all(b - a >= 2 for a, b in zip(shifts, shifts[1:])), value
        assert len(digits) <= bin(abs(value)).count("1")
    assert csd_digits(7) == [(-1, 0), (1, 3)]
    assert csd_digits(0) == []


def _round(x: Fraction, mode: str) -> int:
    """qonnx's rounding of an exact rational, spelled out per mode."""
    fl = math.floor(x)
    frac = x - fl
    if mode in ("ROUND", "HALF_EVEN"):
        return fl + (frac > Fraction(1, 2) or (frac == Fraction(1, 2) and fl % 2 == 1))
    if mode == "HALF_UP":
        return fl + (frac > Fraction(1, 2) or (frac == Fraction(1, 2) and x >= 0))
    if mode == "HALF_DOWN":
        return fl + (frac > Fraction(1, 2) or (frac == Fraction(1, 2) and x < 0))
    if mode == "FLOOR":
        return fl
    if mode == "CEIL":
        return fl + (frac != 0)
    if mode == "UP":
        return fl + (frac != 0 and x > 0)
    return fl + (frac != 0 and x < 0)  # DOWN


def _quantizer_thresholds(bias: int, shift: int, mode: str, levels: int, lo: int, hi: int) -> np.ndarray:
    """The thresholds of `clip(R((a + bias) / 2**shift), 0, levels)` found by scanning a over [lo, hi]
    (thresholds no accumulator reaches sit just above the range)."""
    values = np.array([min(max(_round(Fraction(a + bias, 1 << shift), mode), 0), levels) for a in range(lo, hi + 1)])
    return np.array([lo + int(np.argmax(values >= k)) if (values >= k).any() else hi + 1
                     for k in range(1, levels + 1)])


@pytest.mark.parametrize("mode", [m for m in ROUNDING_MODES if m != "ROUND"])
def test_rounded_shift_fit_recovers_quantizers_in_every_mode(mode):
    rng = np.random.default_rng(5)
    lo, hi, levels = -700, 900, 15
    rows = [_quantizer_thresholds(int(rng.integers(-300, 300)), 5, mode, levels, lo, hi) for _ in range(3)]
    fit = fit_rounded_shift(np.array(rows), (lo, hi), 2)
    assert fit is not None
    rq, saturate = fit
    assert rq.shift == 5 and all(s is None for s in saturate)
    a = np.arange(lo, hi + 1)
    for c, t in enumerate(rows):
        expected = (a[:, None] >= t[None, :]).sum(axis=1) + 2
        got = [min(max(_round(Fraction(int(v) + rq.offset[c], 1 << rq.shift), rq.rounding), rq.lo), rq.hi) for v in a]
        assert np.array_equal(got, expected), (mode, c)


def test_rounded_shift_fit_refuses_non_uniform_thresholds():
    t = np.array([[0, 10, 30, 35, 70, 100, 101]])
    assert fit_rounded_shift(t, (-50, 150)) is None


def _dense(x: np.ndarray, spec: DenseSpec) -> np.ndarray:
    acc = np.asarray(x, dtype=np.int64) @ np.asarray(spec.weights, dtype=np.int64).T
    if spec.thresholds is None:
        return acc
    counts = (acc[..., None] >= spec.thresholds[None]).sum(axis=-1)
    return 2 * counts - 1 if spec.out_fmt.is_bipolar else counts + spec.out_offset


def _po2_thresholds(rng, mh: int, levels: int, shift: int) -> np.ndarray:
    """Half-even quantizer thresholds (steps alternating 2**shift -+ 1), each channel offset at random."""
    k = np.arange(1, levels + 1)
    base = k * (1 << shift) - (1 << (shift - 1)) + (k % 2 == 1)
    return base[None, :] - rng.integers(-60, 60, size=(mh, 1))


def _random_network(rng) -> list[DenseSpec]:
    s8, u3, s2 = ElementFormat.signed(8), ElementFormat.unsigned(3), ElementFormat.signed(2)
    return [
        DenseSpec(rng.integers(-9, 10, size=(6, 5)), s8, u3, _po2_thresholds(rng, 6, 7, 5), 0),  # rounded shift
        DenseSpec(rng.integers(-3, 4, size=(4, 6)), u3, s2, np.sort(rng.integers(-30, 30, size=(4, 3)), axis=1), -2),
        DenseSpec(rng.integers(-2, 3, size=(5, 4)), s2, ElementFormat.bipolar(),
                  rng.integers(-3, 3, size=(5, 1))),  # compare, bipolar out
        DenseSpec(rng.choice([-1, 1], size=(3, 5)), ElementFormat.bipolar(), ElementFormat.signed(4)),  # xnor-like
    ]


def _simulate(dut: UnrolledNetwork, words: list[int], ready_p: float, valid_p: float, seed: int):
    rnd = random.Random(seed)
    got, first_in, first_out = [], None, None
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def bench(ctx):
        nonlocal first_in, first_out
        k = cycle = 0
        while len(got) < len(words) and cycle < 50 * len(words) + 100:
            ctx.set(dut.i.valid, k < len(words) and rnd.random() < valid_p)
            ctx.set(dut.i.payload, words[min(k, len(words) - 1)])
            ctx.set(dut.o.ready, rnd.random() < ready_p)
            await ctx.delay(1e-9)
            if ctx.get(dut.i.valid) and ctx.get(dut.i.ready):
                first_in = cycle if first_in is None else first_in
                k += 1
            if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                first_out = cycle if first_out is None else first_out
                got.append(ctx.get(dut.o.payload))
            await ctx.tick()
            cycle += 1

    sim.add_testbench(bench)
    sim.run()
    return got, first_in, first_out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unrolled_network_is_exact_under_back_pressure(seed):
    rng = np.random.default_rng(seed)
    specs = _random_network(rng)
    assert [s.activation()[0] for s in specs] == ["requant", "compare", "compare", "none"]
    x = rng.integers(-128, 128, size=(80, specs[0].mw))
    expected = x
    for spec in specs:
        expected = _dense(expected, spec)
    dut = UnrolledNetwork(specs, clock_ns=3.0 + seed, primitives=False)
    words = pack_words(x.ravel(), specs[0].in_fmt, specs[0].mw)
    got, _, _ = _simulate(dut, words, ready_p=0.55, valid_p=0.8, seed=seed)
    out = unpack_words(got, specs[-1].out_fmt, specs[-1].mh, specs[-1].mh * len(got)).reshape(-1, specs[-1].mh)
    assert len(got) == len(x)
    assert np.array_equal(out, expected)


def test_unrolled_network_takes_a_frame_a_cycle_at_its_latency():
    rng = np.random.default_rng(9)
    specs = _random_network(rng)
    dut = UnrolledNetwork(specs, clock_ns=4.0, primitives=False)
    x = rng.integers(-128, 128, size=(40, specs[0].mw))
    words = pack_words(x.ravel(), specs[0].in_fmt, specs[0].mw)
    got, first_in, first_out = _simulate(dut, words, ready_p=1.0, valid_p=1.0, seed=0)
    assert first_out - first_in == dut.latency
    assert len(got) == len(x)  # 40 frames, then the loop ends: at most latency + a few cycles of slack
    assert dut.latency == 1 + sum(dut.layer_registers)


def test_a_tighter_clock_places_more_registers():
    specs = _random_network(np.random.default_rng(3))
    tight, loose = UnrolledNetwork(specs, clock_ns=2.0, primitives=False), UnrolledNetwork(specs, clock_ns=100.0, primitives=False)
    tight._MustUse__silence = loose._MustUse__silence = True  # planned, never elaborated
    assert tight.latency > loose.latency == 1


@pytest.mark.parametrize("mode", ROUNDING_MODES)
@pytest.mark.parametrize("lo,hi", [(0, 11), (-6, 5)])
def test_requantizing_layer_is_exact_in_every_rounding_mode(mode, lo, hi):
    """A layer with a network requantization: clip(R((acc * mult + offset) / 2**shift), lo, hi) per channel,
    spelled out with Fractions here; ties are frequent (shift 2) and both signs of the sum are reached."""
    rng = np.random.default_rng(len(mode) + 7 * abs(lo))
    s5 = ElementFormat.signed(5)
    out_fmt = ElementFormat.unsigned(4) if lo >= 0 else ElementFormat.signed(4)
    weights = rng.integers(-7, 8, size=(5, 4))
    rq = Requantization(mult=[1, 3, 2, 1, 5], offset=[0, -7, 5, 2, -3], shift=2, rounding=mode, lo=lo, hi=hi)
    spec = DenseSpec(weights, s5, out_fmt, requant=rq)
    x = rng.integers(-16, 16, size=(120, 4))
    acc = x @ weights.T
    expected = np.array([[min(max(_round(Fraction(int(a) * rq.mult[c] + rq.offset[c], 4), mode), lo), hi)
                          for c, a in enumerate(row)] for row in acc])
    dut = UnrolledNetwork([spec], clock_ns=3.0, primitives=False)
    words = pack_words(x.ravel(), s5, 4)
    got, _, _ = _simulate(dut, words, ready_p=0.7, valid_p=0.9, seed=1)
    out = unpack_words(got, out_fmt, 5, 5 * len(got)).reshape(-1, 5)
    assert np.array_equal(out, expected)


@pytest.mark.parametrize("seed", [0, 1])
def test_bit_heap_ternary_adder_sums_signed_terms_exactly(seed):
    """Random signed and unsigned terms, negated and shifted, plus a constant: compressed to three rows and
    added by the ternary adder (its propagate/generate tables and carry chain as logic) at each of the four
    chain alignments, against Python's sum."""
    from amaranth.hdl import Cat, Module, Signal, signed, unsigned
    from ip_cores.bit_heap import BitHeap, ternary_add
    rng = random.Random(seed)
    width = 16
    terms = [(rng.choice([True, False]), rng.randint(2, 6), rng.randint(0, 5), rng.random() < 0.4) for _ in range(14)]
    constant = rng.randint(-500, 500)
    m = Module()
    inputs = [Signal(signed(n) if is_signed else unsigned(n), name=f"x{k}") for k, (is_signed, n, _, _) in enumerate(terms)]
    heap = BitHeap(width)
    for x, (is_signed, _, shift, negate) in zip(inputs, terms):
        heap.add_term(x, is_signed, shift, negate=negate)
    heap.add_constant(constant)
    heap.place_constant()
    while heap.height > 3:
        heap.compress(m, f"k{heap.height}", 3, primitives=False)
    assert heap.height == 3
    totals = [Signal(signed(width), name=f"total_{offset}") for offset in range(4)]
    for offset, total in enumerate(totals):  # every alignment of the chain on CARRY4 boundaries
        m.d.comb += total.eq(Cat(*ternary_add(m, heap.columns, f"t{offset}", False, offset)))
    sim = Simulator(m)
    checked = []

    async def bench(ctx):
        for _ in range(300):
            values = [rng.randint(-(1 << (n - 1)), (1 << (n - 1)) - 1) if s else rng.randint(0, (1 << n) - 1)
                      for s, n, _, _ in terms]
            for x, v in zip(inputs, values):
                ctx.set(x, v)
            await ctx.delay(1e-9)
            want = constant + sum((-v if neg else v) << shift for v, (_, _, shift, neg) in zip(values, terms))
            assert -(1 << (width - 1)) <= want < (1 << (width - 1))
            assert [ctx.get(total) for total in totals] == [want] * 4
            checked.append(want)

    sim.add_testbench(bench)
    sim.run()
    assert len(checked) == 300 and min(checked) < 0 < max(checked)
