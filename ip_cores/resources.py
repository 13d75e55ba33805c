"""Analytic resource estimates: what a core will cost, in milliseconds, without synthesis.

Every core of the library has a `resources()` method built from its own structure (the widths of its adders and
registers, its memory plans from ip_cores/memories.py); the compiler adds them up per layer and for the design
(report.json "resources"). They are estimates of Yosys' `synth_xilinx -family xc7` counts, calibrated on the
benchmark designs (bench/bench_hardware.py prints both); `rtlgen build --synth` measures.

Rules of thumb used throughout (7-series, Yosys mapping): an n-bit two-input adder or comparator is about n
LUTs on a CARRY4 chain; a register is one FF a bit; a LUTRAM holds 32 x 6 bits in 4 LUTs.
"""
from __future__ import annotations

from dataclasses import dataclass

from .elements import signed_width_for

__all__ = ["Resources", "adder_tree_cost", "fifo_cost"]


@dataclass
class Resources:
    luts: float = 0  # logic LUTs (LUT ROMs included)
    ffs: float = 0
    bram18: float = 0  # RAMB18E1 equivalents
    dsp: float = 0
    lutram: float = 0  # LUTs used as distributed RAM (Yosys and Vivado count them apart from logic LUTs)

    @classmethod
    def of_memory(cls, plan, words: list[int] | None = None) -> "Resources":
        """A memory planned by ip_cores/memories.py: its LUTs as logic or as LUTRAM, its block RAMs, and its
        registers (a LUT table's address copies and data register, a block RAM's output register). With the
        contents of a LUT table, only its varying, distinct columns count (`varying_columns`)."""
        if plan.kind == "lutram":
            return cls(lutram=plan.luts, bram18=plan.bram18)
        if plan.kind == "logic":
            from .memories import LOGIC_COLUMN_BITS, varying_columns
            columns = plan.width if words is None else varying_columns(words, plan.width)
            luts = plan.luts * columns // max(1, plan.width)
            address = max(1, (plan.depth - 1).bit_length()) * -(-columns // LOGIC_COLUMN_BITS)
            banking = columns * (1 + plan.banks) if plan.banks > 1 else columns
            return cls(luts=luts, ffs=address + banking)
        if plan.kind == "block":  # banked: a register at each bank's output and the bank select
            banked = plan.width * plan.banks + 2 * plan.banks.bit_length() if plan.banks > 1 else 0
            return cls(luts=plan.luts, ffs=plan.width + banked, bram18=plan.bram18)
        return cls()

    def __add__(self, other: "Resources") -> "Resources":
        return Resources(self.luts + other.luts, self.ffs + other.ffs, self.bram18 + other.bram18,
                         self.dsp + other.dsp, self.lutram + other.lutram)

    def scaled(self, k: float) -> "Resources":
        return Resources(self.luts * k, self.ffs * k, self.bram18 * k, self.dsp * k, self.lutram * k)

    def as_dict(self) -> dict:
        return {"luts": round(self.luts), "lutram": round(self.lutram), "ffs": round(self.ffs),
                "bram36": round(self.bram18 / 2, 1), "dsp": round(self.dsp)}


NARROW_ADDER_LUTS = ((1, 0.35), (2, 0.5), (4, 0.7))  # (widest input bits, LUTs a result bit): measured on popcounts and
                                          # sums of 2-bit terms, where the LUT mapper merges adder levels


def adder_tree_cost(ranges: list[tuple[int, int]], register_after: list[bool],
                    shifts: list[int] | None = None, dsp_products: bool = False) -> Resources:
    """LUTs and FFs of `pipelined_sum` over terms with these value ranges (about one LUT per result bit of
    each adder, fewer for adders of very narrow inputs; one FF per bit at each register level), following the
    same pairing and registers as the tree itself. `shifts`: low bits known zero in each term (shift-and-add
    partial products), which need neither a LUT nor a flip-flop. With `dsp_products` the first level's adders
    and registers go into the DSP48s (Yosys packs them into the post-adder and the P register)."""
    zeros = list(shifts) if shifts is not None else [0] * len(ranges)
    luts = ffs = 0
    for level, register in enumerate(register_after):
        in_dsp = dsp_products and level == 0
        paired, paired_zeros = [], []
        for k in range(0, len(ranges) - 1, 2):
            lo, hi = ranges[k][0] + ranges[k + 1][0], ranges[k][1] + ranges[k + 1][1]
            tz = min(zeros[k], zeros[k + 1])
            widest = max(signed_width_for(*ranges[k]), signed_width_for(*ranges[k + 1]))
            factor = next((f for bits, f in NARROW_ADDER_LUTS if widest <= bits), 1.0)
            luts += 0 if in_dsp else factor * (signed_width_for(lo, hi) - tz)
            paired.append((lo, hi))
            paired_zeros.append(tz)
        if len(ranges) % 2:
            paired.append(ranges[-1])
            paired_zeros.append(zeros[-1])
        ranges, zeros = paired, paired_zeros
        if register and not in_dsp:
            ffs += sum(signed_width_for(lo, hi) - tz for (lo, hi), tz in zip(ranges, zeros))
    return Resources(luts, ffs)


def fifo_memory_words(depth: int) -> int:
    """Words of a StreamFIFO's memory for `depth` >= 2: depth - 1 behind its output register, at least 3 (its
    count takes a fetch a cycle late, so a word passing through occupies two places of the count)."""
    return max(3, depth - 1)


def fifo_cost(width: int, depth: int) -> Resources:
    """A StreamFIFO of `depth` words: a memory of `fifo_memory_words` words (LUTRAM or block RAM by size), the
    output register, the pointers and the registered flags."""
    from .memories import plan_ram
    if depth <= 1:
        return Resources(4, width + 2)
    words = fifo_memory_words(depth)
    plan = plan_ram(words, width)
    pointers = 2 * max(1, words.bit_length())
    count = 3 * max(1, depth.bit_length())  # the fill count, its +1 / -1 registers and their pick
    return Resources.of_memory(plan) + Resources(pointers * 2 + count + 4, width + pointers + count + 4)
