"""The building blocks of the compute cores, each against something written independently of it:

- `product_terms` (ip_cores/mac_terms.py): for every pair of values of small formats, the terms plus the
  constant equal the plain product (XNOR, table, bipolar, shift-and-add and DSP forms; with a bipolar input
  twice the terms minus the weight), and
  `product_term_ranges` holds every term's values; packed DSP products (`packed_products`) unpack to every
  lane's own product, at extremes and random values, with the packing factor worked out by hand;
- `tree_register_levels`, `pipelined_sum`, `Timed` and `registered` (ip_cores/pipeline.py): where the adder tree
  registers (worked out by hand), and in Amaranth's simulator that the sum arrives exactly as many cycles late,
  one a cycle; a pipeline register inside `m.If` is refused;
- `fit_affine_thresholds` (ip_cores/threshold_fit.py): brute force over the whole accumulator range, for
  thresholds of affine quantizers (ties to even, saturating channels) and a refusal for non-affine ones;
- `plan_rom`/`plan_ram` (ip_cores/memories.py): block-RAM counts worked out by hand from the RAMB18E1 aspect
  ratios, the LUT/BRAM choice at both ends, banked LUT tables read correctly.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from conftest import run_pipeline
from ip_cores.elements import ElementFormat
from ip_cores.mac_terms import dsp_packing, mac_resource_for, packed_products, product_term_ranges, product_terms
from ip_cores.memories import bram18_count, plan_ram, plan_rom, read_rom
from ip_cores.pipeline import Timed, pipelined_sum, registered, tree_register_levels
from ip_cores.threshold_fit import fit_affine_thresholds

S, U, B = ElementFormat.signed, ElementFormat.unsigned, ElementFormat.bipolar


def _values(fmt: ElementFormat) -> list[int]:
    return [-1, 1] if fmt.is_bipolar else list(range(fmt.min, fmt.max + 1))


def _clocked_module() -> Module:
    """A module with a sync domain even when the block under test registers nothing (one term, a constant)."""
    m = Module()
    m.d.sync += Signal(name="tick").eq(1)
    return m


def _signal(fmt: ElementFormat) -> Signal:
    return Signal(signed(fmt.width) if fmt.is_signed else unsigned(fmt.width))


@pytest.mark.parametrize("fx, fw, resource", [
    (S(4), S(4), "lut"), (U(2), S(3), "lut"), (S(5), B(), "lut"), (B(), S(4), "lut"), (B(), U(3), "lut"),
    (U(8), S(3), "lut"), (S(3), U(8), "lut"), (S(2), U(2), "lut"), (S(1), S(4), "lut"), (U(1), S(2), "lut"),
    (B(), B(), "lut"), (S(6), S(5), "dsp"), (U(5), S(6), "dsp"), (B(), S(6), "lut"), (S(7), B(), "lut"),
    (U(3), S(3), "lut"), (S(4), S(2), "lut")], ids=str)
def test_product_terms_sum_to_the_product(fx, fw, resource):
    m = Module()
    x, w = _signal(fx), _signal(fw)
    terms = product_terms(x, w, fx, fw, resource)
    ranges = product_term_ranges(fx, fw, resource)
    assert len(ranges) == len(terms.terms)
    term_signals = [Signal(signed(40), name=f"term{k}") for k in range(len(terms.terms))]
    m.d.comb += [sig.eq(t) for sig, t in zip(term_signals, terms.terms)]
    total = Signal(signed(32))
    m.d.comb += total.eq(sum(terms.terms[1:], terms.terms[0]))
    bad = []

    async def bench(ctx):
        for xv, wv in itertools.product(_values(fx), _values(fw)):
            ctx.set(x, int(xv > 0) if fx.is_bipolar else xv)
            ctx.set(w, int(wv > 0) if fw.is_bipolar else wv)
            for sig, (lo, hi) in zip(term_signals, ranges):
                if not lo <= ctx.get(sig) <= hi:
                    bad.append(("range", xv, wv, ctx.get(sig), lo, hi))
            got = ctx.get(total) + terms.constant
            if terms.doubled:  # a bipolar input: the product is 2 * (x ? w : 0) - w
                got = 2 * got - wv
            want = (xv * wv + 1) // 2 if fx.is_bipolar and fw.is_bipolar else xv * wv  # XNOR: the popcount bit
            if got != want:
                bad.append((xv, wv, got, want))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert not bad, bad[:5]


def test_mac_resource_choice():
    assert mac_resource_for(U(8), S(8)) == "dsp" and mac_resource_for(U(8), S(3)) == "lut"
    assert mac_resource_for(U(4), S(4)) == "lut" and mac_resource_for(S(5), S(5)) == "dsp"
    assert mac_resource_for(U(4), S(4), "dsp") == "dsp" and mac_resource_for(U(8), S(8), "lut") == "lut"
    assert mac_resource_for(B(), S(8), "dsp") == "lut"  # a bipolar product is a negation, never a multiply
    with pytest.raises(ValueError, match="mac_resource"):
        mac_resource_for(U(8), S(8), "fast")


def test_dsp_packing_factors_worked_out_by_hand():
    # 8x8: products of 16 signed bits, w1 << 16 + w0 needs 24 bits of A's 25; a third would need 40.
    assert dsp_packing(S(8), S(8), 4) == (2, 16) and dsp_packing(U(8), S(8), 4) == (2, 16)
    # 4x4: products of 8 bits (-8 * -8 = 64 needs 8 signed bits); three in 8 + 8 + 4 = 20 bits, a fourth in 28.
    assert dsp_packing(S(4), S(4), 8) == (3, 8) and dsp_packing(U(4), S(4), 2) == (2, 8)
    # 8-bit weights by 9-bit inputs: products of 17 bits; w1 << 17 plus a negative w0 reaches -2**24 - 128 (26 bits).
    assert dsp_packing(S(9), S(8), 2) == (1, 0) and dsp_packing(U(5), S(6), 4) == (2, 11)
    assert dsp_packing(S(8), S(8), 1) == (1, 0) and dsp_packing(B(), S(8), 4) == (1, 0)
    assert mac_resource_for(U(8), S(8), "dsp_packed") == "dsp"


@pytest.mark.parametrize("fx, fw", [(S(8), S(8)), (U(8), S(8)), (S(4), S(4)), (U(4), S(4)), (U(5), S(6))], ids=str)
def test_packed_products_unpack_to_each_product(fx, fw):
    n, k = dsp_packing(fx, fw, 8)
    m = Module()
    x, ws = _signal(fx), [_signal(fw) for _ in range(n)]
    product, offset, unpack = packed_products(x, ws, k)
    p = Signal(48)
    m.d.comb += p.eq(product + offset)
    fields = [Signal(signed(k + 1), name=f"field{i}") for i in range(n)]
    m.d.comb += [f.eq(v) for f, v in zip(fields, unpack(p))]
    rng = np.random.default_rng(n * k)
    extremes = [fw.min, fw.max, 0, -1 if fw.is_signed else 1]
    cases = [(xv, list(wv)) for xv in (fx.min, fx.max, 0) for wv in itertools.product(extremes, repeat=n)]
    cases += [(int(rng.integers(fx.min, fx.max + 1)), [int(v) for v in rng.integers(fw.min, fw.max + 1, n)])
              for _ in range(300)]
    bad = []

    async def bench(ctx):
        for xv, wv in cases:
            ctx.set(x, xv)
            for w, v in zip(ws, wv):
                ctx.set(w, v)
            got = [ctx.get(f) for f in fields]
            if got != [xv * v for v in wv]:
                bad.append((xv, wv, got))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert not bad, bad[:5]


def test_tree_registers_two_narrow_levels_or_one_wide():
    bits4 = [(-8, 7)] * 16          # 4 levels of 5, 6, 7, 8-bit adders: two levels a stage
    assert tree_register_levels(bits4) == [False, True, False, True]
    assert tree_register_levels(bits4, first_stage_levels=1) == [True, False, True, True]
    bits10 = [(-512, 511)] * 8      # 11 + 12 > 20 bits: a register after every level
    assert tree_register_levels(bits10) == [True, True, True]
    assert tree_register_levels([(0, 1)] * 5) == [False, True, True]  # 2, 3 bits, then a level of its own
    assert tree_register_levels([(0, 1)]) == []  # one term: nothing to add


@pytest.mark.parametrize("n_terms, width", [(1, 5), (2, 5), (5, 5), (16, 5), (17, 5), (64, 3), (9, 11), (33, 8)])
def test_pipelined_sum_is_exact_and_late_by_its_registers(n_terms, width):
    rng = np.random.default_rng(n_terms)
    m = _clocked_module()
    inputs = [Signal(signed(width), name=f"t{k}") for k in range(n_terms)]
    registers = tree_register_levels([(-(1 << (width - 1)), (1 << (width - 1)) - 1)] * n_terms)
    out = pipelined_sum(m, inputs, registers, "tree")
    late = sum(registers)
    vectors = rng.integers(-(1 << (width - 1)), 1 << (width - 1), size=(12, n_terms))
    got = run_pipeline(m, [list(zip(inputs, vector)) for vector in vectors], out, late)
    assert got == [int(v) for v in vectors.sum(axis=1)]


def test_timed_taps_and_registers_outside_conditions():
    m = Module()
    a = Signal(4)
    t = Timed(m, a, 2, "a")
    assert t.at(2) is a and t.at(5) is t.at(5)
    with pytest.raises(ValueError, match="cycle 2"):
        t.at(1)
    en = Signal()
    with m.If(en):
        with pytest.raises(RuntimeError, match="conditional"):
            registered(m, a, "inside")
        with pytest.raises(RuntimeError, match="conditional"):
            t.at(6)


# --- exact multiply-shift for thresholds ----------------------------------------------------------------

def _count(acc: np.ndarray, t: np.ndarray) -> np.ndarray:
    return (acc[:, None] >= t[None, :]).sum(axis=1)


def _affine_thresholds(rng, channels, n, lo, hi):
    """Thresholds of round_half_even((a - b) / s) clipped to [0, n], found by scanning every a."""
    a = np.arange(lo, hi + 1)
    rows = []
    for _ in range(channels):
        s, b = rng.uniform(0.5, 3.0) * (hi - lo) / n / 2, rng.uniform(lo, lo + (hi - lo) / 3)
        level = np.clip(np.round((a - b) / s), 0, n)  # numpy rounds half to even
        rows.append([a[np.argmax(level >= k)] if level[-1] >= k else hi + 7 for k in range(1, n + 1)])
    return np.array(rows, dtype=np.int64)


@pytest.mark.parametrize("seed, n", [(0, 15), (1, 255), (2, 7), (3, 3)])
def test_fitted_multiply_shift_equals_the_thresholds_everywhere(seed, n):
    rng = np.random.default_rng(seed)
    lo, hi = -3000, 5000
    t = _affine_thresholds(rng, 6, n, lo, hi)
    t[2, n // 3:] = t[2, n // 3]  # a saturating channel: the count jumps to n at one accumulator value
    fit = fit_affine_thresholds(t, lo, hi)
    assert fit is not None
    assert fit.saturate_at[2] == t[2, -1] and all(fit.saturate_at[c] is None for c in (0, 1, 3, 4, 5))
    acc = np.arange(lo, hi + 1, dtype=object)
    for c in range(len(t)):
        level = np.minimum(np.maximum((acc * fit.mult[c] + fit.offset[c]) // (1 << fit.shift), 0), n)
        if fit.saturate_at[c] is not None:
            level = np.where(acc >= fit.saturate_at[c], n, level)
        assert np.array_equal(level.astype(np.int64), _count(acc.astype(np.int64), t[c])), c
        assert fit.mult[c] > 0


def test_no_fit_for_thresholds_no_affine_function_gives():
    lo, hi = -100, 100
    t = np.array([[-50, -49, 60]])  # steps of 1 then 109: no single slope
    assert fit_affine_thresholds(t, lo, hi) is None
    t = np.array([[0, 0, 50, 51]])  # a jump of two levels at the bottom, then steps of 50 and 1
    assert fit_affine_thresholds(t, lo, hi) is None


def test_thresholds_outside_the_range_do_not_constrain_the_fit():
    lo, hi = 0, 40
    t = np.array([[-10, 10, 20, 30, 500, 900]])  # -10 always reached; 500 and 900 never
    fit = fit_affine_thresholds(t, lo, hi)
    acc = np.arange(lo, hi + 1)
    level = np.clip((acc * fit.mult[0] + fit.offset[0]) // (1 << fit.shift), 0, 6)
    assert np.array_equal(level, _count(acc, t[0]))


# --- memory shapes ----------------------------------------------------------------------------------------

def test_block_ram_counts_from_the_aspect_ratios():
    # RAMB18E1: 16Kx1, 8Kx2, 4Kx4, 2Kx9, 1Kx18, 512x36 (simple dual port)
    assert bram18_count(512, 32) == 1          # 512x36
    assert bram18_count(2048, 20) == 3         # three 2Kx9
    assert bram18_count(64, 64) == 2           # two 512x36 (or one RAMB36 72 wide)
    assert bram18_count(4096, 46) == 12        # twelve 4Kx4 (or six 2Kx9 wide, two deep)
    assert bram18_count(4096, 44) == 10        # five 2Kx9 wide, two deep (4Kx4 would take eleven)
    assert bram18_count(65536, 8) == 32        # 512 kbit in 16-kbit blocks: 16Kx1, eight wide, four deep
    assert bram18_count(1, 1) == 1


def test_memory_plans_choose_luts_for_shallow_and_block_ram_for_deep():
    shallow = plan_rom(64, 784)
    assert (shallow.kind, shallow.luts, shallow.bram18, shallow.read_latency) == ("logic", 784, 0, 2)
    assert shallow.column_groups == 13  # an address copy per 64 columns
    deep = plan_rom(4096, 44)
    assert (deep.kind, deep.bram18, deep.read_latency) == ("block", 10, 2) and deep.attrs == {"rom_style": "block"}
    deeper = plan_rom(65536, 8)  # 16 banks of 4K x 8 (RAMB36 4K x 9 each): as many BRAMs as unbanked
    assert (deeper.kind, deeper.banks, deeper.bram18, deeper.read_latency) == ("block", 16, 32, 3)
    banked = plan_rom(256, 26)
    assert (banked.kind, banked.banks, banked.read_latency, banked.luts) == ("logic", 4, 3, 26 * 5)
    assert plan_rom(1, 30).kind == "const" and plan_rom(1, 30).read_latency == 0
    assert plan_rom(64, 784, "block").kind == "block" and plan_rom(4096, 44, "logic").kind == "logic"
    ram = plan_ram(32, 12)
    assert (ram.kind, ram.luts, ram.attrs) == ("lutram", 8, {"ram_style": "distributed"})
    with pytest.raises(ValueError, match="style"):
        plan_rom(64, 8, "fast")


@pytest.mark.parametrize("depth, width, style", [(64, 20, "logic"), (200, 20, "logic"), (300, 20, "block"),
                                                 (1, 20, "auto"), (40, 150, "logic"), (130, 70, "logic"),
                                                 (5000, 8, "block")])  # two banks of block RAM, the last partial
def test_rom_reads_every_word_after_its_latency(depth, width, style):
    rng = np.random.default_rng(depth)
    words = [int.from_bytes(rng.bytes(-(-width // 8)), "little") % (1 << width) for _ in range(depth)]
    plan = plan_rom(depth, width, style)
    m = _clocked_module()
    addr = Signal(range(max(2, depth)))
    data = read_rom(m, "rom", plan, words, addr)
    order = list(rng.permutation(depth)) * 2
    got = run_pipeline(m, [[(addr, a)] for a in order], data, plan.read_latency)
    assert got == [words[a] for a in order]
