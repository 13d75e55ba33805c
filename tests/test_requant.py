"""Tests of the requantizing activation (`ip_cores/requantize.py`) of the MVTU and the VVU.

Three levels:
- `requantize_reference` against a brute force written here: the exact rational N / 2**shift as a
  `fractions.Fraction`, rounded by each mode's rule spelled out below (not by the reference's
  q/r/half rules), and cross-checked with `rtlgen.quantizers.apply_rounding` (exact in float64 for
  these small dyadic numbers); every mode, shifts 0..6, negative mult, negative N, exact ties.
- `requantize_pipeline` (the per-lane hardware, four registered steps) in Amaranth's simulator, every
  mode side by side, over all accumulator values of a range with mult/offset as signals and as constants.
- MVTU and VVU with requantization in Verilator: every output word against the numpy reference under
  random input gaps and back-pressure, pause patterns and a reset mid-frame, the protocol checker on
  both edges, and the free-flowing cycle count (the core's `latency`, cycle-exact).

The Verilator benches reuse the MVTU and VVU benches' case classes (sim/benches/mvtu_bench.py,
vector_unit_bench.py) and the shared stream test bench (sim/benches/stream_tb.py); the cocotb tests
are at the end of this module, which the simulator imports as the bench (`run_cocotb(..., "test_requant")`).
One parameter set (`p["core"]`: "mvtu" or "vvu") selects the case class.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import warnings
from fractions import Fraction
from pathlib import Path

import cocotb
import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from ip_cores.axis_top import to_verilog
from ip_cores.elements import ElementFormat, pack_words, signed_width_for
from ip_cores.mvtu import MVTU, accumulator_range, mvtu_reference
from ip_cores.requantize import (ROUNDING_MODES, REQUANTIZE_LATENCY, Requantization, dsp_partial_ranges, dsp_product_stages,
                                requantize_pipeline, requantize_reference)
from ip_cores.vector_unit import VectorVectorUnit, vector_unit_reference
from sim.benches.mvtu_bench import MvtuCase
from sim.benches.stream_tb import (StreamTB, check_words_before_reset, recover_after_reset, run_pause_patterns,
                                   run_with_traffic)
from sim.benches.vector_unit_bench import VvuCase
from sim.cocotb_runner import bench_params, run_cocotb
from conftest import run_pipeline
from test_cores import random_mac_weights

S, U, B = ElementFormat.signed, ElementFormat.unsigned, ElementFormat.bipolar
BUILD_ROOT = Path(__file__).resolve().parent.parent / "build" / "test_requant"

# Cores built only to test their parameter checks are never elaborated; Amaranth warns about each.
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


# --- the reference against exact rationals ------------------------------------------------------

def _round_fraction(x: Fraction, mode: str) -> int:
    """x rounded to an integer by `mode`, from the mode's definition on the rational x."""
    down, up = math.floor(x), math.ceil(x)
    frac = x - down                      # in [0, 1)
    if mode == "FLOOR":
        return down
    if mode == "CEIL":
        return up
    if mode == "DOWN":                   # toward zero
        return down if x >= 0 else up
    if mode == "UP":                     # away from zero
        return up if x >= 0 else down
    if frac != Fraction(1, 2):           # the nearest integer is unique
        return down if frac < Fraction(1, 2) else up
    if mode in ("ROUND", "HALF_EVEN"):   # a tie: to the even neighbour
        return down if down % 2 == 0 else up
    if mode == "HALF_UP":                # a tie: away from zero
        return up if x > 0 else down
    if mode == "HALF_DOWN":              # a tie: toward zero
        return down if x > 0 else up
    raise ValueError(mode)


def _brute_force(acc: np.ndarray, rq: Requantization) -> np.ndarray:
    out = np.zeros(acc.shape, dtype=object)
    for index in np.ndindex(acc.shape):
        c = index[-1]
        n = int(acc[index]) * rq.mult[c] + rq.offset[c]
        out[index] = min(max(_round_fraction(Fraction(n, 2 ** rq.shift), rq.rounding), rq.lo), rq.hi)
    return out


def test_fraction_rules_match_textbook_examples():
    """The brute force's own rules, on the classic examples (x, expected per mode)."""
    table = {  # x: ROUND, CEIL, FLOOR, UP, DOWN, HALF_UP, HALF_DOWN
        Fraction(5, 2): (2, 3, 2, 3, 2, 3, 2),
        Fraction(-5, 2): (-2, -2, -3, -3, -2, -3, -2),
        Fraction(3, 2): (2, 2, 1, 2, 1, 2, 1),
        Fraction(-3, 2): (-2, -1, -2, -2, -1, -2, -1),
        Fraction(7, 4): (2, 2, 1, 2, 1, 2, 2),
        Fraction(-1, 4): (0, 0, -1, -1, 0, 0, 0),
        Fraction(-3): (-3,) * 7,
    }
    modes = ("ROUND", "CEIL", "FLOOR", "UP", "DOWN", "HALF_UP", "HALF_DOWN")
    for x, expected in table.items():
        assert tuple(_round_fraction(x, mode) for mode in modes) == expected, x
        assert _round_fraction(x, "HALF_EVEN") == _round_fraction(x, "ROUND")


def test_rounding_modes_are_rtlgens():
    from rtlgen.quantizers import ROUNDING_MODES as RTLGEN_MODES
    assert ROUNDING_MODES == RTLGEN_MODES


@pytest.mark.parametrize("mode", ROUNDING_MODES)
@pytest.mark.parametrize("shift", range(7))
def test_reference_is_exact_rounding(mode, shift):
    """Every (acc, channel) of a range, negative mults and offsets included, against Fraction and
    against qonnx's rounding (apply_rounding, exact here), with ties present whenever shift > 0."""
    from rtlgen.quantizers import apply_rounding

    rq = Requantization((3, -5, 1, -1, 7, 4), (0, 3, -2, 1, -9, 2), shift, mode, -25, 31)
    reach = 40 + 8 * 2 ** shift                     # every residue mod 2**shift, and clipping at each shift
    acc = np.arange(-reach, reach + 1)[:, None].repeat(rq.channels, axis=1)
    got = requantize_reference(acc, rq)
    assert got.dtype == np.int64
    assert np.array_equal(got, _brute_force(acc, rq).astype(np.int64))

    n = acc * np.array(rq.mult) + np.array(rq.offset)
    qonnx = np.clip(apply_rounding(n / 2.0 ** shift, mode), rq.lo, rq.hi)
    assert np.array_equal(got, qonnx.astype(np.int64))
    # the data covers what matters: negative N, exact ties (for shift > 0), clipping at both ends
    assert (n < 0).any() and (got == rq.lo).any() and (got == rq.hi).any()
    if shift:
        assert (n % 2 ** shift == 2 ** (shift - 1)).sum() > 10


def test_reference_is_exact_beyond_int64():
    """N far outside int64 (acc * mult ~ 2**100): exact, then clipped into int64."""
    big = 1 << 60
    rq = Requantization((big, -big, 3), (1, big, -(1 << 70)), 50, "HALF_EVEN", -(1 << 62), 1 << 62)
    acc = np.array([[1 << 40, 1 << 40, 1 << 40], [3, 3, 1], [-7, 0, 0]], dtype=object)
    assert np.array_equal(requantize_reference(acc, rq), _brute_force(acc, rq).astype(np.int64))
    assert requantize_reference(acc, rq)[1, 0] == _round_fraction(Fraction(3 * big + 1, 2 ** 50), "HALF_EVEN")


def test_requantization_checks_and_builds():
    rq = Requantization.from_arrays(np.array([2, -3]), 5, np.int64(2), "half_up", -4, np.int32(9))
    assert rq == Requantization((2, -3), (5, 5), 2, "HALF_UP", -4, 9)
    assert all(type(v) is int for v in rq.mult + rq.offset + (rq.shift, rq.lo, rq.hi))
    assert Requantization.from_arrays(7, 0, 0, "FLOOR", 0, 1, channels=3).mult == (7, 7, 7)
    assert Requantization([1], [2], 0, "CEIL", 0, 0).offset == (2,)
    hash(rq)
    bad = [
        (dict(mult=(1, 2), offset=(0,)), "channels"),
        (dict(mult=(), offset=()), "non-empty"),
        (dict(mult=(1.5,), offset=(0,)), "integers"),
        (dict(mult=(True,), offset=(0,)), "integers"),
        (dict(shift=-1), "shift"),
        (dict(shift=1.0), "shift"),
        (dict(rounding="NEAREST"), "rounding"),
        (dict(lo=3, hi=2), "empty"),
        (dict(hi=1 << 63), "int64"),
    ]
    for change, message in bad:
        fields = dict(mult=(1,), offset=(0,), shift=1, rounding="ROUND", lo=0, hi=3) | change
        with pytest.raises(ValueError, match=message):
            Requantization(**fields)
    with pytest.raises(ValueError, match="integer arrays"):
        Requantization.from_arrays(np.array([1.0]), 0, 0, "ROUND", 0, 1)
    with pytest.raises(ValueError, match="channels"):
        Requantization.from_arrays(1, 0, 0, "ROUND", 0, 1)
    with pytest.raises(ValueError, match="do not match"):
        Requantization.from_arrays(np.array([1, 2]), np.array([1, 2, 3]), 0, "ROUND", 0, 1)
    with pytest.raises(ValueError, match="shape"):
        requantize_reference(np.zeros((2, 3), dtype=int), Requantization.from_arrays(1, 0, 0, "ROUND", 0, 1, 2))


def test_cores_check_the_requantization():
    w = np.ones((4, 8), dtype=int)
    rq = Requantization.from_arrays(np.array([1, -2, 3, 4]), 0, 1, "ROUND", -100, 100)
    MVTU(w, 2, 2, S(4), S(4), 7, out_fmt=S(8), requant=rq)
    VectorVectorUnit(w, 2, S(4), S(4), 7, out_fmt=S(8), requant=rq)
    with pytest.raises(ValueError, match="do not fit"):
        MVTU(w, 2, 2, S(4), S(4), 7, out_fmt=S(7), requant=rq)
    with pytest.raises(ValueError, match="do not fit"):
        VectorVectorUnit(w, 2, S(4), S(4), 7, out_fmt=U(8), requant=rq)
    with pytest.raises(ValueError, match="one of them"):
        MVTU(w, 2, 2, S(4), S(4), 7, np.zeros((4, 1), dtype=int), S(8), requant=rq)
    with pytest.raises(ValueError, match="channels"):
        MVTU(w[:2], 2, 2, S(4), S(4), 7, out_fmt=S(8), requant=rq)
    with pytest.raises(ValueError, match="out_fmt is required"):
        MVTU(w, 2, 2, S(4), S(4), 7, requant=rq)
    with pytest.raises(ValueError, match="bipolar"):
        MVTU(w, 2, 2, S(4), S(4), 7, out_fmt=B(), requant=Requantization.from_arrays(1, 0, 0, "ROUND", 0, 1, 4))
    with pytest.raises(ValueError, match="out_offset"):
        MVTU(w, 2, 2, S(4), S(4), 7, out_fmt=S(8), out_offset=1, requant=rq)
    with pytest.raises(ValueError, match="Requantization"):
        MVTU(w, 2, 2, S(4), S(4), 7, out_fmt=S(8), requant=(1, 0, 0))


def test_core_references_requantize_the_accumulator():
    rng = np.random.default_rng(3)
    w = rng.integers(-8, 8, size=(5, 7))
    x = rng.integers(-4, 4, size=(6, 7))
    rq = Requantization.from_arrays(rng.integers(-9, 9, 5), rng.integers(-20, 20, 5), 3, "HALF_DOWN", -30, 30)
    assert np.array_equal(mvtu_reference(w, x, requant=rq), requantize_reference(x @ w.T, rq))
    windows = rng.integers(-4, 4, size=(6, 3, 5))
    acc = np.einsum("pkc,ck->pc", windows, w[:, :3])
    assert np.array_equal(vector_unit_reference(w[:, :3], windows, requant=rq), requantize_reference(acc, rq))


# --- the lane in Amaranth's simulator -----------------------------------------------------------

@pytest.mark.parametrize("shift", [0, 1, 2, 5])
def test_lane_hardware_matches_reference(shift):
    """All modes side by side, mult/offset as signals (the memory path) and as constants, every
    accumulator value in [-70, 70], one a cycle through the free-running pipeline: each level, read
    REQUANTIZE_LATENCY cycles after its accumulator, equals requantize_reference."""
    lo, hi = -37, 45
    const_mult, const_offset = -3, 5
    m = Module()
    acc = Signal(signed(8))
    mult, offset = Signal(signed(5)), Signal(signed(6))
    by_signal, by_const = {}, {}
    for mode in ROUNDING_MODES:
        rq = Requantization((1,), (0,), shift, mode, lo, hi)
        by_signal[mode] = requantize_pipeline(m, acc, mult, offset, rq, f"sig_{mode}")
        by_const[mode] = requantize_pipeline(m, acc, const_mult, const_offset, rq, f"const_{mode}")
    accs = np.arange(-70, 71)
    params = [(7, -31), (-16, 9), (5, 0), (1, 1)]
    got_signal = {mode: [] for mode in ROUNDING_MODES}
    got_const = {mode: [] for mode in ROUNDING_MODES}

    async def testbench(ctx):
        for k, (mv, ov) in enumerate(params):
            ctx.set(mult, mv)
            ctx.set(offset, ov)  # held for the whole sweep, so its one cycle of lag does not matter
            for cycle in range(len(accs) + REQUANTIZE_LATENCY):
                if cycle < len(accs):
                    ctx.set(acc, int(accs[cycle]))
                if cycle >= REQUANTIZE_LATENCY:
                    for mode in ROUNDING_MODES:
                        got_signal[mode].append(ctx.get(by_signal[mode]))
                        if k == 0:
                            got_const[mode].append(ctx.get(by_const[mode]))
                await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    for mode in ROUNDING_MODES:
        expected = [requantize_reference(accs[:, None], Requantization((mv,), (ov,), shift, mode, lo, hi))[:, 0]
                    for mv, ov in params]
        assert got_signal[mode] == list(np.concatenate(expected)), mode
        rq = Requantization((const_mult,), (const_offset,), shift, mode, lo, hi)
        assert got_const[mode] == list(requantize_reference(accs[:, None], rq)[:, 0]), mode


@pytest.mark.parametrize("value_bits, mult_bits", [(30, 22), (26, 25), (40, 30)])
def test_wide_product_splits_into_dsp_slices(value_bits, mult_bits):
    """A product wider than one DSP48 (25 x 18) is summed from registered slice products: the level of
    random full-range accumulators and multipliers (extremes included), read dsp_product_stages + 3 cycles
    later, equals requantize_reference, and the split needs more than one partial product."""
    assert len(dsp_partial_ranges(value_bits, mult_bits)) > 1
    latency = dsp_product_stages(value_bits, mult_bits) + 3
    assert latency > REQUANTIZE_LATENCY
    rng = np.random.default_rng(value_bits * 100 + mult_bits)
    lo_v, hi_v = -(1 << (value_bits - 1)), (1 << (value_bits - 1)) - 1
    lo_m, hi_m = -(1 << (mult_bits - 1)), (1 << (mult_bits - 1)) - 1
    accs = [lo_v, hi_v, 0, -1, 1] + [int(v) for v in rng.integers(lo_v, hi_v, 60, endpoint=True)]
    mults = [lo_m, hi_m, -1, 1, 0] + [int(v) for v in rng.integers(lo_m, hi_m, 60, endpoint=True)]
    shift, offset_value = value_bits + mult_bits - 20, 12345
    lo, hi = -(1 << 18), (1 << 18) - 1
    m = Module()
    acc, mult, offset = Signal(signed(value_bits)), Signal(signed(mult_bits)), Signal(signed(16))
    rq = Requantization((1,), (0,), shift, "HALF_EVEN", lo, hi)
    out = requantize_pipeline(m, acc, mult, offset, rq, "wide")
    got = run_pipeline(m, [[(acc, a), (mult, mv), (offset, offset_value)] for a, mv in zip(accs, mults)], out, latency)
    expected = [int(requantize_reference(np.array([[a]], dtype=object),
                                         Requantization((mv,), (offset_value,), shift, "HALF_EVEN", lo, hi))[0, 0])
                for a, mv in zip(accs, mults)]
    assert got == expected


# --- MVTU and VVU in Verilator ------------------------------------------------------------------

def _fmt_json(fmt: ElementFormat) -> dict:
    return dataclasses.asdict(fmt)


def _per_channel(rng, spec, channels: int, what: str) -> list[int]:
    """A mult/offset list: an int (the same for every channel) or (lo, hi) random per channel."""
    if isinstance(spec, int):
        return [spec] * channels
    values = rng.integers(spec[0], spec[1] + 1, size=channels)
    if what == "mult":
        values[values == 0] = 1        # a zero mult would make its channel a constant
        values[0] = spec[0]            # the most negative mult appears
    return [int(v) for v in values]


def requant_params(core: str, shape: tuple, fmts: tuple, mult, offset, shift: int, rounding: str,
                   out_fmt: ElementFormat, lo: int, hi: int, *, seed: int, n_items: int = 12,
                   n_throughput: int = 5, p_gap: float = 0.3, p_stall: float = 0.4) -> dict:
    """Bench parameters of a requantizing MVTU (shape (MW, MH, SIMD, PE)) or VVU (shape (C, K, PE))."""
    rng = np.random.default_rng(seed)
    in_fmt, w_fmt = fmts
    if core == "mvtu":
        mw, mh, simd, pe = shape
        w, channels = random_mac_weights(rng, mh, mw, w_fmt), mh
    else:
        c, k, pe = shape
        w, channels, simd = random_mac_weights(rng, c, k, w_fmt), c, None
    lo_acc, hi_acc = accumulator_range(w, in_fmt)
    rq = Requantization(_per_channel(rng, mult, channels, "mult"), _per_channel(rng, offset, channels, "offset"),
                        shift, rounding, lo, hi)
    return {"core": core, "weights": w.tolist(), "thresholds": None, "out_offset": 0, "simd": simd, "pe": pe,
            "in_fmt": _fmt_json(in_fmt), "w_fmt": _fmt_json(w_fmt), "out_fmt": _fmt_json(out_fmt),
            "acc_width": signed_width_for(lo_acc, hi_acc), "requant": dataclasses.asdict(rq),
            "n_items": n_items, "n_throughput": n_throughput, "seed": seed, "p_gap": p_gap, "p_stall": p_stall,
            "patterns": ["random50", "always_ready/long_stalls", "long_stalls/always_ready"]}


def core_from_params(p: dict):
    fmts = ElementFormat(**p["in_fmt"]), ElementFormat(**p["w_fmt"])
    out_fmt, rq = ElementFormat(**p["out_fmt"]), Requantization(**p["requant"])
    if p["core"] == "mvtu":
        return MVTU(np.array(p["weights"]), p["simd"], p["pe"], *fmts, p["acc_width"], out_fmt=out_fmt, requant=rq)
    return VectorVectorUnit(np.array(p["weights"]), p["pe"], *fmts, p["acc_width"], out_fmt=out_fmt, requant=rq)


REQUANT_CASES = {
    # id: (core, shape, (in_fmt, w_fmt), mult, offset, shift, rounding, out_fmt, lo, hi)
    # NF = 4: per-channel mult (negative ones too) and offsets from memories; ties for HALF_EVEN.
    "mvtu_s4xs4_nf4_memory_half_even": ("mvtu", (8, 8, 2, 2), (S(4), S(4)), (-9, 9), (-40, 40), 4, "HALF_EVEN",
                                        S(8), -100, 90),
    # One fold: the same mult everywhere (one constant), per-lane offset constants; 16-bit unsigned output.
    "mvtu_u8xs8_nf1_const_u16_up": ("mvtu", (12, 4, 3, 4), (U(8), S(8)), 3, (-30000, 30000), 3, "UP",
                                    U(16), 0, 65535),
    # shift 0 (the level is N), a negative mult for every channel, offsets from memory (NF = 2).
    "mvtu_s5xs3_shift0_negative_mult": ("mvtu", (10, 6, 5, 3), (S(5), S(3)), -2, (-50, 50), 0, "ROUND",
                                        S(8), -128, 127),
    # XNOR-popcount: the requantized value is 2*pc - MW; NF = 3.
    "mvtu_bipxbip_xnor_half_up": ("mvtu", (16, 6, 4, 2), (B(), B()), (-7, 7), (-9, 9), 1, "HALF_UP",
                                  S(6), -20, 20),
    # SIMD = MW and PE = MH: a single step a vector, per-lane constants.
    "mvtu_u2xs3_fully_parallel_down": ("mvtu", (12, 6, 12, 6), (U(2), S(3)), (-11, 11), (-20, 20), 3, "DOWN",
                                       S(5), -16, 15),
    # VVU, CF = 2: mult/offset from memories.
    "vvu_s4xs4_cf2_memory_half_down": ("vvu", (4, 9, 2), (S(4), S(4)), (-5, 5), (-60, 60), 3, "HALF_DOWN",
                                       S(8), -120, 100),
    # VVU, CF = 1, bipolar weights, per-lane mult constants, one offset.
    "vvu_u3xbip_cf1_const_ceil": ("vvu", (6, 4, 6), (U(3), B()), (-5, 5), 3, 1, "CEIL", S(5), -12, 15),
}


def _case(p: dict):
    return RequantMvtuCase(p) if p["core"] == "mvtu" else RequantVvuCase(p)


def _coverage(p: dict) -> dict:
    """What the bench's own data exercises (the inputs are drawn from the seed, so known here)."""
    case = _case(p)
    rq = case.requant
    x = case.draw(p["n_items"], p["seed"])
    n = case.accumulators(x).astype(object) * np.array(rq.mult, dtype=object) + np.array(rq.offset, dtype=object)
    y = requantize_reference(case.accumulators(x), rq)
    half = (1 << rq.shift) >> 1
    return {"negative N": bool((n < 0).any()), "clipped low": bool((y == rq.lo).any()),
            "clipped high": bool((y == rq.hi).any()),
            "unclipped in every channel": bool(((y > rq.lo) & (y < rq.hi)).any(axis=0).all()),
            "ties": int(sum(1 for v in n.flat if rq.shift and v % (1 << rq.shift) == half))}


@pytest.mark.parametrize("case_id", list(REQUANT_CASES))
def test_requantizing_core_in_verilator(case_id):
    core, shape, fmts, mult, offset, shift, rounding, out_fmt, lo, hi = REQUANT_CASES[case_id]
    p = requant_params(core, shape, fmts, mult, offset, shift, rounding, out_fmt, lo, hi, seed=len(case_id))
    cover = _coverage(p)
    wanted = ("negative N", "clipped low", "clipped high", "unclipped in every channel")
    assert all(cover[k] for k in wanted), cover
    if shift:
        assert cover["ties"] > 0, cover
    dut = core_from_params(p)
    p["latency"] = dut.latency  # the bench measures it: first word and N items, cycle-exact
    build_dir = BUILD_ROOT / case_id
    build_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        text = to_verilog(dut, "dut")
    caught = [w for w in caught if not issubclass(w.category, UnusedElaboratable)]
    assert not caught, [str(w.message) for w in caught]
    source = build_dir / "dut.v"
    source.write_text(text)
    # The simulator imports this module as the bench; it gets pytest's sys.path as its PYTHONPATH.
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.append(here)
    run_cocotb([source], "dut", Path(__file__).stem, build_dir, params=p,
               runtime_cache=BUILD_ROOT.parent / ".verilator_runtime")


# --- the cocotb bench (runs inside the simulator) ---------------------------------------------------

class RequantMvtuCase(MvtuCase):
    """The MVTU bench's case, its expected words from the requantizing reference."""

    def __init__(self, p: dict):
        super().__init__(p)
        self.requant = Requantization(**p["requant"])
        self.steps_per_item, self.initial_words = self.nf * self.sf, self.sf

    def draw(self, n: int, seed: int) -> np.ndarray:
        return self.inputs(n, seed)

    def accumulators(self, x: np.ndarray) -> np.ndarray:
        return x @ self.weights.T

    def expected_words(self, x: np.ndarray) -> list[int]:
        y = mvtu_reference(self.weights, x, requant=self.requant)
        return pack_words(y.reshape(-1), self.out_fmt, self.pe)


class RequantVvuCase(VvuCase):
    """The VVU bench's case, its expected words from the requantizing reference."""

    def __init__(self, p: dict):
        super().__init__(p)
        self.requant = Requantization(**p["requant"])
        self.steps_per_item, self.initial_words = self.cf * self.k, self.k

    def draw(self, n: int, seed: int) -> np.ndarray:
        return self.windows(n, seed)

    def accumulators(self, x: np.ndarray) -> np.ndarray:
        return np.einsum("pkc,ck->pc", x, self.weights)

    def expected_words(self, x: np.ndarray) -> list[int]:
        y = vector_unit_reference(self.weights, x, requant=self.requant)
        return pack_words(y.reshape(-1), self.out_fmt, self.pe)


@cocotb.test()
async def requant_random_traffic(dut):
    """Every output word equals the reference under random input gaps and output stalls."""
    p = bench_params()
    case = _case(p)
    await run_with_traffic(dut, case, case.draw(p["n_items"], p["seed"]), p["seed"], p["p_gap"], p["p_stall"])


@cocotb.test()
async def requant_full_throughput(dut):
    """Free-flowing: N items take N*steps + latency cycles, the first word initial_words - 1 + latency
    cycles after the first input: requantization keeps the unit's latency."""
    p = bench_params()
    case = _case(p)
    n = p["n_throughput"]
    tb = await run_with_traffic(dut, case, case.draw(n, p["seed"] + 1), p["seed"], 0.0, 0.0)
    expected = n * case.steps_per_item + p["latency"]
    first, first_expected = tb.out_cycles[0] - tb.in_cycles[0], case.initial_words - 1 + p["latency"]
    assert tb.cycles() == expected, f"{n} items took {tb.cycles()} cycles, expected {expected}"
    assert first == first_expected, f"first output word at cycle {first}, expected {first_expected}"


@cocotb.test()
async def requant_pause_patterns(dut):
    """Long stalls against a saturating input and the reverse, and 50 % random pauses, reset between."""
    p = bench_params()
    case = _case(p)
    await run_pause_patterns(dut, case, case.draw, 3, p["patterns"], p["seed"], "items")


@cocotb.test()
async def requant_reset_mid_frame(dut):
    """A reset inside an output frame (a later fold: the parameter memories' read address moved on);
    words before it are a correct prefix, and clean items after it come out right."""
    p = bench_params()
    case = _case(p)
    tb: StreamTB = case.tb(dut)
    x = case.draw(4, p["seed"] + 20)
    per_item = len(case.input_words(x)) // 4
    report = await tb.reset_mid_frame(case.input_words(x)[:2 * per_item + (per_item + 1) // 2],
                                      seed=p["seed"], where="output")
    check_words_before_reset(tb, case, x, report, "item")
    await recover_after_reset(tb, case, case.draw(3, p["seed"] + 40), p["seed"] + 30)
