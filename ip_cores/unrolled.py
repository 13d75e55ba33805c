"""A fully unrolled dense network for trigger latencies: one frame a cycle, every weight a constant.

`--latency` builds a multilayer perceptron as one free-running pipeline: the whole input vector enters in one
word, every layer computes all its outputs at once, and the output vector leaves in one word, one frame every
cycle. With every product done at once there are no weight memories: each weight is a constant, written in
canonical signed digits (`csd_digits`), so a product is a few shifted copies of the input, and each output's
whole dot product, its bias and its activation's offset are one bit heap (ip_cores/bit_heap.py): LUT
compressor levels and one carry chain, registers placed where the clock's delay budget says (`Pipeliner`).

The activation of a layer, in this order of preference (all exact over the accumulator's range):
- a requantization given by the network (`requant`): its multiplier is folded into the constant weights, its
  offset into the heap; the rounding, shift and clip follow the carry chain;
- thresholds that are a rounded shift of the accumulator (`fit_rounded_shift`: uniform power-of-two steps,
  any qonnx rounding mode, as an activation after a power-of-two scale gives): the same, with multiplier 1;
- otherwise one comparator a threshold against the accumulator, and a thermometer-to-binary decode.

Back-pressure never reaches the datapath: the input is accepted only while the output queue has room for every
frame in flight (credits), and the queue passes a frame straight to the output when it is empty, so the
latency is the pipeline's registers and nothing more.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .bit_heap import COMPRESS_LEVEL_NS, BitHeap, Pipeliner, carry_chain_ns, csd_digits
from .elements import ElementFormat, signed_width_for
from .requantize import Requantization
from .resources import Resources
from .threshold_fit import fit_rounded_shift

__all__ = ["DenseSpec", "UnrolledNetwork", "ACTIVATION_NS"]

ACTIVATION_NS = 4.8  # round, shift and clip after the carry chain, as measured (bit_heap.py docstring): 5.3 ns with the clock overhead
DECODE_NS = 1.5  # thermometer (comparator outputs) to binary: two LUT levels


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
    """The pipeline's logic for a list of layers, built into a module; records its registers and counts."""

    def __init__(self, m: Module, specs: list[DenseSpec], clock_ns: float, x_word):
        self.m, self.specs = m, specs
        self.pipe = Pipeliner(clock_ns)
        self.luts = 0
        self.ffs = 0
        self.layer_registers = []  # registers each layer adds (its share of the latency)
        self.layer_luts, self.layer_ffs = [], []  # each layer's share of the counts
        values = [_element(x_word, specs[0].in_fmt, i) for i in range(specs[0].mw)]
        for index, spec in enumerate(specs):
            before = (self.pipe.registers, self.luts, self.ffs)
            values = self._layer(index, spec, values)
            self.layer_registers.append(self.pipe.registers - before[0])
            self.layer_luts.append(self.luts - before[1])
            self.layer_ffs.append(self.ffs - before[2])
        self.out_word = Cat(*[v[:specs[-1].out_fmt.width] for v in values])

    def _register(self, value, name: str):
        reg = Signal(value.shape(), name=name, reset_less=True)
        self.m.d.sync += reg.eq(value)
        self.ffs += len(reg)
        return reg

    def _heaps(self, spec: DenseSpec, values, mult, offset, widths) -> list[BitHeap]:
        heaps = []
        for c in range(spec.mh):
            heap = BitHeap(widths[c])
            for i, x in enumerate(values):
                w = int(spec.weights[c, i]) * mult[c]
                if w == 0:
                    continue
                if spec.in_fmt.is_bipolar:  # x = 2b - 1: w*x = 2w*b - w
                    for sign, shift in csd_digits(2 * w):
                        heap.add_bit(x, shift, negate=sign < 0)
                    heap.add_constant(-w)
                    continue
                for sign, shift in csd_digits(w):
                    heap.add_term(x, spec.in_fmt.is_signed, shift, negate=sign < 0)
            heap.add_constant(offset[c])
            heap.place_constant()
            heaps.append(heap)
        return heaps

    def _layer(self, index: int, spec: DenseSpec, values):
        kind, rq, saturate = spec.activation()
        ranges = spec.channel_ranges()
        if kind == "requant":
            mult, offset = list(rq.mult), list(rq.offset)
            sums = [(min(a * k, b * k) + o, max(a * k, b * k) + o) for (a, b), k, o in zip(ranges, mult, offset)]
        else:
            mult, offset, sums = [1] * spec.mh, [0] * spec.mh, ranges
        widths = [signed_width_for(lo, hi) for lo, hi in sums]
        heaps = self._heaps(spec, values, mult, offset, widths)
        name = f"l{index}"
        level = 0
        while max(h.height for h in heaps) > 2:
            if self.pipe.step(COMPRESS_LEVEL_NS):
                for c, h in enumerate(heaps):
                    self.ffs += sum(len(col) for col in h.columns)
                    h.register(self.m, f"{name}_h{level}_{c}")
            self.luts += sum(h.compress(self.m, f"{name}_k{level}_{c}") for c, h in enumerate(heaps))
            level += 1
        if self.pipe.step(carry_chain_ns(max(widths))):
            for c, h in enumerate(heaps):
                self.ffs += sum(len(col) for col in h.columns)
                h.register(self.m, f"{name}_cpa_{c}")
        sums_hw = [h.sum(self.m, f"{name}_sum_{c}") for c, h in enumerate(heaps)]
        self.luts += sum(widths)
        if kind == "none":
            return [_as_format(self.m, v, spec.out_fmt, f"{name}_y{c}") for c, v in enumerate(sums_hw)]
        act_ns = ACTIVATION_NS if kind == "requant" else carry_chain_ns(max(widths)) + DECODE_NS
        if self.pipe.step(act_ns):
            sums_hw = [self._register(s, f"{name}_acc_{c}") for c, s in enumerate(sums_hw)]
        if kind == "requant":
            outs = [self._requantize(s, rq, c, spec.out_fmt, saturate[c]) for c, s in enumerate(sums_hw)]
        else:
            outs = [self._compare(s, spec, c) for c, s in enumerate(sums_hw)]
        return [_as_format(self.m, v, spec.out_fmt, f"{name}_y{c}") for c, v in enumerate(outs)]

    def _requantize(self, n, rq: Requantization, c: int, out_fmt: ElementFormat, saturate_at: int | None):
        """clip(R(n / 2**shift), lo, hi) for one channel's heap sum n (= acc*mult + offset); rq.hi from the
        accumulator value `saturate_at` on (n >= saturate_at * mult + offset), when given."""
        shift = rq.shift
        q = n >> shift if shift else n
        up = Const(0, 1)
        if shift:
            r = n[:shift]
            half = 1 << (shift - 1)
            above, tie, inexact = r > half, r == half, r != 0
            negative = n[-1]
            up = {"ROUND": above | (tie & q[0]), "HALF_EVEN": above | (tie & q[0]), "CEIL": inexact,
                  "FLOOR": Const(0, 1), "UP": inexact & ~negative, "DOWN": inexact & negative,
                  "HALF_UP": above | (tie & ~negative), "HALF_DOWN": above | (tie & negative)}[rq.rounding]
        # The clip decided on q and the round-up bit in parallel with the increment (no compare after the adder).
        # In range the level fits the output format, so only its low bits are incremented.
        level = Signal(out_fmt.width, name=f"rq_level_{c}")
        self.m.d.comb += level.eq(q[:out_fmt.width] + up)
        over = (q > rq.hi) | ((q == rq.hi) & up)
        under = (q < rq.lo - 1) | ((q == rq.lo - 1) & ~up)
        if saturate_at is not None:
            over = over | (n >= saturate_at * rq.mult[c] + rq.offset[c])
        out = Signal(out_fmt.width, name=f"rq_out_{c}")  # the element's bits (two's complement when signed)
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
    from a frame's input handshake to its output word being offered (registers on the path).
    """

    def __init__(self, specs: list[DenseSpec], clock_ns: float = 5.0):
        self.specs = list(specs)
        if not self.specs:
            raise ValueError("an unrolled network needs at least one layer")
        for a, b in zip(self.specs, self.specs[1:]):
            if a.mh != b.mw or a.out_fmt != b.in_fmt:
                raise ValueError(f"layer outputs ({a.mh} x {a.out_fmt}) do not match the next inputs "
                                 f"({b.mw} x {b.in_fmt})")
        self.clock_ns = float(clock_ns)
        self.in_width = self.specs[0].mw * self.specs[0].in_fmt.width
        self.out_width = self.specs[-1].mh * self.specs[-1].out_fmt.width
        scratch = Module()
        scratch._MustUse__silence = True
        plan = _Datapath(scratch, self.specs, self.clock_ns, Signal(self.in_width))
        self.layer_registers = plan.layer_registers
        self._plan_luts, self._plan_ffs = plan.luts, plan.ffs
        self._layer_counts = list(zip(plan.layer_luts, plan.layer_ffs))
        self.latency = 1 + plan.pipe.registers + 1  # input register, the cuts, output register
        self.queue_depth = self.latency + 2
        super().__init__({"i": In(stream.Signature(self.in_width)), "o": Out(stream.Signature(self.out_width))})

    def cycles_per_frame(self) -> int:
        return 1

    def resources(self) -> Resources:
        """Analytic estimate: heap counters and chains from the plan, the registers, the output queue."""
        queue_luts = -(-self.out_width // 6) * 4 * -(-self.queue_depth // 32)
        return Resources(luts=self._plan_luts + 30, ffs=self._plan_ffs + self.in_width + self.out_width + 40,
                         lutram=queue_luts)

    def layer_resources(self) -> list[Resources]:
        """Each layer's share of `resources()`: its heaps, carry chains, activations and pipeline registers (the
        input register, output register and queue counted with the last layer)."""
        shares = [Resources(luts=luts, ffs=ffs) for luts, ffs in self._layer_counts]
        total = self.resources()
        shares[-1] = shares[-1] + Resources(luts=total.luts - self._plan_luts, ffs=total.ffs - self._plan_ffs,
                                            lutram=total.lutram)
        return shares

    def elaborate(self, platform):
        m = Module()
        # Issue: a frame is taken while credits remain; the input register loads every cycle (no enable).
        outstanding = Signal(range(self.queue_depth + 2), name="outstanding")
        may_issue = Signal(init=1, name="may_issue")
        take = self.i.valid & may_issue
        m.d.comb += self.i.ready.eq(may_issue)
        x = Signal(self.in_width, name="x_in", reset_less=True)
        valid = Signal(name="valid_in")
        m.d.sync += [x.eq(self.i.payload), valid.eq(take)]
        path = _Datapath(m, self.specs, self.clock_ns, x)
        y = Signal(self.out_width, name="y_out", reset_less=True)
        m.d.sync += y.eq(path.out_word)
        for k in range(path.pipe.registers + 1):  # valid beside the data: the cuts and the output register
            nxt = Signal(name=f"valid_{k + 1}")
            m.d.sync += nxt.eq(valid)
            valid = nxt
        leave = self._queue(m, y, valid)
        count_next = outstanding + take - leave
        m.d.sync += [outstanding.eq(count_next), may_issue.eq(count_next < self.queue_depth)]
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
        stored_next = stored + write - read
        m.d.sync += [stored.eq(stored_next), empty.eq(stored_next == 0)]
        return leave
