"""Stitching: map a folded `Network` onto `ip_cores` components and emit the top-level Verilog.

The chain is: s_axis -> MVTU_0 -> FIFO -> [width converter] -> MVTU_1 -> ... -> MVTU_n -> m_axis.
A width converter is inserted where a layer's output word (PE elements) differs from the next layer's input
word (SIMD elements); when neither divides the other it goes through gcd(PE, SIMD) elements.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ip_cores.axis_top import AxisDataflowTop, axis_width, to_verilog
from ip_cores.mvtu import MVTU
from ip_cores.stream_fifo import StreamFIFO
from ip_cores.width_converter import StreamWidthConverter

from .graph import MVTULayer, Network

DEFAULT_FIFO_DEPTH = None  # None: one whole frame, counted in words of the FIFO's width (at least 2)


@dataclass(frozen=True)
class Stage:
    """One hardware block of the chain, as the report and the timing model see it."""

    kind: str  # "mvtu" | "fifo" | "dwc"
    name: str
    in_elems_per_word: int
    out_elems_per_word: int
    elem_width_in: int
    elem_width_out: int
    frame_elems_in: int
    frame_elems_out: int
    layer: MVTULayer | None = None
    depth: int = 0


def plan_stages(network: Network, fifo_depth: int | None = DEFAULT_FIFO_DEPTH) -> list[Stage]:
    """The chain of blocks, with one FIFO and any width converters between consecutive layers.

    An MVTU reads its input stream only during its first neuron fold, in a burst of one word a cycle, while its
    producer trickles words out over the whole frame. So the FIFO must sit where it can hand over a buffered
    frame at the consumer's pace: on the wide side of the width converters (after a gathering converter, before
    a splitting one; a gathering converter behind a FIFO would pace the burst at one element a cycle). One frame
    of buffering lets the producer run a frame ahead, which keeps the interval at the slowest layer's NF*SF.
    """
    stages: list[Stage] = []
    for index, layer in enumerate(network.layers):
        if index:
            prev = network.layers[index - 1]
            w = prev.out_fmt.width
            mid = math.gcd(prev.pe, layer.simd)
            hops = [prev.pe, mid, layer.simd] if mid not in (prev.pe, layer.simd) else [prev.pe, layer.simd]
            converters = [Stage("dwc", f"dwc_{index}_{a}to{b}", a, b, w, w, prev.mh, prev.mh)
                          for a, b in zip(hops, hops[1:]) if a != b]
            fifo_elems = max(prev.pe, layer.simd)
            depth = fifo_depth if fifo_depth is not None else max(2, prev.mh // fifo_elems)
            fifo = Stage("fifo", f"fifo_{index}", fifo_elems, fifo_elems, w, w, prev.mh, prev.mh, depth=depth)
            stages += [*converters, fifo] if layer.simd >= prev.pe else [fifo, *converters]
        stages.append(Stage("mvtu", layer.name, layer.simd, layer.pe, layer.in_fmt.width, layer.out_fmt.width,
                            layer.mw, layer.mh, layer=layer))
    return stages


def build_component(stage: Stage):
    if stage.kind == "mvtu":
        layer = stage.layer
        return MVTU(layer.weights, simd=layer.simd, pe=layer.pe, in_fmt=layer.in_fmt, w_fmt=layer.w_fmt,
                    acc_width=layer.acc_width, thresholds=layer.thresholds, out_fmt=layer.out_fmt,
                    out_offset=layer.out_offset if layer.thresholds is not None else 0)
    if stage.kind == "fifo":
        return StreamFIFO(stage.in_elems_per_word * stage.elem_width_in, stage.depth)
    if stage.kind == "dwc":
        return StreamWidthConverter(stage.elem_width_in, stage.in_elems_per_word, stage.out_elems_per_word)
    raise ValueError(stage.kind)


def stream_widths(network: Network) -> tuple[int, int]:
    """Inner payload widths of the input and output streams (before byte padding)."""
    first, last = network.layers[0], network.layers[-1]
    return first.simd * first.in_fmt.width, last.pe * last.out_fmt.width


def top_ports(network: Network) -> dict[str, int]:
    in_w, out_w = stream_widths(network)
    return {"s_axis_tdata": axis_width(in_w), "m_axis_tdata": axis_width(out_w)}


def generate_verilog(network: Network, top_name: str, fifo_depth: int | None = DEFAULT_FIFO_DEPTH) -> tuple[str, list[Stage]]:
    stages = plan_stages(network, fifo_depth)
    in_w, out_w = stream_widths(network)
    top = AxisDataflowTop([build_component(s) for s in stages], in_width=in_w, out_width=out_w,
                          out_words_per_frame=network.layers[-1].nf)
    return to_verilog(top, top_name), stages
