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
- label select: one input word a cycle, the label `LabelSelect.latency` cycles after the frame's last word;
- global sum pool: one input word a cycle, a fold's word `GlobalSumPool.latency` cycles after the last pixel's;
- FIFO: its latency (`StreamFIFO.latency`), then one word a cycle; width converter: one word a cycle;
- duplicator: each branch offers a word `StreamDuplicator.latency` cycles after it arrives (its branch FIFOs and
  the FIFOs behind them are unbounded in this model);
- interleaver (a residual Add): takes a word of `a`, then the same word of `b`, one a cycle, each offered
  `StreamInterleave.latency` cycles later.
A DAG is scheduled in topological order, each stage from the output times of the stages that feed it.
Several frames are pushed through back to back (input always valid, output always ready) to get the
steady-state interval. The model is feed-forward: it assumes the FIFOs between layers absorb every burst,
which the one-frame FIFOs do; the measured interval is checked against it in the tests.
"""
from __future__ import annotations

from dataclasses import dataclass

from ip_cores.branches import StreamDuplicator, StreamInterleave
from ip_cores.maxpool import StreamingMaxPool

from .stitch import DEFAULT_FIFO_DEPTH, Stage, connections, plan_stages, timing_model

DWC_LATENCY = 1
FRAMES = 3


@dataclass(frozen=True)
class TimingEstimate:
    ii_cycles: int  # steady-state cycles per frame
    latency_cycles: int  # first input word accepted to last output word accepted, one frame, +1
    bottleneck: str


def _mvtu(stage: Stage, arrivals: list[int]) -> tuple[list[int], list[int]]:
    layer = stage.layer
    sf_count, nf_count = layer.sf, layer.nf
    latency = timing_model(stage).latency
    outs, taken = [], []
    t = -1
    for vector_start in range(0, len(arrivals), sf_count):
        words = arrivals[vector_start:vector_start + sf_count]
        for sf in range(sf_count):  # first neuron fold: paced by the input
            t = max(t + 1, words[sf])
            taken.append(t)
        outs.append(t + latency)
        for _ in range(1, nf_count):  # other neuron folds replay the buffer: one step a cycle
            t += sf_count
            outs.append(t + latency)
    return taken, outs


def _word_a_cycle(arrivals: list[int], words_per_output: int, latency: int) -> tuple[list[int], list[int]]:
    """A block that takes one input word a cycle and offers an output word `latency` cycles after taking the
    last of each `words_per_output` input words (the vector unit per fold, the label select per frame)."""
    outs, taken, t = [], [], -1
    for index, arrival in enumerate(arrivals):
        t = max(t + 1, arrival)
        taken.append(t)
        if index % words_per_output == words_per_output - 1:
            outs.append(t + latency)
    return taken, outs


def _vvu(stage: Stage, arrivals: list[int]) -> tuple[list[int], list[int]]:
    return _word_a_cycle(arrivals, stage.layer.mw, timing_model(stage).latency)


def _maxpool(stage: Stage, arrivals: list[int]) -> tuple[list[int], list[int]]:
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
    return accepted, outs


def _global_pool(stage: Stage, arrivals: list[int]) -> tuple[list[int], list[int]]:
    """One input word a cycle; a fold's word `latency` cycles after its last pixel's word is taken."""
    layer = stage.layer
    cf = layer.channels // layer.pe
    words = layer.conv.pixels_in * cf
    latency = timing_model(stage).latency
    taken, outs, t = [], [], -1
    for index, arrival in enumerate(arrivals):
        t = max(t + 1, arrival)
        taken.append(t)
        if index % words >= words - cf:
            outs.append(max(t + latency, outs[-1] + 1 if outs else 0))
    return taken, outs


def _label(stage: Stage, arrivals: list[int]) -> tuple[list[int], list[int]]:
    """A frame's label `latency` cycles after its last word is taken."""
    return _word_a_cycle(arrivals, stage.words_in, timing_model(stage).latency)


def _passthrough(arrivals: list[int], latency: int) -> tuple[list[int], list[int]]:
    outs, last = [], -1
    for a in arrivals:
        last = max(a + latency, last + 1)
        outs.append(last)
    return list(arrivals), outs


def _dwc(stage: Stage, arrivals: list[int]) -> tuple[list[int], list[int]]:
    a, b = stage.in_elems_per_word, stage.out_elems_per_word
    outs, last = [], -1
    total_elems = len(arrivals) * a
    for j in range(total_elems // b):
        needed_word = ((j + 1) * b - 1) // a  # the input word holding this output word's last element
        last = max(arrivals[needed_word] + DWC_LATENCY, last + 1)
        outs.append(last)
    taken, t = [], -1
    for k, arrival in enumerate(arrivals):  # a splitting converter takes a word when it sent the previous one's last
        free = outs[(k * a) // b - 1] - DWC_LATENCY if a > b and k else -1
        t = max(t + 1, arrival, free)
        taken.append(t)
    return taken, outs


def stage_cycles(stage: Stage) -> int:
    """Steady-state cycles per frame of one block on its own."""
    if stage.kind == "swg":
        return timing_model(stage).cycles_per_frame()
    if stage.kind in ("mvtu", "vvu", "maxpool", "label", "gpool"):
        layer = stage.layer
        if stage.kind == "mvtu":
            return layer.vectors * layer.nf * layer.sf
        if stage.kind == "vvu":
            return layer.vectors * layer.nf * layer.mw
        return layer.cycles
    return max(stage.words_in, stage.words_out)


@dataclass
class Scheduled:
    """One stage's word times: per input port when each word is offered and when the stage takes it, per output
    port when each output word is offered."""

    arrivals: list[list[int]]
    taken: list[list[int]]
    outs: list[list[int]]


def _join(arrivals_a: list[int], arrivals_b: list[int]) -> tuple[list[int], list[int], list[int]]:
    """The interleaver: word k of a, then word k of b, one a cycle."""
    taken_a, taken_b, outs, t = [], [], [], -1
    for a, b in zip(arrivals_a, arrivals_b):
        t = max(t + 1, a)
        taken_a.append(t)
        outs.append(t + StreamInterleave.latency)
        t = max(t + 1, b)
        taken_b.append(t)
        outs.append(t + StreamInterleave.latency)
    return taken_a, taken_b, outs


def _one_input(stage: Stage, arrivals: list[int]) -> tuple[list[int], list[int]]:
    """(taken, outs) of a single-input, single-output stage."""
    if stage.kind == "mvtu":
        return _mvtu(stage, arrivals)
    if stage.kind == "vvu":
        return _vvu(stage, arrivals)
    if stage.kind == "swg":
        outs, taken = timing_model(stage).schedule(arrivals)
        return taken, outs
    if stage.kind == "maxpool":
        return _maxpool(stage, arrivals)
    if stage.kind == "label":
        return _label(stage, arrivals)
    if stage.kind == "gpool":
        return _global_pool(stage, arrivals)
    if stage.kind in ("fifo", "unrolled"):
        return _passthrough(arrivals, timing_model(stage).latency)
    return _dwc(stage, arrivals)


def schedule(stages: list[Stage], arrivals: list[int]) -> list[Scheduled]:
    """Per stage, its `Scheduled` word times for the network input offered at `arrivals`, with every FIFO
    unbounded (the feed-forward model of the module docstring)."""
    ports = {}  # (stage index, input port) -> (stage index, output port)
    for source, out_port, sink, in_port in connections(stages):
        ports[(sink, in_port)] = (source, out_port)
    result: list[Scheduled] = []
    for index, stage in enumerate(stages):
        ins = []
        for in_port in stage.in_ports:
            if index == 0:
                ins.append(arrivals)
                continue
            source, out_port = ports[(index, in_port)]
            ins.append(result[source].outs[stages[source].out_ports.index(out_port)])
        if stage.kind == "join":
            taken_a, taken_b, outs = _join(*ins)
            result.append(Scheduled(ins, [taken_a, taken_b], [outs]))
        elif stage.kind == "dup":
            offered = [t + StreamDuplicator.latency for t in ins[0]]
            result.append(Scheduled(ins, [list(ins[0])], [offered] * stage.outputs))
        else:
            taken, outs = _one_input(stage, ins[0])
            result.append(Scheduled(ins, [taken], [outs]))
    return result


def estimate(stages: list[Stage]) -> TimingEstimate:
    arrivals = [0] * (stages[0].words_in * FRAMES)  # input offered from cycle 0, as fast as it is taken
    arrivals = schedule(stages, arrivals)[-1].outs[0]
    words_out = stages[-1].words_out
    frame_ends = [arrivals[(f + 1) * words_out - 1] for f in range(FRAMES)]
    ii = frame_ends[-1] - frame_ends[-2]
    latency = frame_ends[0] + 1
    bottleneck = max(stages, key=stage_cycles)
    return TimingEstimate(ii_cycles=ii, latency_cycles=latency, bottleneck=bottleneck.name)


FIFO_MARGIN_WORDS = 2  # the FIFO's own registers: a word in its output register and a fetch counted a cycle late
SIZING_FRAMES = 4


def fifo_words_needed(stages: list[Stage], ii: int) -> dict[str, int]:
    """Words each FIFO must hold so its producer never waits on it in the steady state: frames offered one per
    `ii` cycles (the rate the bottleneck sets), every block at its own schedule, and a FIFO word leaves when the
    block behind it (through any splitting width converter) has taken the word holding its last element. The
    most words in the FIFO at once, over the frames after the first, plus `FIFO_MARGIN_WORDS`. On a residual
    edge this is the skip-path buffer: what the other branch delays."""
    words = stages[0].words_in
    arrivals = [f * ii for f in range(SIZING_FRAMES) for _ in range(words)]
    plan = schedule(stages, arrivals)
    reader = {(source, out_port): (sink, in_port) for source, out_port, sink, in_port in connections(stages)}
    needed = {}
    for i, stage in enumerate(stages):
        if stage.kind != "fifo" or i == 0:
            continue
        j, port = reader[(i, "o")]
        while stages[j].kind == "dwc":
            j, port = reader[(j, "o")]
        consumer_taken = plan[j].taken[stages[j].in_ports.index(port)]
        f, b = stage.in_elems_per_word, stages[j].in_elems_per_word
        arrived = plan[i].arrivals[0]
        leaves = [consumer_taken[((k + 1) * f - 1) // b] for k in range(len(arrived))]
        first_frame_end = stage.words_in  # the pipeline's start is no steady state
        needed[stage.name] = _most_at_once(arrived[first_frame_end:], leaves[first_frame_end:]) + FIFO_MARGIN_WORDS
    return needed


def _most_at_once(enter: list[int], leave: list[int]) -> int:
    """The most words present at once: word k is there from `enter[k]` up to (not including) `leave[k]`."""
    events = sorted([(t, 1) for t in enter] + [(t, -1) for t in leave], key=lambda e: (e[0], e[1]))
    most = count = 0
    for _, delta in events:
        count += delta
        most = max(most, count)
    return most


def sized_stages(network, fifo_depth: int | None = DEFAULT_FIFO_DEPTH, sizing: str = "analysed"
                 ) -> tuple[list[Stage], dict[str, int] | None]:
    """The chain with its FIFOs sized by analysis (`fifo_words_needed` at the interval the rule's chain
    reaches, which the analysed one keeps), or by the rule / a fixed `fifo_depth`; and the analysed depths.
    An analysed depth never exceeds the rule's: a FIFO holding a whole frame decouples its two layers (at one
    word a frame the margin would otherwise make it deeper than that)."""
    rule = plan_stages(network, fifo_depth)
    if sizing != "analysed" or fifo_depth is not None:
        return rule, None
    rule_depth = {s.name: s.depth for s in rule if s.kind == "fifo"}
    depths = {name: min(words, rule_depth[name]) for name, words in fifo_words_needed(rule, estimate(rule).ii_cycles).items()}
    return plan_stages(network, fifo_depth, depths), depths
