"""The activation stage of the MVTU and the vector unit: PE accumulators of one fold in, one output word out.

An activation is one of (see docs/CONTRACTS.md):

    AccumulatorOut        the accumulator itself (an XNOR popcount pc as 2*pc - n), one register
    ParallelThresholds    count_j(acc >= T[c, j]) + offset with all NT comparators at once: for 1-2 bit outputs
                          (NT <= 3), where it is the cheapest; comparators and the count in one stage
    BinarySearchThresholds  the same count found bit by bit, most significant first: one comparator per
                          output bit and lane, a register after each, so an 8-bit activation needs 8
                          comparators instead of 255
    Requantizer           clip(R((acc * mult[c] + offset[c]) / 2**shift), lo, hi): multiply, add, round,
                          clip, a register after each (the first two map onto a DSP48's MREG and PREG)

Each is a pipeline that runs free: `build` takes the accumulators (`Timed`, valid at some cycle A0) and the
fold index (`Timed`, known from the issue on) and returns the output word as a `Timed` at A0 + `latency`.
Per-fold parameters (thresholds, mult, offset) live in memories planned by ip_cores/memories.py, read ahead
so they arrive exactly when needed. `resources()` is the analytic estimate of what the stage costs.

Binary search, for NT thresholds padded to 2**B - 1 with a value no accumulator reaches: stage s decides bit s
of the count (most significant first) by comparing with T[J * 2**(B-s) + 2**(B-1-s) - 1], J the bits decided
so far. Stage s's memory holds, for every J' of s-1 bits, the two thresholds of J = 2J' and 2J' + 1 in one
word, so it is read as soon as bit s-2 is known and bit s-1 only picks one of the pair: one stage a cycle
with LUT memories. Stages 0 and 1 depend on the fold only and are shared by all lanes; stage s >= 2 has a
memory per lane of NF * 2**(s-1) pair words.
"""
from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed

from .elements import ElementFormat, pack_words, signed_width_for, word_element
from .memories import LUTS_PER_BRAM18, MemoryPlan, plan_rom, read_rom
from .resources import Resources, adder_tree_cost
from .pipeline import Timed, pipelined_sum, registered, tree_register_levels
from .requantize import Requantization, dsp_partial_ranges, requantize_reference, dsp_product_stages, lut_product_stages, requantize_pipeline
from .threshold_fit import fit_affine_thresholds

__all__ = ["activation_reference", "ActivationStage", "AccumulatorOut", "ParallelThresholds", "BinarySearchThresholds", "Requantizer",
           "THRESHOLD_STYLES", "threshold_style_for", "signed_sum", "make_activation", "Resources"]

THRESHOLD_STYLES = ("auto", "parallel", "binary", "requant")


def signed_sum(acc, xnor: bool, n_terms: int):
    """The accumulator's value as a signed sum: an XNOR popcount pc as `2*pc - n_terms`."""
    return ((Cat(acc, Const(0, 1)).as_signed() << 1) - n_terms) if xnor else acc


def threshold_style_for(n_thresholds: int, choice: str = "auto") -> str:
    """"parallel" for up to 3 thresholds (1-2 bit outputs); from 4 on "auto" (binary search or a fitted
    multiply-shift, whichever is cheaper: `make_activation`), unless chosen."""
    if choice not in THRESHOLD_STYLES:
        raise ValueError(f"threshold style must be one of {THRESHOLD_STYLES}, not {choice!r}")
    if choice != "auto":
        return choice
    return "parallel" if n_thresholds <= 3 else "auto"


def _output(m: Module, value, out_fmt: ElementFormat, name: str) -> Signal:
    """`value` as an `out_fmt` element (two's complement, low bits kept)."""
    out = Signal(out_fmt.width, name=name)
    m.d.comb += out.eq(value)
    return out


def activation_reference(acc, thresholds=None, out_offset: int = 0, out_fmt: ElementFormat | None = None,
                         requant: Requantization | None = None) -> np.ndarray:
    """What every activation stage computes, in plain numpy: accumulators (..., C) -> outputs (..., C).

    With `requant`: `requantize_reference(acc, requant)`. With thresholds (C, NT): `count_j(acc >= T[c, j]) +
    out_offset`, for a bipolar `out_fmt` the count (0 or 1) as -1/+1. Without either: the accumulators. The
    cores' references and the compiler's golden model all call this one function."""
    acc = np.asarray(acc)
    if requant is not None:
        return requantize_reference(acc, requant)
    if thresholds is None:
        return acc
    count = (acc[..., None] >= np.asarray(thresholds, dtype=np.int64)).sum(axis=-1)
    if out_fmt is not None and out_fmt.is_bipolar:
        return np.where(count > 0, 1, -1)
    return count + int(out_offset)


class ActivationStage:
    """Base: `lanes` accumulators of one fold -> one word of `lanes` `out_fmt` elements."""

    name = "activation"
    latency = 1

    def __init__(self, lanes: int, n_folds: int, out_fmt: ElementFormat, xnor: bool, n_terms: int,
                 acc_width: int, memory_style: str = "auto"):
        self.memory_style = memory_style  # of the per-fold tables (ip_cores/memories.py)
        self.lanes, self.n_folds, self.out_fmt = int(lanes), int(n_folds), out_fmt
        self.xnor, self.n_terms, self.acc_width = bool(xnor), int(n_terms), int(acc_width)

    def memories(self) -> list[MemoryPlan]:
        return [plan for plan, _ in self.tables()]

    def tables(self) -> list[tuple[MemoryPlan, list[int]]]:
        """The per-fold tables as (plan, contents): what `build` reads and what the estimate counts."""
        return []

    def resources(self) -> Resources:
        mem = Resources()
        for plan, words in self.tables():
            mem = mem + Resources.of_memory(plan, words)
        return mem + self._logic_resources()

    def _logic_resources(self) -> Resources:
        return Resources(0, self.lanes * self.out_fmt.width)

    def describe(self) -> str:
        return self.name

    def build(self, m: Module, accs: list[Timed], fold: Timed) -> Timed:  # pragma: no cover - abstract
        raise NotImplementedError

    def _fold_table(self, m: Module, name: str, plan: MemoryPlan, words: list[int], fold: Timed, cycle: int):
        """Word `fold` of a per-fold table, valid at `cycle` (read `plan.read_latency` cycles before)."""
        addr = fold.at(cycle - plan.read_latency) if plan.kind != "const" else 0
        return read_rom(m, name, plan, words, addr)


class AccumulatorOut(ActivationStage):
    """The accumulator leaves the layer as a signed `out_fmt` element (one register)."""

    name = "none (accumulator out)"

    def build(self, m, accs, fold):
        a0 = accs[0].cycle
        outs = [_output(m, signed_sum(acc.value, self.xnor, self.n_terms), self.out_fmt, f"out{p}")
                for p, acc in enumerate(accs)]
        return Timed(m, registered(m, Cat(*outs), "act_out"), a0 + 1, "act_out")

    def _logic_resources(self):
        adders = self.lanes * self.acc_width if self.xnor else 0
        return Resources(adders, self.lanes * self.out_fmt.width)


class _ThresholdStage(ActivationStage):
    """What both threshold activations share: the table in the compared domain and the output offset."""

    def __init__(self, lanes, n_folds, out_fmt, xnor, n_terms, acc_width, thresholds: np.ndarray,
                 out_offset: int, t_fmt: ElementFormat, table: np.ndarray, memory_style: str = "auto"):
        super().__init__(lanes, n_folds, out_fmt, xnor, n_terms, acc_width, memory_style)
        self.thresholds = thresholds
        self.out_offset = int(out_offset)
        self.t_fmt, self.table = t_fmt, table  # (channels, NT) in the domain the accumulator is compared in
        self.n_t = int(table.shape[1])

    def _level(self, m, count, name):
        """The output element of a count of reached thresholds (bipolar: the count 0/1 is the bit)."""
        return _output(m, count + self.out_offset if self.out_offset else count, self.out_fmt, name)


class ParallelThresholds(_ThresholdStage):
    """All NT comparators of a lane at once. For small NT (1-2 bit outputs, NT <= `ONE_STAGE_MAX`) the count
    is one LUT level after them, one stage in all; for more (only when asked for: "auto" takes binary search
    there) the accumulator is first copied into a register per `COMPARATORS_PER_ACC_COPY` comparators (its
    fanout would otherwise be NT carry chains), the comparator bits are registered and counted by a pipelined
    popcount."""

    name = "thresholds (parallel comparators)"
    ONE_STAGE_MAX = 3
    COMPARATORS_PER_ACC_COPY = 32

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.count_registers = [] if self.n_t <= self.ONE_STAGE_MAX else tree_register_levels([(0, 1)] * self.n_t)
        self.acc_copies = -(-self.n_t // self.COMPARATORS_PER_ACC_COPY) if self.count_registers else 0
        self.latency = 1 if self.n_t <= self.ONE_STAGE_MAX else 3 + sum(self.count_registers)

    def _words(self) -> list[int]:
        return pack_words(self.table.reshape(-1), self.t_fmt, self.lanes * self.n_t)

    def tables(self):
        return [(plan_rom(self.n_folds, self.lanes * self.n_t * self.t_fmt.width, self.memory_style), self._words())]

    def _logic_resources(self):
        comparators = self.lanes * self.n_t * (self.t_fmt.width + 1) // 2
        lanes = Resources(comparators + self.lanes * self.out_fmt.width, self.lanes * self.out_fmt.width)
        if not self.count_registers:
            return lanes
        popcount = adder_tree_cost([(0, 1)] * self.n_t, self.count_registers) + Resources(
            ffs=self.n_t + self.acc_copies * self.acc_width)
        return lanes + popcount.scaled(self.lanes)

    def build(self, m, accs, fold):
        a0 = accs[0].cycle
        compare_cycle = a0 + 1 if self.acc_copies else a0
        t_word = self._fold_table(m, "thresholds", self.memories()[0], self._words(), fold, compare_cycle)
        outs = []
        for p, acc in enumerate(accs):
            if self.acc_copies:
                copies = [registered(m, acc.value, f"acc{p}_copy{g}") for g in range(self.acc_copies)]
                for copy in copies:
                    copy.attrs["keep"] = 1
                lane_acc = [copies[j // self.COMPARATORS_PER_ACC_COPY] for j in range(self.n_t)]
            else:
                lane_acc = [acc.value] * self.n_t
            bits = [lane_acc[j] >= word_element(t_word, p * self.n_t + j, self.t_fmt) for j in range(self.n_t)]
            if self.count_registers:
                reached = registered(m, Cat(*bits), f"reached{p}")
                count = pipelined_sum(m, list(reached), self.count_registers, f"count{p}")
            else:
                count = bits[0] if len(bits) == 1 else sum(bits[1:], bits[0])
            outs.append(self._level(m, count, f"out{p}"))
        return Timed(m, registered(m, Cat(*outs), "act_out"), a0 + self.latency, "act_out")


class BinarySearchThresholds(_ThresholdStage):
    """One comparator per output bit and lane (see the module docstring)."""

    name = "thresholds (binary search)"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.bits = max(1, int(self.n_t).bit_length())  # B: counts 0 .. 2**B - 1 hold 0 .. NT
        padded = np.full((self.table.shape[0], (1 << self.bits) - 1), self.t_fmt.max, dtype=object)
        padded[:, :self.n_t] = self.table
        self.padded = padded
        self.plans = self._plan()
        self.compare_cycles = self._schedule()
        self.latency = self.compare_cycles[-1] + 2  # compare, register the bit, add the offset

    # --- tables -------------------------------------------------------------------------------

    def _index(self, s: int, j: int) -> int:
        """Index into the padded row of stage s's threshold for the s bits decided so far, valued j."""
        return j * (1 << (self.bits - s)) + (1 << (self.bits - 1 - s)) - 1

    def _stage_values(self, s: int) -> np.ndarray:
        """(channels, 2**s) thresholds of stage s, column j for decided bits j."""
        return self.padded[:, [self._index(s, j) for j in range(1 << s)]]

    def _plan(self) -> list[MemoryPlan]:
        plans = []
        for s in range(self.bits):
            if s == 0:
                plans.append(plan_rom(self.n_folds, self.lanes * self.t_fmt.width, self.memory_style))
            elif s == 1:
                plans.append(plan_rom(self.n_folds, self.lanes * 2 * self.t_fmt.width, self.memory_style))
            else:
                plans.append(plan_rom(self.n_folds << (s - 1), 2 * self.t_fmt.width, self.memory_style))
        return plans

    def _schedule(self) -> list[int]:
        """Cycle (after A0) at which stage s compares: one a cycle, later where a memory reads slower."""
        cycles = []
        for s, plan in enumerate(self.plans):
            if s == 0:
                cycles.append(0)
            elif s == 1:
                cycles.append(cycles[0] + 1)
            else:
                cycles.append(max(cycles[s - 1] + 1, cycles[s - 2] + 1 + plan.read_latency))
        return cycles

    def _shared_words(self, s: int) -> list[int]:
        """Stage s < 2's table: word nf holds the lanes' thresholds (stage 1: pairs) of fold nf."""
        return pack_words(self._stage_values(s).reshape(-1), self.t_fmt, self.lanes * (1 << s))

    def _lane_words(self, s: int, p: int) -> list[int]:
        """Stage s >= 2's table of lane p: word fold * 2**(s-1) + j' holds the pair (2j', 2j'+1)."""
        channels = [nf * self.lanes + p for nf in range(self.n_folds)]
        return pack_words(self._stage_values(s)[channels].reshape(-1), self.t_fmt, 2)

    def tables(self):
        shared = [(self.plans[s], self._shared_words(s)) for s in range(min(self.bits, 2))]
        return shared + [(self.plans[s], self._lane_words(s, p)) for s in range(2, self.bits) for p in range(self.lanes)]

    def _logic_resources(self):
        t_w = self.t_fmt.width
        per_lane_luts = self.bits * t_w + self.out_fmt.width  # mux+compare LUT a bit, the offset adder
        per_lane_ffs = sum(self.compare_cycles[-1] + 1 for _ in range(1)) * t_w + self.bits * self.bits + \
            self.out_fmt.width
        return Resources(self.lanes * per_lane_luts, self.lanes * per_lane_ffs)

    def describe(self):
        kinds = sorted({p.kind for p in self.plans})
        return f"{self.name}, {self.bits} stages, memories {'/'.join(kinds)}"

    # --- hardware -----------------------------------------------------------------------------

    def build(self, m, accs, fold):
        a0 = accs[0].cycle
        t_w, B = self.t_fmt.width, self.bits
        cyc = [a0 + c for c in self.compare_cycles]
        # Shared tables of stages 0 and 1 (they depend on the fold only).
        shared = []
        for s in range(min(B, 2)):
            shared.append(self._fold_table(m, f"thr_s{s}", self.plans[s], self._shared_words(s), fold, cyc[s]))

        outs = []
        for p, acc in enumerate(accs):
            # decided[j]: bits 0 .. j of the count (bit 0 the most significant) as a number, bit j lowest.
            decided: list[Timed] = []
            for s in range(B):
                if s == 0:
                    threshold = word_element(shared[0], p, self.t_fmt)
                else:
                    if s == 1:
                        pair = shared[1][p * 2 * t_w:(p + 1) * 2 * t_w]
                    else:
                        pair = self._lane_pair(m, p, s, fold, decided[s - 2], cyc[s])
                    threshold = self._pick(pair, decided[s - 1].at(cyc[s])[0])
                bit = Signal(name=f"thr_p{p}_s{s}")
                m.d.comb += bit.eq(acc.at(cyc[s]) >= threshold)
                value = bit if s == 0 else Cat(bit, decided[s - 1].at(cyc[s]))
                decided.append(Timed(m, registered(m, value, f"thr_p{p}_bits{s}"), cyc[s] + 1,
                                     f"thr_p{p}_bits{s}"))
            outs.append(self._level(m, decided[-1].value, f"out{p}"))
        word = registered(m, Cat(*outs), "act_out")
        return Timed(m, word, a0 + self.latency, "act_out")

    def _pick(self, pair, bit):
        """The threshold of a pair word chosen by the last decided bit (element 1 when it is set)."""
        return Mux(bit, word_element(pair, 1, self.t_fmt), word_element(pair, 0, self.t_fmt))

    def _lane_pair(self, m, p: int, s: int, fold: Timed, older: Timed, cycle: int):
        """Stage s's pair word for lane p, valid at `cycle`: address fold * 2**(s-1) + bits 0 .. s-2 (`older`)."""
        plan = self.plans[s]
        words = self._lane_words(s, p)
        read_at = cycle - plan.read_latency
        addr = Cat(older.at(read_at), fold.at(read_at)) if self.n_folds > 1 else older.at(read_at)
        return read_rom(m, f"thr_p{p}_s{s}", plan, words, addr)


class Requantizer(ActivationStage):
    """clip(R((acc * mult + offset) / 2**shift), lo, hi) in four registered steps: product, sum, rounded
    level, clipped output (ip_cores/requantize.py has the rounding table)."""

    name = "requantize"

    def __init__(self, lanes, n_folds, out_fmt, xnor, n_terms, acc_width, requant: Requantization,
                 saturate_at: tuple[int, ...] | None = None, fitted_from_thresholds: bool = True,
                 memory_style: str = "auto", multiplier: str = "dsp"):
        super().__init__(lanes, n_folds, out_fmt, xnor, n_terms, acc_width, memory_style)
        self.rq = requant
        self.multiplier = multiplier  # "dsp", or "lut" where the layer's own products are LUT logic
        self.saturate_at = saturate_at  # per channel: accumulator value from which the output is rq.hi
        self.fitted = fitted_from_thresholds or saturate_at is not None
        self.sat_fmt = ElementFormat.signed(self.acc_width + 1)
        self.mult_fmt = ElementFormat.signed(signed_width_for(min(requant.mult), max(requant.mult)))
        self.offset_fmt = ElementFormat.signed(signed_width_for(min(requant.offset), max(requant.offset)))
        # The value multiplied: the accumulator as a signed sum (an XNOR popcount becomes 2*pc - n).
        self.value_fmt = ElementFormat.signed(signed_width_for(-n_terms, n_terms) if xnor else self.acc_width)
        if multiplier == "dsp":
            self.product_stages = max(dsp_product_stages(self.value_fmt.width, self._mult_width(m))
                                      for m in self._lane_mults())
        else:
            self.product_stages = max(lut_product_stages(self.value_fmt, m, self.mult_fmt) for m in self._lane_mults())
        self.latency = self.product_stages + 3

    def _parameters(self) -> list[tuple[str, list[int], ElementFormat]]:
        """The per-channel parameters as (name, values, format): multiplier, offset and saturation point."""
        params = [("requant_mult", list(self.rq.mult), self.mult_fmt),
                  ("requant_offset", list(self.rq.offset), self.offset_fmt)]
        if self.saturate_at is not None:
            params.append(("requant_saturate", list(self.saturate_at), self.sat_fmt))
        return params

    def _needs_table(self, values) -> bool:
        """A parameter is a table only when it varies between channels that share a lane (several folds)."""
        return len(set(values)) > 1 and self.n_folds > 1

    def tables(self):
        return [(plan_rom(self.n_folds, self.lanes * fmt.width, self.memory_style), pack_words(values, fmt, self.lanes))
                for _, values, fmt in self._parameters() if self._needs_table(values)]

    def describe(self):
        what = "thresholds as an exact multiply-shift" if self.fitted else self.name
        return f"{what}: clip({self.rq.rounding}((acc*mult + offset) / 2^{self.rq.shift}), {self.rq.lo}, {self.rq.hi})"

    def _lane_mults(self) -> list:
        """Each lane's multiplier as the hardware sees it: a constant (one fold, or the same for all channels)
        or None (read from a table)."""
        if len(set(self.rq.mult)) == 1:
            return [self.rq.mult[0]] * self.lanes
        if self.n_folds == 1:
            return list(self.rq.mult)
        return [None] * self.lanes

    def _mult_width(self, mult) -> int:
        """Bits of a lane's multiplier: its constant's, or the table field's (None)."""
        return self.mult_fmt.width if mult is None else signed_width_for(mult, mult)

    def _logic_resources(self):
        acc_w, m_w = self.acc_width + 1, self.mult_fmt.width
        if self.multiplier == "lut":  # shift-and-add: an adder of the product's width per term
            terms = max(max(1, bin(abs(m)).count("1")) if m is not None else min(acc_w, m_w)
                        for m in self._lane_mults())
            width = acc_w + m_w
            return Resources(self.lanes * (terms * width + 2 * self.out_fmt.width),
                             self.lanes * (terms * width // 2 + 2 * width + self.out_fmt.width))
        width = acc_w + m_w
        compare = (self.acc_width // 2 + 4) if self.saturate_at is not None else 0
        total = Resources(width // 2 + 2 * self.out_fmt.width + compare, 2 * width + self.out_fmt.width).scaled(self.lanes)
        for mult in self._lane_mults():  # a product wider than one DSP48: partial products and their sum
            partials = dsp_partial_ranges(self.value_fmt.width, self._mult_width(mult))
            total += Resources(dsp=len(partials))
            if len(partials) > 1:
                total += adder_tree_cost(partials, tree_register_levels(partials)) + Resources(ffs=width)
        return total

    def _parameter(self, m, name, values, fmt, fold, cycle) -> list:
        """Lane p's value of a per-channel parameter at `cycle`: one constant, per-lane constants, or a table."""
        if len(set(values)) == 1:
            return [Const(values[0], signed(fmt.width))] * self.lanes
        if not self._needs_table(values):
            return [Const(v, signed(fmt.width)) for v in values]
        plan = plan_rom(self.n_folds, self.lanes * fmt.width, self.memory_style)
        word = self._fold_table(m, name, plan, pack_words(values, fmt, self.lanes), fold, cycle)
        return [word_element(word, p, fmt) for p in range(self.lanes)]

    def build(self, m, accs, fold):
        a0 = accs[0].cycle
        mults = self._parameter(m, "requant_mult", self.rq.mult, self.mult_fmt, fold, a0)
        offsets = self._parameter(m, "requant_offset", self.rq.offset, self.offset_fmt, fold, a0 + self.product_stages)
        saturate = [None] * self.lanes
        if self.saturate_at is not None:
            saturate = self._parameter(m, "requant_saturate", self.saturate_at, self.sat_fmt, fold, a0)
        outs = []
        for p, acc in enumerate(accs):
            value = Signal(signed(self.value_fmt.width), name=f"rq{p}_value")
            m.d.comb += value.eq(signed_sum(acc.value, self.xnor, self.n_terms))
            lut = (self.value_fmt, self.mult_fmt) if self.multiplier == "lut" else None
            mult = mults[p] if lut is None or not isinstance(mults[p], Const) else mults[p].value
            level = requantize_pipeline(m, value, mult, offsets[p], self.rq, f"rq{p}", saturate_at=saturate[p],
                                        lut_formats=lut, product_stages=self.product_stages)
            outs.append(_output(m, level, self.out_fmt, f"out{p}"))
        return Timed(m, Cat(*outs), a0 + self.latency, "act_out")


# Exchange rates for choosing an activation style by cost (an xc7z020: 53,200 LUT, 280 BRAM18, 220 DSP48).
LUTS_PER_DSP = 240


def style_cost(resources: Resources) -> int:
    """One number to compare implementations by: LUTs plus block RAMs and DSPs at the part's exchange rates."""
    return resources.luts + resources.bram18 * LUTS_PER_BRAM18 + resources.dsp * LUTS_PER_DSP


def make_activation(*, lanes: int, n_folds: int, out_fmt: ElementFormat, xnor: bool, n_terms: int, acc_width: int,
                    thresholds: np.ndarray | None, out_offset: int, requant: Requantization | None,
                    acc_range: tuple[int, int] | None = None, threshold_style: str = "auto",
                    memory_style: str = "auto", mac_resource: str = "dsp") -> ActivationStage:
    """The activation stage for a core's parameters (already checked by `check_mac_parameters`).

    Thresholds are built as `threshold_style` says; "auto" takes parallel comparators for up to 3 thresholds,
    else the cheaper (`style_cost`) of a binary search and an exact multiply-shift fitted to the thresholds
    (`fit_affine_thresholds`, over `acc_range`, the accumulator's extremes), when one exists. A
    requantizer multiplies in a DSP48 where the layer's products do (`mac_resource` "dsp"), in LUTs otherwise.
    """
    common = (lanes, n_folds, out_fmt, xnor, n_terms, acc_width)
    if requant is not None:
        return Requantizer(*common, requant, fitted_from_thresholds=False, memory_style=memory_style,
                           multiplier=mac_resource)
    if thresholds is None:
        return AccumulatorOut(*common)
    from .thresholding import threshold_table
    t_fmt, table = threshold_table(thresholds, xnor, n_terms, acc_width)
    style = threshold_style_for(table.shape[1], threshold_style)
    if style == "parallel":
        return ParallelThresholds(*common, thresholds, out_offset, t_fmt, table, memory_style=memory_style)
    candidates = []
    if style in ("binary", "auto"):
        candidates.append(BinarySearchThresholds(*common, thresholds, out_offset, t_fmt, table,
                                                 memory_style=memory_style))
    if style in ("requant", "auto") and acc_range is not None and not out_fmt.is_bipolar:
        fit = fit_affine_thresholds(thresholds, *acc_range)
        if fit is not None:
            n_t = thresholds.shape[1]
            rq = Requantization(fit.mult, tuple(o + (out_offset << fit.shift) for o in fit.offset), fit.shift,
                                "FLOOR", out_offset, out_offset + n_t)
            never = acc_range[1] + 1
            saturate = None if all(v is None for v in fit.saturate_at) else \
                tuple(never if v is None else v for v in fit.saturate_at)
            candidates.append(Requantizer(*common, rq, saturate_at=saturate, memory_style=memory_style,
                                          multiplier=mac_resource))
    if not candidates:
        raise ValueError("threshold_style 'requant': these thresholds are not an affine function of the "
                         "accumulator (no exact multiply-shift exists); use 'binary' or 'auto'")
    return min(candidates, key=lambda stage: style_cost(stage.resources()))
