"""What the window cores on a feature map share: the max-pool and the sliding-window generator.

Both take a channels-last feature map of H x W pixels, each pixel CF = C/SIMD words of SIMD `elem_fmt`
elements, slide a KH x KW window over it with strides (sh, sw), and send words of the same format.
`FeatureMapWindowCore` holds that geometry and declares the two stream ports, so the cores state only
what differs (padding, window order, output size).
"""
from __future__ import annotations

from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .elements import ElementFormat

__all__ = ["FeatureMapWindowCore", "check_positive_ints"]


def check_positive_ints(**values) -> None:
    """ValueError naming the first of `values` (name=value) that is not a positive integer."""
    for name, value in values.items():
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")


class FeatureMapWindowCore(wiring.Component):
    """Base of the window cores: stores the geometry and declares `i` and `o`, both SIMD `elem_fmt`
    elements a word.

    The subclass checks its parameters first (`check_positive_ints` and its own rules, in the order
    its errors should come), then calls this `__init__`.
    """

    def __init__(self, elem_fmt: ElementFormat, channels: int, in_h: int, in_w: int, kernel_h: int,
                 kernel_w: int, stride_h: int, stride_w: int, simd: int):
        self.elem_fmt = elem_fmt
        self.channels, self.simd, self.cf = int(channels), int(simd), int(channels) // int(simd)
        self.in_h, self.in_w = int(in_h), int(in_w)
        self.kernel_h, self.kernel_w = int(kernel_h), int(kernel_w)
        self.stride_h, self.stride_w = int(stride_h), int(stride_w)
        super().__init__({
            "i": In(stream.Signature(self.simd * elem_fmt.width)),
            "o": Out(stream.Signature(self.simd * elem_fmt.width)),
        })

    @property
    def in_words_per_frame(self) -> int:
        return self.in_h * self.in_w * self.cf
