"""Cycle estimates for a stitched chain, from a small event model of each block.

Each block is modelled by when it can hand over each output word given when its input words arrive, with
the same rules as the hardware (docs/CONTRACTS.md):
- MVTU: one (nf, sf) step a cycle per input vector (an im2col row for a convolution); it reads the input
  stream only in its first neuron fold and emits a word `latency` cycles (the core's, which depends on its
  pipeline: memories, adder tree, activation) after the last step of each neuron fold;
- sliding-window generator: the core's own cycle-level model (`SlidingWindow.output_times`), which includes
  its start-up (the first window needs KH-1 rows and KW pixels of the image) and its frame-to-frame buffer;
- vector unit: one input word a cycle, a word out `latency` cycles after each fold's last input word;
- max-pool: one input word a cycle, an output word `StreamingMaxPool.latency` cycles after the input word
  that completes its window;
- FIFO: its latency (`StreamFIFO.latency`), then one word a cycle; width converter: one word a cycle.
Several frames are pushed through back to back (input always valid, output always ready) to get the
steady-state interval. The model is feed-forward: it assumes the FIFOs between layers absorb every burst,
which the one-frame FIFOs do; the measured interval is checked against it in the tests.
"""
from __future__ import annotations

from dataclasses import dataclass

from ip_cores.maxpool import StreamingMaxPool

from .stitch import Stage, timing_model

DWC_LATENCY = 1
FRAMES = 3


@dataclass(frozen=True)
class TimingEstimate:
    ii_cycles: int  # steady-state cycles per frame
    latency_cycles: int  # first input word accepted to last output word accepted, one frame, +1
    bottleneck: str


def _mvtu(stage: Stage, arrivals: list[int]) -> list[int]:
    layer = stage.layer
    sf_count, nf_count = layer.sf, layer.nf
    latency = timing_model(stage).latency
    outs = []
    t = -1
    for vector_start in range(0, len(arrivals), sf_count):
        words = arrivals[vector_start:vector_start + sf_count]
        for sf in range(sf_count):  # first neuron fold: paced by the input
            t = max(t + 1, words[sf])
        outs.append(t + latency)
        for _ in range(1, nf_count):  # other neuron folds replay the buffer: one step a cycle
            t += sf_count
            outs.append(t + latency)
    return outs


def _vvu(stage: Stage, arrivals: list[int]) -> list[int]:
    k = stage.layer.mw
    latency = timing_model(stage).latency
    outs, t = [], -1
    for index, arrival in enumerate(arrivals):
        t = max(t + 1, arrival)
        if index % k == k - 1:
            outs.append(t + latency)
    return outs


def _maxpool(stage: Stage, arrivals: list[int]) -> list[int]:
    pool = stage.layer.pool
    cf = stage.layer.channels // stage.layer.simd
    completes = [((oh * pool.stride_h + pool.kernel_h - 1) * pool.in_w + ow * pool.stride_w + pool.kernel_w - 1) * cf + c
                 for oh in range(pool.out_h) for ow in range(pool.out_w) for c in range(cf)]
    words_in = pool.pixels_in * cf
    accepted, t = [], -1
    for arrival in arrivals:
        t = max(t + 1, arrival)
        accepted.append(t)
    outs, last = [], -1
    for frame in range(len(arrivals) // words_in):
        for index in completes:
            last = max(accepted[frame * words_in + index] + StreamingMaxPool.latency, last + 1)
            outs.append(last)
    return outs


def _passthrough(arrivals: list[int], latency: int) -> list[int]:
    outs, last = [], -1
    for a in arrivals:
        last = max(a + latency, last + 1)
        outs.append(last)
    return outs


def _dwc(stage: Stage, arrivals: list[int]) -> list[int]:
    a, b = stage.in_elems_per_word, stage.out_elems_per_word
    outs, last = [], -1
    total_elems = len(arrivals) * a
    for j in range(total_elems // b):
        needed_word = ((j + 1) * b - 1) // a  # the input word holding this output word's last element
        last = max(arrivals[needed_word] + DWC_LATENCY, last + 1)
        outs.append(last)
    return outs


def stage_cycles(stage: Stage) -> int:
    """Steady-state cycles per frame of one block on its own."""
    if stage.kind == "swg":
        return timing_model(stage).cycles_per_frame()
    if stage.kind in ("mvtu", "vvu", "maxpool"):
        layer = stage.layer
        if stage.kind == "mvtu":
            return layer.vectors * layer.nf * layer.sf
        if stage.kind == "vvu":
            return layer.vectors * layer.nf * layer.mw
        return layer.cycles
    return max(stage.words_in, stage.words_out)


def estimate(stages: list[Stage]) -> TimingEstimate:
    arrivals = [0] * (stages[0].words_in * FRAMES)  # input offered from cycle 0, as fast as it is taken
    for stage in stages:
        if stage.kind == "mvtu":
            arrivals = _mvtu(stage, arrivals)
        elif stage.kind == "vvu":
            arrivals = _vvu(stage, arrivals)
        elif stage.kind == "swg":
            arrivals = timing_model(stage).output_times(arrivals)
        elif stage.kind == "maxpool":
            arrivals = _maxpool(stage, arrivals)
        elif stage.kind == "fifo":
            arrivals = _passthrough(arrivals, timing_model(stage).latency)
        else:
            arrivals = _dwc(stage, arrivals)
    words_out = stages[-1].words_out
    frame_ends = [arrivals[(f + 1) * words_out - 1] for f in range(FRAMES)]
    ii = frame_ends[-1] - frame_ends[-2]
    latency = frame_ends[0] + 1
    bottleneck = max(stages, key=stage_cycles)
    return TimingEstimate(ii_cycles=ii, latency_cycles=latency, bottleneck=bottleneck.name)
