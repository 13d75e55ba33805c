"""Reference semantics of the QONNX quantizers, in float64 numpy, written for exact threshold derivation.

A quantizer maps a real tensor to one of L ordered levels. rtlgen works with two views of a level:
- the *index* n in 0..L-1 (what a threshold unit counts: how many thresholds the input reached), and
- the *integer* k that travels on a stream in the quantizer's `ElementFormat` (k = n + k_min, or
  k = 2n - 1 for bipolar), whose real value is `value(k) = scale * k + offset`.

The semantics follow qonnx 1.0.0's executors (Quant/IntQuant: x/scale + zeropt, clip, round by mode, 1-bit
signed becomes bipolar; BipolarQuant: x >= 0 -> +1; MultiThreshold: count of thresholds <= x), but are
evaluated in float64 so that threshold search sees the ideal arithmetic, not float32 accidents.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ip_cores.elements import ElementFormat

ROUNDING_MODES = ("ROUND", "HALF_EVEN", "CEIL", "FLOOR", "UP", "DOWN", "HALF_UP", "HALF_DOWN")


def apply_rounding(y: np.ndarray, mode: str) -> np.ndarray:
    """Round `y` to integers the way qonnx's `resolve_rounding_mode(mode)` does."""
    mode = mode.upper()
    if mode in ("ROUND", "HALF_EVEN"):
        return np.round(y)
    if mode == "CEIL":
        return np.ceil(y)
    if mode == "FLOOR":
        return np.floor(y)
    if mode == "UP":
        return np.sign(y) * np.ceil(np.abs(y))
    if mode == "DOWN":
        return np.fix(y)
    if mode == "HALF_UP":
        return np.sign(y) * np.floor(np.abs(y) + 0.5)
    if mode == "HALF_DOWN":
        return np.sign(y) * np.ceil(np.abs(y) - 0.5)
    raise ValueError(f"unknown rounding mode {mode!r}")


def int_range(bitwidth: int, signed: bool, narrow: bool) -> tuple[int, int]:
    """Integer range of a Quant node's output levels."""
    if signed:
        lo = -(2 ** (bitwidth - 1)) + (1 if narrow else 0)
        hi = 2 ** (bitwidth - 1) - 1
    else:
        lo = 0
        hi = 2**bitwidth - 1 - (1 if narrow else 0)
    return lo, hi


@dataclass
class Quantizer:
    """Base: a monotone map from reals to level indices, plus the integer/real meaning of each level."""

    node: str
    op: str
    fmt: ElementFormat  # format of the integer k on a stream
    k_lo: int  # smallest and largest k (narrow ranges and short threshold lists use less than fmt allows)
    k_hi: int

    @property
    def n_levels(self) -> int:
        return 2 if self.fmt.kind == "bipolar" else self.k_hi - self.k_lo + 1

    def k_of_index(self, n: np.ndarray) -> np.ndarray:
        n = np.asarray(n, dtype=np.int64)
        return 2 * n - 1 if self.fmt.kind == "bipolar" else n + self.k_min

    def index_of_k(self, k: np.ndarray) -> np.ndarray:
        k = np.asarray(k, dtype=np.int64)
        return (k + 1) // 2 if self.fmt.kind == "bipolar" else k - self.k_min

    @property
    def k_min(self) -> int:
        return self.k_lo

    def index(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def value(self, k: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The quantizer's real output, as the ONNX node computes it (in float64)."""
        return self.value(self.k_of_index(self.index(x)))

    def uniform_scale(self) -> float | None:
        """The single real step between consecutive k, or None when it varies per channel."""
        raise NotImplementedError


@dataclass
class ScaledQuantizer(Quantizer):
    """A quantizer whose level k means k * scale (per tensor, or broadcast per channel)."""

    scale: np.ndarray = None

    def value(self, k: np.ndarray) -> np.ndarray:
        return np.asarray(k, dtype=np.float64) * self.scale.astype(np.float64)

    def uniform_scale(self) -> float | None:
        s = np.unique(self.scale)
        return float(s[0]) if s.size == 1 else None


@dataclass
class IntQuantizer(ScaledQuantizer):
    """qonnx Quant / IntQuant: k = round(clip(x / scale + zeropt)), value = (k - zeropt) * scale (one integer
    zero point per tensor; asymmetric activations, as ONNX Runtime quantizes them, have one)."""

    bitwidth: int = 8
    signed: bool = True
    narrow: bool = False
    rounding: str = "ROUND"
    zeropt: int = 0
    round_first: bool = False  # QuantizeLinear's order: round(x / scale) + zeropt (a QCDQ conversion's pair)

    def index(self, x: np.ndarray) -> np.ndarray:
        y = np.asarray(x, dtype=np.float64) / self.scale.astype(np.float64)
        if self.fmt.kind == "bipolar":  # qonnx turns 1-bit signed Quant into a sign function
            return (y >= 0).astype(np.int64)
        lo, hi = self.k_lo, self.k_hi
        if self.round_first:
            y = apply_rounding(y, self.rounding)
        k = apply_rounding(np.clip(y + self.zeropt, lo, hi), self.rounding)
        return k.astype(np.int64) - lo

    def value(self, k: np.ndarray) -> np.ndarray:
        return (np.asarray(k, dtype=np.float64) - self.zeropt) * self.scale.astype(np.float64)


@dataclass
class BipolarQuantizer(ScaledQuantizer):
    """qonnx BipolarQuant: +scale where x >= 0, else -scale."""

    def index(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) >= 0).astype(np.int64)


@dataclass
class ThresholdQuantizer(Quantizer):
    """FINN MultiThreshold: n = number of thresholds <= x (per channel, axis 1), value = out_scale*n + out_bias."""

    thresholds: np.ndarray = None  # (C or 1, T)
    out_scale: float = 1.0
    out_bias: float = 0.0

    def index(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        xm = np.moveaxis(x, 1, -1)[..., None]
        n = np.count_nonzero(xm >= self.thresholds.astype(np.float64), axis=-1)
        return np.moveaxis(n, -1, 1).astype(np.int64)

    def value(self, k: np.ndarray) -> np.ndarray:
        return self.out_scale * self.index_of_k(k).astype(np.float64) + self.out_bias

    def uniform_scale(self) -> float | None:
        return float(self.out_scale) / (2.0 if self.fmt.kind == "bipolar" else 1.0)



@dataclass
class TruncQuantizer(ScaledQuantizer):
    """qonnx Trunc, the requantization of Brevitas' TruncAvgPool2d: y = round(x / in_scale) (half to even), divided
    by 2**shift, rounded by `rounding`. Version 1 divides by 2**(in_bits - out_bits) and does not clip, its level
    meaning k * in_scale; version 2 divides by 2**round(log2(out_scale / in_scale)) and clips to the output bit
    width's range before rounding, its level meaning k * out_scale (`scale`). Zero points are 0."""

    in_scale: np.ndarray = None
    shift: np.ndarray = None
    clip: bool = True
    rounding: str = "FLOOR"

    def index(self, x: np.ndarray) -> np.ndarray:
        y = np.round(np.asarray(x, dtype=np.float64) / self.in_scale.astype(np.float64)) / 2.0 ** self.shift
        if self.clip:
            y = np.clip(y, self.k_lo, self.k_hi)
        return apply_rounding(y, self.rounding).astype(np.int64) - self.k_lo
