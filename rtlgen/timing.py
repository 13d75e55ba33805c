"""Cycle estimates for a stitched chain, from a small event model of each block.

Each block is modelled by when it can hand over each output word given when its input words arrive, with
the same rules as the hardware: an MVTU takes one (nf, sf) step a cycle, reads the input stream only in its
first neuron fold and emits a word `MVTU_LATENCY` cycles after the last step of each neuron fold; a FIFO
adds its latency and passes one word a cycle; a width converter emits one word a cycle. Several frames are
pushed through back to back (input always valid, output always ready) to get the steady-state interval.
"""
from __future__ import annotations

from dataclasses import dataclass

from .stitch import Stage

MVTU_LATENCY = 3
FIFO_LATENCY = 1
DWC_LATENCY = 1
FRAMES = 3


@dataclass(frozen=True)
class TimingEstimate:
    ii_cycles: int  # steady-state cycles per frame
    latency_cycles: int  # first input word accepted to last output word accepted, one frame, +1
    bottleneck: str


def _mvtu(stage: Stage, arrivals: list[int], state: dict) -> list[int]:
    layer = stage.layer
    sf_count, nf_count = layer.sf, layer.nf
    outs = []
    t = state.get("t", -1)
    for frame_start in range(0, len(arrivals), sf_count):
        words = arrivals[frame_start:frame_start + sf_count]
        for sf in range(sf_count):  # first neuron fold: paced by the input
            t = max(t + 1, words[sf])
        outs.append(t + MVTU_LATENCY)
        for _ in range(1, nf_count):  # other neuron folds replay the buffer: one step a cycle
            t += sf_count
            outs.append(t + MVTU_LATENCY)
    state["t"] = t
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
    n_in = len(arrivals)
    total_elems = n_in * a
    for j in range(total_elems // b):
        needed_word = ((j + 1) * b - 1) // a  # the input word holding this output word's last element
        last = max(arrivals[needed_word] + DWC_LATENCY, last + 1)
        outs.append(last)
    return outs


def estimate(stages: list[Stage]) -> TimingEstimate:
    first = stages[0]
    words_in = first.frame_elems_in // first.in_elems_per_word
    arrivals = [0] * (words_in * FRAMES)  # input offered from cycle 0, as fast as it is taken
    first_accept = 0
    for stage in stages:
        if stage.kind == "mvtu":
            arrivals = _mvtu(stage, arrivals, {})
        elif stage.kind == "fifo":
            arrivals = _passthrough(arrivals, FIFO_LATENCY)
        else:
            arrivals = _dwc(stage, arrivals)
    last = stages[-1]
    words_out = last.frame_elems_out // last.out_elems_per_word
    frame_ends = [arrivals[(f + 1) * words_out - 1] for f in range(FRAMES)]
    ii = frame_ends[-1] - frame_ends[-2]
    latency = frame_ends[0] - first_accept + 1
    bottleneck = max((s for s in stages if s.kind == "mvtu"), key=lambda s: s.layer.cycles)
    return TimingEstimate(ii_cycles=ii, latency_cycles=latency, bottleneck=bottleneck.name)
