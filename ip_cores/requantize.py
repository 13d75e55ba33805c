"""Exact integer requantization: the activation of an MVTU or VVU whose outputs are wider than a few bits.

A threshold activation needs one comparator per threshold, 2**bits - 1 of them per lane: fine for 4-bit
outputs, impossible for 16-bit ones. When the next quantizer is affine in the accumulator, the same
levels come from one multiply, one add and a shift per lane:

    level[c] = clip( R( (acc[c] * mult[c] + offset[c]) / 2**shift ), lo, hi )

with integers mult[c] (any sign), offset[c], shift >= 0 and R a rounding mode of qonnx applied to the
exact rational N / 2**shift (N = acc*mult + offset), as `rtlgen.quantizers.apply_rounding` rounds:

    ROUND, HALF_EVEN   nearest, ties to even                CEIL   toward +inf
    HALF_UP            nearest, ties away from zero         FLOOR  toward -inf
    HALF_DOWN          nearest, ties toward zero            UP     away from zero
                                                            DOWN   toward zero

In integers: q = floor(N / 2**shift) (an arithmetic shift), r = N - q * 2**shift (the low `shift` bits)
and half = 2**(shift-1); every mode is q plus a round-up bit decided by r against half, the parity of
q and the sign of N. The level is q + 1 when

    ROUND, HALF_EVEN   r > half, or r == half and q odd     CEIL   r != 0
    HALF_UP            r > half, or r == half and N >= 0    FLOOR  never
    HALF_DOWN          r > half, or r == half and N < 0     UP     r != 0 and N >= 0
                                                            DOWN   r != 0 and N < 0

With shift 0 the level is N itself. The same table is in docs/CONTRACTS.md.

    Requantization        the parameters of one layer (one mult and offset per output channel), checked
    requantize_reference  what the hardware computes, in exact integer numpy
    requantize_pipeline   one lane's requantization in Amaranth, four registered steps
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed

from .elements import signed_width_for

__all__ = ["ROUNDING_MODES", "Requantization", "requantize_reference", "requantize_pipeline", "REQUANTIZE_LATENCY",
           "dsp_product_stages", "dsp_partial_ranges", "dsp_split", "lut_product_stages"]

ROUNDING_MODES = ("ROUND", "HALF_EVEN", "CEIL", "FLOOR", "UP", "DOWN", "HALF_UP", "HALF_DOWN")
"""qonnx's rounding modes: `rtlgen.quantizers.ROUNDING_MODES` (ip_cores does not import rtlgen)."""

_INT64 = (-(1 << 63), (1 << 63) - 1)


def _int_tuple(values, what: str) -> tuple[int, ...]:
    """A 1-D sequence of integers (Python or numpy, not bool or float) as a tuple of Python ints."""
    arr = np.asarray(values, dtype=object)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{what} must be a non-empty 1-D sequence of integers, not shape {arr.shape}")
    for v in arr:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{what} must be integers, not {v!r} ({type(v).__name__})")
    return tuple(int(v) for v in arr)


def _plain_int(value, what: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{what} must be an integer, not {value!r}")
    return int(value)


@dataclass(frozen=True)
class Requantization:
    """`clip(R((acc * mult[c] + offset[c]) / 2**shift), lo, hi)` per output channel c.

    `mult` and `offset` hold one Python int per output channel (lists and numpy integers are accepted
    and converted); `shift` >= 0; `rounding` one of `ROUNDING_MODES` (any case); lo <= hi, both in int64.
    """

    mult: tuple[int, ...]
    offset: tuple[int, ...]
    shift: int
    rounding: str
    lo: int
    hi: int

    def __post_init__(self):
        mult = _int_tuple(self.mult, "mult")
        offset = _int_tuple(self.offset, "offset")
        if len(mult) != len(offset):
            raise ValueError(f"mult has {len(mult)} channels but offset {len(offset)}")
        shift = _plain_int(self.shift, "shift")
        if shift < 0:
            raise ValueError(f"shift must be >= 0, not {shift}")
        if not isinstance(self.rounding, str) or self.rounding.upper() not in ROUNDING_MODES:
            raise ValueError(f"rounding must be one of {', '.join(ROUNDING_MODES)}, not {self.rounding!r}")
        lo, hi = _plain_int(self.lo, "lo"), _plain_int(self.hi, "hi")
        if lo > hi:
            raise ValueError(f"empty output range: lo {lo} > hi {hi}")
        if lo < _INT64[0] or hi > _INT64[1]:
            raise ValueError(f"output range [{lo}, {hi}] does not fit int64")
        for name, value in (("mult", mult), ("offset", offset), ("shift", shift),
                            ("rounding", self.rounding.upper()), ("lo", lo), ("hi", hi)):
            object.__setattr__(self, name, value)

    @classmethod
    def from_arrays(cls, mult, offset, shift: int, rounding: str, lo: int, hi: int,
                    channels: int | None = None) -> "Requantization":
        """From numpy arrays or scalars: a scalar mult or offset is repeated for `channels` channels."""
        arrays = [np.asarray(mult), np.asarray(offset)]
        if channels is None:
            sizes = [a.size for a in arrays if a.ndim > 0]
            if not sizes:
                raise ValueError("give channels when both mult and offset are scalars")
            channels = sizes[0]
        if any(a.ndim > 1 for a in arrays):
            raise ValueError(f"mult and offset must be scalars or 1-D, not shapes {arrays[0].shape} and "
                             f"{arrays[1].shape}")
        if any(a.dtype.kind not in "iuO" for a in arrays):
            raise ValueError(f"mult and offset must be integer arrays, not {arrays[0].dtype} and "
                             f"{arrays[1].dtype}")
        try:
            mult_c, offset_c = (np.broadcast_to(a, (int(channels),)) for a in arrays)
        except ValueError:
            raise ValueError(f"mult {arrays[0].shape} and offset {arrays[1].shape} do not match "
                             f"{channels} channels") from None
        return cls(tuple(mult_c.tolist()), tuple(offset_c.tolist()), shift, rounding, lo, hi)

    @property
    def channels(self) -> int:
        return len(self.mult)


def requantize_reference(acc, rq: Requantization) -> np.ndarray:
    """acc (..., C) integers -> the clipped levels (..., C) as int64, in exact integer arithmetic.

    N = acc * mult + offset is formed in Python ints (no overflow at any width), then rounded by the
    round-up rules of the module docstring on q = N // 2**shift and r = N % 2**shift (floor division).
    """
    a = np.asarray(acc)
    if a.ndim < 1 or a.shape[-1] != rq.channels:
        raise ValueError(f"acc must have shape (..., {rq.channels}), not {a.shape}")
    if a.dtype.kind not in "iuO":
        raise ValueError(f"acc must be integers, not dtype {a.dtype}")
    n = a.astype(object) * np.array(rq.mult, dtype=object) + np.array(rq.offset, dtype=object)
    level = _round_shifted(n, rq.shift, rq.rounding)
    return np.minimum(np.maximum(level, rq.lo), rq.hi).astype(np.int64)


def _round_shifted(n: np.ndarray, shift: int, rounding: str) -> np.ndarray:
    """R(n / 2**shift) for an object array of Python ints: q plus the mode's round-up bit."""
    if shift == 0:
        return n
    q = n // (1 << shift)
    r = n % (1 << shift)
    half = 1 << (shift - 1)
    negative = np.asarray(n < 0, dtype=bool)
    inexact = np.asarray(r != 0, dtype=bool)
    above, tie = np.asarray(r > half, dtype=bool), np.asarray(r == half, dtype=bool)
    if rounding in ("ROUND", "HALF_EVEN"):
        up = above | (tie & np.asarray(q % 2 == 1, dtype=bool))
    elif rounding == "CEIL":
        up = inexact
    elif rounding == "FLOOR":
        up = np.zeros_like(inexact)
    elif rounding == "UP":
        up = inexact & ~negative
    elif rounding == "DOWN":
        up = inexact & negative
    elif rounding == "HALF_UP":
        up = above | (tie & ~negative)
    elif rounding == "HALF_DOWN":
        up = above | (tie & negative)
    else:
        raise ValueError(f"unknown rounding mode {rounding!r}")
    return q + up.astype(np.int64).astype(object)


REQUANTIZE_LATENCY = 4  # with one DSP48 multiplier: product, sum, level, clip
MULTIPLIERS = ("dsp", "lut")
DSP_PORT_BITS = (25, 18)  # a DSP48E1 multiplies a signed 25-bit A by a signed 18-bit B


def _chunk_count(width: int, port_bits: int) -> int:
    """Slices of a signed `width`-bit value for a signed `port_bits`-bit port: unsigned low slices of
    port_bits - 1 bits and a signed top slice of at most port_bits bits."""
    return max(1, -(-(width - 1) // (port_bits - 1)))


def dsp_split(value_width: int, mult_width: int) -> tuple[int, int]:
    """Slice widths (value, mult) of a value * mult that does not fit one DSP48: the orientation with fewer
    partial products. A product that fits gives the operands' own widths (one DSP, no slicing)."""
    a, b = DSP_PORT_BITS
    if (value_width <= a and mult_width <= b) or (value_width <= b and mult_width <= a):
        return value_width, mult_width
    value_on_a = _chunk_count(value_width, a) * _chunk_count(mult_width, b)
    value_on_b = _chunk_count(value_width, b) * _chunk_count(mult_width, a)
    return (a - 1, b - 1) if value_on_a <= value_on_b else (b - 1, a - 1)


def _slices(width: int, chunk: int) -> list[tuple[int, int, bool]]:
    """(start, stop, signed) of the slices of a signed `width`-bit value into `chunk`-bit pieces."""
    if chunk >= width:
        return [(0, width, True)]
    count = max(1, -(-(width - 1) // chunk))
    return [(k * chunk, width if k == count - 1 else (k + 1) * chunk, k == count - 1) for k in range(count)]


def _slice_range(width: int, start: int, stop: int, is_signed: bool) -> tuple[int, int]:
    bits = stop - start
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if is_signed else (0, (1 << bits) - 1)


def dsp_partial_ranges(value_width: int, mult_width: int) -> list[tuple[int, int]]:
    """Value ranges of the shifted partial products `_dsp_product` sums (one term when the product fits)."""
    cv, cm = dsp_split(value_width, mult_width)
    ranges = []
    for v in _slices(value_width, cv):
        for w in _slices(mult_width, cm):
            (vlo, vhi), (wlo, whi) = _slice_range(value_width, *v), _slice_range(mult_width, *w)
            corners = [vlo * wlo, vlo * whi, vhi * wlo, vhi * whi]
            ranges.append((min(corners) << (v[0] + w[0]), max(corners) << (v[0] + w[0])))
    return ranges


def dsp_product_stages(value_width: int, mult_width: int) -> int:
    """Register stages of a DSP48 requantization product: 1 when it fits one DSP48; else each partial product
    registered twice (MREG, PREG) and their pipelined sum."""
    from .pipeline import tree_register_levels
    ranges = dsp_partial_ranges(value_width, mult_width)
    return 1 if len(ranges) == 1 else 2 + sum(tree_register_levels(ranges))


def _dsp_product(m: Module, value, mult, name: str):
    """value * mult in DSP48s: one registered product when it fits one; else 25x18 partial products of
    slices (each registered twice, as the DSP48 registers them) summed by a pipelined adder tree, instead
    of the cascade of DSP48s and fabric adders in one cycle that a wide `*` becomes. Returns (product,
    stages)."""
    from .pipeline import pipelined_sum, tree_register_levels
    value_width, mult_width = len(value), len(mult)
    cv, cm = dsp_split(value_width, mult_width)
    ranges = dsp_partial_ranges(value_width, mult_width)
    if len(ranges) == 1:
        reg = Signal(signed(value_width + mult_width), name=f"{name}_product", reset_less=True)
        m.d.sync += reg.eq(value * mult)
        return reg, 1

    def piece(x, start, stop, is_signed):
        part = x[start:stop]
        return part.as_signed() if is_signed else part.as_unsigned()

    terms = []
    for v in _slices(value_width, cv):
        for w in _slices(mult_width, cm):
            partial = piece(value, *v) * piece(mult, *w)
            for stage in ("m", "p"):
                reg = Signal(signed(len(partial) + 1), name=f"{name}_pp{len(terms)}_{stage}", reset_less=True)
                m.d.sync += reg.eq(partial)
                partial = reg
            terms.append(partial << (v[0] + w[0]) if v[0] + w[0] else partial)
    registers = tree_register_levels(ranges)
    return pipelined_sum(m, terms, registers, f"{name}_product"), 2 + sum(registers)


def _lut_product(m: Module, value, value_fmt, mult, mult_fmt, name: str):
    """value * mult in LUT logic: shift-and-add terms (ip_cores/mac_terms.py; a constant `mult` only adds the
    shifted value at its set bits) through a registered adder tree. Returns (product without its constant,
    the constant, stages)."""
    from .mac_terms import product_terms
    from .pipeline import pipelined_sum, tree_register_levels
    if isinstance(mult, int):
        magnitude = abs(mult)
        terms = [(value << j if j else value) for j in range(magnitude.bit_length()) if magnitude >> j & 1] or [Const(0)]
        if mult < 0:
            terms = [-t for t in terms]
        constant = 0
    else:
        t = product_terms(value, mult, value_fmt, mult_fmt, "lut")
        terms, constant = t.terms, t.constant
    registers = tree_register_levels(_product_ranges(value_fmt, mult, mult_fmt))
    stages = max(1, sum(registers))
    product = pipelined_sum(m, terms, registers, f"{name}_product")
    if not registers:  # one term: register it once
        reg = Signal(product.shape(), name=f"{name}_product", reset_less=True)
        m.d.sync += reg.eq(product)
        product = reg
    return product, constant, stages


def _product_ranges(value_fmt, mult, mult_fmt) -> list[tuple[int, int]]:
    """Value ranges of the terms `_lut_product` adds."""
    from .mac_terms import product_term_ranges
    if not isinstance(mult, int):
        return product_term_ranges(value_fmt, mult_fmt, "lut")
    bits = [j for j in range(abs(mult).bit_length()) if abs(mult) >> j & 1] or [0]
    lo, hi = value_fmt.min, value_fmt.max
    return [(min(lo << j, -(hi << j)), max(hi << j, -(lo << j))) for j in bits]


def lut_product_stages(value_fmt, mult, mult_fmt) -> int:
    """Register stages of a LUT-logic requantization product (see `_lut_product`)."""
    from .pipeline import tree_register_levels
    return max(1, sum(tree_register_levels(_product_ranges(value_fmt, mult, mult_fmt))))


def requantize_pipeline(m: Module, value, mult, offset, rq: Requantization, name: str = "rq", *,
                        saturate_at=None, lut_formats=None, product_stages: int | None = None) -> Signal:
    """One lane's requantization as a free-running pipeline: the clipped level, `REQUANTIZE_LATENCY` cycles
    after `value` and `mult` (and one cycle after `offset`) when the product fits one DSP48.

    Four registered steps, so no stage does a multiply-round-clip at once: product (a DSP48's MREG), sum with
    the offset (its PREG), the rounded level q + up, the clip. A product wider than one DSP48 takes
    `dsp_product_stages` steps instead of one (partial products and their pipelined sum), and `offset` is
    then read that many cycles after `value`. `value` is the lane's signed accumulator value
    (an unsigned one is taken as non-negative); `mult` and `offset` are Python ints (constants) or Amaranth
    values (fields of a memory word). Only `rq.shift`, `rq.rounding`, `rq.lo` and `rq.hi` are read from `rq`.
    With `saturate_at` (a value like `mult`), `value >= saturate_at` gives `rq.hi` whatever the arithmetic
    says: a threshold activation whose top levels are all reached at one accumulator value
    (ip_cores/threshold_fit.py). With `lut_formats` = (value format, mult format) the product is LUT logic
    (`_lut_product`, `lut_product_stages` registers instead of one, or `product_stages` when more, so lanes
    with different constant multipliers keep in step; `offset` then that many cycles after `value`), for
    designs that keep DSP48s for nothing else. The registers carry no reset: they are datapath.
    """
    def register(v, suffix):
        reg = Signal(v.shape(), name=f"{name}_{suffix}", reset_less=True)
        m.d.sync += reg.eq(v)
        return reg

    if lut_formats is None:
        if isinstance(mult, int):
            mult = Const(mult, signed(signed_width_for(mult, mult)))
        if not value.shape().signed:
            value = Cat(value, Const(0, 1)).as_signed()
        (product, stages), constant = _dsp_product(m, value, mult, name), 0
    else:
        product, constant, stages = _lut_product(m, value, lut_formats[0], mult, lut_formats[1], name)
    for k in range((product_stages or stages) - stages):
        product = register(product, f"product_pad{k}")
    stages = max(stages, product_stages or stages)
    total = register(product + (offset + constant if constant else offset), "n")
    # Signed, and at least shift + 1 bits, so that q and r are plain slices/shifts of N.
    n = Signal(signed(max(len(total) + (0 if total.shape().signed else 1), rq.shift + 1)), name=f"{name}_n_ext")
    m.d.comb += n.eq(total)
    if rq.shift == 0:
        level = register(n, "level")
    else:
        q = n >> rq.shift                                   # arithmetic: floor(N / 2**shift)
        level = register(q + _round_up_bit(rq.rounding, q, n[:rq.shift], n < 0), "level")
    clipped = Mux(level < rq.lo, rq.lo, Mux(level > rq.hi, rq.hi, level))
    if saturate_at is not None:
        saturated = value >= saturate_at
        for k in range(stages + 2):  # travels beside the value to the last step
            saturated = register(saturated, f"saturated{k}")
        clipped = Mux(saturated, rq.hi, clipped)
    out = Signal(signed(signed_width_for(rq.lo, rq.hi)), name=f"{name}_level", reset_less=True)
    m.d.sync += out.eq(clipped)
    return out


def _round_up_bit(rounding: str, q, r, negative):
    """The round-up bit of the module docstring's table in hardware; r: the `shift` low bits of N (unsigned)."""
    inexact = r.any()
    top = r[-1]                                  # r >= half
    rest = r[:-1].any() if len(r) > 1 else Const(0, 1)
    above, tie = top & rest, top & ~rest         # r > half, r == half
    if rounding in ("ROUND", "HALF_EVEN"):
        return above | (tie & q[0])
    if rounding == "CEIL":
        return inexact
    if rounding == "FLOOR":
        return Const(0, 1)
    if rounding == "UP":
        return inexact & ~negative
    if rounding == "DOWN":
        return inexact & negative
    if rounding == "HALF_UP":
        return above | (tie & ~negative)
    if rounding == "HALF_DOWN":
        return above | (tie & negative)
    raise ValueError(f"unknown rounding mode {rounding!r}")
