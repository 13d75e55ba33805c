"""Integer frames <-> the bytes an AXI DMA moves for a core: the one packing every path uses.

A core's s_axis takes a frame as `words_per_frame` TDATA words; each word holds `elems_per_word` elements of
`width` bits, element 0 in the lowest bits, and is zero-padded to the TDATA width (a whole number of bytes). An
AXI DMA reads a word from memory as TDATA/8 bytes, least significant byte first, words back to back. m_axis is
the same the other way. `rtlgen run` packs the Verilator harness's words with this module, and every build
copies this file into `DIR/driver/` for the board, so simulation and board pack frames the same way.

Self-contained on purpose (numpy only, no rtlgen import): the board has neither rtlgen nor qonnx.
Element types are qonnx's names: INTn (two's complement), UINTn, BINARY (= UINT1), BIPOLAR (1 bit, 1 = +1,
0 = -1).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

__all__ = ["StreamFormat", "pack_frames", "unpack_frames", "frames_to_words", "words_to_bytes", "bytes_to_words"]


@dataclass(frozen=True)
class StreamFormat:
    """One direction of a core's stream: element type, elements a word, TDATA bits, elements a frame."""

    dtype: str
    elems_per_word: int
    tdata_bits: int
    elems: int

    @property
    def kind_width(self) -> tuple[str, int]:
        name = self.dtype.upper()
        if name == "BIPOLAR":
            return "bipolar", 1
        if name == "BINARY":
            return "unsigned", 1
        m = re.fullmatch(r"(U?)INT(\d+)", name)
        if not m:
            raise ValueError(f"not an integer stream type: {self.dtype}")
        return ("unsigned" if m.group(1) else "signed"), int(m.group(2))

    @property
    def words_per_frame(self) -> int:
        return -(-self.elems // self.elems_per_word)

    @property
    def word_bytes(self) -> int:
        return self.tdata_bits // 8

    @property
    def frame_bytes(self) -> int:
        return self.words_per_frame * self.word_bytes

    @classmethod
    def of_input(cls, io: dict) -> "StreamFormat":
        """The s_axis format from a build's report.json `io`."""
        return cls(io["input_dtype"], io["in_elems_per_word"], io["s_axis_tdata_bits"], io["in_elems"])

    @classmethod
    def of_output(cls, io: dict) -> "StreamFormat":
        """The m_axis format from a build's report.json `io`."""
        return cls(io["output_dtype"], io["out_elems_per_word"], io["m_axis_tdata_bits"], io["out_elems"])


def _codes(values: np.ndarray, kind: str, width: int) -> np.ndarray:
    """Integer values -> raw codes in [0, 2**width); ValueError naming the first value out of range."""
    v = np.asarray(values)
    if v.dtype.kind == "f":
        if not np.all(v == np.round(v)):
            raise ValueError("stream elements must be integers")
    v = v.astype(np.int64)
    if kind == "bipolar":
        bad = (v != 1) & (v != -1)
        lo, hi = -1, 1
    else:
        lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if kind == "signed" else (0, (1 << width) - 1)
        bad = (v < lo) | (v > hi)
    if np.any(bad):
        raise ValueError(f"element {int(v[bad][0])} does not fit {kind} {width}-bit ([{lo}, {hi}])")
    if kind == "bipolar":
        return (v > 0).astype(np.int64)
    return np.where(v < 0, v + (1 << width), v)


def pack_frames(frames, fmt: StreamFormat) -> np.ndarray:
    """Integer frames (N, elems) -> DMA bytes (N, frame_bytes), uint8: elements packed into words, each word
    zero-padded to TDATA and laid out least significant byte first."""
    kind, width = fmt.kind_width
    frames = np.asarray(frames).reshape(-1, fmt.elems)
    n = len(frames)
    codes = _codes(frames, kind, width)
    pad = fmt.words_per_frame * fmt.elems_per_word - fmt.elems  # a frame ends on a whole word
    codes = np.concatenate([codes, np.zeros((n, pad), dtype=np.int64)], axis=1)
    bits = ((codes[:, :, None] >> np.arange(width, dtype=np.int64)) & 1).astype(np.uint8)
    word_bits = bits.reshape(n, fmt.words_per_frame, fmt.elems_per_word * width)
    tdata = np.zeros((n, fmt.words_per_frame, fmt.tdata_bits), dtype=np.uint8)
    tdata[:, :, :word_bits.shape[2]] = word_bits
    return np.packbits(tdata, axis=2, bitorder="little").reshape(n, fmt.frame_bytes)


def unpack_frames(buffer, fmt: StreamFormat) -> np.ndarray:
    """DMA bytes (N, frame_bytes) (or flat) -> integer frames (N, elems), int64."""
    kind, width = fmt.kind_width
    raw = np.asarray(buffer, dtype=np.uint8).reshape(-1, fmt.words_per_frame, fmt.word_bytes)
    n = len(raw)
    bits = np.unpackbits(raw, axis=2, bitorder="little")[:, :, :fmt.elems_per_word * width]
    bits = bits.reshape(n, fmt.words_per_frame * fmt.elems_per_word, width)[:, :fmt.elems].astype(np.int64)
    codes = (bits << np.arange(width, dtype=np.int64)).sum(axis=2)
    if kind == "bipolar":
        return np.where(codes != 0, 1, -1).astype(np.int64)
    if kind == "signed":
        return np.where(codes >= (1 << (width - 1)), codes - (1 << width), codes)
    return codes


def frames_to_words(frames, fmt: StreamFormat) -> list[int]:
    """Integer frames -> the TDATA words, as Python integers, frame after frame."""
    return bytes_to_words(pack_frames(frames, fmt).tobytes(), fmt.tdata_bits)


def words_to_bytes(words, tdata_bits: int) -> bytes:
    """TDATA words as an AXI DMA reads them from memory: each `tdata_bits // 8` bytes, least significant first."""
    if tdata_bits % 8:
        raise ValueError(f"TDATA of {tdata_bits} bits is not whole bytes")
    return b"".join(int(w).to_bytes(tdata_bits // 8, "little") for w in words)


def bytes_to_words(buffer: bytes, tdata_bits: int) -> list[int]:
    """The inverse of `words_to_bytes`: the words an S2MM channel wrote, TDATA/8 bytes each."""
    step = tdata_bits // 8
    if tdata_bits % 8 or len(buffer) % step:
        raise ValueError(f"{len(buffer)} bytes are not whole {tdata_bits}-bit words")
    return [int.from_bytes(buffer[k:k + step], "little") for k in range(0, len(buffer), step)]
