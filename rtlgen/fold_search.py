"""Folding to a target and a budget: the cheapest folding by the analytic estimate (rtlgen/cost.py) that reaches a
cycles-per-frame target within a resource budget, or the fastest folding that fits.

At a given target every layer takes, on its own, its cheapest choice that meets it, so no layer is faster than
the network needs (balanced). "Cheapest" is the fraction of the budget (or of an xc7z020 when there is none) the
layer's LUT, FF, BRAM and DSP take together. Only the few choices with the fewest multipliers that meet the
target are costed: more multipliers never make a layer cheaper at the same target. A slower target never
needs more, so the fastest folding within a budget is a binary search over the cycle counts the layers reach.
The FIFOs and width converters between layers are added when a whole folding is costed.

The top level's streams are words of the first layer's input and the last layer's output; the search keeps them
at most `MAX_STREAM_BITS` wide, the widest stream an AXI DMA moves (a fully parallel first layer of TFC on
8-bit pixels would ask for 6,272 bits). A target only reachable wider is explained in the note.
"""
from __future__ import annotations

from dataclasses import dataclass

from ip_cores.resources import Resources

from .cost import DEFAULT_WEIGHTS, Budget, CostModel, usage
from .errors import RtlgenError
from .folding import FoldingChoice, fastest_cycles, folded_copy
from .graph import Network
from .stitch import DEFAULT_FIFO_DEPTH

MAX_CANDIDATES = 6  # choices costed per layer and target: those with the fewest multipliers
MULTIPLIER_SLACK = 2  # ... and at most this many times the fewest
MAX_STREAM_BITS = 1024  # the top level's input and output words: AXI DMA's widest stream data width


@dataclass
class SearchResult:
    folding: dict[str, FoldingChoice]
    cycles: int  # the slowest layer's cycles per frame at this folding
    total: Resources  # analytic estimate of the whole design
    note: str  # one line for the build summary and report.json


def stream_bits(network: Network, layer, choice: FoldingChoice) -> int:
    """The widest top-level stream word `layer` would have at `choice`: its input word if it is the first
    layer, its output word if it is the last, else 0."""
    twin = folded_copy(layer, choice)
    bits = 0
    if layer is network.layers[0]:
        bits = twin.in_elems_per_word * twin.in_fmt.width
    if layer is network.layers[-1]:
        bits = max(bits, twin.out_elems_per_word * twin.out_fmt.width)
    return bits


def allowed_choices(network: Network, layer) -> list[tuple[int, int]]:
    """(PE, SIMD) pairs of `layer` whose top-level streams stay within MAX_STREAM_BITS."""
    pairs = [(pe, simd) for pe in layer.pe_choices() for simd in layer.simd_choices()]
    if layer is not network.layers[0] and layer is not network.layers[-1]:
        return pairs
    return [(pe, simd) for pe, simd in pairs if stream_bits(network, layer, FoldingChoice(pe, simd)) <= MAX_STREAM_BITS]


def fastest_allowed(network: Network, layer) -> int:
    """The fewest cycles per frame `layer` reaches with its streams within MAX_STREAM_BITS."""
    return min(layer.cycles_at(pe, simd) for pe, simd in allowed_choices(network, layer))


def _candidates(network: Network, layer, target: int) -> list[FoldingChoice]:
    meets = [(pe * simd, -simd, pe) for pe, simd in allowed_choices(network, layer)
             if layer.cycles_at(pe, simd) <= target]
    if not meets:
        return []
    meets.sort()
    fewest = meets[0][0]
    return [FoldingChoice(pe, -neg_simd) for macs, neg_simd, pe in meets[:MAX_CANDIDATES] if macs <= MULTIPLIER_SLACK * fewest]


class FoldingSearch:
    def __init__(self, network: Network, budget: Budget | None, fifo_depth: int | None = DEFAULT_FIFO_DEPTH,
                 fifo_sizing: str = "analysed"):
        self.network = network
        self.budget = budget if budget is not None and budget.limits() else None
        self.weights = self.budget or DEFAULT_WEIGHTS
        self.cost = CostModel(network, fifo_depth, fifo_sizing)

    def at(self, target: int) -> SearchResult:
        """Every layer at its cheapest choice that meets `target` cycles per frame."""
        folding = {}
        for layer in self.network.layers:
            choices = _candidates(self.network, layer, target)
            folding[layer.name] = min(choices, key=lambda c: (self.weights.fraction(self.cost.layer(layer, c)),
                                                               c.pe * c.simd, -c.simd))
        cycles = max(layer.cycles_at(folding[layer.name].pe, folding[layer.name].simd) for layer in self.network.layers)
        return SearchResult(folding, cycles, self.cost.network_total(folding), "")

    def excess(self, result: SearchResult) -> list[str]:
        return self.budget.excess(result.total) if self.budget else []

    def reachable_targets(self, low: int) -> list[int]:
        """Every cycles-per-frame count some layer reaches at some folding, from `low` up."""
        counts = {layer.cycles_at(pe, simd) for layer in self.network.layers
                  for pe, simd in allowed_choices(self.network, layer)}
        return sorted(c for c in counts | {low} if c >= low)


def search_folding(network: Network, target_cycles: int | None, budget: Budget | None,
                   fifo_depth: int | None = DEFAULT_FIFO_DEPTH, fifo_sizing: str = "analysed") -> SearchResult:
    """The cheapest folding meeting `target_cycles` within `budget`; without a target (or when the budget
    cannot afford it) the fastest folding within the budget. The note says what was met and what binds."""
    search = FoldingSearch(network, budget, fifo_depth, fifo_sizing)
    floor_layer = max(network.layers, key=lambda layer: fastest_allowed(network, layer))
    floor = fastest_allowed(network, floor_layer)
    capped = fastest_cycles(floor_layer) < floor  # the stream width, not the layer, binds
    why = f"its stream to the top level at most {MAX_STREAM_BITS} bits" if capped else "at full parallelism"
    start = floor if target_cycles is None else max(target_cycles, floor)
    first = search.at(start)
    if not search.excess(first):
        if target_cycles is None:
            first.note = (f"folding search: the fastest folding, {first.cycles} cycles per frame ({floor_layer.name} "
                          f"cannot go faster, {why}), fits {search.budget.label}")
        elif target_cycles < floor:
            first.note = (f"folding search: target {target_cycles} cycles per frame is below what {floor_layer.name} "
                          f"reaches ({floor} cycles, {why}); folded for {first.cycles}")
        else:
            within = f" within {search.budget.label}" if search.budget else ""
            first.note = (f"folding search: cheapest folding for at most {target_cycles} cycles per frame{within}: "
                          f"{first.cycles} cycles")
        return _with_usage(first)
    targets = [t for t in search.reachable_targets(start) if t > start]
    lo, hi, best = 0, len(targets) - 1, None
    while lo <= hi:  # the smallest target whose cheapest folding fits
        mid = (lo + hi) // 2
        result = search.at(targets[mid])
        if search.excess(result):
            lo = mid + 1
        else:
            best, hi = (mid, result), mid - 1
    if best is None:
        slowest = search.at(targets[-1] if targets else start)
        raise RtlgenError(f"no folding fits {search.budget.label}: even the smallest ({slowest.cycles} cycles per frame) "
                          f"needs {', '.join(search.excess(slowest))}; raise the budget (--part, --max-luts, --max-bram, --max-dsp)")
    index, result = best
    faster = first if index == 0 else search.at(targets[index - 1])
    asked = f"target {target_cycles} cycles per frame does not fit {search.budget.label}; " if target_cycles is not None else ""
    result.note = (f"folding search: {asked}the fastest folding within {search.budget.label} runs {result.cycles} cycles "
                   f"per frame ({faster.cycles} cycles would need {', '.join(search.excess(faster))})")
    return _with_usage(result)


def _with_usage(result: SearchResult) -> SearchResult:
    used = usage(result.total)
    result.note += (f"; estimated LUT {used['LUT']:,.0f}, FF {used['FF']:,.0f}, BRAM36 {used['BRAM36']:g}, "
                    f"DSP {used['DSP']:,.0f}")
    return result
