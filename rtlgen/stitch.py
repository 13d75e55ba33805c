"""Stitching: map a folded `Network` onto `ip_cores` components and emit the top-level Verilog.

A chain is: s_axis -> layer_0 -> FIFO -> [width converter] -> layer_1 -> ... -> layer_n -> m_axis, where a
layer is one or two blocks: an MVTU; a sliding-window generator + MVTU (convolution); a sliding-window
generator in depthwise order + vector unit (depthwise convolution); a max-pool. A width converter is
inserted where a layer's output word (PE elements) differs from the next layer's input word (SIMD
elements); when neither divides the other it goes through gcd(PE, SIMD) elements.

A DAG (residual blocks) adds two blocks: a layer read by two layers streams into a duplicator, whose outputs
start the two edges (each with its own converters and FIFO: the skip edge's FIFO is the skip-path buffer); a
residual Add is an interleaver (its two edges' words alternately, widened to one format) feeding a vector unit
with two taps. Every stage names the stages that feed it (`Stage.feeds`), in topological order.
"""
from __future__ import annotations

import math
from dataclasses import replace

from ip_cores.axis_top import AxisDataflowTop, axis_width, to_verilog

from .graph import AddLayer, DepthwiseLayer, LabelSelectLayer, MaxPoolLayer, Network
from .stages import (DuplicatorStage, FifoStage, GlobalPoolStage, JoinStage, LabelStage, MaxPoolStage, MvtuStage,
                     SlidingWindowStage, Stage, UnrolledStage, VvuStage, WidthConverterStage)

DEFAULT_FIFO_DEPTH = None  # None: one whole frame, counted in words of the FIFO's width (at least 2)


def layer_stages(layer) -> list[Stage]:
    """The blocks of one folded layer (a sliding window in front of a convolution's MVTU or VVU, an interleaver
    in front of a residual Add's)."""
    w_in, w_out = layer.in_fmt.width, layer.out_fmt.width
    if isinstance(layer, MaxPoolLayer):
        return [MaxPoolStage(layer.name, layer.simd, layer.simd, w_in, w_out, layer.in_elems, layer.out_elems, layer)]
    if isinstance(layer, LabelSelectLayer):
        return [LabelStage(layer.name, layer.simd, 1, w_in, w_out, layer.in_elems, 1, layer)]
    if isinstance(layer, AddLayer):  # two inputs interleaved word by word into a two-tap vector unit
        join = JoinStage(f"{layer.name}_join", layer.pe, layer.pe, w_in, w_in, layer.in_elems, 2 * layer.in_elems, layer)
        return [join, VvuStage(layer.name, layer.pe, layer.pe, w_in, w_out, 2 * layer.in_elems, layer.out_elems,
                               layer, feeds=((join.name, "o"),))]
    if layer.conv is None:
        return [MvtuStage(layer.name, layer.simd, layer.pe, w_in, w_out, layer.mw, layer.mh, layer=layer)]
    if isinstance(layer, DepthwiseLayer) and layer.is_global_sum:
        return [GlobalPoolStage(layer.name, layer.pe, layer.pe, w_in, w_out, layer.in_elems, layer.out_elems, layer)]
    conv = layer.conv
    window_elems = conv.pixels_out * conv.kernel_elems * conv.channels
    swg = SlidingWindowStage(f"{layer.name}_swg", layer.simd, layer.simd, w_in, w_in, layer.in_elems, window_elems,
                             layer)
    unit = VvuStage if isinstance(layer, DepthwiseLayer) else MvtuStage
    return [swg, unit(layer.name, layer.simd, layer.pe, w_in, w_out, window_elems, layer.out_elems, layer,
                      feeds=((swg.name, "o"),))]


ROWS_BUFFERED = 2  # rows of a feature map a FIFO in front of a sliding window or pool holds (plus slack)
FIFO_SLACK_WORDS = 16


def default_fifo_depth(consumer, frame_elems: int, fifo_elems: int) -> int:
    """Words of buffering in front of `consumer`.

    A dense MVTU reads its whole input vector (the producer's frame) in one burst, then computes for
    (NF-1)*SF cycles: one frame of buffering lets the producer run a frame ahead. A sliding window or a pool
    reads its feature map steadily, a row at a time, and has its own line buffer: a couple of rows absorb the
    rate differences at the start and end of a frame (padding rows and the first window's start-up) without
    a frame-sized memory.
    """
    frame_words = max(2, -(-frame_elems // fifo_elems))
    if isinstance(consumer, MaxPoolLayer):
        row_elems = consumer.pool.in_w * consumer.channels
    elif consumer.conv is not None:
        row_elems = consumer.conv.in_w * consumer.conv.channels
    else:
        return frame_words
    return min(frame_words, max(2, ROWS_BUFFERED * -(-row_elems // fifo_elems) + FIFO_SLACK_WORDS))


def plan_stages(network: Network, fifo_depth: int | None = DEFAULT_FIFO_DEPTH,
                fifo_depths: dict[str, int] | None = None) -> list[Stage]:
    """The blocks in topological order: an input FIFO, then each layer behind one FIFO and any width converters on
    each of its input edges, and a duplicator behind a layer that two layers read.

    An MVTU reads its input stream only during its first neuron fold, in a burst of one word a cycle, while its
    producer trickles words out over the whole frame. So the FIFO must sit where it can hand over a buffered
    frame at the consumer's pace: behind the width converters when the last of them gathers (a gathering
    converter behind the FIFO would pace the burst at one of its input words a cycle; through gcd(PE, SIMD) that
    happens even when PE > SIMD), in front of them otherwise (a splitting converter serves one word a cycle). One frame
    of buffering lets the producer run a frame ahead, which keeps the interval at the slowest layer's cycles.
    `fifo_depths` (FIFO name -> words) replaces that rule where given (`rtlgen.timing.fifo_words_needed`).
    """
    first = network.layers[0]
    if network.unrolled_clock_ns is not None:
        last = network.layers[-1]
        return [UnrolledStage("unrolled", first.in_elems, last.out_elems, first.in_fmt.width, last.out_fmt.width,
                              first.in_elems, last.out_elems, layer=network)]
    # A two-word FIFO right behind the input framer: the AXI-Stream input (a DMA's TVALID and TDATA) reaches
    # registers only, never the first layer's issue logic.
    stages: list[Stage] = [FifoStage("input_fifo", first.in_elems_per_word, first.in_elems_per_word,
                                     first.in_fmt.width, first.in_fmt.width, first.in_elems, first.in_elems, depth=2)]
    tap = {-1: [("input_fifo", "o")]}  # layer index -> the (stage, port) each of its readers takes its output from
    for index, layer in enumerate(network.layers):
        feeds = []
        for port, producer in enumerate(network.producers(index)):
            source = tap[producer].pop(0)
            if producer < 0:  # the input FIFO feeds the first layer directly
                feeds.append(source)
                continue
            suffix = "" if len(network.producers(index)) == 1 else "ab"[port]
            edge = _edge_stages(network, producer, index, f"{index}{suffix}", source, fifo_depth, fifo_depths)
            stages += edge
            feeds.append((edge[-1].name, "o"))
        own = layer_stages(layer)
        stages.append(replace(own[0], feeds=tuple(feeds)))
        stages += own[1:]
        out = (own[-1].name, "o")
        readers = len(network.consumers(index))
        if readers > 1:
            dup = DuplicatorStage(f"dup_{index}", layer.out_elems_per_word, layer.out_elems_per_word,
                                  layer.out_fmt.width, layer.out_fmt.width, layer.out_elems, layer.out_elems, depth=2,
                                  feeds=(out,), outputs=readers)
            stages.append(dup)
            tap[index] = [(dup.name, port) for port in dup.out_ports]
        else:
            tap[index] = [out]
    return stages


def _edge_stages(network: Network, producer: int, consumer: int, key: str, source: tuple[str, str],
                 fifo_depth: int | None, fifo_depths: dict[str, int] | None) -> list[Stage]:
    """Width converters and the FIFO from a producer's output to one input of a consumer, in stream order (the
    first fed by `source`). `key` names them: fifo_{key}, dwc_{key}_{x}to{y}."""
    prev, layer = network.layers[producer], network.layers[consumer]
    w = prev.out_fmt.width
    a, b = prev.out_elems_per_word, layer.in_elems_per_word
    mid = math.gcd(a, b)
    hops = [a, mid, b] if mid not in (a, b) else [a, b]
    frame = prev.out_elems
    converters = [WidthConverterStage(f"dwc_{key}_{x}to{y}", x, y, w, w, frame, frame)
                  for x, y in zip(hops, hops[1:]) if x != y]
    # behind the converters when the last one gathers (it offers a word only every few cycles), else
    # in front of them (a splitting converter serves the burst at one word a cycle)
    fifo_last = hops[-1] > hops[-2]
    fifo_elems = b if fifo_last else a
    if isinstance(layer, AddLayer):
        # a residual edge buffers what the other branch delays; the rule allows two frames per layer between the
        # producer and the join (analysis sizes it from both paths' schedules; a fixed --fifo-depth is not used here)
        depth = max(2, -(-frame // fifo_elems)) * (2 * (consumer - producer) + 2)
    else:
        depth = fifo_depth if fifo_depth is not None else default_fifo_depth(layer, frame, fifo_elems)
    name = f"fifo_{key}"
    depth = (fifo_depths or {}).get(name, depth)  # sized by analysis (`rtlgen.timing`)
    fifo = FifoStage(name, fifo_elems, fifo_elems, w, w, frame, frame, depth=depth)
    edge = [*converters, fifo] if fifo_last else [fifo, *converters]
    chained = [replace(edge[0], feeds=(source,))]
    for stage in edge[1:]:
        chained.append(replace(stage, feeds=((chained[-1].name, "o"),)))
    return chained


def residual_fifos(stages: list[Stage]) -> list[Stage]:
    """The FIFOs in front of residual Adds (both input edges: the long path's holds a few words, the skip edge's
    what the long path delays)."""
    readers = {feed[0]: s for s in stages for feed in s.feeds}

    def reaches_join(stage) -> bool:
        reader = readers.get(stage.name)
        while reader is not None and reader.kind == "dwc":
            reader = readers.get(reader.name)
        return reader is not None and reader.kind == "join"

    return [s for s in stages if s.kind == "fifo" and reaches_join(s)]


def connections(stages: list[Stage]) -> list[tuple[int, str, int, str]]:
    """(from stage, output port, to stage, input port) of every stream between the stages."""
    index = {s.name: i for i, s in enumerate(stages)}
    links = []
    for sink, stage in enumerate(stages):
        feeds = stage.feeds if stage.feeds or sink == 0 else ((stages[sink - 1].name, "o"),)
        for (source, out_port), in_port in zip(feeds, stage.in_ports):
            links.append((index[source], out_port, sink, in_port))
    return links


def stream_widths(network: Network) -> tuple[int, int]:
    """Inner payload widths of the input and output streams (before padding to TDATA, see `top_ports`)."""
    first, last = network.layers[0], network.layers[-1]
    return first.in_elems_per_word * first.in_fmt.width, last.out_elems_per_word * last.out_fmt.width


def io_words(network: Network) -> tuple[int, int]:
    """Words per frame on the input and the output stream."""
    first, last = network.layers[0], network.layers[-1]
    return first.in_elems // first.in_elems_per_word, last.out_elems // last.out_elems_per_word


def top_ports(network: Network, input_tlast: bool = True) -> dict[str, int]:
    """Widths of the top level's ports (TDATA padded by `axis_width` to what an AXI DMA streams)."""
    in_w, out_w = stream_widths(network)
    ports = {"ap_clk": 1, "ap_rst_n": 1, "s_axis_tdata": axis_width(in_w), "s_axis_tvalid": 1, "s_axis_tready": 1}
    if input_tlast:
        ports["s_axis_tlast"] = 1
    ports.update({"m_axis_tdata": axis_width(out_w), "m_axis_tvalid": 1, "m_axis_tready": 1, "m_axis_tlast": 1,
                  "error": 1})
    return ports


def generate_verilog(network: Network, top_name: str, fifo_depth: int | None = DEFAULT_FIFO_DEPTH,
                     input_tlast: bool = True, fifo_depths: dict[str, int] | None = None) -> tuple[str, list[Stage]]:
    """The top level's Verilog and its stages. `input_tlast`: the input framer honours s_axis_tlast
    (realigns after a short or long frame, raises `error`); False leaves s_axis_tlast out."""
    stages = plan_stages(network, fifo_depth, fifo_depths)
    in_w, out_w = stream_widths(network)
    in_words, out_words = io_words(network)
    top = AxisDataflowTop([s.component() for s in stages], in_width=in_w, out_width=out_w,
                          out_words_per_frame=out_words, in_words_per_frame=in_words, input_tlast=input_tlast,
                          connections=connections(stages))
    return to_verilog(top, top_name), stages
