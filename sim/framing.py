"""Input frames with a word missing or a word too many: the stimulus for testing the core's input framer.

`corrupt_frames` makes, in Python, exactly the beats the compiled harness sends for `--drop-word F:J` and
`--extra-word F:J` (sim/harness.cpp), so a test can predict what the framer hands the chain
(`ip_cores.input_framer.input_framer_reference`) and from that the output frames.
"""
from __future__ import annotations

from typing import Sequence

__all__ = ["corrupt_frames"]


def corrupt_frames(words: Sequence[int], words_per_frame: int, drop_words: Sequence[tuple[int, int]] = (),
                   extra_words: Sequence[tuple[int, int]] = ()) -> list[list[int]]:
    """`words` split into frames of `words_per_frame`; frame F of a (F, J) in `drop_words` loses its word J,
    frame F of a (F, J) in `extra_words` gets a copy of its word J inserted before it (at most one of them a
    frame). Each returned frame is sent with TLAST on its last word."""
    if words_per_frame < 1 or len(words) % words_per_frame:
        raise ValueError(f"{len(words)} words are not whole frames of {words_per_frame}")
    frames = [list(words[k:k + words_per_frame]) for k in range(0, len(words), words_per_frame)]
    named = [f for f, _ in drop_words] + [f for f, _ in extra_words]
    if len(set(named)) != len(named):
        raise ValueError("at most one corruption a frame")
    for f, j in [*drop_words, *extra_words]:
        if not (0 <= f < len(frames) and 0 <= j < words_per_frame):
            raise ValueError(f"frame {f} word {j} is not in {len(frames)} frames of {words_per_frame} words")
    for f, j in drop_words:
        if words_per_frame == 1:
            raise ValueError("dropping the only word of a frame would leave it empty")
        del frames[f][j]
    for f, j in extra_words:
        frames[f].insert(j, frames[f][j])
    return frames
