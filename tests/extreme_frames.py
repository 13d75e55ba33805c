"""Whole input frames that drive a layer's accumulators to their extremes, and a plain-numpy check that they do.

Output channel c's accumulator (at output pixel p, for a convolution) is a sum of weight x input over its
window. Its largest value over all inputs in range takes, tap by tap, the input extreme the weight's sign
prefers: hi where w > 0, lo where w < 0; its smallest value the opposite. Padding taps add 0 whatever the
input, so a window that overhangs the image has a smaller extreme (the sum over its in-image taps only).

A dense layer has one window per channel: one frame per channel and extreme. A convolution's windows
overlap, so one frame fixes only windows that share no input element: each frame places channels' patterns
at disjoint window positions ("slots": the corners, which overhang the padding when the layer pads, the
centre, the middles of the edges, then a grid of further disjoint windows), rotating the channels over the
slots from frame to frame. A depthwise channel reads only its own input channel, so every channel can take
its extreme at every slot of the same frame.

The frames follow the stream layout documented in rtlgen/graph.py (channels-last element (h*W + w)*C + c,
im2col column (kh*KW + kw)*C + ci, depthwise filter column kh*KW + kw) and are built from those index
formulas. `check_targets` recomputes every aimed-at accumulator along a different path (np.pad and slicing
of the H x W x C image) and compares it with the analytic extreme; the tests compare rtlgen's
`layer.accumulate` with the same numbers, so nothing here takes its expected values from the code under test.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONV_FRAMES_PER_EXTREME = 8  # a convolution's frames per extreme when it has more channels than that


@dataclass(frozen=True)
class Target:
    """Accumulator (channel, pixel) of frame `frame` is aimed at its maximum (sign +1) or minimum (-1)."""

    frame: int
    channel: int
    pixel: int  # output pixel oh*OW + ow; 0 for a dense layer
    sign: int


@dataclass
class ExtremeFrames:
    frames: np.ndarray  # (N, in_elems) integer levels the layer takes, in its input stream order
    targets: list[Target]
    cut: bool = False  # extreme frames were left out to stay within a frame budget


def input_range(layer) -> tuple[int, int]:
    """The smallest and largest input level the layer can receive (bipolar: -1 and +1)."""
    fmt = layer.in_fmt
    return (-1, 1) if fmt.kind == "bipolar" else (fmt.min, fmt.max)


def is_depthwise(layer) -> bool:
    return layer.op == "DepthwiseVVU"


def uniform_frames(layer) -> np.ndarray:
    """All-max, all-min and two alternating frames (the old worst cases; cheap, and they fill every pixel)."""
    lo, hi = input_range(layer)
    idx = np.arange(layer.in_elems)
    return np.stack([np.full(idx.size, hi), np.full(idx.size, lo), np.where(idx % 2, hi, lo),
                     np.where(idx % 3, lo, hi)]).astype(np.int64)


# ---------------------------------------------------------------------------------------------------------
# Building the frames (index formulas of the stream layout)


def window_taps(layer, channel: int, pixel: int) -> tuple[np.ndarray, np.ndarray]:
    """(input element, weight column) of every in-image tap of accumulator (channel, pixel)."""
    if getattr(layer, "conv", None) is None:
        cols = np.arange(layer.mw)
        return cols, cols
    g = layer.conv
    oh, ow = divmod(pixel, g.out_w)
    elems, cols = [], []
    for kh in range(g.kernel_h):
        ih = oh * g.stride_h - g.pad_top + kh
        for kw in range(g.kernel_w):
            iw = ow * g.stride_w - g.pad_left + kw
            if not (0 <= ih < g.in_h and 0 <= iw < g.in_w):
                continue  # a padding tap: the input is 0 there whatever the frame says
            base = (ih * g.in_w + iw) * g.channels
            if is_depthwise(layer):
                elems.append(base + channel)
                cols.append(kh * g.kernel_w + kw)
            else:
                elems.extend(base + ci for ci in range(g.channels))
                cols.extend((kh * g.kernel_w + kw) * g.channels + ci for ci in range(g.channels))
    return np.array(elems, dtype=np.int64), np.array(cols, dtype=np.int64)


def _footprint(g, pixel: int) -> set[tuple[int, int]]:
    """The input pixels (h, w) the window at output `pixel` covers (padding excluded)."""
    oh, ow = divmod(pixel, g.out_w)
    return {(ih, iw) for ih in range(oh * g.stride_h - g.pad_top, oh * g.stride_h - g.pad_top + g.kernel_h)
            for iw in range(ow * g.stride_w - g.pad_left, ow * g.stride_w - g.pad_left + g.kernel_w)
            if 0 <= ih < g.in_h and 0 <= iw < g.in_w}


def probe_pixels(g) -> list[int]:
    """Output pixels worth aiming at: the four corners (overhanging the padding if any), the centre, the
    middles of the edges; distinct, in that order."""
    rows, cols = (0, g.out_h // 2, g.out_h - 1), (0, g.out_w // 2, g.out_w - 1)
    order = [(rows[0], cols[0]), (rows[0], cols[2]), (rows[2], cols[0]), (rows[2], cols[2]), (rows[1], cols[1]),
             (rows[0], cols[1]), (rows[1], cols[0]), (rows[1], cols[2]), (rows[2], cols[1])]
    pixels = []
    for oh, ow in order:
        if oh * g.out_w + ow not in pixels:
            pixels.append(oh * g.out_w + ow)
    return pixels


def is_whole(g, pixel: int) -> bool:
    """The window at output `pixel` lies wholly inside the image (no padding tap)."""
    return len(_footprint(g, pixel)) == g.kernel_h * g.kernel_w


def slots(g, first: list[int]) -> list[int]:
    """Output pixels whose windows share no input pixel: those of `first` in order (one overlapping an
    earlier choice is left out), then every further pixel, row by row, whose window is disjoint from all."""
    chosen, used = [], set()
    for pixel in list(first) + list(range(g.pixels_out)):
        fp = _footprint(g, pixel)
        if pixel not in chosen and fp and not (fp & used):
            chosen.append(pixel)
            used |= fp
    return chosen


def dense_channel_order(layer) -> list[int]:
    """The channel with the largest maximum first, then the one with the smallest minimum, then the rest by
    how far their extremes reach: a frame budget cut keeps the layer-wide extremes."""
    want_lo, want_hi = channel_extremes(layer)
    first = [int(np.argmax(want_hi)), int(np.argmin(want_lo))]
    rest = sorted(set(range(len(want_hi))) - set(first), key=lambda c: (-max(want_hi[c], -want_lo[c]), c))
    return list(dict.fromkeys(first)) + rest


def probe_slot_sets(g) -> list[list[int]]:
    """Slot sets that together hold every probe pixel: the first starts from all probes; a probe it had to
    leave out (its window overlaps an earlier one, in a small image) starts another."""
    remaining = [p for p in probe_pixels(g) if _footprint(g, p)]
    sets = []
    while remaining:
        sets.append(slots(g, remaining))
        remaining = [p for p in remaining if p not in sets[-1]]
    return sets


def _pack(layer, wanted: list[tuple[int, list[int]]]) -> list[list[tuple[int, int]]]:
    """Layouts holding, for each (channel, candidate pixels) of `wanted`, the channel at one candidate pixel:
    greedily, in the first layout where some candidate's window shares no input element with the others."""
    layouts, claimed = [], []
    for channel, pixels in wanted:
        for layout, used in zip(layouts, claimed):
            pixel = next((p for p in pixels if not used & set(window_taps(layer, channel, p)[0].tolist())), None)
            if pixel is not None:
                break
        else:
            layout, used, pixel = [], set(), pixels[0]
            layouts.append(layout)
            claimed.append(used)
        layout.append((channel, pixel))
        used |= set(window_taps(layer, channel, pixel)[0].tolist())
    return layouts


def conv_layouts(layer, frames_per_extreme: int) -> list[list[tuple[int, int]]]:
    """The (channel, pixel) windows each frame fixes, for a convolution or depthwise layer.

    For each probe slot set: frame f puts channel (f + j) mod C at slot j (depthwise: every channel at every
    slot). A channel whose extremes (those of a whole window, or of its best windows where no window lies
    wholly inside the image) none of these reached is then packed in at a window that reaches them."""
    g, channels = layer.conv, layer.weights.shape[0]
    layouts = []
    for pixels in probe_slot_sets(g):
        if is_depthwise(layer):
            layouts.append([(c, p) for p in pixels for c in range(channels)])
        else:
            n = channels if channels <= frames_per_extreme else max(frames_per_extreme, channels - len(pixels) + 1)
            layouts += [[((f + j) % channels, p) for j, p in enumerate(pixels)] for f in range(n)]
    lo_pc, hi_pc = window_extremes(layer)
    want_lo, want_hi = lo_pc.min(axis=0), hi_pc.max(axis=0)
    placed = [set() for _ in range(channels)]
    for layout in layouts:
        for c, p in layout:
            placed[c].add(p)
    wanted = []
    for c in range(channels):
        best_hi = np.flatnonzero(hi_pc[:, c] == want_hi[c]).tolist()
        best_lo = np.flatnonzero(lo_pc[:, c] == want_lo[c]).tolist()
        need_hi, need_lo = placed[c].isdisjoint(best_hi), placed[c].isdisjoint(best_lo)
        both = sorted(set(best_hi) & set(best_lo))
        if need_hi and need_lo and both:
            wanted.append((c, both))
            continue
        if need_hi:
            wanted.append((c, best_hi))
        if need_lo:
            wanted.append((c, best_lo))
    return layouts + _pack(layer, wanted)


def _render(layer, placements: list[tuple[int, int]], sign: int) -> np.ndarray:
    """One frame: each (channel, pixel) window takes the input extreme its weights' signs choose (for the
    maximum: hi where w > 0, lo where w < 0, hi where w = 0); every other element the same side's extreme."""
    lo, hi = input_range(layer)
    top, bottom = (hi, lo) if sign > 0 else (lo, hi)
    frame = np.full(layer.in_elems, top, dtype=np.int64)
    claimed = np.zeros(layer.in_elems, dtype=bool)
    for channel, pixel in placements:
        elems, cols = window_taps(layer, channel, pixel)
        assert not claimed[elems].any(), f"windows overlap at channel {channel}, pixel {pixel}"
        claimed[elems] = True
        frame[elems] = np.where(layer.weights[channel, cols] < 0, bottom, top)
    return frame


def extreme_frames(layer, frames_per_extreme: int = CONV_FRAMES_PER_EXTREME) -> ExtremeFrames:
    """Frames reaching accumulator extremes of `layer` (dense, convolution or depthwise), maximum and minimum.

    Dense: one frame per channel and extreme (duplicates of an earlier frame dropped). Depthwise: one frame
    per extreme with every channel at every slot. Convolution: F frames per extreme, frame f putting channel
    (f + j) mod C at slot j; F = C when C <= `frames_per_extreme` (every channel at every probe pixel), else the
    smallest F >= `frames_per_extreme` that still gives every channel a slot (S + F - 1 >= C); see
    `conv_layouts` for probes that overlap and channels still short of their extremes."""
    if getattr(layer, "conv", None) is None:
        layouts = [[(c, 0)] for c in dense_channel_order(layer)]
    else:
        layouts = conv_layouts(layer, frames_per_extreme)
    frames, targets, seen = [], [], {}
    for layout in layouts:
        for sign in (1, -1):
            frame = _render(layer, layout, sign)
            key = frame.tobytes()
            if key not in seen:
                seen[key] = len(frames)
                frames.append(frame)
            targets.extend(Target(seen[key], c, p, sign) for c, p in layout)
    return ExtremeFrames(np.stack(frames), targets)


def worst_case_frames(layer, max_frames: int | None = None) -> ExtremeFrames:
    """All-max and all-min, the extreme frames, then the two alternating frames (targets renumbered).

    With a budget of `max_frames`, a convolution first gets fewer frames per extreme (down to 1, which still
    puts every channel at its extremes when the image has a slot per channel); then the list is cut at a whole
    frame (the targets of dropped frames go too, and `cut` tells whether any extreme frame went)."""
    uniform = uniform_frames(layer)
    per_extreme = CONV_FRAMES_PER_EXTREME
    ext = extreme_frames(layer, per_extreme)
    while getattr(layer, "conv", None) is not None and max_frames is not None and per_extreme > 1 \
            and len(ext.frames) + 2 > max_frames:
        per_extreme -= 1
        ext = extreme_frames(layer, per_extreme)
    frames = np.concatenate([uniform[:2], ext.frames, uniform[2:]])
    targets = [Target(t.frame + 2, t.channel, t.pixel, t.sign) for t in ext.targets]
    if max_frames is not None and len(frames) > max_frames:
        frames = frames[:max_frames]
        targets = [t for t in targets if t.frame < max_frames]
    return ExtremeFrames(frames, targets, cut=len(frames) < 2 + len(ext.frames))


# ---------------------------------------------------------------------------------------------------------
# Checking them (a second path: pad and slice the image)


def _padded(layer, frame: np.ndarray) -> np.ndarray:
    """A frame as its zero-padded H x W x C image (a dense layer's frame as a 1 x 1 x MW image)."""
    g = getattr(layer, "conv", None)
    if g is None:
        return np.asarray(frame, dtype=np.int64).reshape(1, 1, -1)
    image = np.asarray(frame, dtype=np.int64).reshape(g.in_h, g.in_w, g.channels)
    return np.pad(image, ((g.pad_top, g.pad_bottom), (g.pad_left, g.pad_right), (0, 0)))


def _window(layer, padded: np.ndarray, channel: int, pixel: int) -> tuple[np.ndarray, np.ndarray]:
    """(window of the padded image, filter) of accumulator (channel, pixel), both KH x KW x C (depthwise:
    KH x KW x 1, the channel's own plane)."""
    w = np.asarray(layer.weights[channel], dtype=np.int64)
    g = getattr(layer, "conv", None)
    if g is None:
        return padded, w.reshape(padded.shape)
    oh, ow = divmod(pixel, g.out_w)
    window = padded[oh * g.stride_h:oh * g.stride_h + g.kernel_h, ow * g.stride_w:ow * g.stride_w + g.kernel_w]
    if is_depthwise(layer):
        window = window[:, :, channel:channel + 1]
    return window, w.reshape(window.shape)


def numpy_accumulators(layer, frames: np.ndarray, targets: list[Target]) -> np.ndarray:
    """Each target's accumulator from its frame: window times filter, summed (padding taps are 0)."""
    padded = [_padded(layer, f) for f in frames]
    out = []
    for t in targets:
        window, w = _window(layer, padded[t.frame], t.channel, t.pixel)
        out.append(int((window * w).sum()))
    return np.array(out, dtype=np.int64)


def window_extremes(layer) -> tuple[np.ndarray, np.ndarray]:
    """(smallest, largest) value each accumulator can take, arrays (pixels, C): the sum over the window's
    in-image taps of min(w*lo, w*hi) and max(w*lo, w*hi); the in-image taps found by sliding the window over an
    all-ones image padded with zeros. (A dense layer has one "pixel".)"""
    lo, hi = input_range(layer)
    inside = _padded(layer, np.ones(layer.in_elems, dtype=np.int64))
    w = np.asarray(layer.weights, dtype=np.int64)
    w_lo, w_hi = np.minimum(w * lo, w * hi), np.maximum(w * lo, w * hi)
    g = getattr(layer, "conv", None)
    pixels = 1 if g is None else g.pixels_out
    out_lo, out_hi = np.zeros((pixels, len(w)), dtype=np.int64), np.zeros((pixels, len(w)), dtype=np.int64)
    for p in range(pixels):
        if g is not None and is_depthwise(layer):  # each channel its own plane of the image
            for c in range(len(w)):
                m = _window(layer, inside, c, p)[0].reshape(-1)
                out_lo[p, c], out_hi[p, c] = (w_lo[c] * m).sum(), (w_hi[c] * m).sum()
        else:  # one window over all input channels, shared by every output channel
            m = _window(layer, inside, 0, p)[0].reshape(1, -1)
            out_lo[p], out_hi[p] = (w_lo * m).sum(axis=1), (w_hi * m).sum(axis=1)
    return out_lo, out_hi


def aimed_values(layer, targets: list[Target]) -> np.ndarray:
    """Each target's analytic extreme (`window_extremes` at its window, the side its sign names)."""
    lo, hi = window_extremes(layer)
    return np.array([hi[t.pixel, t.channel] if t.sign > 0 else lo[t.pixel, t.channel] for t in targets],
                    dtype=np.int64)


def channel_extremes(layer) -> tuple[np.ndarray, np.ndarray]:
    """Per channel, the smallest and largest value any of its windows can take: a whole window's (all
    weights) when one lies wholly inside the image, else the best of the padded ones."""
    lo, hi = window_extremes(layer)
    return lo.min(axis=0), hi.max(axis=0)


def check_targets(layer, ef: ExtremeFrames) -> None:
    """Every aimed-at accumulator of `ef`, recomputed from its frame, equals its analytic extreme."""
    got, want = numpy_accumulators(layer, ef.frames, ef.targets), aimed_values(layer, ef.targets)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, f"{layer.name}: {bad.size} windows miss their extreme, e.g. {ef.targets[bad[0]]}: " \
                          f"{got[bad[0]]} instead of {want[bad[0]]}"


def check_reaches_extremes(layer, acc: np.ndarray, channels=None) -> None:
    """Accumulators `acc` (N, pixels, C) reach, for each of `channels` (default all), both of the channel's
    extremes (`channel_extremes`: for a whole window max == sum max(w*lo, w*hi), min == sum min(w*lo, w*hi))."""
    want_lo, want_hi = channel_extremes(layer)
    channels = range(len(want_hi)) if channels is None else sorted(channels)
    for c in channels:
        got = (int(acc[..., c].min()), int(acc[..., c].max()))
        assert got == (int(want_lo[c]), int(want_hi[c])), \
            f"{layer.name} channel {c}: accumulators span {got}, its extremes are {(int(want_lo[c]), int(want_hi[c]))}"


def aimed_accumulators(acc: np.ndarray, ef: ExtremeFrames) -> np.ndarray:
    """The aimed-at entries of accumulators `acc` (N, pixels, C), e.g. from `layer.accumulate(ef.frames)`."""
    return np.array([acc[t.frame, t.pixel, t.channel] for t in ef.targets], dtype=np.int64)


def covered_channels(layer, ef: ExtremeFrames) -> set[int]:
    """Channels of which `ef` aims some window at each of the channel's extremes."""
    want_lo, want_hi = channel_extremes(layer)
    aimed = aimed_values(layer, ef.targets)
    up = {t.channel for t, v in zip(ef.targets, aimed) if t.sign > 0 and v == want_hi[t.channel]}
    return up & {t.channel for t, v in zip(ef.targets, aimed) if t.sign < 0 and v == want_lo[t.channel]}


# ---------------------------------------------------------------------------------------------------------
# Through the RTL

# Simulated cycles the worst-case frames may cost one end-to-end check (1-2 s on a small design with the -O1
# harness; large designs pass their own `max_frames`), and the frames it may send whatever their cycles.
WORST_CASE_CYCLES = 4_000_000
MIN_WORST_FRAMES = 24


def check_extremes_in_rtl(out_dir, network, ii_cycles: int, max_frames: int | None = None) -> ExtremeFrames:
    """Drive the first layer's accumulators to their extremes through the built design in `out_dir`, and
    compare the hardware with the golden model on every output element.

    At most `max_frames` frames, by default as many as WORST_CASE_CYCLES of simulation allow (at least
    MIN_WORST_FRAMES); a cut drops the least extreme dense channels (the model's cheaper foldings cover them)
    or a convolution's extra rotations. Before simulating, the frame set must prove itself: each aimed
    window at its analytic extreme in plain numpy, the golden model's accumulators equal to those numbers
    (so the frames follow the stream layout the golden model and the RTL use), and every covered channel's
    accumulators spanning its extremes (a whole window's), the layer-wide maximum and minimum always
    included, every channel unless extreme frames were cut."""
    from rtlgen.runner import load_design, simulate

    if max_frames is None:
        max_frames = max(MIN_WORST_FRAMES, WORST_CASE_CYCLES // max(1, ii_cycles))
    layer = network.layers[0]
    if layer.op == "MaxPool":  # no accumulator; the uniform frames still go through
        ef = ExtremeFrames(uniform_frames(layer), [])
    else:
        ef = worst_case_frames(layer, max_frames)
        check_targets(layer, ef)
        acc = layer.accumulate(ef.frames)
        np.testing.assert_array_equal(aimed_accumulators(acc, ef), aimed_values(layer, ef.targets))
        channels = covered_channels(layer, ef)
        want_lo, want_hi = channel_extremes(layer)
        assert {int(np.argmax(want_hi)), int(np.argmin(want_lo))} <= channels, (layer.name, sorted(channels))
        if not ef.cut:
            assert channels == set(range(layer.weights.shape[0])), (layer.name, sorted(channels))
        check_reaches_extremes(layer, acc, channels)
    hw, _ = simulate(load_design(out_dir), ef.frames)
    np.testing.assert_array_equal(hw, network.golden(ef.frames))
    return ef
