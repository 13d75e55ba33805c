"""A fully unrolled dense network for trigger latencies: one frame a cycle, every weight a constant.

`--latency` builds a multilayer perceptron as one free-running pipeline: the whole input vector enters in one
word, every layer computes all its outputs at once, and the output vector leaves in one word, one frame every
cycle. With every product done at once there are no weight memories: each weight is a constant, written in
canonical signed digits (`csd_digits`), so a product is a few shifted copies of the input, and each output's
whole dot product, its bias and its activation's offset are one bit heap (ip_cores/bit_heap.py): LUT
compressor levels to three rows and a ternary adder, registers placed by static timing of the structure
(`_Datapath`).

The activation of a layer, in this order of preference (all exact over the accumulator's range):
- a requantization given by the network (`requant`): its multiplier is folded into the constant weights, its
  offset into the heap; the rounding, shift and clip follow the carry chain: one LUT instance per output bit
  (`_ClipLuts`) reading its bit of the sum, the top bits the clip flags depend on and, for a HALF_EVEN tie, NOR
  LUTs of the low bits, which leave the chain first; a flag that would need more than one LUT of the sum's bits
  (a wide accumulator, a small shift: the jet tagger's first layer compares 10 bits) gets a comparison chain of
  its own beside the sum's (the heap then stops at two rows, the bound being the chain's third);
- thresholds that are a rounded shift of the accumulator (`fit_rounded_shift`: uniform power-of-two steps,
  any qonnx rounding mode, as an activation after a power-of-two scale gives): the same, with multiplier 1;
- otherwise one comparator a threshold against the accumulator, and a thermometer-to-binary decode.

Back-pressure never reaches the datapath: the input is accepted only while the output queue has room for every
frame in flight (credits), and the queue passes a frame straight to the output when it is empty, so the
latency is the pipeline's registers and nothing more.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .bit_heap import (CLOCK_TO_OUT_NS, COUNTER_LEVEL_NS, COUNTER_NET_NS, LUT_NS, PIN_NS, BitHeap, carry_chain_ns,
                       csd_digits, fanout_net_ns, lut, lut_ready)
from .elements import ElementFormat, signed_width_for
from .requantize import Requantization
from .resources import Resources
from .threshold_fit import fit_rounded_shift

__all__ = ["DenseSpec", "UnrolledNetwork", "heap_rounding"]

ACTIVATION_LEVEL_NS = LUT_NS + fanout_net_ns(8)  # a LUT level after the carry chain (its top bits reach ~8 LUTs)
CLIP_SETUP_NS = 0.404  # the clip's constant levels may go to a flip-flop's set/reset pin (its setup, measured)
REGISTER_NET_NS = 0.40  # the net into a flip-flop
DECODE_NS = 2 * COUNTER_LEVEL_NS  # thermometer (comparator outputs) to binary: two LUT levels
FINAL_ROWS = 3  # the heap is compressed to three rows for a ternary adder (a LUT6 a bit and the carry chain)
REGISTER_FANOUT = 12  # LUT inputs a replicated layer-input register drives at most (0.83 ns net)


def heap_rounding(rounding: str, shift: int, lo: int) -> int | None:
    """The constant that, added in the heap, makes `clip(R(n / 2**shift), lo, hi)` a floor shift of the sum
    (HALF_EVEN and ROUND then clear bit 0 of a tie, see `_Datapath._requantize`), or None.

    qonnx's HALF_UP/HALF_DOWN round ties away from/towards zero and UP/DOWN round away from/towards zero: they
    depend on the sign, except when the output cannot go below 0 (lo >= 0: every negative n gives lo whatever
    its rounding), where they are the constants of their positive half. None for those with lo < 0."""
    if shift == 0:
        return 0
    half = 1 << (shift - 1)
    constant = {"FLOOR": 0, "CEIL": 2 * half - 1, "HALF_EVEN": half, "ROUND": half}
    if lo >= 0:
        constant.update({"HALF_UP": half, "HALF_DOWN": half - 1, "UP": 2 * half - 1, "DOWN": 0})
    return constant.get(rounding.upper())


def at_least(value, bound: int):
    """`value >= bound` for a signed Amaranth value and a constant, as AND/OR logic of the value's bits (no
    subtractor: a carry chain after the sum's would double the delay; synthesis balances this into a LUT tree
    of the bits that matter, those at or above the bound's lowest set bit)."""
    n = len(value)
    lo, hi = -(1 << (n - 1)), (1 << (n - 1)) - 1
    if bound <= lo:
        return Const(1, 1)
    if bound > hi:
        return Const(0, 1)
    bits = [value[k] for k in range(n - 1)] + [~value[n - 1]]  # offset binary: unsigned compare
    c = bound + (1 << (n - 1))
    result = Const(1, 1)
    for k in range(n):
        result = (bits[k] & result) if (c >> k) & 1 else (bits[k] | result)
    return result


def compare_bits(width: int, bound: int) -> int:
    """How many of a `width`-bit signed value's bits `at_least(value, bound)` depends on."""
    c = (bound + (1 << (width - 1))) % (1 << width)
    return width - ((c & -c).bit_length() - 1) if c else 0


@dataclass(frozen=True, eq=False)
class DenseSpec:
    """One dense layer: weights (MH, MW) (bipolar weights as -1/+1), formats, and its activation: none (the
    accumulator leaves), `thresholds` (MH, N) with `out_offset`, or `requant`."""

    weights: np.ndarray
    in_fmt: ElementFormat
    out_fmt: ElementFormat
    thresholds: np.ndarray | None = None
    out_offset: int = 0
    requant: Requantization | None = None

    @property
    def mh(self) -> int:
        return self.weights.shape[0]

    @property
    def mw(self) -> int:
        return self.weights.shape[1]

    def channel_ranges(self) -> list[tuple[int, int]]:
        """Each output channel's exact accumulator range over all inputs in the input format's range."""
        w = np.asarray(self.weights, dtype=object)
        lo_x, hi_x = self.in_fmt.min, self.in_fmt.max
        a, b = w * lo_x, w * hi_x
        lo = np.minimum(a, b).sum(axis=1)
        hi = np.maximum(a, b).sum(axis=1)
        return [(int(x), int(y)) for x, y in zip(lo, hi)]

    def activation(self) -> tuple[str, Requantization | None, tuple]:
        """How the hardware computes the output: ("requant", rq, saturate_at) | ("compare", None, ()) |
        ("none", None, ()); saturate_at holds, per channel, None or the accumulator value from which the
        output is rq.hi."""
        if self.requant is not None:
            return "requant", self.requant, (None,) * self.mh
        if self.thresholds is None:
            return "none", None, ()
        if not self.out_fmt.is_bipolar:
            fit = fit_rounded_shift(self.thresholds, self.channel_ranges(), self.out_offset)
            if fit is not None:
                return "requant", fit[0], fit[1]
        return "compare", None, ()


def _chained_flags(widths: list[int], bounds: list[tuple[int, int]]) -> tuple[bool, bool]:
    """Which clip flags (over, under) get a comparison chain of their own: those whose logic over the sum's
    bits (`at_least`), with the output bit and the tie beside them, would not fit one LUT6 in some channel."""
    return tuple(any(compare_bits(w, pair[k]) + 2 > 6 for w, pair in zip(widths, bounds)) for k in (0, 1))


@dataclass(frozen=True)
class _Arithmetic:
    """What a layer's heaps add and how their sums become outputs: per channel the multiplier folded into the
    weights and the constant added (a requantization's, with the rounding constant of `heap_rounding`), the
    heap widths, and for a clip by shift its bounds and which of its flags get chains (`_chained_flags`)."""

    kind: str  # DenseSpec.activation()'s
    rq: Requantization | None
    saturate: tuple
    rounding: int | None
    mult: list[int]
    offset: list[int]
    widths: list[int]
    bounds: list[tuple[int, int]] | None
    chained: tuple[bool, bool]

    @classmethod
    def of(cls, spec: DenseSpec) -> "_Arithmetic":
        kind, rq, saturate = spec.activation()
        rounding = None
        if kind == "requant":
            rounding = heap_rounding(rq.rounding, rq.shift, rq.lo)
            mult, offset = list(rq.mult), [o + (rounding or 0) for o in rq.offset]
        else:
            mult, offset = [1] * spec.mh, [0] * spec.mh
        sums = [(min(a * k, b * k) + o, max(a * k, b * k) + o)
                for (a, b), k, o in zip(spec.channel_ranges(), mult, offset)]
        widths = [signed_width_for(lo, hi) for lo, hi in sums]
        bounds, chained = None, (False, False)
        if kind == "requant" and rounding is not None:
            bounds = [_Datapath._clip_bounds(rq, c, saturate[c], rounding) for c in range(spec.mh)]
            chained = _chained_flags(widths, bounds)
            if any(chained):  # a flag's chain computes sum - bound: the heap's width must hold that too
                widths = [max([w] + [signed_width_for(lo - b, hi - b) for b, on in zip(pair, chained) if on])
                          for w, (lo, hi), pair in zip(widths, sums, bounds)]
        return cls(kind, rq, saturate, rounding, mult, offset, widths, bounds, chained)

    @property
    def clips_by_shift(self) -> bool:
        return self.kind == "requant" and self.rounding is not None

    @property
    def final_rows(self) -> int:
        """Rows the heaps are compressed to: three for the ternary adder, two where a flag's chain adds the
        bound as a constant third row."""
        return 2 if any(self.chained) else FINAL_ROWS

    def clip_luts(self, out_fmt: ElementFormat) -> list["_ClipLuts"] | None:
        """Each channel's clip by shift as LUT instances (`_ClipLuts`), or None where it is not a clip by shift
        or some output bit would read more than six signals (then it is logic, `_Datapath._requantize`)."""
        if not self.clips_by_shift:
            return None
        tie = self.tie_bits > 0
        lo, hi = self.rq.lo % (1 << out_fmt.width), self.rq.hi % (1 << out_fmt.width)
        clips = [_ClipLuts(w, self.rq.shift, out_fmt.width, lo, hi, bounds, self.chained, tie)
                 for w, bounds in zip(self.widths, self.bounds)]
        return clips if all(clip.fits for clip in clips) else None

    @property
    def row_net_ns(self) -> float:
        """What the nets from the heap's last rows cost beyond a counter's (three LUTs): each row bit drives
        three LUTs of the sum's chain and three of each flag's chain."""
        return fanout_net_ns(3 * (1 + sum(self.chained))) - COUNTER_NET_NS

    @property
    def tie_bits(self) -> int:
        """The sum's low bits whose all-zero is a rounding tie (HALF_EVEN/ROUND clear bit 0 of a tie), or 0."""
        tie = self.clips_by_shift and self.rq.rounding.upper() in ("HALF_EVEN", "ROUND")
        return self.rq.shift if tie else 0

    def activation_ready(self, t_sum: float, t_low: float) -> float:
        """When the output values leave their LUTs, the sum (and flags) out at `t_sum` and the bits a tie
        reads at `t_low`. A clip by shift: an output bit is a function of the compared bits (or a chained flag)
        and its own bit, a LUT tree, and bit 0 also of the tie, a LUT tree over the low bits before it (early
        when the low bits come out of the chain first, on the path when the sum comes from a register); the
        other activations need a second chain first (a sign-dependent rounding's increment, a comparator
        bank)."""
        if self.clips_by_shift:
            depends = max([compare_bits(w, t) for w, pair in zip(self.widths, self.bounds)
                           for t, on in zip(pair, self.chained) if not on], default=0) + sum(self.chained)
            done = t_sum + ACTIVATION_LEVEL_NS * max(1, math.ceil(math.log(depends + 2, 6)))
            if self.tie_bits:  # bit 0's LUT: its bit, the flags' inputs and the tie's NOR LUTs (`_tie`)
                nors = -(-self.tie_bits // 6)
                nor = t_low + fanout_net_ns(1) + PIN_NS[min(6, self.tie_bits) - 1] + fanout_net_ns(1)
                inputs = [nor] * nors + [t_sum + ACTIVATION_LEVEL_NS - LUT_NS] * (1 + depends)
                # one LUT (two past six inputs) that synthesis maps, its pins its own choice: the slowest
                bit0 = max(inputs) + LUT_NS + (ACTIVATION_LEVEL_NS if len(inputs) > 6 else 0.0)
                done = max(done, bit0)
            return done
        if self.kind == "requant":
            return t_sum + COUNTER_NET_NS + carry_chain_ns(max(self.widths)) + 2 * ACTIVATION_LEVEL_NS
        return t_sum + COUNTER_NET_NS + carry_chain_ns(max(self.widths)) + DECODE_NS


def _top_bits(width: int, bound: int) -> int:
    """How many of a `width`-bit signed value's top bits decide `value >= bound` (0 when no value or every
    value reaches it)."""
    if bound <= -(1 << (width - 1)) or bound > (1 << (width - 1)) - 1:
        return 0
    return compare_bits(width, bound)


@dataclass(frozen=True)
class _ClipLuts:
    """One channel's clip by shift, `clip(m >> shift, lo, hi)` with the tie rule of `_Datapath._requantize`, as
    one LUT instance per output bit: its inputs are the sum's bit it passes, the top bits the clip flags read
    (or the flags' own chains) and, for bit 0 under a HALF_EVEN/ROUND tie, NOR LUTs of the low bits. Built as
    instances with the latest inputs on the fastest pins, so `ready` is exactly what the delay model will find
    (synthesis mapping the same logic picks its own pins and levels: a LUT4 chain, measured, 0.5 ns slower)."""

    width: int
    shift: int
    out_width: int
    lo: int
    hi: int
    bounds: tuple[int, int]
    chained: tuple[bool, bool]
    tie: bool

    @property
    def top(self) -> int:
        return max([_top_bits(self.width, b) for b, on in zip(self.bounds, self.chained) if not on], default=0)

    @property
    def nor_groups(self) -> list[range]:
        return [range(j, min(j + 6, self.shift)) for j in range(0, self.shift, 6)] if self.tie else []

    def inputs(self, j: int) -> list[tuple[str, int]]:
        bits = sorted({min(self.shift + j, self.width - 1)} | set(range(self.width - self.top, self.width)))
        extra = [("nor", g) for g in range(len(self.nor_groups))] if j == 0 else []
        return [("m", k) for k in bits] + [("flag", f) for f in (0, 1) if self.chained[f]] + extra

    @property
    def fits(self) -> bool:
        return all(len(self.inputs(j)) <= 6 for j in range(self.out_width))

    def _fanout(self, k: int) -> int:
        return sum(("m", k) in self.inputs(j) for j in range(self.out_width)) + any(k in g for g in self.nor_groups)

    def _arrivals(self, j: int, bit_times: list[float], flag_time: float) -> list[float]:
        def arrival(kind: str, i: int) -> float:
            if kind == "m":
                return bit_times[i] + fanout_net_ns(self._fanout(i))
            if kind == "flag":
                return flag_time + fanout_net_ns(self.out_width)
            nor = lut_ready([bit_times[k] + fanout_net_ns(self._fanout(k)) for k in self.nor_groups[i]])
            return nor + fanout_net_ns(1)
        return [arrival(kind, i) for kind, i in self.inputs(j)]

    def ready(self, bit_times: list[float], flag_time: float) -> float:
        """When the output bits leave their LUTs, the sum's bit k out of its chain (or a register) at
        bit_times[k] and the flags' chains at `flag_time`."""
        return max(lut_ready(self._arrivals(j, bit_times, flag_time)) for j in range(self.out_width))

    def value(self, j: int, assignment: dict) -> int:
        """Output bit j for one assignment of its inputs ({("m", k) | ("flag", f) | ("nor", g): 0/1})."""
        top = sum(assignment[("m", k)] << k for k in range(self.width - self.top, self.width))
        top -= (top >> (self.width - 1) & 1) << self.width  # signed; the bits below decide neither flag
        over = assignment[("flag", 0)] if self.chained[0] else top >= self.bounds[0]
        under = not (assignment[("flag", 1)] if self.chained[1] else top >= self.bounds[1])
        level = assignment[("m", min(self.shift + j, self.width - 1))]
        if j == 0 and self.tie and all(assignment[("nor", g)] for g in range(len(self.nor_groups))):
            level = 0  # a tie: the heap's rounding constant made an odd q one too high; clear its bit 0
        return (self.hi >> j & 1) if over else (self.lo >> j & 1) if under else level

    def build(self, m: Module, m_sum, flags: list, name: str, primitives: bool, bit_times: list[float],
              flag_time: float):
        """The LUT instances; returns the output bits (two's complement of lo/hi as the element's bits)."""
        nors = [lut(m, [m_sum[k] for k in group], 1, f"{name}_nor{g}", primitives)
                for g, group in enumerate(self.nor_groups)]
        signals = {("m", k): m_sum[k] for k in range(self.width)}
        signals.update({("flag", f): flags[f] for f in (0, 1) if self.chained[f]})
        signals.update({("nor", g): nor for g, nor in enumerate(nors)})
        out = []
        for j in range(self.out_width):
            order = sorted(zip(self._arrivals(j, bit_times, flag_time), self.inputs(j)))  # latest on the fastest
            keys = [key for _, key in order]
            table = sum(self.value(j, {key: v >> i & 1 for i, key in enumerate(keys)}) << v
                        for v in range(1 << len(keys)))
            out.append(lut(m, [signals[key] for key in keys], table, f"{name}_y{j}", primitives))
        return Cat(*out)

    @property
    def luts(self) -> int:
        return self.out_width + len(self.nor_groups)


def _element(word, fmt: ElementFormat, index: int):
    """Element `index` of a packed word, as a value of its format's sign."""
    raw = word[index * fmt.width:(index + 1) * fmt.width]
    return raw.as_signed() if fmt.is_signed else raw


def _as_format(m: Module, value, fmt: ElementFormat, name: str):
    """An in-range value (signed or unsigned Amaranth shape) as exactly its format's bits, sign-extended or
    cut, so the next heap adds exactly the element's bits and the output word holds them."""
    element = Signal(signed(fmt.width) if fmt.is_signed else unsigned(fmt.width), name=name)
    m.d.comb += element.eq(value)
    return element


class _Datapath:
    """The pipeline's logic for a list of layers, built into a module; records its registers and counts.

    Registers go where the clock needs them, by static timing of the structure itself with
    `rtlgen.delay_model`'s figures: every heap bit carries its arrival time (ns after the clock edge), and a
    level, carry chain or activation that would end after `clock_ns` starts after a register instead.
    `t_out` is when a layer's output values leave their LUTs (before the net to whatever reads them).
    """

    def __init__(self, m: Module, specs: list[DenseSpec], clock_ns: float, x_word, primitives: bool):
        self.m, self.specs, self.primitives = m, specs, primitives
        self.clock_ns = float(clock_ns)
        self.registers = 0
        self.luts = 0
        self.ffs = 0
        self.layer_levels = []  # counter levels of each layer
        self.layer_registers = []  # registers each layer adds (its share of the latency)
        self.layer_luts, self.layer_ffs = [], []  # each layer's share of the counts
        values = [_element(x_word, specs[0].in_fmt, i) for i in range(specs[0].mw)]
        t_out = CLOCK_TO_OUT_NS  # the input word comes from the upstream core's register
        # the nets from each layer's outputs to the register that may follow them: the next layer's input
        # copies, or the output register
        self.out_nets = [max(REGISTER_NET_NS + CLIP_SETUP_NS, fanout_net_ns(self._input_copies(spec)))
                         for spec in specs[1:]] + [REGISTER_NET_NS + CLIP_SETUP_NS]
        for index, spec in enumerate(specs):
            before = (self.registers, self.luts, self.ffs)
            values, t_out = self._layer(index, spec, values, t_out)
            self.layer_registers.append(self.registers - before[0])
            self.layer_luts.append(self.luts - before[1])
            self.layer_ffs.append(self.ffs - before[2])
        if t_out + REGISTER_NET_NS + CLIP_SETUP_NS > self.clock_ns:  # the output register would be late
            values = [self._register(v, f"out_{i}") for i, v in enumerate(values)]
            self.registers += 1
            self.layer_registers[-1] += 1
        self.out_word = Cat(*[v[:specs[-1].out_fmt.width] for v in values])

    def _register(self, value, name: str, keep: bool = False):
        """A reset-less register of `value`; `keep` for a copy made for fanout (synthesis must not merge it)."""
        reg = Signal(value.shape(), name=name, reset_less=True)
        if keep:
            reg.attrs["keep"] = 1
        self.m.d.sync += reg.eq(value)
        self.ffs += len(reg)
        return reg

    def _heaps(self, spec: DenseSpec, copies: list[list], mult, offset, widths, ready: float,
               name: str) -> list[BitHeap]:
        """One heap per output channel; channel c reads copy c * len(copies) // MH of the input values, whose
        bits arrive at `ready`, in the current stage."""
        heaps = []
        for c in range(spec.mh):
            heap = BitHeap(widths[c], self.clock_ns, f"{name}_{c}")
            for i, x in enumerate(copies[c * len(copies) // spec.mh]):
                w = int(spec.weights[c, i]) * mult[c]
                if w == 0:
                    continue
                if spec.in_fmt.is_bipolar:  # x = 2b - 1: w*x = 2w*b - w
                    for sign, shift in csd_digits(2 * w):
                        heap.add_bit(x, shift, negate=sign < 0, ready=ready, stage=self.registers)
                    heap.add_constant(-w)
                    continue
                for sign, shift in csd_digits(w):
                    heap.add_term(x, spec.in_fmt.is_signed, shift, negate=sign < 0, ready=ready,
                                  stage=self.registers)
            heap.add_constant(offset[c])
            heap.place_constant()
            heaps.append(heap)
        return heaps

    def _input_copies(self, spec: DenseSpec) -> int:
        """How many copies of its input values a layer registers, if it registers them (`_layer_inputs`)."""
        return min(spec.mh, -(-self._first_level_fanout(spec, _Arithmetic.of(spec).mult) // REGISTER_FANOUT))

    def _first_level_fanout(self, spec: DenseSpec, mult: list[int]) -> int:
        """LUT inputs an input bit reaches in the first counter level: every heap it is in, once a digit of
        its weight, each bit read by a counter's (up to) three LUTs."""
        digits = np.array([[len(csd_digits(int(w) * k)) for w in row] for row, k in zip(spec.weights, mult)])
        return 3 * int(digits.sum(axis=0).max(initial=1))

    def _align(self, heaps: list[BitHeap], stage: int) -> None:
        """Every heap's bits to `stage` (the carry chains need their rows in one stage, the layer's outputs
        leave together); `registers` counts the stages."""
        before = sum(h.ffs for h in heaps)
        for h in heaps:
            h.align(self.m, stage)
        self.ffs += sum(h.ffs for h in heaps) - before
        self.registers = stage

    @staticmethod
    def _chain_times(heap: BitHeap, arith: "_Arithmetic") -> tuple[list[float], float]:
        """When each bit of the sum is out of its chain, and when the flags' chains (their top bits) are."""
        times = heap.fastest_chain(extra_net_ns=arith.row_net_ns)[1]
        if not any(arith.chained):
            return times, 0.0
        return times, heap.fastest_chain(top_only=True, extra_net_ns=arith.row_net_ns)[1][-1]

    def _layer(self, index: int, spec: DenseSpec, values, t_out: float):
        arith = _Arithmetic.of(spec)
        name = f"l{index}"
        copies, ready = self._layer_inputs(spec, arith, values, t_out, name)
        heaps = self._heaps(spec, copies, arith.mult, arith.offset, arith.widths, ready, name)
        level = 0
        while max(h.height for h in heaps) > arith.final_rows:  # registers go per counter, inside the heaps
            self.luts += sum(h.compress(self.m, f"{name}_k{level}_{c}", arith.final_rows, self.primitives)
                             for c, h in enumerate(heaps))
            level += 1
        self.layer_levels.append(level)
        self.ffs += sum(h.ffs for h in heaps)
        sums_hw, flags, chains = self._sums(heaps, arith, name)
        t_sum = max(max(*t, f) for t, f in chains)
        if arith.kind == "none":
            return [_as_format(self.m, v, spec.out_fmt, f"{name}_y{c}") for c, v in enumerate(sums_hw)], t_sum
        clips = arith.clip_luts(spec.out_fmt)
        if clips:
            t_out = max(clip.ready(times, flag) for clip, (times, flag) in zip(clips, chains))
        else:
            t_low = max(max(t[:arith.tie_bits], default=0.0) for t, _ in chains)  # the bits a rounding tie reads
            t_out = arith.activation_ready(t_sum, t_low)
        if t_out + self.out_nets[index] > self.clock_ns:
            sums_hw = [self._register(s, f"{name}_acc_{c}") for c, s in enumerate(sums_hw)]
            flags = [[None if f is None else self._register(f, f"{name}_flag{k}_{c}_r") for k, f in enumerate(pair)]
                     for c, pair in enumerate(flags)]
            self.registers += 1
            chains = [([CLOCK_TO_OUT_NS] * len(times), CLOCK_TO_OUT_NS) for times, _ in chains]
            t_out = (max(clip.ready(times, flag) for clip, (times, flag) in zip(clips, chains)) if clips
                     else arith.activation_ready(CLOCK_TO_OUT_NS, CLOCK_TO_OUT_NS))
        rq = arith.rq
        if clips:
            outs = [clip.build(self.m, s, flags[c], f"{name}_clip{c}", self.primitives, *chains[c])
                    for c, (clip, s) in enumerate(zip(clips, sums_hw))]
            self.luts += sum(clip.luts for clip in clips)
        elif arith.clips_by_shift:
            outs = [self._requantize(s, rq, c, spec.out_fmt, arith.bounds[c], flags[c], f"{name}_tie_{c}")
                    for c, s in enumerate(sums_hw)]
        elif arith.kind == "requant":
            outs = [self._requantize_signed_rounding(s, rq, c, spec.out_fmt, arith.saturate[c])
                    for c, s in enumerate(sums_hw)]
        else:
            outs = [self._compare(s, spec, c) for c, s in enumerate(sums_hw)]
        values = [_as_format(self.m, v, spec.out_fmt, f"{name}_y{c}") for c, v in enumerate(outs)]
        return values, t_out

    def _layer_inputs(self, spec: DenseSpec, arith: "_Arithmetic", values, t_out: float, name: str):
        """The layer's input values as copies (one list per copy) and when their bits reach the first level.
        The first level reads each input bit from up to hundreds of LUTs. A register here, if the clock needs
        one, goes on the values (not on every heap's copy of a bit), replicated so that no copy drives more
        than REGISTER_FANOUT LUT inputs (each copy feeds a block of output channels)."""
        fanout = self._first_level_fanout(spec, arith.mult)
        ready = t_out + fanout_net_ns(fanout)
        if ready + LUT_NS + COUNTER_NET_NS <= self.clock_ns:
            return [values], ready
        copies = self._input_copies(spec)
        values = [[self._register(v, f"{name}_x{i}_r{r}", keep=copies > 1) for i, v in enumerate(values)]
                  for r in range(copies)]
        self.registers += 1
        return values, CLOCK_TO_OUT_NS + fanout_net_ns(-(-fanout // copies))

    def _sums(self, heaps: list[BitHeap], arith: "_Arithmetic", name: str):
        """Each compressed heap's sum (and, where the clip needs them, its flags' chains), in one stage: the
        rows are aligned to their latest stage, or to the next when the chains would end after the clock.
        Returns the sums, the flags per channel ([over, under], None where logic of the sum gives it), and per
        channel when each bit of the sum leaves its chain and when the flags do."""
        self._align(heaps, max(h.stage for h in heaps))
        chains = [self._chain_times(h, arith) for h in heaps]
        if max(max(*t, f) for t, f in chains) + REGISTER_NET_NS > self.clock_ns:
            self._align(heaps, self.registers + 1)
            chains = [self._chain_times(h, arith) for h in heaps]
        sums_hw = [h.sum(self.m, f"{name}_sum_{c}", self.primitives, arith.row_net_ns) for c, h in enumerate(heaps)]
        self.luts += 2 * sum(arith.widths) + len(heaps)  # the chains' propagate and generate LUTs, bit 0's copy
        flags = [[None, None] for _ in heaps]
        for c, h in enumerate(heaps):
            for k in (0, 1):
                if arith.chained[k]:
                    flags[c][k] = h.at_least(self.m, arith.bounds[c][k], f"{name}_flag{k}_{c}", self.primitives,
                                             arith.row_net_ns)
        self.luts += (2 * sum(arith.widths) + len(heaps)) * sum(arith.chained)
        return sums_hw, flags, chains

    @staticmethod
    def _clip_bounds(rq: Requantization, c: int, saturate_at: int | None, rounding: int) -> tuple[int, int]:
        """(over, under) bounds on the heap sum m = acc*mult + offset + rounding: the output is rq.hi when
        m >= over (q > hi, or the accumulator at or above `saturate_at`), rq.lo when m < under (q < lo)."""
        over = (rq.hi + 1) << rq.shift
        if saturate_at is not None:
            over = min(over, saturate_at * rq.mult[c] + rq.offset[c] + rounding)
        return over, rq.lo << rq.shift

    def _requantize(self, m_sum, rq: Requantization, c: int, out_fmt: ElementFormat, bounds: tuple[int, int],
                    flags: list, tie_name: str):
        """clip(q, lo, hi) with q = m_sum >> shift, the heap having added the rounding constant (so q is the
        rounded value, except that HALF_EVEN/ROUND ties are one too high when odd: a tie leaves the low `shift`
        bits of m_sum zero, and q odd then has its bit 0 cleared, no carry). The clip flags are logic of
        m_sum's top bits, beside the output bits (one LUT level after the carry chain), or, where that logic
        would take two levels, `flags` = [m_sum >= over, m_sum >= under] from chains of their own."""
        shift = rq.shift
        q = Signal(signed(max(len(m_sum) - shift, out_fmt.width) + 1), name=f"rq_q_{c}")
        self.m.d.comb += q.eq(m_sum >> shift)
        level = q[:out_fmt.width]
        if shift and rq.rounding.upper() in ("HALF_EVEN", "ROUND"):
            level = Cat(level[0] & ~self._tie(m_sum[:shift], tie_name), level[1:])
        over = at_least(m_sum, bounds[0]) if flags[0] is None else flags[0]
        under = ~(at_least(m_sum, bounds[1]) if flags[1] is None else flags[1])
        out = Signal(out_fmt.width, name=f"rq_out_{c}")  # the element's bits (two's complement when signed)
        self.m.d.comb += out.eq(Mux(over, rq.hi, Mux(under, rq.lo, level)))
        self.luts += 2 * out_fmt.width + compare_bits(len(m_sum), bounds[0]) // 5 + 1
        return out

    def _tie(self, low, name: str):
        """All of `low` zero (a rounding tie), as NOR LUTs of up to six bits (instances, so that synthesis
        keeps the structure `_Arithmetic.activation_ready` times: the NORs from the chain's early low bits,
        then one LUT with bit 0 and the clip's inputs) and their AND in that LUT."""
        nors = [lut(self.m, [low[k] for k in range(j, min(j + 6, len(low)))], 1, f"{name}_{j // 6}", self.primitives)
                for j in range(0, len(low), 6)]
        self.luts += len(nors)
        return Cat(*nors).all()

    def _requantize_signed_rounding(self, n, rq: Requantization, c: int, out_fmt: ElementFormat,
                                    saturate_at: int | None):
        """clip(R(n / 2**shift)) for a rounding that depends on the sign (`heap_rounding` is None): the
        round-up bit decided after the sum, and an increment."""
        shift = rq.shift
        q = n >> shift
        r = n[:shift]
        half = 1 << (shift - 1)
        above, tie, inexact, negative = r > half, r == half, r != 0, n[-1]
        up = {"UP": inexact & ~negative, "DOWN": inexact & negative,
              "HALF_UP": above | (tie & ~negative), "HALF_DOWN": above | (tie & negative)}[rq.rounding.upper()]
        level = Signal(out_fmt.width, name=f"rq_level_{c}")
        self.m.d.comb += level.eq(q[:out_fmt.width] + up)
        over = (q > rq.hi) | ((q == rq.hi) & up)
        under = (q < rq.lo - 1) | ((q == rq.lo - 1) & ~up)
        if saturate_at is not None:
            over = over | (n >= saturate_at * rq.mult[c] + rq.offset[c])
        out = Signal(out_fmt.width, name=f"rq_out_{c}")
        self.m.d.comb += out.eq(Mux(over, rq.hi, Mux(under, rq.lo, level)))
        self.luts += len(level) + 2 * out_fmt.width
        return out

    def _compare(self, acc, spec: DenseSpec, c: int):
        """count_k(acc >= T[c, k]) by one comparator a threshold and a thermometer decode (thresholds sorted)."""
        t = [int(v) for v in spec.thresholds[c]]
        therm = [acc >= v for v in t]
        n = len(t)
        bits = []
        for b in range(max(1, n.bit_length())):
            step = 1 << b
            terms = []
            for start in range(step - 1, n, 2 * step):  # count has bit b set iff it is in [start+1, start+step]
                reached = therm[start]
                beyond = therm[start + step] if start + step < n else Const(0, 1)
                terms.append(reached & ~beyond)
            bit = Const(0, 1)
            for term in terms:
                bit = bit | term
            bits.append(bit)
        count = Cat(*bits)
        self.luts += n * (len(acc) // 2 + 1) + n // 3
        if spec.out_fmt.is_bipolar:
            return count[0]
        out = Signal(signed(max(spec.out_fmt.width, len(count)) + 2), name=f"thr_out_{c}")
        self.m.d.comb += out.eq(count + spec.out_offset)
        return out


class UnrolledNetwork(wiring.Component):
    """Dense layers `specs` unrolled into one pipeline: `i` takes a whole input frame a word (MW0 elements of
    the first layer's input format), `o` gives the whole output frame a word, one frame a cycle.

    `clock_ns` is the target clock period the registers are placed for. `latency` is the number of cycles
    from a frame's input handshake to its output word being offered (registers on the path). `primitives`:
    the heaps' counters as Xilinx LUT instances (for synthesis and Verilator, which compiles models of them),
    or as logic (Amaranth's simulator); the same truth tables either way.
    """

    def __init__(self, specs: list[DenseSpec], clock_ns: float = 5.0, primitives: bool = True):
        self.specs = list(specs)
        self.primitives = bool(primitives)
        if not self.specs:
            raise ValueError("an unrolled network needs at least one layer")
        for a, b in zip(self.specs, self.specs[1:]):
            if a.mh != b.mw or a.out_fmt != b.in_fmt:
                raise ValueError(f"layer outputs ({a.mh} x {a.out_fmt}) do not match the next inputs "
                                 f"({b.mw} x {b.in_fmt})")
        self.clock_ns = float(clock_ns)
        self.in_width = self.specs[0].mw * self.specs[0].in_fmt.width
        self.out_width = self.specs[-1].mh * self.specs[-1].out_fmt.width
        self._planned = self._plan()
        _, _, plan = self._planned
        self.layer_registers = plan.layer_registers
        self.layer_levels = plan.layer_levels
        self._plan_luts, self._plan_ffs = plan.luts, plan.ffs
        self._layer_counts = list(zip(plan.layer_luts, plan.layer_ffs))
        self.latency = plan.registers + 1  # the cuts, the output register
        self.queue_depth = self.latency + 2
        super().__init__({"i": In(stream.Signature(self.in_width)), "o": Out(stream.Signature(self.out_width))})

    def _plan(self):
        """The datapath in a module of its own, with its input word and its plan (`_Datapath`). Planning takes
        seconds on a network like the jet tagger, so __init__'s plan is the one the first elaboration uses."""
        m = Module()
        m._MustUse__silence = True  # a plan that is only read for its figures is never elaborated
        x = Signal(self.in_width, name="x")
        return m, x, _Datapath(m, self.specs, self.clock_ns, x, self.primitives)

    def cycles_per_frame(self) -> int:
        return 1

    def resources(self) -> Resources:
        """Analytic estimate: heap counters and chains from the plan, the registers, the output queue."""
        queue_luts = -(-self.out_width // 6) * 4 * -(-self.queue_depth // 32)
        return Resources(luts=self._plan_luts + 30, ffs=self._plan_ffs + self.out_width + 40,
                         lutram=queue_luts)

    def layer_resources(self) -> list[Resources]:
        """Each layer's share of `resources()`: its heaps, carry chains, activations and pipeline registers (the
        output register and queue counted with the last layer)."""
        shares = [Resources(luts=luts, ffs=ffs) for luts, ffs in self._layer_counts]
        total = self.resources()
        shares[-1] = shares[-1] + Resources(luts=total.luts - self._plan_luts, ffs=total.ffs - self._plan_ffs,
                                            lutram=total.lutram)
        return shares

    def elaborate(self, platform):
        m = Module()
        # Issue: a frame is taken while credits remain. The first layer reads the input word straight from the
        # port (the upstream register is its start point; the planner counted its fanout), so the handshake
        # cycle already computes.
        outstanding = Signal(range(self.queue_depth + 2), name="outstanding")
        may_issue = Signal(init=1, name="may_issue")
        take = self.i.valid & may_issue
        m.d.comb += self.i.ready.eq(may_issue)
        valid = take
        datapath, x, path = self._planned or self._plan()  # the one planned in __init__, once
        self._planned = None
        m.submodules.datapath = datapath
        m.d.comb += x.eq(self.i.payload)
        y = Signal(self.out_width, name="y_out", reset_less=True)
        m.d.sync += y.eq(path.out_word)
        for k in range(path.registers + 1):  # valid beside the data: the cuts and the output register
            nxt = Signal(name=f"valid_{k + 1}")
            m.d.sync += nxt.eq(valid)
            valid = nxt
        leave = self._queue(m, y, valid)
        # may_issue is (outstanding + take - leave) < depth, decided without an adder in front of it (a carry
        # chain on this control path measured 5.3 ns): one more outstanding frame fills the credits exactly
        # when outstanding == depth - 1, one fewer always leaves room.
        m.d.sync += outstanding.eq(outstanding + take - leave)
        with m.If(take & ~leave):
            m.d.sync += may_issue.eq(outstanding != self.queue_depth - 1)
        with m.Elif(leave & ~take):
            m.d.sync += may_issue.eq(1)
        return m

    def _queue(self, m: Module, data, valid):
        """The output queue: a frame passes straight through when the queue is empty and `o` is ready, else it
        is stored (LUTRAM, read asynchronously) and offered in order. Returns the output handshake."""
        depth = self.queue_depth
        m.submodules.queue = mem = Memory(shape=unsigned(self.out_width), depth=depth, init=[])
        wr, rd = mem.write_port(), mem.read_port(domain="comb")
        stored = Signal(range(depth + 1), name="stored")
        empty = Signal(init=1, name="queue_empty")
        wptr, rptr = Signal(range(depth)), Signal(range(depth))
        leave = Signal()
        through = empty & self.o.ready
        write = valid & ~through
        read = ~empty & self.o.ready
        m.d.comb += [
            self.o.valid.eq(~empty | valid),
            self.o.payload.eq(Mux(empty, data, rd.data)),
            leave.eq(self.o.valid & self.o.ready),
            wr.addr.eq(wptr), wr.data.eq(data), wr.en.eq(write),
            rd.addr.eq(rptr),
        ]
        wrap = lambda p: Mux(p == depth - 1, 0, p + 1)  # noqa: E731
        with m.If(write):
            m.d.sync += wptr.eq(wrap(wptr))
        with m.If(read):
            m.d.sync += rptr.eq(wrap(rptr))
        # empty is (stored + write - read) == 0, decided without the adder (as may_issue above)
        m.d.sync += [stored.eq(stored + write - read), empty.eq(~write & Mux(read, stored == 1, empty))]
        return leave
