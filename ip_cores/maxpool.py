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
position counters drive the slot logic. Both memories have synchronous read ports transparent to their
own write port: the read of the next word and the write-back of the current one may hit the same
address in the same cycle (CF = 1, or OW*CF = 1), and the read then sees the new value.

Pipeline: issue (read horizontal partials) -> S1 (horizontal update, write-back, read vertical partials)
-> S2 (vertical update, write-back) -> output register; one input word a cycle, a global stall per
stage as in the MVTU. Never stalled, a frame takes H*W*CF cycles (`cycles_per_frame`), and an output
word leaves `latency` = 3 cycles after the input word that completes it.
"""
from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib.memory import Memory

from .elements import ElementFormat
from .feature_map import FeatureMapWindowCore, check_positive_ints
from .memories import plan_ram
from .resources import Resources

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


class _PartialStore:
    """`depth` words of partial maxima: a memory with a read port transparent to its write port, or a
    register when there is a single word. `data` is valid the cycle after a read is enabled."""

    def __init__(self, m: Module, name: str, width: int, depth: int):
        self.depth = depth
        self.plan = plan_ram(depth, width) if depth > 1 else None
        if depth > 1:
            mem = Memory(shape=unsigned(width), depth=depth, init=[], attrs=self.plan.attrs)
            m.submodules[name] = mem
            self.wr = mem.write_port()
            self.rd = mem.read_port(transparent_for=(self.wr,))
            self.data = self.rd.data
        else:
            self.reg = Signal(width, name=name)
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

    latency = 3
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
                stores += Resources.of_memory(plan) + Resources(width, width)  # bypass mux of the transparent read
            else:
                stores += Resources(0, width)
        compare = (self.h_slots + self.v_slots) * word_w * 2
        return stores + Resources(compare + 40, 3 * word_w + 40)

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

    def elaborate(self, platform):
        m = Module()
        CF, OW = self.cf, self.out_w
        word_w = self.simd * self.elem_fmt.width
        NSW, NSH = self.h_slots, self.v_slots

        # Stage-free terms. S1 and S2 items that do not end a window only write back, so they always leave.
        v1, v2 = Signal(), Signal()
        ends1, ends2 = Signal(), Signal()
        s3_free = ~self.o.valid | self.o.ready
        s2_go = Signal()
        s1_go = Signal()
        m.d.comb += s2_go.eq(v2 & (~ends2 | s3_free))
        s2_free = ~v2 | s2_go
        m.d.comb += s1_go.eq(v1 & (~ends1 | s2_free))
        s1_free = ~v1 | s1_go
        issue = Signal()
        m.d.comb += [self.i.ready.eq(s1_free), issue.eq(self.i.valid & s1_free)]

        # --- issue: position of the input word; read the horizontal partials of its channel fold ---
        cf = Signal(range(CF)) if CF > 1 else Const(0, 1)
        iw = Signal(range(self.in_w)) if self.in_w > 1 else Const(0, 1)
        cf_last = (cf == CF - 1) if CF > 1 else Const(1)
        iw_last = (iw == self.in_w - 1) if self.in_w > 1 else Const(1)
        with m.If(issue):
            if CF > 1:
                m.d.sync += cf.eq(Mux(cf_last, 0, cf + 1))
            if self.in_w > 1:
                with m.If(cf_last):
                    m.d.sync += iw.eq(Mux(iw_last, 0, iw + 1))
        h_store = _PartialStore(m, "row_partials", NSW * word_w, CF)
        h_store.read(m, cf, issue)
        h_active, h_start, h_ends, h_end_slot = self._plan_signals(m, iw, self.col_plan, NSW, "col")

        x1 = Signal(word_w, reset_less=True)
        cf1 = Signal.like(cf) if CF > 1 else Const(0, 1)
        active1, start1 = Signal(NSW), Signal(NSW)
        end_slot1 = Signal(range(NSW))
        with m.If(issue):
            m.d.sync += [v1.eq(1), x1.eq(self.i.payload), active1.eq(h_active), start1.eq(h_start),
                         ends1.eq(h_ends), end_slot1.eq(h_end_slot)]
            if CF > 1:
                m.d.sync += cf1.eq(cf)
        with m.Elif(s1_go):
            m.d.sync += v1.eq(0)

        # --- S1: horizontal update and write-back; the ending window's row maximum goes on ---
        h_new = self._update(m, h_store.data, x1, active1, start1, NSW, "h_new")
        h_store.write(m, cf1, Cat(*h_new), s1_go)
        row_max = self._ending_slot(m, h_new, end_slot1, "row_max")

        # Vertical position of the row maxima: (ih, ow, cf), advanced with each one passed on.
        pass_on = s1_go & ends1
        cf_v = Signal(range(CF)) if CF > 1 else Const(0, 1)
        ow_v = Signal(range(OW)) if OW > 1 else Const(0, 1)
        ih = Signal(range(self.in_h)) if self.in_h > 1 else Const(0, 1)
        cf_v_last = (cf_v == CF - 1) if CF > 1 else Const(1)
        ow_v_last = (ow_v == OW - 1) if OW > 1 else Const(1)
        ih_last = (ih == self.in_h - 1) if self.in_h > 1 else Const(1)
        v_addr = Signal(range(OW * CF)) if OW * CF > 1 else Const(0, 1)
        with m.If(pass_on):
            if CF > 1:
                m.d.sync += cf_v.eq(Mux(cf_v_last, 0, cf_v + 1))
            if OW > 1:
                with m.If(cf_v_last):
                    m.d.sync += ow_v.eq(Mux(ow_v_last, 0, ow_v + 1))
            if self.in_h > 1:
                with m.If(cf_v_last & ow_v_last):
                    m.d.sync += ih.eq(Mux(ih_last, 0, ih + 1))
            if OW * CF > 1:
                m.d.sync += v_addr.eq(Mux(cf_v_last & ow_v_last, 0, v_addr + 1))
        v_store = _PartialStore(m, "line_partials", NSH * word_w, OW * CF)
        v_store.read(m, v_addr, pass_on)
        v_active, v_start, v_ends, v_end_slot = self._plan_signals(m, ih, self.row_plan, NSH, "row")

        rm2 = Signal(word_w, reset_less=True)
        v_addr2 = Signal.like(v_addr) if OW * CF > 1 else Const(0, 1)
        active2, start2 = Signal(NSH), Signal(NSH)
        end_slot2 = Signal(range(NSH))
        with m.If(pass_on):
            m.d.sync += [v2.eq(1), rm2.eq(row_max), active2.eq(v_active), start2.eq(v_start),
                         ends2.eq(v_ends), end_slot2.eq(v_end_slot)]
            if OW * CF > 1:
                m.d.sync += v_addr2.eq(v_addr)
        with m.Elif(s2_go):
            m.d.sync += v2.eq(0)

        # --- S2: vertical update and write-back; the ending output row's maximum is the output ---
        v_new = self._update(m, v_store.data, rm2, active2, start2, NSH, "v_new")
        v_store.write(m, v_addr2, Cat(*v_new), s2_go)
        out_word = self._ending_slot(m, v_new, end_slot2, "out_word")
        out_reg = Signal(word_w, reset_less=True)
        m.d.comb += self.o.payload.eq(out_reg)
        with m.If(s2_go & ends2):
            m.d.sync += [out_reg.eq(out_word), self.o.valid.eq(1)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m
