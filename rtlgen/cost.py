"""What a folding costs, by each core's analytic model, without generating Verilog.

`report.json`'s `resources` is this sum over the built design's stages (build.py); the folding search
(rtlgen/fold_search.py) asks it of many candidate foldings, so layer costs are cached per (layer, choice).
Budgets and part capacities are here too: a LUT budget counts logic LUTs and LUTRAM (both are SLICE LUTs),
a BRAM budget BRAM36 tiles (two RAMB18 each).
"""
from __future__ import annotations

from dataclasses import dataclass

from ip_cores.resources import Resources

from .folding import FoldingChoice, folded_copy
from .graph import Network
from .stitch import DEFAULT_FIFO_DEPTH, layer_stages
from .timing import sized_stages

TOP_LEVEL_RESOURCES = Resources(30, 30)  # input framer, TLAST counter, reset and clock wiring


@dataclass(frozen=True)
class Budget:
    """Resource limits (None: unlimited). `label` names where they came from, for messages."""

    luts: float | None = None
    ffs: float | None = None
    bram36: float | None = None
    dsp: float | None = None
    label: str = "budget"

    def limits(self) -> dict[str, float]:
        return {k: v for k, v in (("LUT", self.luts), ("FF", self.ffs), ("BRAM36", self.bram36), ("DSP", self.dsp))
                if v is not None}

    def excess(self, res: Resources) -> list[str]:
        """Each limit `res` exceeds, as 'LUT 61,234 > 53,200'."""
        used = usage(res)
        return [f"{k} {used[k]:,.0f} > {v:,.0f}" for k, v in self.limits().items() if used[k] > v]

    def fraction(self, res: Resources) -> float:
        """How much of the budget `res` takes in LUT, BRAM and DSP together (the search's scalar cost). Flip-flops
        are a limit but not a cost: every 7-series slice has two per LUT, and designs run out of LUTs first."""
        used = usage(res)
        return sum(used[k] / v for k, v in self.limits().items() if v > 0 and k != "FF")


# 7-series parts the folding search knows: (LUT, FF, BRAM36, DSP48E1) from the Xilinx 7-series product tables
PARTS = {
    "xc7z020clg400-1": Budget(53_200, 106_400, 140, 220, "xc7z020clg400-1"),
    "xc7z020": Budget(53_200, 106_400, 140, 220, "xc7z020"),
    "xc7a100tcsg324-1": Budget(63_400, 126_800, 135, 240, "xc7a100tcsg324-1"),
    "xc7a100t": Budget(63_400, 126_800, 135, 240, "xc7a100t"),
    "xc7a35tcpg236-1": Budget(20_800, 41_600, 50, 90, "xc7a35tcpg236-1"),
    "xc7z010clg400-1": Budget(17_600, 35_200, 60, 80, "xc7z010clg400-1"),
}
DEFAULT_WEIGHTS = PARTS["xc7z020"]  # how LUT, FF, BRAM and DSP trade when no budget is given


def usage(res: Resources) -> dict[str, float]:
    return {"LUT": res.luts + res.lutram, "FF": res.ffs, "BRAM36": res.bram18 / 2, "DSP": res.dsp}


class CostModel:
    """Analytic cost of layers and whole foldings of one network, cached per layer and choice."""

    def __init__(self, network: Network, fifo_depth: int | None = DEFAULT_FIFO_DEPTH, fifo_sizing: str = "analysed"):
        self.network = network
        self.fifo_depth = fifo_depth
        self.fifo_sizing = fifo_sizing
        self._layer_cache: dict[tuple[str, FoldingChoice], Resources] = {}

    def layer(self, layer, choice: FoldingChoice) -> Resources:
        """The layer's own blocks (sliding window, MVTU/VVU or pool) at `choice`."""
        key = (layer.name, choice)
        if key not in self._layer_cache:
            twin = folded_copy(layer, choice)
            self._layer_cache[key] = sum((s.model.resources() for s in layer_stages(twin)), Resources())
        return self._layer_cache[key]

    def network_total(self, folding: dict[str, FoldingChoice]) -> Resources:
        """Every block of the design at `folding`: layers, FIFOs, width converters and the top level."""
        layers = [folded_copy(layer, folding[layer.name]) for layer in self.network.layers]
        twin = Network(self.network.name, layers, self.network.input_fmt, self.network.output_fmt)
        stages, _ = sized_stages(twin, self.fifo_depth, self.fifo_sizing)
        glue = [s for s in stages if s.kind in ("fifo", "dwc", "dup")]
        total = sum((s.model.resources() for s in glue), TOP_LEVEL_RESOURCES)
        return sum((self.layer(layer, folding[layer.name]) for layer in self.network.layers), total)
