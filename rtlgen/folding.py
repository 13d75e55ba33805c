"""Folding: how many processing elements (PE, output channels in parallel) and SIMD lanes (input elements
in parallel) each layer gets.

A folding file is JSON:
    {"defaults": {"PE": 1, "SIMD": 1},                 # optional, applies to every layer
     "layers": {"MatMul_0": {"PE": 16, "SIMD": 49},    # by layer name (the MatMul/Gemm node name)
                "MatMul_3": {"PE": "max", "SIMD": "max"}}}
or {"target_cycles": 1000}: the default policy with a given cycles-per-frame target, or FINN's folding JSON
({"Defaults": {}, "MVAU_hls_0": {"PE": 16, "SIMD": 49}, ...}: `from_finn_folding`). Every build writes its
folding as DIR/folding.json in the first form, which --folding reads back. A layer's entry (or
"defaults") may also choose how it is built: "mac_resource" ("auto", "lut", "dsp", "dsp_packed": PE lanes
share DSP48s), "threshold_style" ("auto",
"parallel", "binary") and "memory_style" ("auto", "logic", "lutram", "block"); these change cost and latency,
never results.
PE must divide the layer's output channels (MH) and SIMD its input elements (MW); for a convolution SIMD
divides the input channels (the sliding window streams SIMD channels a word); a depthwise convolution is
folded by PE (channels in parallel) and a max-pool by SIMD (channels a word). "max" means fully parallel.
Layer names are the ONNX node names of the MatMul/Gemm/Conv/MaxPool nodes.
"""
from __future__ import annotations

import copy

import json
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

from ip_cores.activation import THRESHOLD_STYLES
from ip_cores.mac_terms import MAC_RESOURCES
from ip_cores.memories import STYLES as MEMORY_STYLES

from .errors import RtlgenError
from .graph import AddLayer, ChannelwiseLayer, DepthwiseLayer, LabelSelectLayer, MaxPoolLayer, Network

SIMD_ONLY = (MaxPoolLayer, LabelSelectLayer)  # layers folded by SIMD alone, without implementation options
PE_ONLY = ChannelwiseLayer  # layers whose word carries PE channels in and out: folded by PE alone

DEFAULT_MACS_FOR_LARGEST_LAYER = 64  # default policy: the largest layer gets 64 multipliers


IMPLEMENTATION_OPTIONS = {
    "mac_resource": MAC_RESOURCES,  # products in LUT logic or DSP48s ("auto": DSP from 5-bit operands on;
    #                                 "dsp_packed": two 8-bit products of one input element to a DSP48)
    "threshold_style": THRESHOLD_STYLES,  # parallel comparators or binary search ("auto": by threshold count)
    "memory_style": MEMORY_STYLES,  # weight/threshold memories in LUTs or block RAM ("auto": the cheaper)
}


@dataclass(frozen=True)
class FoldingChoice:
    pe: int
    simd: int
    options: tuple = ()  # (name, value) pairs of IMPLEMENTATION_OPTIONS given for the layer


def _cheapest_fold(layer, target: int) -> FoldingChoice:
    """Fewest multipliers (PE*SIMD) that reach `target` cycles; ties prefer more SIMD (fewer input words)."""
    best = None
    for simd in layer.simd_choices():
        for pe in layer.pe_choices():
            if layer.cycles_at(pe, simd) > target:
                continue
            key = (pe * simd, -simd)
            if best is None or key < best[0]:
                best = (key, FoldingChoice(pe, simd))
    if best is None:  # the target is below what full parallelism reaches (e.g. a sliding window's input rate)
        best = (None, FoldingChoice(max(layer.pe_choices()), max(layer.simd_choices())))
    return best[1]


def fastest_cycles(layer) -> int:
    """The fewest cycles per frame any folding of `layer` reaches (a sliding window's input rate can bind)."""
    return min(layer.cycles_at(pe, simd) for pe in layer.pe_choices() for simd in layer.simd_choices())


def target_folding(network: Network, target_cycles: int) -> dict[str, FoldingChoice]:
    """Every layer as cheap as possible at `target_cycles`, or at the slowest layer's best when that is slower:
    no layer is folded faster than the network can run."""
    target = max([target_cycles] + [fastest_cycles(layer) for layer in network.layers])
    return {layer.name: _cheapest_fold(layer, target) for layer in network.layers}


def default_folding(network: Network) -> tuple[dict[str, FoldingChoice], str]:
    """Balanced folding: every layer as cheap as possible while no slower than the largest layer with 64 MACs
    (or than the slowest layer at its fastest, when that binds)."""
    largest = max(layer.macs for layer in network.layers)
    target = math.ceil(largest / DEFAULT_MACS_FOR_LARGEST_LAYER)
    folding = target_folding(network, target)
    achieved = max(layer.cycles_at(folding[layer.name].pe, folding[layer.name].simd) for layer in network.layers)
    binding = max(network.layers, key=fastest_cycles)
    reason = (f"the largest layer gets {DEFAULT_MACS_FOR_LARGEST_LAYER} multipliers" if achieved <= target else
              f"{binding.name} cannot go faster")
    return folding, (f"default folding: balanced for {achieved} cycles per frame ({reason}; "
                     f"pass --folding FILE.json to choose)")


def _parse_factor(value, choices: list[int], layer: str, key: str, what: str) -> int:
    if value == "max":
        return max(choices)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RtlgenError(f"folding: {key} of layer {layer} is {value!r}; use a positive integer or \"max\"")
    if value not in choices:
        raise RtlgenError(f"folding: {key}={value} does not divide {what} for layer {layer}; "
                          f"choose one of {choices}")
    return value


def load_folding(path: str | Path, network: Network) -> tuple[dict[str, FoldingChoice], str]:
    path = Path(path)
    if not path.is_file():
        raise RtlgenError(f"folding file {path} not found")
    try:
        spec = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RtlgenError(f"folding file {path} is not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc})") from None
    return parse_folding(spec, network, str(path))


FINN_NODE = re.compile(r"^([A-Za-z]+?)(?:_(?:hls|rtl))?_(\d+)$")
FINN_KINDS = {"MVAU": "matrix", "MatrixVectorActivation": "matrix", "VVAU": "depthwise",
              "VectorVectorActivation": "depthwise", "StreamingMaxPool": "pool", "LabelSelect": "label"}
FINN_OPTIONS = {"resType": ("mac_resource", {"lut": "lut", "dsp": "dsp", "auto": "auto"}),
                "ram_style": ("memory_style", {"block": "block", "distributed": "lutram", "auto": "auto", "ultra": "block"})}


def is_finn_folding(spec) -> bool:
    """FINN's folding JSON: {"Defaults": {...}, "MVAU_hls_0": {"PE": 16, "SIMD": 49, ...}, ...}."""
    return isinstance(spec, dict) and ("Defaults" in spec or any(FINN_NODE.match(k) and k.split("_")[0] in FINN_KINDS
                                                                  for k in spec))


def _layer_kind(layer) -> str:
    if isinstance(layer, LabelSelectLayer):
        return "label"
    if isinstance(layer, AddLayer):
        return "add"
    return "pool" if isinstance(layer, MaxPoolLayer) else "depthwise" if isinstance(layer, DepthwiseLayer) else "matrix"


def from_finn_folding(spec: dict, network: Network, label: str) -> tuple[dict, list[str]]:
    """A FINN folding JSON as rtlgen's: the k-th MVAU (MatrixVectorActivation) node is the k-th matrix layer
    (dense or convolution), the k-th VVAU the k-th depthwise layer, the k-th StreamingMaxPool the k-th pool.
    PE/SIMD carry over (a pool's PE is its SIMD here), resType and ram_style become mac_resource and
    memory_style; FINN's other nodes (sliding windows, FIFOs, converters, thresholds) and keys are derived here
    and listed as ignored."""
    nodes: dict[str, list] = {kind: [] for kind in set(FINN_KINDS.values())}
    ignored = []
    for key, entry in spec.items():
        m = FINN_NODE.match(key)
        op = m.group(1) if m else None
        if key == "Defaults" or op not in FINN_KINDS:
            ignored.append(key)
            continue
        if not isinstance(entry, dict):
            raise RtlgenError(f"{label}: FINN entry {key} must be an object like {{\"PE\": 4, \"SIMD\": 8}}")
        nodes[FINN_KINDS[op]].append((int(m.group(2)), key, entry))
    layers = {}
    for kind, entries in nodes.items():
        ours = [layer for layer in network.layers if _layer_kind(layer) == kind]
        if entries and len(entries) != len(ours):
            raise RtlgenError(f"{label}: {len(entries)} FINN {kind} node(s) ({', '.join(k for _, k, _ in sorted(entries))}) "
                              f"but the model has {len(ours)} {kind} layer(s) ({', '.join(l.name for l in ours)})")
        for (_, key, entry), layer in zip(sorted(entries), ours):
            mine = {}
            for name, value in entry.items():
                if name == "PE":  # a FINN pool's PE is its channels a word: SIMD here
                    mine["SIMD" if kind in ("pool", "label") else "PE"] = value
                elif name == "SIMD" and kind == "matrix":  # a VVAU's SIMD (kernel elements) has no counterpart
                    mine["SIMD"] = value
                elif name in FINN_OPTIONS and str(value) in FINN_OPTIONS[name][1]:
                    mine[FINN_OPTIONS[name][0]] = FINN_OPTIONS[name][1][str(value)]
                else:
                    ignored.append(f"{key}.{name}")
            layers[layer.name] = mine
    return {"layers": layers}, ignored


def parse_folding(spec, network: Network, label: str = "folding") -> tuple[dict[str, FoldingChoice], str]:
    if not isinstance(spec, dict):
        raise RtlgenError(f"{label}: expected a JSON object with \"layers\", \"defaults\" or \"target_cycles\"")
    if is_finn_folding(spec):
        converted, ignored = from_finn_folding(spec, network, label)
        folding, _ = parse_folding(converted, network, label)
        skipped = f"; ignored: {', '.join(ignored[:6])}{'...' if len(ignored) > 6 else ''}" if ignored else ""
        return folding, f"folding from {label} (FINN format, nodes matched to layers in order{skipped})"
    unknown = set(spec) - {"layers", "defaults", "target_cycles"}
    if unknown:
        raise RtlgenError(f"{label}: unknown key(s) {sorted(unknown)}; allowed: layers, defaults, target_cycles")
    names = [layer.name for layer in network.layers]
    if "target_cycles" in spec:
        target = spec["target_cycles"]
        if isinstance(target, bool) or not isinstance(target, int) or target < 1:
            raise RtlgenError(f"{label}: target_cycles must be a positive integer, not {target!r}")
        folding = target_folding(network, target)
        description = f"folding from {label}: cheapest folding for at most {target} cycles per frame"
    else:
        folding = {}
        description = f"folding from {label}"
    layers = spec.get("layers", {})
    defaults = spec.get("defaults", {})
    if not isinstance(layers, dict) or not isinstance(defaults, dict):
        raise RtlgenError(f"{label}: \"layers\" and \"defaults\" must be JSON objects")
    unknown_layers = [n for n in layers if n not in names]
    if unknown_layers:
        raise RtlgenError(f"{label}: unknown layer(s) {unknown_layers}; the layers are {names}")
    previous = None
    for layer in network.layers:
        entry = {**defaults, **layers.get(layer.name, {})}
        if not isinstance(entry, dict):
            raise RtlgenError(f"{label}: entry for layer {layer.name} must be an object like {{\"PE\": 4, \"SIMD\": 8}}")
        bad = set(entry) - {"PE", "SIMD", *IMPLEMENTATION_OPTIONS}
        if bad:
            raise RtlgenError(f"{label}: layer {layer.name} has unknown key(s) {sorted(bad)}; use PE, SIMD, "
                              f"{', '.join(IMPLEMENTATION_OPTIONS)}")
        base = folding.get(layer.name, FoldingChoice(1, 1) if not defaults and layer.name not in layers and "target_cycles" not in spec else None)
        if base is None:
            base = FoldingChoice(1, 1)
        if isinstance(layer, SIMD_ONLY) and "SIMD" not in entry and previous is not None and "target_cycles" not in spec \
                and previous.pe in layer.simd_choices():
            base = FoldingChoice(1, previous.pe)  # unspecified pool or label select: its producer's width, no converter
        pe = _parse_factor(entry["PE"], layer.pe_choices(), layer.name, "PE", _pe_meaning(layer)) if "PE" in entry else base.pe
        simd = _parse_factor(entry["SIMD"], layer.simd_choices(), layer.name, "SIMD", _simd_meaning(layer)) if "SIMD" in entry else base.simd
        options = tuple((key, _parse_option(entry[key], key, layer)) for key in IMPLEMENTATION_OPTIONS
                        if key in entry)
        folding[layer.name] = previous = FoldingChoice(pe, simd, options)
    return folding, description


def _parse_option(value, key: str, layer) -> str:
    if isinstance(layer, SIMD_ONLY):
        raise RtlgenError(f"folding: {key} does not apply to {layer.op} layer {layer.name}; give it to a "
                          f"MatMul/Gemm/Conv layer")
    allowed = IMPLEMENTATION_OPTIONS[key]
    if value not in allowed:
        raise RtlgenError(f"folding: {key} of layer {layer.name} is {value!r}; use one of {', '.join(allowed)}")
    return value


def _pe_meaning(layer) -> str:
    if isinstance(layer, SIMD_ONLY):
        return f"1 (a {layer.op} layer is folded by SIMD)"
    return f"the {layer.mh} output channels (MH)"


def _simd_meaning(layer) -> str:
    if isinstance(layer, PE_ONLY):
        return f"1 (a {layer.op} layer is folded by PE)"
    if isinstance(layer, SIMD_ONLY):
        return f"the {layer.channels} channels"
    if layer.conv is not None:
        return f"the {layer.conv.channels} input channels (the sliding window streams SIMD channels a word)"
    return f"the {layer.mw} inputs (MW)"


def fold_layer(layer, choice: FoldingChoice) -> None:
    """Set one layer's PE/SIMD and implementation options (a depthwise layer takes only PE, a pool SIMD)."""
    for key, value in choice.options:
        setattr(layer, key, value)
    if isinstance(layer, PE_ONLY):
        layer.pe = choice.pe
    elif isinstance(layer, SIMD_ONLY):
        layer.simd = choice.simd
    else:
        layer.pe, layer.simd = choice.pe, choice.simd


def apply_folding(network: Network, folding: dict[str, FoldingChoice]) -> Network:
    """A new network whose layers are copies of `network`'s folded by `folding` (weights and thresholds shared,
    never modified); `network` itself is left as it was."""
    return replace(network, layers=[folded_copy(layer, folding[layer.name]) for layer in network.layers])


def folded_copy(layer, choice: FoldingChoice):
    """A shallow copy of `layer` folded by `choice` (weights and thresholds shared, never modified)."""
    twin = copy.copy(layer)
    fold_layer(twin, choice)
    return twin


def folding_spec(network: Network) -> dict:
    """A folded network's folding as the JSON `--folding` reads back: every layer's PE, SIMD and the
    implementation options it was given."""
    layers = {}
    for layer in network.layers:
        entry = {"PE": getattr(layer, "pe", 1), "SIMD": getattr(layer, "simd", 1)}
        for key in IMPLEMENTATION_OPTIONS:
            value = getattr(layer, key, "auto")
            if value != "auto":
                entry[key] = value
        layers[layer.name] = entry
    return {"layers": layers}
