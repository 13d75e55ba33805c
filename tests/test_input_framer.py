"""The input framer (ip_cores/input_framer.py) on its own, in Amaranth's simulator: random streams of well-formed,
short and long frames under random input gaps and output stalls, against `input_framer_reference`; the error flag's
timing; reset in the middle of a frame; and the reference itself on hand-worked examples."""
from __future__ import annotations

import random

import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from ip_cores.input_framer import InputFramer, input_framer_reference


def test_reference_on_hand_worked_frames():
    frames = [[1, 2, 3], [4, 5], [6, 7, 8, 9], [10], [11, 12, 13]]
    out, bad = input_framer_reference(frames, 3)
    assert out == [[1, 2, 3], [4, 5, 0], [6, 7, 8], [10, 0, 0], [11, 12, 13]]
    assert bad == [1, 2, 3]
    assert input_framer_reference([[5], [6, 7]], 1, fill=9) == ([[5], [6]], [1])
    with pytest.raises(ValueError):
        input_framer_reference([[1], []], 2)


def random_frames(rng: random.Random, n_frames: int, words_per_frame: int, width: int, p_bad: float) -> list[list[int]]:
    """Frames of random words; with probability p_bad a frame is short (1..N-1 words) or long (N+1..N+3)."""
    frames = []
    for _ in range(n_frames):
        length = words_per_frame
        if rng.random() < p_bad:
            short = words_per_frame > 1 and rng.random() < 0.5
            length = rng.randint(1, words_per_frame - 1) if short else words_per_frame + rng.randint(1, 3)
        frames.append([rng.getrandbits(width) for _ in range(length)])
    return frames


class FramerRun:
    """Drives one InputFramer cycle by cycle: beats in (TLAST on each frame's last), words out, error sampled."""

    def __init__(self, width: int, words_per_frame: int):
        self.framer = InputFramer(width, words_per_frame)
        self.top = Module()
        self.top.domains.sync = self.domain = ClockDomain("sync")
        self.top.submodules.framer = self.framer

    def run(self, frames, *, p_gap: float, p_stall: float, seed: int, reset: tuple[int, int] | None = None,
            n_out: int | None = None):
        """Send the frames' beats; returns {"out": output words, "error": per cycle (input beats accepted before
        the edge, error read before it), "accepted": beats taken}. `reset` = (after, resume): once `after` beats
        are taken, reset the framer for a cycle and go on with beat `resume` (the ones between are never sent);
        `n_out`: output words to wait for (default: a frame's worth per frame)."""
        beats = [(w, k == len(f) - 1) for f in frames for k, w in enumerate(f)]
        n_out = len(frames) * self.framer.words_per_frame if n_out is None else n_out
        rng = random.Random(seed)
        record = {"out": [], "error": [], "accepted": 0}
        dut = self.framer
        pending_reset = [reset]

        async def bench(ctx):
            index, limit = 0, 40 * (len(beats) + n_out) + 100
            for _ in range(limit):
                if len(record["out"]) >= n_out and index >= len(beats):
                    break
                offer = index < len(beats) and rng.random() >= p_gap
                ctx.set(dut.i.valid, offer)
                if offer:
                    ctx.set(dut.i.payload.data, beats[index][0])
                    ctx.set(dut.i.payload.last, beats[index][1])
                ctx.set(dut.o.ready, rng.random() >= p_stall)
                record["error"].append((index, ctx.get(dut.error)))
                took = offer and ctx.get(dut.i.ready)
                if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                    record["out"].append(ctx.get(dut.o.payload))
                await ctx.tick()
                if took:
                    index += 1
                reset_now = pending_reset[0]
                if reset_now is not None and index == reset_now[0]:
                    ctx.set(dut.i.valid, 0)
                    ctx.set(self.domain.rst, 1)
                    await ctx.tick()
                    ctx.set(self.domain.rst, 0)
                    record["after_reset_error"] = ctx.get(dut.error)
                    index, pending_reset[0] = reset_now[1], None
            record["accepted"] = index

        sim = Simulator(self.top)
        sim.add_clock(1e-8)
        sim.add_testbench(bench)
        sim.run()
        return record


def reveal_beat(frames, words_per_frame: int) -> int | None:
    """Index of the first beat that shows a damaged frame: a short frame's TLAST beat, a long frame's word N-1."""
    start = 0
    for frame in frames:
        if len(frame) != words_per_frame:
            return start + min(len(frame), words_per_frame) - 1
        start += len(frame)
    return None


@pytest.mark.parametrize("words_per_frame", [1, 2, 5])
@pytest.mark.parametrize("p_gap,p_stall,seed", [(0.0, 0.0, 1), (0.3, 0.4, 2), (0.6, 0.2, 3)])
def test_random_frames_against_reference(words_per_frame, p_gap, p_stall, seed):
    rng = random.Random(seed * 10 + words_per_frame)
    width = 7
    frames = random_frames(rng, 60, words_per_frame, width, p_bad=0.25)
    frames[0] = [rng.getrandbits(width) for _ in range(words_per_frame)]  # a well-formed start
    run = FramerRun(width, words_per_frame).run(frames, p_gap=p_gap, p_stall=p_stall, seed=seed)
    expected, bad = input_framer_reference(frames, words_per_frame)
    assert bad, "the random stream should contain damaged frames"
    assert run["out"] == [w for f in expected for w in f]
    assert run["accepted"] == sum(len(f) for f in frames)  # every beat is taken, the dropped ones too
    # error: low up to and including the edge that accepts the revealing beat, high from the next edge on
    reveal = reveal_beat(frames, words_per_frame)
    for accepted_before, error in run["error"]:
        assert error == (accepted_before > reveal), (accepted_before, error, reveal)
    assert run["error"][-1][1] == 1


@pytest.mark.parametrize("words_per_frame", [1, 4])
def test_well_formed_frames_never_raise_error(words_per_frame):
    rng = random.Random(7)
    frames = random_frames(rng, 30, words_per_frame, 5, p_bad=0.0)
    run = FramerRun(5, words_per_frame).run(frames, p_gap=0.4, p_stall=0.4, seed=7)
    assert run["out"] == [w for f in frames for w in f]
    assert all(error == 0 for _, error in run["error"])


def test_short_frame_is_padded_with_input_held_off():
    """Frame 0 has one of its 4 words: the framer feeds 3 zero words and takes no input meanwhile, so frame 1's
    words follow only after them, intact."""
    frames = [[0x11], [0x21, 0x22, 0x23, 0x24]]
    run = FramerRun(8, 4).run(frames, p_gap=0.0, p_stall=0.0, seed=0)
    assert run["out"] == [0x11, 0, 0, 0, 0x21, 0x22, 0x23, 0x24]
    # the edges: 0 takes beat 0 (TLAST early); 1-3 fill (no beat taken); 4.. take frame 1
    assert [accepted for accepted, _ in run["error"][:6]] == [0, 1, 1, 1, 1, 2]
    assert [error for _, error in run["error"][:3]] == [0, 1, 1]


def test_long_frame_drops_up_to_tlast():
    frames = [[1, 2, 3, 4, 5, 6], [7, 8, 9]]
    run = FramerRun(4, 3).run(frames, p_gap=0.0, p_stall=0.0, seed=0)
    assert run["out"] == [1, 2, 3, 7, 8, 9]


def test_reset_mid_frame_restarts_counting_and_clears_error():
    """A long frame raises error; a reset two beats into the next frame clears it, and the frames sent after the
    reset are framed from their first word (the two beats before the reset belong to no frame any more)."""
    frames = [[1, 2, 3, 4], [5, 6, 99], [7, 8, 9], [10, 11, 12]]
    # beats 0-3 frame 0, 4-6 frame 1: reset once 6 beats are in (5 and 6 taken, 99 never sent), resume at 7
    run = FramerRun(4, 3).run(frames, p_gap=0.0, p_stall=0.0, seed=0, reset=(6, 7), n_out=11)
    assert run["after_reset_error"] == 0
    # before the reset: frame 0 cut to 3 words (word 4 dropped with its TLAST), then 5 and 6 forwarded; after the
    # reset frames 2 and 3 come out whole (a framer still counting frame 1 would put 7 in its place)
    assert run["out"] == [1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12]
    assert any(error for accepted, error in run["error"] if accepted < 6)
    errors_after = [error for accepted, error in run["error"] if accepted >= 7]
    assert errors_after and not any(errors_after)


def test_bad_parameters():
    with pytest.raises(ValueError):
        InputFramer(0, 3)
    with pytest.raises(ValueError):
        InputFramer(8, 0)
