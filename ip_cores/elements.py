"""Integer element formats on a stream, and the one packing of elements into stream words.

Every stream in the design carries words of E elements of one `ElementFormat`; element i of a word
sits at bits [i*w, (i+1)*w), least significant first (docs/CONTRACTS.md, "Numbers on a stream").
`pack_words` and `unpack_words` (and, in hardware, `word_element`) are the only code that knows this
layout: the compiler, the harness, the benches and the cores' memory initialisers and datapaths all go
through them, so the layout cannot drift apart.
Words are Python ints, so any width works.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

_KINDS = ("signed", "unsigned", "bipolar")


@dataclass(frozen=True)
class ElementFormat:
    """How one integer element is coded in `width` bits.

    `signed` is two's complement, `unsigned` is plain binary, `bipolar` is one bit with
    1 meaning +1 and 0 meaning -1 (values are -1/+1, never 0).
    """

    kind: str
    width: int

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise ValueError(f"element kind must be one of {_KINDS}, not {self.kind!r}")
        if not isinstance(self.width, (int, np.integer)) or self.width < 1:
            raise ValueError(f"element width must be a positive integer, not {self.width!r}")
        if self.kind == "bipolar" and self.width != 1:
            raise ValueError(f"a bipolar element is 1 bit wide, not {self.width}")
        object.__setattr__(self, "width", int(self.width))

    @classmethod
    def signed(cls, width: int) -> "ElementFormat":
        return cls("signed", width)

    @classmethod
    def unsigned(cls, width: int) -> "ElementFormat":
        return cls("unsigned", width)

    @classmethod
    def bipolar(cls) -> "ElementFormat":
        return cls("bipolar", 1)

    @property
    def is_signed(self) -> bool:
        return self.kind == "signed"

    @property
    def is_bipolar(self) -> bool:
        return self.kind == "bipolar"

    @property
    def min(self) -> int:
        if self.kind == "signed":
            return -(1 << (self.width - 1))
        if self.kind == "unsigned":
            return 0
        return -1

    @property
    def max(self) -> int:
        if self.kind == "signed":
            return (1 << (self.width - 1)) - 1
        if self.kind == "unsigned":
            return (1 << self.width) - 1
        return 1

    def check(self, values, what: str = "value") -> np.ndarray:
        """`values` as an int64/object array, or ValueError naming the first value out of range."""
        arr = _as_int_array(values)
        if arr.size == 0:
            return arr
        if self.kind == "bipolar":
            bad = (arr != 1) & (arr != -1)
        else:
            bad = (arr < self.min) | (arr > self.max)
        if np.any(bad):
            index = tuple(int(k) for k in np.argwhere(bad)[0])
            value = arr[index] if arr.ndim else arr
            allowed = "-1 or +1" if self.kind == "bipolar" else f"[{self.min}, {self.max}]"
            raise ValueError(f"{what} {value} at index {index} does not fit {self}: allowed {allowed}")
        return arr

    def encode(self, values) -> np.ndarray:
        """Integer values -> raw codes in [0, 2**width) (same shape). Raises ValueError when out of range."""
        arr = _wide_enough(self.check(values), self.width)
        if self.kind == "bipolar":
            return (arr > 0).astype(np.int64)
        if self.kind == "signed":
            return np.where(arr < 0, arr + (1 << self.width), arr)
        return arr.copy()

    def decode(self, raw) -> np.ndarray:
        """Raw codes in [0, 2**width) -> integer values (same shape)."""
        arr = _wide_enough(_as_int_array(raw), self.width)
        if arr.size and (np.any(arr < 0) or np.any(arr >= (1 << self.width))):
            raise ValueError(f"raw codes of {self} must lie in [0, {(1 << self.width) - 1}]")
        if self.kind == "bipolar":
            return np.where(arr != 0, 1, -1).astype(np.int64)
        if self.kind == "signed":
            return np.where(arr >= (1 << (self.width - 1)), arr - (1 << self.width), arr)
        return arr.copy()

    def __str__(self) -> str:
        return "bipolar" if self.kind == "bipolar" else f"{self.kind}{self.width}"


def _as_int_array(values) -> np.ndarray:
    """An integer numpy array; int64 when the values fit it, Python-int objects otherwise."""
    arr = np.asarray(values)
    if arr.dtype == object:
        if all(isinstance(v, (int, np.integer)) for v in arr.flat):
            if all(-(1 << 63) <= int(v) < (1 << 63) for v in arr.flat):
                return arr.astype(np.int64)
            return arr
        raise ValueError("elements must be integers")
    if arr.dtype.kind == "b":
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        if arr.size == 0:
            return arr.astype(np.int64)
        raise ValueError(f"elements must be integers, got dtype {arr.dtype}")
    if arr.dtype == np.uint64:
        return arr.astype(object) if arr.size and arr.max() >= (1 << 63) else arr.astype(np.int64)
    return arr.astype(np.int64)


def _wide_enough(arr: np.ndarray, width: int) -> np.ndarray:
    """`arr` as Python-int objects when `width`-bit arithmetic could overflow int64."""
    return arr.astype(object) if width >= 62 and arr.dtype != object else arr


def signed_width_for(lo: int, hi: int) -> int:
    """Fewest two's-complement bits that hold every integer in [lo, hi] (at least 1)."""
    lo, hi = int(lo), int(hi)
    if lo > hi:
        raise ValueError(f"empty range [{lo}, {hi}]")
    width = 1
    while not (-(1 << (width - 1)) <= lo and hi <= (1 << (width - 1)) - 1):
        width += 1
    return width


def unsigned_width_for(hi: int, lo: int = 0) -> int:
    """Fewest plain binary bits that hold every integer in [lo, hi] (at least 1); lo must be >= 0."""
    lo, hi = int(lo), int(hi)
    if lo < 0:
        raise ValueError(f"an unsigned range cannot hold {lo}")
    if lo > hi:
        raise ValueError(f"empty range [{lo}, {hi}]")
    return max(1, hi.bit_length())


def pack_words(values: Iterable[int], fmt: ElementFormat, elems_per_word: int) -> list[int]:
    """Elements (in stream order) -> stream words of `elems_per_word` elements each.

    The element count must be a multiple of `elems_per_word`: a frame never ends mid-word.
    """
    _check_elems_per_word(elems_per_word)
    raw = fmt.encode(np.asarray(values).reshape(-1))
    if raw.size % elems_per_word:
        raise ValueError(f"{raw.size} elements do not fill whole words of {elems_per_word}")
    w = fmt.width
    if raw.dtype != object and w <= 62:  # a bit matrix, one row a word (the folding search packs many tables)
        bits = (raw.astype(np.int64)[:, None] >> np.arange(w, dtype=np.int64)) & 1
        rows = np.packbits(bits.astype(np.uint8).reshape(-1, elems_per_word * w), axis=1, bitorder="little")
        return [int.from_bytes(row.tobytes(), "little") for row in rows]
    words = []
    for start in range(0, raw.size, elems_per_word):
        word = 0
        for k in range(elems_per_word):
            word |= int(raw[start + k]) << (k * w)
        words.append(word)
    return words


def unpack_words(words: Iterable[int], fmt: ElementFormat, elems_per_word: int, n_elems: int) -> np.ndarray:
    """Stream words -> the first `n_elems` elements as integer values (a 1-D array)."""
    _check_elems_per_word(elems_per_word)
    words = [int(word) for word in words]
    n_elems = int(n_elems)
    if n_elems > len(words) * elems_per_word:
        raise ValueError(f"{len(words)} words of {elems_per_word} hold fewer than {n_elems} elements")
    if any(word < 0 for word in words):
        raise ValueError("stream words are non-negative integers")
    w = fmt.width
    mask = (1 << w) - 1
    raw = [(words[k // elems_per_word] >> ((k % elems_per_word) * w)) & mask for k in range(n_elems)]
    return fmt.decode(np.array(raw, dtype=np.int64 if w < 63 else object)).reshape(-1)


def word_element(word, index: int, fmt: ElementFormat):
    """Element `index` of a packed word in hardware: the Amaranth value of its bits, signed for `signed`."""
    raw = word[index * fmt.width:(index + 1) * fmt.width]
    return raw.as_signed() if fmt.is_signed else raw


def _check_elems_per_word(elems_per_word: int) -> None:
    if int(elems_per_word) != elems_per_word or elems_per_word < 1:
        raise ValueError(f"elements per word must be a positive integer, not {elems_per_word!r}")
