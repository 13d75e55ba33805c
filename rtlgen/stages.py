"""The blocks of a stitched design, one class per kind: each builds its core, says how it schedules its words and
how many cycles a frame costs it on its own.

`rtlgen/stitch.py` decides which blocks a network needs and how they connect (`Stage.feeds`); `rtlgen/timing.py`
chains the blocks' schedules through the DAG; `rtlgen/build.py` reports them. A new kind of block is one class
here and its core in `ip_cores/`. The schedules follow the cores' rules (docs/CONTRACTS.md):

- MVTU: one (nf, sf) step a cycle per input vector (an im2col row for a convolution); it reads the input
  stream only in its first neuron fold and emits a word `latency` cycles (the core's, which depends on its
  pipeline: memories, adder tree, activation) after the last step of each neuron fold;
- sliding-window generator: the core's own cycle-level model (`SlidingWindow.schedule`), which includes its
  start-up (the first window needs KH-1 rows and KW pixels of the image) and its frame-to-frame buffer;
- vector unit: one input word a cycle, a word out `latency` cycles after each fold's last input word;
- max-pool: one input word a cycle, an output word `StreamingMaxPool.latency` cycles after the input word
  that completes its window;
- global sum pool: one input word a cycle, a fold's word `latency` cycles after the last pixel's;
- label select: one input word a cycle, the label `LabelSelect.latency` cycles after the frame's last word;
- FIFO: its latency (`StreamFIFO.latency`), then one word a cycle; width converter: one word a cycle;
- duplicator: each branch offers a word `StreamDuplicator.latency` cycles after it arrives (its branch FIFOs and
  the FIFOs behind them are unbounded in this model);
- interleaver (a residual Add): takes a word of `a`, then the same word of `b`, one a cycle, each offered
  `StreamInterleave.latency` cycles later.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

from ip_cores.branches import StreamDuplicator, StreamInterleave
from ip_cores.global_pool import GlobalSumPool
from ip_cores.label_select import LabelSelect
from ip_cores.maxpool import StreamingMaxPool
from ip_cores.mvtu import MVTU
from ip_cores.sliding_window import SlidingWindow
from ip_cores.stream_fifo import StreamFIFO
from ip_cores.unrolled import DenseSpec, UnrolledNetwork
from ip_cores.vector_unit import VectorVectorUnit
from ip_cores.width_converter import StreamWidthConverter

from .graph import DepthwiseLayer

DWC_LATENCY = 1

Times = list[int]


@dataclass(frozen=True)
class Stage:
    """One hardware block as the report and the timing model see it (a subclass per kind)."""

    name: str
    in_elems_per_word: int
    out_elems_per_word: int
    elem_width_in: int
    elem_width_out: int
    frame_elems_in: int  # per input port
    frame_elems_out: int
    layer: object = None
    depth: int = 0  # a FIFO's words; a duplicator's words per branch
    feeds: tuple = ()  # per input port: (stage name, its output port); () for the first stage (the network input)
    outputs: int = 1  # a duplicator's branches

    kind: ClassVar[str] = ""
    in_ports: ClassVar[tuple[str, ...]] = ("i",)

    @property
    def out_ports(self) -> tuple[str, ...]:
        return ("o",)

    @property
    def words_in(self) -> int:
        return self.frame_elems_in // self.in_elems_per_word

    @property
    def words_out(self) -> int:
        return self.frame_elems_out // self.out_elems_per_word

    def component(self):  # pragma: no cover - abstract
        """A new core for this block (to elaborate)."""
        raise NotImplementedError

    @cached_property
    def model(self):
        """The block's core, for its figures only (latency, resources); never elaborated, so Amaranth must not
        warn about it."""
        core = self.component()
        core._MustUse__silence = True
        return core

    def cycles(self) -> int:
        """Steady-state cycles per frame of the block on its own."""
        return max(self.words_in, self.words_out)

    def describe(self) -> tuple[str, str]:
        """(what the block is, its size) for report.html's dataflow drawing."""
        return self.kind, f"{self.in_elems_per_word} -> {self.out_elems_per_word} el"

    def implementation(self) -> dict | None:
        """How a layer's arithmetic core is built (report.json `implementation`); None for other blocks."""
        return None

    def schedule(self, arrivals: list[Times]) -> tuple[list[Times], list[Times]]:
        """When each input word is offered (per input port) -> when the block takes it (per input port) and when
        each output word is offered (per output port), the output always ready."""
        taken, outs = self.schedule_one(arrivals[0])
        return [taken], [outs]

    def schedule_one(self, arrivals: Times) -> tuple[Times, Times]:  # pragma: no cover - abstract
        """(taken, offered) of a block with one input and one output."""
        raise NotImplementedError


def word_a_cycle(arrivals: Times, words_per_output: int, latency: int) -> tuple[Times, Times]:
    """A block that takes one input word a cycle and offers an output word `latency` cycles after taking the
    last of each `words_per_output` input words (the vector unit per fold, the label select per frame)."""
    outs, taken, t = [], [], -1
    for index, arrival in enumerate(arrivals):
        t = max(t + 1, arrival)
        taken.append(t)
        if index % words_per_output == words_per_output - 1:
            outs.append(t + latency)
    return taken, outs


def passthrough(arrivals: Times, latency: int) -> tuple[Times, Times]:
    outs, last = [], -1
    for a in arrivals:
        last = max(a + latency, last + 1)
        outs.append(last)
    return list(arrivals), outs


def _implementation(layer) -> dict:
    """The layer's implementation options (folding file), as the MVTU/VVU keyword arguments."""
    return {"mac_resource": layer.mac_resource, "threshold_style": layer.threshold_style,
            "memory_style": layer.memory_style}


def _memories_report(memories) -> list[dict]:
    return [{"role": role, "kind": plan.kind, "depth": plan.depth, "width": plan.width, "luts": plan.luts,
             "bram18": plan.bram18} for role, plan in memories if plan.kind != "const"]


def _mac_implementation(core) -> dict:
    """An MVTU's or vector unit's multipliers, activation style, memories and pipeline latency."""
    memories = [("weights", core.weight_memory)] + [("activation", plan) for plan in core.activation.memories()]
    if getattr(core, "input_buffer", None) is not None:
        memories.append(("input_buffer", core.input_buffer))
    return {"mac_resource": core.mac_resource, "products_per_dsp": core.engine.pack,
            "activation": core.activation.describe(), "pipeline_latency": core.latency,
            "output_queue_words": core.engine.queue_depth, "memories": _memories_report(memories)}


def _activation_args(layer) -> dict:
    return {"thresholds": layer.thresholds, "out_fmt": layer.out_fmt, "requant": layer.requant,
            "out_offset": layer.out_offset if layer.thresholds is not None else 0}


# --------------------------------------------------------------------------------------------- layers' blocks

@dataclass(frozen=True)
class MvtuStage(Stage):
    kind: ClassVar[str] = "mvtu"

    def component(self):
        layer = self.layer
        return MVTU(layer.weights, simd=layer.simd, pe=layer.pe, in_fmt=layer.in_fmt, w_fmt=layer.w_fmt,
                    acc_width=layer.acc_width, **_activation_args(layer), **_implementation(layer))

    def cycles(self) -> int:
        return self.layer.vectors * self.layer.nf * self.layer.sf

    def describe(self) -> tuple[str, str]:
        return "MVTU", f"PE {self.layer.pe} x SIMD {self.layer.simd}"

    def implementation(self) -> dict:
        return _mac_implementation(self.model)

    def schedule_one(self, arrivals: Times) -> tuple[Times, Times]:
        sf_count, nf_count, latency = self.layer.sf, self.layer.nf, self.model.latency
        outs, taken, t = [], [], -1
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


@dataclass(frozen=True)
class VvuStage(Stage):
    """A depthwise convolution's vector unit, or a residual Add's (two taps)."""

    kind: ClassVar[str] = "vvu"

    def component(self):
        layer = self.layer
        return VectorVectorUnit(layer.weights, pe=layer.pe, in_fmt=layer.in_fmt, w_fmt=layer.w_fmt,
                                acc_width=layer.acc_width, **_activation_args(layer), **_implementation(layer))

    def cycles(self) -> int:
        return self.layer.vectors * self.layer.nf * self.layer.mw

    def describe(self) -> tuple[str, str]:
        return "VVU", f"PE {self.layer.pe}" + (", 2 taps (Add)" if self.layer.op == "Add" else "")

    def implementation(self) -> dict:
        return _mac_implementation(self.model)

    def schedule_one(self, arrivals: Times) -> tuple[Times, Times]:
        return word_a_cycle(arrivals, self.layer.mw, self.model.latency)


@dataclass(frozen=True)
class SlidingWindowStage(Stage):
    kind: ClassVar[str] = "swg"

    def component(self):
        layer, c = self.layer, self.layer.conv
        return SlidingWindow(layer.in_fmt, c.channels, c.in_h, c.in_w, c.kernel_h, c.kernel_w, c.stride_h, c.stride_w,
                             c.pad_top, c.pad_left, c.pad_bottom, c.pad_right, simd=layer.simd,
                             depthwise=isinstance(layer, DepthwiseLayer), pad_value=c.pad_value)

    def cycles(self) -> int:
        return self.model.cycles_per_frame()

    def describe(self) -> tuple[str, str]:
        return "sliding window", f"SIMD {self.in_elems_per_word}"

    def schedule_one(self, arrivals: Times) -> tuple[Times, Times]:
        outs, taken = self.model.schedule(arrivals)
        return taken, outs


@dataclass(frozen=True)
class MaxPoolStage(Stage):
    kind: ClassVar[str] = "maxpool"

    def component(self):
        layer, p = self.layer, self.layer.pool
        return StreamingMaxPool(layer.fmt, p.channels, p.in_h, p.in_w, p.kernel_h, p.kernel_w, p.stride_h, p.stride_w,
                                simd=layer.simd)

    def cycles(self) -> int:
        return self.layer.cycles

    def describe(self) -> tuple[str, str]:
        return "max-pool", f"SIMD {self.layer.simd}"

    def schedule_one(self, arrivals: Times) -> tuple[Times, Times]:
        pool = self.layer.pool
        cf = self.layer.channels // self.layer.simd
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


@dataclass(frozen=True)
class GlobalPoolStage(Stage):
    kind: ClassVar[str] = "gpool"

    def component(self):
        layer = self.layer
        return GlobalSumPool(layer.in_fmt, layer.channels, layer.conv.pixels_in, layer.pe, layer.acc_width,
                             **_activation_args(layer), threshold_style=layer.threshold_style,
                             memory_style=layer.memory_style)

    def cycles(self) -> int:
        return self.layer.cycles

    def describe(self) -> tuple[str, str]:
        return "global sum pool", f"PE {self.layer.pe}"

    def implementation(self) -> dict:
        core = self.model  # a running sum a channel: no multipliers, no weights
        memories = [("sums", core.store)] if core.store is not None else []
        memories += [("activation", plan) for plan in core.activation.memories()]
        return {"mac_resource": "none (global sum pool: one adder a lane)", "products_per_dsp": 0,
                "activation": core.activation.describe(), "pipeline_latency": core.latency,
                "output_queue_words": core.queue_depth, "memories": _memories_report(memories)}

    def schedule_one(self, arrivals: Times) -> tuple[Times, Times]:
        cf = self.layer.channels // self.layer.pe
        words, latency = self.layer.conv.pixels_in * cf, self.model.latency
        taken, outs, t = [], [], -1
        for index, arrival in enumerate(arrivals):
            t = max(t + 1, arrival)
            taken.append(t)
            if index % words >= words - cf:  # the last pixel's words
                outs.append(max(t + latency, outs[-1] + 1 if outs else 0))
        return taken, outs


@dataclass(frozen=True)
class LabelStage(Stage):
    kind: ClassVar[str] = "label"

    def component(self):
        layer = self.layer
        return LabelSelect(layer.channels, layer.simd, layer.fmt, layer.last_on_tie)

    def cycles(self) -> int:
        return self.layer.cycles

    def describe(self) -> tuple[str, str]:
        return "label select", f"SIMD {self.layer.simd}"

    def schedule_one(self, arrivals: Times) -> tuple[Times, Times]:
        return word_a_cycle(arrivals, self.words_in, self.model.latency)


@dataclass(frozen=True)
class JoinStage(Stage):
    """A residual Add's interleaver: its two input edges' words alternately, widened to the Add's input format."""

    kind: ClassVar[str] = "join"
    in_ports: ClassVar[tuple[str, ...]] = ("a", "b")

    def component(self):
        layer = self.layer
        return StreamInterleave(self.in_elems_per_word * self.elem_width_in,
                                widen=(*layer.input_fmts, layer.in_fmt, self.in_elems_per_word))

    def describe(self) -> tuple[str, str]:
        return "interleave (Add)", f"PE {self.in_elems_per_word}, a then b"

    def schedule(self, arrivals: list[Times]) -> tuple[list[Times], list[Times]]:
        """Word k of a, then word k of b, one a cycle."""
        taken_a, taken_b, outs, t = [], [], [], -1
        for a, b in zip(*arrivals):
            t = max(t + 1, a)
            taken_a.append(t)
            outs.append(t + StreamInterleave.latency)
            t = max(t + 1, b)
            taken_b.append(t)
            outs.append(t + StreamInterleave.latency)
        return [taken_a, taken_b], [outs]


_UNROLLED: dict = {}  # (id of the network, clock) -> its UnrolledNetwork: planning it takes seconds


@dataclass(frozen=True)
class UnrolledStage(Stage):
    """Latency mode: the whole network (`layer` is the `Network`) as one pipeline, a frame a cycle."""

    kind: ClassVar[str] = "unrolled"

    def component(self):
        network = self.layer
        key = (id(network), network.unrolled_clock_ns)
        if key not in _UNROLLED or _UNROLLED[key][0] is not network:
            specs = [DenseSpec(l.weights, l.in_fmt, l.out_fmt, l.thresholds,
                               l.out_offset if l.thresholds is not None else 0, l.requant) for l in network.layers]
            _UNROLLED.clear()
            _UNROLLED[key] = (network, UnrolledNetwork(specs, clock_ns=network.unrolled_clock_ns))
        return _UNROLLED[key][1]

    def describe(self) -> tuple[str, str]:
        return "unrolled pipeline", f"{len(self.layer.layers)} layers, a frame a cycle"

    def schedule_one(self, arrivals: Times) -> tuple[Times, Times]:
        return passthrough(arrivals, self.model.latency)


# --------------------------------------------------------------------------------------------- glue

@dataclass(frozen=True)
class FifoStage(Stage):
    kind: ClassVar[str] = "fifo"

    def component(self):
        return StreamFIFO(self.in_elems_per_word * self.elem_width_in, self.depth)

    def describe(self) -> tuple[str, str]:
        return "FIFO", f"{self.depth} x {self.in_elems_per_word} el"

    def schedule_one(self, arrivals: Times) -> tuple[Times, Times]:
        return passthrough(arrivals, self.model.latency)


@dataclass(frozen=True)
class WidthConverterStage(Stage):
    kind: ClassVar[str] = "dwc"

    def component(self):
        return StreamWidthConverter(self.elem_width_in, self.in_elems_per_word, self.out_elems_per_word)

    def describe(self) -> tuple[str, str]:
        return "width conv.", f"{self.in_elems_per_word} -> {self.out_elems_per_word} el"

    def schedule_one(self, arrivals: Times) -> tuple[Times, Times]:
        a, b = self.in_elems_per_word, self.out_elems_per_word
        outs, last = [], -1
        for j in range(len(arrivals) * a // b):
            needed_word = ((j + 1) * b - 1) // a  # the input word holding this output word's last element
            last = max(arrivals[needed_word] + DWC_LATENCY, last + 1)
            outs.append(last)
        taken, t = [], -1
        for k, arrival in enumerate(arrivals):  # a splitting converter takes a word when it sent the previous one's last
            free = outs[(k * a) // b - 1] - DWC_LATENCY if a > b and k else -1
            t = max(t + 1, arrival, free)
            taken.append(t)
        return taken, outs


@dataclass(frozen=True)
class DuplicatorStage(Stage):
    """A layer's output read by several layers: one branch FIFO of `depth` words each."""

    kind: ClassVar[str] = "dup"

    @property
    def out_ports(self) -> tuple[str, ...]:
        return tuple(f"o{k}" for k in range(self.outputs))

    def component(self):
        return StreamDuplicator(self.in_elems_per_word * self.elem_width_in, [self.depth] * self.outputs)

    def describe(self) -> tuple[str, str]:
        return "duplicator", f"{self.in_elems_per_word} el, to {self.outputs} readers"

    def schedule(self, arrivals: list[Times]) -> tuple[list[Times], list[Times]]:
        offered = [t + StreamDuplicator.latency for t in arrivals[0]]
        return [list(arrivals[0])], [offered] * self.outputs
