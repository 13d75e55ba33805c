"""rtlgen's float64 quantizer semantics against qonnx's own reference functions, and exact threshold
derivation against brute force over every accumulator value."""
from __future__ import annotations

import numpy as np
import pytest
from qonnx.custom_op.general.bipolar_quant import binary_quant
from qonnx.custom_op.general.multithreshold import multithreshold
from qonnx.custom_op.general.quant import quant as qonnx_quant

from ip_cores.elements import ElementFormat
from rtlgen.errors import RtlgenError
from rtlgen.quantizers import ROUNDING_MODES, BipolarQuantizer, IntQuantizer, ThresholdQuantizer, int_range
from rtlgen.thresholds import derive_thresholds


def _int_quantizer(bits, signed, narrow, mode, scale):
    lo, hi = int_range(bits, signed, narrow)
    fmt = ElementFormat.signed(bits) if signed else ElementFormat.unsigned(bits)
    if bits == 1 and signed:
        fmt, lo, hi = ElementFormat.bipolar(), -1, 1
    return IntQuantizer("q", "Quant", fmt, lo, hi, scale=np.asarray(scale, dtype=np.float64), bitwidth=bits,
                        signed=signed, narrow=narrow, rounding=mode)


@pytest.mark.parametrize("mode", ROUNDING_MODES)
@pytest.mark.parametrize("bits,signed,narrow", [(1, True, False), (2, True, True), (3, False, False), (4, True, False),
                                                (8, False, True), (8, True, True)])
def test_int_quantizer_matches_qonnx(mode, bits, signed, narrow):
    rng = np.random.default_rng(bits * 7 + len(mode))
    scale = np.float32(0.125)  # power of two: float32 and float64 agree exactly, ties included
    k = rng.integers(-300, 300, size=4000)
    x = np.concatenate([k * scale / 2, rng.normal(size=2000) * 40 * scale]).astype(np.float32)  # half steps = ties
    q = _int_quantizer(bits, signed, narrow, mode, scale)
    expected = qonnx_quant(x, np.float32(scale), np.float32(0), np.float32(bits), signed, narrow, mode)
    np.testing.assert_array_equal(q.apply(x), expected.astype(np.float64))


def test_negative_and_per_channel_scales():
    scale = np.array([[0.25, -0.5, 0.75]], dtype=np.float32)
    x = np.random.default_rng(0).normal(size=(500, 3)).astype(np.float32) * 3
    q = _int_quantizer(4, True, False, "ROUND", scale)
    expected = qonnx_quant(x, scale, np.float32(0), np.float32(4), True, False, "ROUND")
    np.testing.assert_allclose(q.apply(x), expected, rtol=0, atol=1e-6)


def test_bipolar_and_multithreshold_match_qonnx():
    x = np.random.default_rng(1).normal(size=(300, 5)).astype(np.float32)
    x[0] = 0.0
    bq = BipolarQuantizer("b", "BipolarQuant", ElementFormat.bipolar(), -1, 1, scale=np.asarray(0.5))
    np.testing.assert_array_equal(bq.apply(x), binary_quant(x, np.float32(0.5)))
    thresholds = np.sort(np.random.default_rng(2).normal(size=(5, 3)), axis=1).astype(np.float32)
    mt = ThresholdQuantizer("m", "MultiThreshold", ElementFormat.unsigned(2), 0, 3, thresholds=thresholds,
                            out_scale=0.5, out_bias=-0.25)
    np.testing.assert_allclose(mt.apply(x), multithreshold(x, thresholds, 0.5, -0.25), rtol=0, atol=1e-7)


def _brute_force(level_of, lo, hi, n_levels):
    """Thresholds by scanning every accumulator value: T[c, j] = first acc with level >= j+1."""
    accs = np.arange(lo.min(), hi.max() + 2)
    levels = level_of(np.broadcast_to(accs[:, None], (len(accs), lo.size)))
    out = np.empty((lo.size, n_levels - 1), dtype=np.int64)
    for c in range(lo.size):
        for j in range(1, n_levels):
            inside = (accs >= lo[c]) & (accs <= hi[c])
            hits = accs[inside & (levels[:, c] >= j)]
            out[c, j - 1] = hits.min() if hits.size else hi[c] + 1
    return out


@pytest.mark.parametrize("mode", ["ROUND", "HALF_UP", "CEIL", "FLOOR", "DOWN"])
def test_thresholds_equal_brute_force_including_ties(mode):
    """acc * 2^-3 + bias lands exactly on half steps for some acc: the tie rule must survive."""
    q = _int_quantizer(3, False, False, mode, 0.5)
    alpha = np.array([2.0**-3, 2.0**-2, 2.0**-4, 2.0**-3])
    beta = np.array([0.0, 0.25, -1.0, 0.0625])
    lo, hi = np.full(4, -40), np.full(4, 60)

    def level_index(acc):
        return q.index(np.maximum(alpha * acc + beta, 0))  # Relu then the quantizer

    t, negated = derive_thresholds(level_index, lo, hi, q.n_levels, "test")
    assert not negated.any()
    np.testing.assert_array_equal(t, _brute_force(level_index, lo, hi, q.n_levels))


def test_decreasing_channels_are_negated():
    """A negative scale (or batch-norm gain) makes the level fall with the accumulator: the channel is flagged
    and its thresholds apply to -acc."""
    q = _int_quantizer(2, True, False, "ROUND", 1.0)
    alpha = np.array([0.3, -0.3, -1.1])
    lo, hi = np.full(3, -20), np.full(3, 20)

    def level_index(acc):
        return q.index(alpha * acc)

    t, negated = derive_thresholds(level_index, lo, hi, q.n_levels, "test")
    assert negated.tolist() == [False, True, True]
    accs = np.arange(-20, 21)
    direct = level_index(np.broadcast_to(accs[:, None], (len(accs), 3)))
    signed_acc = np.where(negated, -1, 1)[None, :] * accs[:, None]
    counted = (signed_acc[:, :, None] >= t[None]).sum(axis=2)
    np.testing.assert_array_equal(counted, direct)


def test_non_monotone_activation_is_refused():
    with pytest.raises(RtlgenError, match="not monotone"):
        derive_thresholds(lambda acc: (np.abs(acc) > 5).astype(np.int64), np.array([-10]), np.array([10]), 2, "L")


@pytest.mark.parametrize("rounding", ["ROUND", "FLOOR", "HALF_UP", "CEIL"])
@pytest.mark.parametrize("relu", [True, False])
def test_requantization_of_a_wide_activation(rounding, relu):
    """A 12-bit quantizer behind acc*2^-5 + 0.375 (and maybe ReLU): the derived multiply-shift-round-clip
    equals the quantizer on every accumulator in range (brute force, independent of the derivation)."""
    from ip_cores.elements import ElementFormat
    from ip_cores.requantize import requantize_reference
    from rtlgen.quantizers import IntQuantizer
    from rtlgen.thresholds import derive_requantization

    signed = not relu
    q = IntQuantizer("q", "Quant", ElementFormat.signed(12) if signed else ElementFormat.unsigned(12),
                     -2048 if signed else 0, 2047 if signed else 4095, scale=np.array(0.125), bitwidth=12,
                     signed=signed, narrow=False, rounding=rounding)
    slope = np.array([2.0**-5, -(2.0**-4)])

    def real(acc):
        y = acc * slope + 0.375
        return np.maximum(y, 0) if relu else y

    acc_lo, acc_hi = np.array([-70000, -70000]), np.array([90000, 90000])
    rq = derive_requantization(lambda acc: q.index(real(acc)), lambda acc: (acc * slope + 0.375) / 0.125, q,
                               acc_lo, acc_hi, "test")
    acc = np.arange(-70000, 90001)[:, None] * np.ones((1, 2), dtype=np.int64)
    np.testing.assert_array_equal(requantize_reference(acc, rq), q.k_of_index(q.index(real(acc.astype(np.float64)))))


def test_requantization_refuses_a_non_fixed_point_rescale():
    from ip_cores.elements import ElementFormat
    from rtlgen.quantizers import IntQuantizer
    from rtlgen.thresholds import derive_requantization

    q = IntQuantizer("q", "Quant", ElementFormat.unsigned(10), 0, 1023, scale=np.array(0.3), bitwidth=10,
                     signed=False, narrow=False, rounding="ROUND")
    with pytest.raises(RtlgenError, match="at most 8-bit activations"):
        derive_requantization(lambda acc: q.index(acc * 0.01), lambda acc: acc * 0.01 / 0.3, q,
                              np.array([-1000]), np.array([1000]), "test")
