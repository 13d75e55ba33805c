"""Streaming max-pool: a feature map in, the maximum of each KH x KW window out, with a numpy reference.

Input and output are channels-last feature maps (pixels in row-major order, each pixel CF = C/SIMD words
of SIMD elements). No padding and no ceil mode: OH = (H - KH)//sh + 1, OW = (W - KW)//sw + 1. The
maximum follows the element format's order (two's complement for signed, plain for unsigned, +1 > -1
for bipolar, which is the larger code too).

The window maximum is taken in two separable steps, each a read-modify-write of partial maxima:

    horizontal  per input word (ih, iw, cf): the windows ow whose columns cover iw take max(partial, x);
                the window whose last column is iw sends its row maximum RM(ih, ow, cf) on. Partials live
                in a memory of CF words (address cf), each word holding NSW = ceil(KW/sw) slots; window
                ow uses slot ow mod NSW (windows sharing a slot never overlap).
    vertical    per row maximum RM(ih, ow, cf): the output rows oh whose rows cover ih take max(partial,
                RM); the output row whose last row is ih sends max(partial, RM) as output word
                (oh, ow, cf). Partials live in a memory of OW*CF words (the line buffer, address
                ow*CF + cf), each holding NSH = ceil(KH/sh) slots; output row oh uses slot oh mod NSH.

Which slots a column (row) starts, continues or ends is fixed by iw (ih), so small tables indexed by the
position counters drive the slot logic. Both memories have synchronous read ports without transparency:
the write-back of the current word and the read of the next one hit different addresses whenever a store
has more than one word (CF = 1, or OW*CF = 1, is a register instead).

Pipeline: issue (read horizontal partials) -> S1 (horizontal update, write-back, read vertical partials)
-> S2 (vertical update, write-back) -> output word register -> output queue; one input word a cycle,
free-running like the MVTU
(an input word that completes an output word takes a credit of the queue, so back-pressure stops only the
input). Never stalled, a frame takes H*W*CF cycles (`cycles_per_frame`), and an output word is offered
`latency` = 5 cycles after the input word that completes it.
"""
from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib.memory import Memory

from .elements import ElementFormat
from .feature_map import FeatureMapWindowCore, check_positive_ints
from .memories import plan_ram
from .pipeline import OutputQueue, WrapCounter, registered
from .resources import Resources, fifo_cost

__all__ = ["StreamingMaxPool", "maxpool_reference"]


def maxpool_reference(x_hwc, kernel_h: int, kernel_w: int, stride_h: int, stride_w: int) -> np.ndarray:
    """What the core computes, in plain numpy: x (H, W, C) or (N, H, W, C) -> (OH, OW, C) or (N, OH, OW, C)."""
    x = np.asarray(x_hwc)
    batched = x.ndim == 4
    if not batched:
        x = x[None]
    _, h, w, _ = x.shape
    oh, ow = (h - kernel_h) // stride_h + 1, (w - kernel_w) // stride_w + 1
    out = None
    for kh in range(kernel_h):
        for kw in range(kernel_w):
            tap = x[:, kh:kh + stride_h * (oh - 1) + 1:stride_h, kw:kw + stride_w * (ow - 1) + 1:stride_w, :]
            out = tap.copy() if out is None else np.maximum(out, tap)
    return out if batched else out[0]


def _slot_plan(size: int, kernel: int, stride: int) -> tuple[int, list[tuple[list[bool], list[bool], int | None]]]:
    """Per input position along one axis: which slots are active, which start there, which one ends.

    Returns (slots, plan) with plan[pos] = (active[slot], start[slot], ending slot or None).
    """
    n_out = (size - kernel) // stride + 1
    slots = min(-(-kernel // stride), n_out)
    plan = []
    for pos in range(size):
        active, start, end = [False] * slots, [False] * slots, None
        for o in range(n_out):
            if o * stride <= pos < o * stride + kernel:
                s = o % slots
                active[s] = True
                start[s] = pos == o * stride
                if pos == o * stride + kernel - 1:
                    end = s
        plan.append((active, start, end))
    return slots, plan


class PartialStore:
    """`depth` words of partial maxima: a memory, or a register when there is a single word. `data` is valid
    the cycle after a read is enabled. The read port needs no transparency (no bypass multiplexer on the
    update path): the word written in a cycle belongs to the previous item, whose address differs from the
    one being read whenever depth > 1 (the address counters step by one per item)."""

    def __init__(self, m: Module, name: str, width: int, depth: int):
        self.depth = depth
        self.plan = plan_ram(depth, width) if depth > 1 else None
        if depth > 1:
            mem = Memory(shape=unsigned(width), depth=depth, init=[], attrs=self.plan.attrs)
            m.submodules[name] = mem
            self.wr = mem.write_port()
            self.rd = mem.read_port()
            self.data = self.rd.data
        else:
            self.reg = Signal(width, name=name, reset_less=True)
            self.data = self.reg

    def read(self, m: Module, addr, en) -> None:
        if self.depth > 1:
            m.d.comb += [self.rd.addr.eq(addr), self.rd.en.eq(en)]

    def write(self, m: Module, addr, data, en) -> None:
        if self.depth > 1:
            m.d.comb += [self.wr.addr.eq(addr), self.wr.data.eq(data), self.wr.en.eq(en)]
        else:
            with m.If(en):
                m.d.sync += self.reg.eq(data)


class StreamingMaxPool(FeatureMapWindowCore):
    """Streaming max-pool (docs/CONTRACTS.md, "Convolution cores").

    Ports: `i` (SIMD `elem_fmt` elements a word, H*W*C/SIMD words a frame) and `o` (SIMD elements a word,
    OH*OW*C/SIMD words a frame), both channels-last.
    """

    QUEUE_WRITE_CYCLE = 3  # issue, S1, S2, the output word's register writes the output queue
    latency = QUEUE_WRITE_CYCLE + OutputQueue.read_latency
    """Cycles from the acceptance of the input word that completes an output word to its transfer."""

    def __init__(self, elem_fmt: ElementFormat, channels: int, in_h: int, in_w: int, kernel_h: int, kernel_w: int,
                 stride_h: int, stride_w: int, simd: int = 1):
        check_positive_ints(channels=channels, in_h=in_h, in_w=in_w, kernel_h=kernel_h, kernel_w=kernel_w,
                            stride_h=stride_h, stride_w=stride_w, simd=simd)
        if channels % simd:
            raise ValueError(f"SIMD {simd} must divide the {channels} channels")
        if kernel_h > in_h or kernel_w > in_w:
            raise ValueError(f"a {kernel_h}x{kernel_w} kernel does not fit the {in_h}x{in_w} input")
        super().__init__(elem_fmt, channels, in_h, in_w, kernel_h, kernel_w, stride_h, stride_w, simd)
        self.out_h = (self.in_h - self.kernel_h) // self.stride_h + 1
        self.out_w = (self.in_w - self.kernel_w) // self.stride_w + 1
        self.h_slots, self.col_plan = _slot_plan(self.in_w, self.kernel_w, self.stride_w)
        self.v_slots, self.row_plan = _slot_plan(self.in_h, self.kernel_h, self.stride_h)

    # --- figures for the compiler's timing model -------------------------------------------------

    @property
    def out_words_per_frame(self) -> int:
        return self.out_h * self.out_w * self.cf

    def cycles_per_frame(self) -> int:
        """Steady-state cycles per frame, input always valid and output ready: one input word a cycle."""
        return self.in_words_per_frame

    def initial_latency(self) -> int:
        """Input words of a frame the core must have before it can send the frame's first output word."""
        return ((self.kernel_h - 1) * self.in_w + self.kernel_w - 1) * self.cf + 1

    def last_output_word(self) -> int:
        """Index (within the frame) of the input word that completes the frame's last output word."""
        row = (self.out_h - 1) * self.stride_h + self.kernel_h - 1
        col = (self.out_w - 1) * self.stride_w + self.kernel_w - 1
        return (row * self.in_w + col) * self.cf + self.cf - 1

    def resources(self) -> Resources:
        """Analytic estimate (ip_cores/resources.py): the partial-maximum stores, a comparator and a multiplexer
        per slot and element, the pipeline registers."""
        word_w = self.simd * self.elem_fmt.width
        stores = Resources()
        for depth, slots in ((self.cf, self.h_slots), (self.out_w * self.cf, self.v_slots)):
            width = slots * word_w
            if depth > 1:
                plan = plan_ram(depth, width)
                stores += Resources.of_memory(plan) + Resources(width, width)  # read register, read-path LUTs
            else:
                stores += Resources(0, width)
        compare = (self.h_slots + self.v_slots) * word_w * 2
        queue = fifo_cost(word_w, OutputQueue.depth_for(self.QUEUE_WRITE_CYCLE, 1) + 2)
        return stores + queue + Resources(compare + 40, 4 * word_w + 50)

    # --- hardware ----------------------------------------------------------------------------------

    def _max(self, a, b):
        """Elementwise maximum of two packed words in the element format's order."""
        w, fmt = self.elem_fmt.width, self.elem_fmt
        lanes = []
        for s in range(self.simd):
            x, y = a[s * w:(s + 1) * w], b[s * w:(s + 1) * w]
            greater = (x.as_signed() > y.as_signed()) if fmt.is_signed else (x > y)
            lanes.append(Mux(greater, x, y))
        return Cat(*lanes)

    def _update(self, m: Module, old, x, active, start, slots: int, name: str):
        """New slot words: x where a window starts, max(old, x) where one continues, else old."""
        word_w = self.simd * self.elem_fmt.width
        new = []
        for s in range(slots):
            prev = old[s * word_w:(s + 1) * word_w]
            value = Signal(word_w, name=f"{name}{s}")
            m.d.comb += value.eq(Mux(active[s], Mux(start[s], x, self._max(prev, x)), prev))
            new.append(value)
        return new

    def _ending_slot(self, m: Module, slot_values: list, end_slot, name: str):
        """The value of the slot whose window ends here (`end_slot`), as a signal called `name`."""
        picked = Signal(len(slot_values[0]), name=name)
        m.d.comb += picked.eq(slot_values[0])
        if len(slot_values) > 1:
            with m.Switch(end_slot):
                for s, value in enumerate(slot_values):
                    with m.Case(s):
                        m.d.comb += picked.eq(value)
        return picked

    def _plan_signals(self, m: Module, position, plan, slots: int, name: str):
        """The plan row for `position` (a counter), as signals: active, start, ends, ending slot."""
        active, start = Signal(slots, name=f"{name}_active"), Signal(slots, name=f"{name}_start")
        ends, end_slot = Signal(name=f"{name}_ends"), Signal(range(slots), name=f"{name}_end_slot")
        if len(plan) == 1:
            cases = [(None, plan[0])]
        else:
            cases = list(enumerate(plan))
        with m.Switch(position):
            for pos, (act, st, end) in cases:
                with (m.Default() if pos is None else m.Case(pos)):
                    m.d.comb += [
                        active.eq(sum(1 << s for s in range(slots) if act[s])),
                        start.eq(sum(1 << s for s in range(slots) if st[s])),
                        ends.eq(end is not None),
                        end_slot.eq(end or 0),
                    ]
        return active, start, ends, end_slot

    @staticmethod
    def _ends_next(m: Module, counter: WrapCounter, ends: list[bool], step, name: str):
        """ends[counter.value] as of the next cycle (the counter steps on `step`), from registers and `step`."""
        if len(ends) == 1:
            return Const(int(ends[0]), 1)
        now = Signal(name=f"{name}_ends_now", init=int(ends[0]))
        following = Signal(name=f"{name}_ends_following")
        nxt = Mux(counter.last, 0, counter.value + 1)
        m.d.comb += following.eq(0)
        with m.Switch(nxt):
            for pos, end in enumerate(ends):
                if end:
                    with m.Case(pos):
                        m.d.comb += following.eq(1)
        ends_next = Signal(name=f"{name}_ends_next")
        m.d.comb += ends_next.eq(Mux(step, following, now))
        m.d.sync += now.eq(ends_next)
        return ends_next

    def elaborate(self, platform):
        """Issue (position counters, horizontal partials read), S1 (horizontal update, write-back, vertical
        partials read), S2 (vertical update, write-back), the output word's register, the output queue: a
        free-running pipeline
        like the MVTU's. Only an input word that completes an output word needs a credit of the output queue,
        so back-pressure stops the input without a path from `o.ready` into the stages."""
        m = Module()
        CF, OW = self.cf, self.out_w
        word_w = self.simd * self.elem_fmt.width
        NSW, NSH = self.h_slots, self.v_slots

        # --- issue: the input word's position; it completes an output word when it ends a window both ways ---
        may_reserve = Signal()
        issue = Signal()
        cf = WrapCounter(m, CF, "cf", issue)
        iw = WrapCounter(m, self.in_w, "iw", issue & cf.last)
        ih = WrapCounter(m, self.in_h, "ih", issue & cf.last & iw.last)
        h_active, h_start, h_ends, h_end_slot = self._plan_signals(m, iw.value, self.col_plan, NSW, "col")
        v_active, v_start, v_ends, v_end_slot = self._plan_signals(m, ih.value, self.row_plan, NSH, "row")
        # Whether the input word completes an output word, kept as one register (not decoded from the
        # counters): i.ready is then one LUT of two registers.
        col_next = self._ends_next(m, iw, [end is not None for _, _, end in self.col_plan], issue & cf.last, "col")
        row_next = self._ends_next(m, ih, [end is not None for _, _, end in self.row_plan],
                                   issue & cf.last & iw.last, "row")
        completes = Signal(name="completes", init=int(self.col_plan[0][2] is not None and self.row_plan[0][2] is not None))
        m.d.sync += completes.eq(col_next & row_next)
        m.d.comb += [self.i.ready.eq(~completes | may_reserve), issue.eq(self.i.valid & self.i.ready)]
        h_store = PartialStore(m, "row_partials", NSW * word_w, CF)
        h_store.read(m, cf.value, 1)

        v1 = registered(m, issue, "v1", reset_less=False)
        x1 = registered(m, self.i.payload, "x1")
        cf1 = registered(m, cf.value, "cf1")
        active1, start1 = registered(m, h_active, "active1"), registered(m, h_start, "start1")
        ends1, end_slot1 = registered(m, h_ends, "ends1"), registered(m, h_end_slot, "end_slot1")
        row1 = [registered(m, sig, f"{sig.name}1") for sig in (v_active, v_start, v_ends, v_end_slot)]

        # --- S1: horizontal update and write-back; the ending window's row maximum goes on ---
        h_new = self._update(m, h_store.data, x1, active1, start1, NSW, "h_new")
        h_store.write(m, cf1, Cat(*h_new), v1)
        row_max = self._ending_slot(m, h_new, end_slot1, "row_max")
        pass_on = Signal()
        m.d.comb += pass_on.eq(v1 & ends1)
        # The line buffer's address (ow, cf) of the row maxima, advanced with each one passed on.
        v_addr = WrapCounter(m, OW * CF, "v_addr", pass_on)
        v_store = PartialStore(m, "line_partials", NSH * word_w, OW * CF)
        v_store.read(m, v_addr.value, 1)

        v2 = registered(m, pass_on, "v2", reset_less=False)
        rm2 = registered(m, row_max, "rm2")
        v_addr2 = registered(m, v_addr.value, "v_addr2")
        active2, start2, ends2, end_slot2 = (registered(m, sig, f"{sig.name}2") for sig in row1)

        # --- S2: vertical update and write-back; the ending output row's maximum is the output word ---
        v_new = self._update(m, v_store.data, rm2, active2, start2, NSH, "v_new")
        v_store.write(m, v_addr2, Cat(*v_new), v2)
        out_word = registered(m, self._ending_slot(m, v_new, end_slot2, "out_word"), "out_word3")
        out_valid = registered(m, v2 & ends2, "out_valid3", reset_less=False)
        queue = OutputQueue(word_w, OutputQueue.depth_for(self.QUEUE_WRITE_CYCLE, 1))
        m.d.comb += may_reserve.eq(queue.elaborate_into(m, "out_queue", self.o, out_word, out_valid,
                                                        issue & completes))
        return m
