"""Cycle estimates for a stitched design, from the event model of each block (`rtlgen/stages.py`: when a block
can hand over each output word given when its input words arrive, with the same rules as the hardware).

The blocks are scheduled in topological order, each from the output times of the blocks that feed it (a chain,
or a DAG with duplicators and residual joins). Several frames are pushed through back to back (input always
valid, output always ready) to get the steady-state interval. The model is feed-forward: it assumes the FIFOs
between layers absorb every burst, which FIFOs sized by `fifo_words_needed` (or the one-frame rule) do; the
measured interval is checked against it in the tests.
"""
from __future__ import annotations

from dataclasses import dataclass

from .stages import Stage
from .stitch import DEFAULT_FIFO_DEPTH, connections, plan_stages, residual_fifos

FRAMES = 3


@dataclass(frozen=True)
class TimingEstimate:
    ii_cycles: int  # steady-state cycles per frame
    latency_cycles: int  # first input word accepted to last output word accepted, one frame, +1
    bottleneck: str


@dataclass
class Scheduled:
    """One stage's word times: per input port when each word is offered and when the stage takes it, per output
    port when each output word is offered."""

    arrivals: list[list[int]]
    taken: list[list[int]]
    outs: list[list[int]]


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
        taken, outs = stage.schedule(ins)
        result.append(Scheduled(ins, taken, outs))
    return result


def _frame_ends(stages: list[Stage], frames: int) -> list[int]:
    """When each of `frames` frames' last output word is offered, the input offered from cycle 0 as fast as it
    is taken."""
    outs = schedule(stages, [0] * (stages[0].words_in * frames))[-1].outs[0]
    words_out = stages[-1].words_out
    return [outs[(f + 1) * words_out - 1] for f in range(frames)]


def estimate(stages: list[Stage]) -> TimingEstimate:
    """The steady-state interval (between the last two of enough frames) and the first frame's latency.

    A pipeline whose first frame takes many bottleneck intervals can deliver its first frames faster than the
    bottleneck allows (the slack before it fills): the frames run until the first frame's latency has passed
    several times over the slowest block's cycles, so the interval is the steady state's."""
    bottleneck = max(stages, key=lambda stage: stage.cycles())
    ends = _frame_ends(stages, FRAMES)
    frames = -(-(ends[0] + 1) // max(1, bottleneck.cycles())) + FRAMES
    if frames > FRAMES:
        ends = _frame_ends(stages, frames)
    return TimingEstimate(ii_cycles=ends[-1] - ends[-2], latency_cycles=ends[0] + 1, bottleneck=bottleneck.name)


FIFO_MARGIN_WORDS = 2  # the FIFO's own registers: a word in its output register and a fetch counted a cycle late
SIZING_FRAMES = 4


def fifo_words_needed(stages: list[Stage], ii: int, frames: int = SIZING_FRAMES) -> dict[str, int]:
    """Words each FIFO must hold so its producer never waits on it in the steady state: frames offered one per
    `ii` cycles (the rate the bottleneck sets), every block at its own schedule, and a FIFO word leaves when the
    block behind it (through any splitting width converter) has taken the word holding its last element. The
    most words in the FIFO at once, over the frames after the first, plus `FIFO_MARGIN_WORDS`. On a residual
    edge this is the skip-path buffer: what the other branch delays."""
    words = stages[0].words_in
    arrivals = [f * ii for f in range(frames) for _ in range(words)]
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
    """The design with its FIFOs sized by analysis (`fifo_words_needed` at the interval the rule's design
    reaches, which the analysed one keeps), or by the rule / a fixed `fifo_depth`; and the analysed depths.
    The analysis runs as many frames as the first frame's latency spans, plus margin, so a skip edge whose long
    path holds several frames in flight reaches its steady state. An analysed depth never exceeds the rule's on
    a chain edge: a FIFO holding a whole frame decouples its two layers (at one word a frame the margin would
    otherwise make it deeper than that); a residual edge takes what the analysis says."""
    rule = plan_stages(network, fifo_depth)
    if sizing != "analysed" or fifo_depth is not None:
        return rule, None
    rule_depth = {s.name: s.depth for s in rule if s.kind == "fifo"}
    residual = {s.name for s in residual_fifos(rule)}
    timing = estimate(rule)
    frames = max(SIZING_FRAMES, -(-timing.latency_cycles // max(1, timing.ii_cycles)) + 3)
    depths = {name: words if name in residual else min(words, rule_depth[name])
              for name, words in fifo_words_needed(rule, timing.ii_cycles, frames).items()}
    return plan_stages(network, fifo_depth, depths), depths
