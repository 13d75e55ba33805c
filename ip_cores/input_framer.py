"""The input framer: realigns the accelerator's input stream at TLAST after a short or long frame.

Behind an AXI DMA one lost or extra beat would shift every later frame by a word, silently and until
reset. The framer knows the frame length N (input words per frame) and counts the beats it forwards:

- a beat with TLAST before word N-1 (short frame): it is forwarded, then the framer feeds the rest of the
  frame to the chain itself (N-1-k zero words, input not ready meanwhile) and raises `error`;
- word N-1 without TLAST (long frame): it is forwarded, then the beats up to and including the next TLAST
  are accepted and dropped, and `error` is raised.

So every input frame, short or long, yields exactly one frame into the chain (the damaged one is garbage)
and the frames after it are aligned again. `error` is sticky until reset.

The framer holds no data: the input word passes straight through (a zero word while filling), so it costs a
position counter, two state bits, the error bit and, for N > 1, one AND gate a payload bit (the zero filler,
which keeps the damaged frame's output deterministic). With N = 1 no frame can be short: the filling state
and the gates are left out. TVALID and TLAST reach only those registers and the chain's valid; nothing wide
depends on them.
"""
from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["InputFramer", "input_framer_reference", "framed_input_signature"]


def framed_input_signature(width: int) -> stream.Signature:
    """A stream of `width`-bit words with a TLAST bit: payload `.data` and `.last`."""
    return stream.Signature(data.StructLayout({"data": width, "last": 1}))


class InputFramer(wiring.Component):
    """`i` (words with TLAST) -> `o` (words, exactly `words_per_frame` per input frame); `error` sticky."""

    def __init__(self, width: int, words_per_frame: int):
        self.width, self.words_per_frame = int(width), int(words_per_frame)
        if self.width < 1 or self.words_per_frame < 1:
            raise ValueError(f"width {width} and words_per_frame {words_per_frame} must be positive")
        super().__init__({
            "i": In(framed_input_signature(self.width)),
            "o": Out(stream.Signature(self.width)),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.words_per_frame
        position = Signal(range(n))     # word of the current frame the next beat to the chain is
        # short frame: feeding zero words up to the frame's end (with N = 1 every beat ends a frame: never)
        filling = Signal() if n > 1 else Const(0)
        dropping = Signal()             # long frame: discarding beats up to the next TLAST
        error = Signal()
        at_end = position == n - 1
        advance = Mux(at_end, 0, position + 1)
        # the payload passes through except while filling (valid is low while dropping: no gate needed there)
        m.d.comb += [self.error.eq(error), self.o.payload.eq(Mux(filling, 0, self.i.payload.data))]

        with m.If(filling):
            m.d.comb += [self.o.valid.eq(1), self.i.ready.eq(0)]
            with m.If(self.o.ready):
                m.d.sync += position.eq(advance)
                if n > 1:
                    with m.If(at_end):
                        m.d.sync += filling.eq(0)
        with m.Elif(dropping):
            m.d.comb += [self.o.valid.eq(0), self.i.ready.eq(1)]
            with m.If(self.i.valid & self.i.payload.last):
                m.d.sync += dropping.eq(0)
        with m.Else():
            m.d.comb += [self.o.valid.eq(self.i.valid), self.i.ready.eq(self.o.ready)]
            with m.If(self.i.valid & self.o.ready):
                m.d.sync += position.eq(advance)
                with m.If(at_end & ~self.i.payload.last):
                    m.d.sync += [dropping.eq(1), error.eq(1)]
                if n > 1:
                    with m.If(~at_end & self.i.payload.last):
                        m.d.sync += [filling.eq(1), error.eq(1)]
        return m


def input_framer_reference(frames, words_per_frame: int, fill: int = 0) -> tuple[list[list[int]], list[int]]:
    """What the framer hands the chain for input `frames` (lists of words, TLAST on each one's last word).

    Returns (frames of exactly `words_per_frame` words: a short frame padded with `fill`, a long one cut
    after its first `words_per_frame` words; the indices of the damaged frames, which raise `error`).
    """
    out, bad = [], []
    for index, frame in enumerate(frames):
        frame = list(frame)
        if not frame:
            raise ValueError(f"frame {index} is empty: a frame has at least its TLAST beat")
        if len(frame) != words_per_frame:
            bad.append(index)
        out.append((frame + [fill] * words_per_frame)[:words_per_frame])
    return out, bad
