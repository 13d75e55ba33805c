"""Sliding-window generator: a feature map in, the im2col rows of a convolution out, with a numpy reference.

A feature map of H x W pixels with C channels arrives channels-last, pixel by pixel in row-major order,
each pixel as CF = C/SIMD words of SIMD elements. For every output pixel (oh, ow), in row-major order,
the generator sends the KH x KW window whose top-left corner is input pixel (oh*sh - pad_top,
ow*sw - pad_left), positions outside the image carrying `pad_value`:

    standard order   for kh: for kw: for cf: word (channels cf*SIMD .. cf*SIMD+SIMD-1)    (c fastest)
    depthwise order  for cf: for kh: for kw: word (channels cf*SIMD .. cf*SIMD+SIMD-1)

The standard order is the im2col row (index (kh*KW + kw)*C + c) a matrix-vector unit with MW = KH*KW*C
consumes; the depthwise order is what a vector unit with PE = SIMD channels consumes.

Buffer. Input words go, in arrival order, into one circular buffer of D words (`amaranth.lib.memory`,
synchronous read): input word q of the stream (counted across frames) sits at address q mod D. A window's
words are read back from there at fixed offsets from its top-left corner's address. Two counters keep
the writer and the reader apart, in units of stream words:

    occ  = words written - L, where L is the stream index of the current window's top-left corner.
           Padding rows/columns above and left of the image count as if written (L may lie before the
           frame's first word), so `occ` starts at (pad_top*W + pad_left)*CF.
    The writer takes an input word while occ < D: the word it overwrites is older than L, and no window
           from the current one on reads anything older than its own top-left corner, which never moves
           backwards (total padding per axis < kernel, so the next row's corner is further on).
    The reader starts a window only when occ >= need, the offset of the window's last word inside the
           image (its bottom-right corner clipped to the image) + 1, and then sends all its words, one a
           cycle as the output takes them. Finishing a window moves L to the next window's corner.

D >= span + max_step + KH*KW*CF, where span = ((KH-1)*W + KW)*CF is a whole window and max_step the
largest move of L between consecutive windows (along a row, to the next row, to the next frame), rounded up
to a power of two so that addresses wrap for free: enough
that neither side ever waits for the other in steady state, frame after frame (checked over random
geometries in tests/test_conv_cores.py). In rows of W*CF words: (KH-1) rows and a few words for a padded
('same') stride-1 convolution; about KH rows for stride 2; up to (2*KH + sh - 2) rows when the bottom
of the image is not padded, because the next frame's first window must be buffered behind the current
frame's last window row (the buffer frees words in stream order only) to avoid a bubble between frames.
Never the whole image.

Timing (input always valid, output always ready): every frame takes max(input words, output words)
cycles in steady state, with no per-row bubbles (`cycles_per_frame`). The first output word leaves
`latency` = 2 cycles after the input word that completes the first window was accepted; that is input
word number `initial_latency()` of the frame.
"""
from __future__ import annotations

import numpy as np
from amaranth.hdl import Const, Module, Mux, Signal, unsigned
from amaranth.lib.memory import Memory

from .elements import ElementFormat, pack_words
from .feature_map import FeatureMapWindowCore, check_positive_ints
from .memories import plan_ram
from .pipeline import WrapCounter
from .resources import Resources

__all__ = ["SlidingWindow", "sliding_window_reference", "conv_output_size"]


def conv_output_size(size: int, kernel: int, stride: int, pad_before: int, pad_after: int) -> int:
    """Output positions along one axis: (size + pads - kernel) // stride + 1 (no ceil mode)."""
    return (size + pad_before + pad_after - kernel) // stride + 1


def sliding_window_reference(x_hwc, kernel_h: int, kernel_w: int, stride_h: int = 1, stride_w: int = 1,
                             pad_top: int = 0, pad_left: int = 0, pad_bottom: int = 0, pad_right: int = 0,
                             simd: int = 1, depthwise: bool = False, pad_value: int = 0) -> np.ndarray:
    """What the generator sends, in plain numpy: x (H, W, C) or (N, H, W, C) -> (OH, OW, KH*KW*C) or
    (N, OH, OW, KH*KW*C), the last axis in stream element order.

    Standard order: element (kh*KW + kw)*C + c (the im2col row). Depthwise order: element
    ((cf*KH + kh)*KW + kw)*SIMD + s for channel c = cf*SIMD + s. `simd` only matters for depthwise.
    """
    x = np.asarray(x_hwc)
    batched = x.ndim == 4
    if not batched:
        x = x[None]
    n, h, w, c = x.shape
    if c % simd:
        raise ValueError(f"SIMD {simd} must divide the {c} channels")
    xp = np.pad(x, ((0, 0), (pad_top, pad_bottom), (pad_left, pad_right), (0, 0)), constant_values=pad_value)
    oh = conv_output_size(h, kernel_h, stride_h, pad_top, pad_bottom)
    ow = conv_output_size(w, kernel_w, stride_w, pad_left, pad_right)
    windows = np.empty((n, oh, ow, kernel_h, kernel_w, c), dtype=xp.dtype)
    for kh in range(kernel_h):
        for kw in range(kernel_w):
            windows[:, :, :, kh, kw, :] = xp[:, kh:kh + stride_h * (oh - 1) + 1:stride_h,
                                             kw:kw + stride_w * (ow - 1) + 1:stride_w, :]
    if depthwise:
        windows = windows.reshape(n, oh, ow, kernel_h, kernel_w, c // simd, simd).transpose(0, 1, 2, 5, 3, 4, 6)
    out = windows.reshape(n, oh, ow, kernel_h * kernel_w * c)
    return out if batched else out[0]


class SlidingWindow(FeatureMapWindowCore):
    """Sliding-window generator (docs/CONTRACTS.md, "Convolution cores").

    Ports: `i` (SIMD `elem_fmt` elements a word, H*W*C/SIMD words a frame) and `o` (SIMD elements a word,
    OH*OW*KH*KW*C/SIMD words a frame, in standard or depthwise window order).
    """

    latency = 2
    """Cycles from the acceptance of the input word that completes a window (when the reader is idle
    and waiting for it) to the transfer of that window's first word."""

    def __init__(self, elem_fmt: ElementFormat, channels: int, in_h: int, in_w: int, kernel_h: int, kernel_w: int,
                 stride_h: int = 1, stride_w: int = 1, pad_top: int = 0, pad_left: int = 0, pad_bottom: int = 0,
                 pad_right: int = 0, simd: int = 1, depthwise: bool = False, pad_value: int = 0):
        check_positive_ints(channels=channels, in_h=in_h, in_w=in_w, kernel_h=kernel_h, kernel_w=kernel_w,
                            stride_h=stride_h, stride_w=stride_w, simd=simd)
        pads = dict(pad_top=pad_top, pad_left=pad_left, pad_bottom=pad_bottom, pad_right=pad_right)
        for name, value in pads.items():
            if int(value) != value or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
        if channels % simd:
            raise ValueError(f"SIMD {simd} must divide the {channels} channels")
        if pad_top + pad_bottom >= kernel_h or pad_left + pad_right >= kernel_w:
            raise ValueError(f"total padding per axis must be smaller than the kernel: rows {pad_top}+{pad_bottom} "
                             f"for kernel_h {kernel_h}, columns {pad_left}+{pad_right} for kernel_w {kernel_w}")
        if in_h + pad_top + pad_bottom < kernel_h or in_w + pad_left + pad_right < kernel_w:
            raise ValueError(f"a {kernel_h}x{kernel_w} kernel does not fit the padded {in_h}x{in_w} input")
        super().__init__(elem_fmt, channels, in_h, in_w, kernel_h, kernel_w, stride_h, stride_w, simd)
        self.pad_top, self.pad_left, self.pad_bottom, self.pad_right = (int(p) for p in pads.values())
        self.depthwise = bool(depthwise)
        self.padded = any(pads.values())
        self.pad_value = int(pad_value)
        if self.padded:
            elem_fmt.check([self.pad_value], "pad_value")
        self.out_h = conv_output_size(self.in_h, self.kernel_h, self.stride_h, self.pad_top, self.pad_bottom)
        self.out_w = conv_output_size(self.in_w, self.kernel_w, self.stride_w, self.pad_left, self.pad_right)

        H, W, KH, KW, CF = self.in_h, self.in_w, self.kernel_h, self.kernel_w, self.cf
        OH, OW, sh, sw = self.out_h, self.out_w, self.stride_h, self.stride_w
        self.span = ((KH - 1) * W + KW) * CF
        # Moves of the window's top-left corner (in stream words) to the next window.
        self.step_col = sw * CF if OW > 1 else 0
        self.step_row = (sh * W - (OW - 1) * sw) * CF if OH > 1 else 0
        self.step_frame = (H * W - (OH - 1) * sh * W - (OW - 1) * sw) * CF
        self.max_step = max(self.step_col, self.step_row, self.step_frame)
        self.window_words = KH * KW * CF
        # Rounded up to a power of two: buffer addresses wrap by dropping their top bit, no comparison on a path.
        self.min_buffer_depth = self.span + self.max_step + self.window_words
        self.buffer_depth = 1 << (self.min_buffer_depth - 1).bit_length()
        self.buffer_plan = plan_ram(self.buffer_depth, self.simd * self.elem_fmt.width)


    # --- figures for the compiler's timing model -------------------------------------------------

    @property
    def out_words_per_frame(self) -> int:
        return self.out_h * self.out_w * self.window_words

    def cycles_per_frame(self) -> int:
        """Steady-state cycles per frame with input always valid and output always ready."""
        return max(self.in_words_per_frame, self.out_words_per_frame)

    def _first_need(self) -> int:
        """Offset of the first window's last in-image word from its (virtual) corner, + 1."""
        rows_used = min(self.kernel_h - 1, self.in_h - 1 + self.pad_top)
        cols_used = min(self.kernel_w - 1, self.in_w - 1 + self.pad_left)
        return (rows_used * self.in_w + cols_used + 1) * self.cf

    def initial_latency(self) -> int:
        """Input words of a frame the generator must have before it sends the frame's first word.

        From an idle start, the first output word is transferred `initial_latency() - 1 + latency`
        cycles after the first input word (input unbroken, output ready).
        """
        return self._first_need() - (self.pad_top * self.in_w + self.pad_left) * self.cf

    def window_needs(self) -> list[tuple[int, int]]:
        """Per window of a frame, in output order: (need, step), the words the reader waits for (counted
        from the window's corner, see the module docstring) and how far the corner moves after it."""
        H, W, KH, KW, CF = self.in_h, self.in_w, self.kernel_h, self.kernel_w, self.cf
        needs = []
        for oh in range(self.out_h):
            for ow in range(self.out_w):
                row0, col0 = oh * self.stride_h - self.pad_top, ow * self.stride_w - self.pad_left
                need = (min(KH - 1, H - 1 - row0) * W + min(KW - 1, W - 1 - col0) + 1) * CF
                step = self.step_col if ow < self.out_w - 1 else self.step_row if oh < self.out_h - 1 \
                    else self.step_frame
                needs.append((need, step))
        return needs

    def output_times(self, arrivals) -> list[int]:
        """A cycle-level model of the controller: the cycle each output word is transferred when input
        word j is offered from cycle `arrivals[j]` (non-decreasing) and the output is always ready.

        Covers the whole frames in `arrivals`. The bench checks it cycle for cycle against the hardware;
        `cycles_per_frame` and `initial_latency` are its steady state and its start.
        """
        return self.schedule(arrivals)[0]

    def schedule(self, arrivals) -> tuple[list[int], list[int]]:
        """`output_times`, and the cycle each input word is taken (the line buffer has room and it is offered)."""
        arrivals = list(arrivals)
        frames = len(arrivals) // self.in_words_per_frame
        needs = self.window_needs() * frames
        occ, written, window, word, t = (self.pad_top * self.in_w + self.pad_left) * self.cf, 0, 0, 0, 0
        times, taken = [], []
        while window < len(needs):
            write = occ < self.buffer_depth and written < len(arrivals) and arrivals[written] <= t
            release = 0
            if word > 0 or occ >= needs[window][0]:
                times.append(t + self.latency - 1)
                word += 1
                if word == self.window_words:
                    release, word, window = needs[window][1], 0, window + 1
            elif written == len(arrivals):
                raise RuntimeError("the model is stuck: a window needs more input than the frames hold")
            if write:
                taken.append(t)
            written += write
            occ += write - release
            t += 1
        while written < len(arrivals):  # words after the last window (bottom padding rows need none): taken as offered
            taken.append(max(t, arrivals[written]))
            t, written = taken[-1] + 1, written + 1
        return times, taken

    def resources(self) -> Resources:
        """Analytic estimate (ip_cores/resources.py): the line buffer, its read register, the window counters
        and address arithmetic."""
        word_w = self.simd * self.elem_fmt.width
        plan = self.buffer_plan
        address_bits = max(1, self.buffer_depth.bit_length())
        counters = address_bits * 6 + 12
        read_register = word_w if plan.kind != "block" else 0
        # The output multiplexer (skid or stage 1, with the padding word) and the skid register.
        return Resources.of_memory(plan) + Resources(counters * 2 + word_w, counters + read_register + word_w + 5)

    # --- hardware ----------------------------------------------------------------------------------

    def initial_occupancy(self) -> int:
        """occ at reset: the padding words above and left of the first window's corner count as written."""
        return (self.pad_top * self.in_w + self.pad_left) * self.cf

    def window_need(self, oh: int, ow: int) -> int:
        """Words from window (oh, ow)'s corner to its last word inside the image, + 1 (see `window_needs`)."""
        H, W, KH, KW, CF = self.in_h, self.in_w, self.kernel_h, self.kernel_w, self.cf
        row0, col0 = oh * self.stride_h - self.pad_top, ow * self.stride_w - self.pad_left
        return (min(KH - 1, H - 1 - row0) * W + min(KW - 1, W - 1 - col0) + 1) * CF

    def elaborate(self, platform):
        """The controller of the module docstring, built so that no path does arithmetic on a comparison's
        result: the buffer depth is a power of two (addresses wrap for free), the words the next window needs
        and the next read address are registers computed a window or a word ahead, counters keep registered
        `last` flags. Cycle for cycle the same behaviour as `output_times`."""
        m = Module()
        H, W, KH, KW, CF = self.in_h, self.in_w, self.kernel_h, self.kernel_w, self.cf
        OH, OW, sh, sw = self.out_h, self.out_w, self.stride_h, self.stride_w
        D = self.buffer_depth
        abits = max(1, (D - 1).bit_length())
        word_w = self.simd * self.elem_fmt.width

        m.submodules.buffer = buf = Memory(shape=unsigned(word_w), depth=D, init=[], attrs=self.buffer_plan.attrs)
        wr = buf.write_port()
        rd = buf.read_port()

        # occ = words written - stream index of the current window's corner (see module docstring).
        occ = Signal(range(-self.max_step, D + 2), init=self.initial_occupancy())
        write = Signal()
        release = Signal(range(self.max_step + 1))

        # --- writer: input words in arrival order around the circular buffer ---
        w_addr = Signal(abits)
        m.d.comb += [
            self.i.ready.eq(occ < D),
            write.eq(self.i.valid & self.i.ready),
            wr.addr.eq(w_addr), wr.data.eq(self.i.payload), wr.en.eq(write),
        ]
        with m.If(write):
            m.d.sync += w_addr.eq(w_addr + 1)
        m.d.sync += occ.eq(occ + write - release)

        # --- reader: window counters, innermost first in stream order ---
        # Stage 1 is the memory's read register (`v1`, `pad1`); behind it a skid register (`skid_valid`) takes
        # stage 1's word whenever the output does not, so stage 1 is free unless both are full: the issue and
        # its wide fanout (counters, addresses, the read register's enable) never see `o.ready`, which may come
        # from another core's control a few LUTs deep. With the output always ready the skid stays empty.
        # `free` (stage 1 may load: not both it and the skid full) is a register, in two copies so that the
        # read register's enable (a word wide) and the issue logic are separate nets.
        v1, pad1, skid_valid = Signal(), Signal(), Signal()
        free_ctl, free_data = Signal(init=1, name="free_ctl"), Signal(init=1, name="free_data")
        free_ctl.attrs["keep"] = free_data.attrs["keep"] = 1
        issue = Signal()
        names = ("kh", "kw", "cf") if not self.depthwise else ("cf", "kh", "kw")
        sizes = {"kh": KH, "kw": KW, "cf": CF}
        counters, en = {}, issue
        for name in reversed(names):  # innermost steps on every issue, the others when all inner ones wrap
            counters[name] = WrapCounter(m, sizes[name], name, en)
            en = en & counters[name].last
        # The window's last word: a counter over the whole window whose `last` is a register, so the per-window
        # enables (issue & window_done) are one LUT of flip-flops, not an AND of the three counters' flags.
        window_done = WrapCounter(m, self.window_words, "word", issue).last
        ow = WrapCounter(m, OW, "ow", issue & window_done)
        oh = WrapCounter(m, OH, "oh", issue & window_done & ow.last)
        mid = Signal()  # inside a window: its first word has been sent

        # Words the current window needs (a register), and the next window's, from per-position tables.
        need = Signal(range(self.span + 1), init=self.window_need(0, 0))
        row_base = _position_table([self.window_need(o, 0) for o in range(OH)], oh.value)
        next_row_base = _position_table([self.window_need(min(o + 1, OH - 1), 0) for o in range(OH)], oh.value)
        col_offset_next = _position_table([self.window_need(0, min(w + 1, OW - 1)) - self.window_need(0, 0)
                                           for w in range(OW)], ow.value)
        need_next = Signal.like(need)
        with m.If(~ow.last):
            m.d.comb += need_next.eq(row_base + col_offset_next)
        with m.Elif(~oh.last):
            m.d.comb += need_next.eq(next_row_base)
        with m.Else():
            m.d.comb += need_next.eq(self.window_need(0, 0))
        step = Mux(~ow.last, self.step_col, Mux(~oh.last, self.step_row, self.step_frame))
        done = Signal()
        m.d.comb += done.eq(issue & window_done)
        with m.If(done):
            m.d.sync += need.eq(need_next)
        m.d.comb += release.eq(Mux(done, step, 0))

        # ready_to_start == (occ >= need) at every cycle. With windows of two words or more it is a register,
        # its next value chosen from comparisons of registers only: occ + 1 (`occ_p1`, for a word written this
        # cycle) and, for a window ending this cycle, against the next window's need plus the corner's move
        # (`after`, recomputed every cycle from the position, so valid from a window's second cycle on).
        ready_to_start = Signal(init=self.initial_occupancy() >= self.window_need(0, 0))
        if self.window_words >= 2:
            occ_p1 = Signal.like(occ, init=occ.init + 1)
            m.d.sync += occ_p1.eq(occ_p1 + write - release)
            after = Signal(range(self.span + self.max_step + 1))
            m.d.sync += after.eq(need_next + step)
            with m.If(done):
                m.d.sync += ready_to_start.eq(Mux(write, occ_p1 >= after, occ >= after))
            with m.Else():
                m.d.sync += ready_to_start.eq(Mux(write, occ_p1 >= need, ready_to_start))
        else:
            m.d.comb += ready_to_start.eq(occ >= need)
        m.d.comb += issue.eq(free_ctl & (mid | ready_to_start))

        # Read address: the current word's, a register; the corner's (`base`) too.
        base = Signal(abits, init=(-(self.pad_top * W + self.pad_left) * CF) % D)
        raddr = Signal(abits, init=base.init)
        fold_base = Signal(abits, init=base.init)  # depthwise: the current channel fold's first word
        next_base = Signal(abits)
        m.d.comb += next_base.eq(base + step)
        kh_c, kw_c, cf_c = counters["kh"], counters["kw"], counters["cf"]
        with m.If(issue):
            with m.If(window_done):
                m.d.sync += [raddr.eq(next_base), base.eq(next_base), fold_base.eq(next_base)]
            elif_steps = [(~kw_c.last, CF), (~kh_c.last, (W - KW + 1) * CF)] if self.depthwise else \
                [(~(cf_c.last & kw_c.last), 1), (~kh_c.last, (W - KW) * CF + 1)]
            for cond, delta in elif_steps:
                with m.Elif(cond):
                    m.d.sync += raddr.eq(raddr + delta)
            if self.depthwise:
                with m.Else():  # the next channel fold starts at its corner word
                    m.d.sync += [raddr.eq(fold_base + 1), fold_base.eq(fold_base + 1)]
        m.d.comb += rd.addr.eq(raddr)
        with m.If(issue):
            m.d.sync += mid.eq(~window_done)

        # Padding: the current word's image row and column, registers kept beside the counters.
        if self.padded:
            row = Signal(range(-self.pad_top, H + KH), init=-self.pad_top)
            col = Signal(range(-self.pad_left, W + KW), init=-self.pad_left)
            row0 = Signal.like(row, init=-self.pad_top)   # the window corner's
            col0 = Signal.like(col, init=-self.pad_left)
            pad = (row < 0) | (row >= H) | (col < 0) | (col >= W)
            next_row0 = Mux(~ow.last, row0, Mux(~oh.last, row0 + sh, -self.pad_top))
            next_col0 = Mux(~ow.last, col0 + sw, -self.pad_left)
            with m.If(issue):
                with m.If(window_done):
                    m.d.sync += [row0.eq(next_row0), col0.eq(next_col0), row.eq(next_row0), col.eq(next_col0)]
                if self.depthwise:
                    with m.Elif(~kw_c.last):
                        m.d.sync += col.eq(col + 1)
                    with m.Elif(~kh_c.last):
                        m.d.sync += [col.eq(col0), row.eq(row + 1)]
                    with m.Else():
                        m.d.sync += [col.eq(col0), row.eq(row0)]
                else:
                    with m.Elif(~(cf_c.last & kw_c.last)):
                        with m.If(cf_c.last):
                            m.d.sync += col.eq(col + 1)
                    with m.Elif(~kh_c.last):
                        m.d.sync += [col.eq(col0), row.eq(row + 1)]
        else:
            pad = Const(0, 1)

        # Stage 1 loads whenever it is free (a word not issued is read but marked invalid); the skid loads
        # stage 1's word whenever it is empty and is marked full when that word was not taken; `o.valid` is a
        # register (the next value of v1 | skid_valid), so the consumer's issue starts at a flip-flop.
        pad_word = pack_words([self.pad_value] * self.simd, self.elem_fmt, self.simd)[0] if self.padded else 0
        stage1_word = Mux(pad1, pad_word, rd.data)
        skid = Signal(word_w, name="skid", reset_less=True)
        out_valid = Signal()
        v1_next = Mux(free_ctl, issue, v1)
        skid_valid_next = Mux(skid_valid, 1, v1) & ~self.o.ready
        free_next = ~(v1_next & skid_valid_next)
        m.d.sync += [v1.eq(v1_next), skid_valid.eq(skid_valid_next), out_valid.eq(v1_next | skid_valid_next),
                     free_ctl.eq(free_next), free_data.eq(free_next)]
        with m.If(free_data):
            m.d.sync += pad1.eq(pad)
        with m.If(~skid_valid):
            m.d.sync += skid.eq(stage1_word)
        m.d.comb += [rd.en.eq(free_data), self.o.valid.eq(out_valid),
                     self.o.payload.eq(Mux(skid_valid, skid, stage1_word))]
        return m


def _position_table(values: list[int], index):
    """values[index] for a counter `index`: the common value, with the few positions that differ (windows
    clipped by padding at the image's end) picked by comparisons, not a multiplexer over every position."""
    common = max(set(values), key=values.count)
    result = Const(common)
    for position, value in enumerate(values):
        if value != common:
            result = Mux(index == position, value, result)
    return result


