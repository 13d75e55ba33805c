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

DEFAULT_FIFO_DEPTH = None  # None: one whole frame of the producer's words (at least 2)


def fifo_depth_for(producer: MVTULayer, fixed: int | None) -> int:
    """FIFO depth after `producer`.

    An MVTU reads its input stream only during its first neuron fold, so its upstream must be able to run a
    frame ahead while it replays the buffered vector; a FIFO of one frame of the producer's words makes
    that possible and keeps the steady-state interval at the slowest layer's NF*SF.
    """
    return fixed if fixed is not None else max(2, producer.nf)


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
    stages: list[Stage] = []
    for index, layer in enumerate(network.layers):
        if index:
            prev = network.layers[index - 1]
            w = prev.out_fmt.width
            stages.append(Stage("fifo", f"fifo_{index}", prev.pe, prev.pe, w, w, prev.mh, prev.mh,
                                depth=fifo_depth_for(prev, fifo_depth)))
            if prev.pe != layer.simd:
                mid = math.gcd(prev.pe, layer.simd)
                hops = [prev.pe, mid, layer.simd] if mid not in (prev.pe, layer.simd) else [prev.pe, layer.simd]
                for a, b in zip(hops, hops[1:]):
                    stages.append(Stage("dwc", f"dwc_{index}_{a}to{b}", a, b, w, w, prev.mh, prev.mh))
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
