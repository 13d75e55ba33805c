"""Folding to a target and a budget (rtlgen/fold_search.py, rtlgen/cost.py), folding.json and FINN's folding JSON.

- the analytic cost of a folding, computed without Verilog, is what report.json says after a real build;
- at a target every layer takes its cheapest choice that meets it (checked against every choice of the layer);
- on TFC-W1A1 and KWS-W3A3 at FINN's ii the search costs fewer estimated LUT than FINN's published folding
  and than the multiplier-count policy (`target_cycles` in a folding file) at the same ii;
- a budget that binds gives the fastest folding that fits, and a next faster one that does not;
- nothing fits: one clear error; CLI options that conflict: one-line errors;
- a build's folding.json read back with --folding gives the same design; FINN's JSON maps node k to layer k.
"""
from __future__ import annotations

import json

import pytest

from conftest import OWN_MODELS, shared_model
from rtlgen.build import DEFAULT_MODEL, BuildOptions, build
from rtlgen.cost import Budget, CostModel, usage
from rtlgen.errors import RtlgenError
from rtlgen.fold_search import FoldingSearch, search_folding
from rtlgen.folding import FoldingChoice, parse_folding
from rtlgen.frontend import load_model, lower_model
from test_cli import assert_user_error, rtlgen

FINN_TFC_W1A1 = {"MatMul_0": (16, 49), "MatMul_1": (8, 8), "MatMul_2": (8, 8), "MatMul_3": (10, 8)}  # ii 64
FINN_KWS_W3A3 = {"MatMul_0": (32, 10), "MatMul_1": (32, 8), "MatMul_2": (32, 8), "MatMul_3": (1, 8)}  # ii 392


def _network(path):
    return lower_model(load_model(path)).network


def _spec(fold: dict) -> dict:
    return {"layers": {name: {"PE": pe, "SIMD": simd} for name, (pe, simd) in fold.items()}}


def _ii(network, folding) -> int:
    return max(layer.cycles_at(folding[layer.name].pe, folding[layer.name].simd) for layer in network.layers)


def test_cost_without_verilog_is_the_built_designs(tmp_path):
    """A CNN with width converters (PE 8 -> SIMD 2, 4 -> 1, pool at 2): the cost model's total equals the
    report of the design built at that folding."""
    path = OWN_MODELS / "cnn_w4a4_stride2_pad.onnx"
    spec = {"layers": {"Conv_0": {"PE": 8, "SIMD": 1}, "Conv_1": {"PE": 4, "SIMD": 2}, "MaxPool_0": {"SIMD": 2},
                       "Gemm_0": {"PE": 2, "SIMD": 4}}}
    report = build(path, tmp_path / "d", BuildOptions(folding_spec=spec, package_ip=False))
    network = _network(path)
    total = CostModel(network).network_total(parse_folding(spec, network)[0])
    assert total.as_dict() == report["resources"]["total"]


@pytest.mark.parametrize("target", [64, 200, 1000])
def test_each_layer_is_its_cheapest_choice_at_the_target(target):
    network = _network(DEFAULT_MODEL)
    search = FoldingSearch(network, None)
    found = search.at(target)
    for layer in network.layers:
        every = [FoldingChoice(pe, simd) for pe in layer.pe_choices() for simd in layer.simd_choices()
                 if layer.cycles_at(pe, simd) <= target]
        cheapest = min(search.weights.fraction(search.cost.layer(layer, c)) for c in every)
        chosen = found.folding[layer.name]
        assert layer.cycles_at(chosen.pe, chosen.simd) <= target
        assert search.weights.fraction(search.cost.layer(layer, chosen)) == cheapest, layer.name


@pytest.mark.parametrize("name,finn", [("tfc_w1a1", FINN_TFC_W1A1), ("kwsmlp_w3a3", FINN_KWS_W3A3)])
def test_search_beats_finn_and_the_multiplier_policy_at_finns_ii(name, finn):
    network = _network(shared_model(name))
    finn_folding = parse_folding(_spec(finn), network)[0]
    ii = _ii(network, finn_folding)
    found = search_folding(network, ii, None)
    cost = CostModel(network)
    assert found.cycles <= ii
    mine = usage(found.total)["LUT"]
    assert mine < usage(cost.network_total(finn_folding))["LUT"]
    by_multipliers = parse_folding({"target_cycles": ii}, network)[0]
    assert _ii(network, by_multipliers) <= ii
    assert mine <= usage(cost.network_total(by_multipliers))["LUT"]


def test_a_binding_budget_gives_the_fastest_folding_that_fits():
    network = _network(shared_model("tfc_w1a1"))
    budget = Budget(luts=8000, label="--max-luts 8000")
    found = search_folding(network, 8, budget)
    assert usage(found.total)["LUT"] <= 8000 and found.cycles > 8
    assert "does not fit --max-luts 8000" in found.note and f"runs {found.cycles} cycles" in found.note
    # the next faster count any layer reaches does not fit
    search = FoldingSearch(network, budget)
    faster = max(t for t in search.reachable_targets(8) if t < found.cycles)
    assert usage(search.at(faster).total)["LUT"] > 8000


def test_top_level_streams_stay_within_the_cap(monkeypatch):
    """The first layer's input word and the last layer's output word at most MAX_STREAM_BITS (made 96 here:
    the default model's 64 UINT4 inputs and 10 INT12 outputs would be 256 and 120 bits fully parallel)."""
    import rtlgen.fold_search as fold_search
    monkeypatch.setattr(fold_search, "MAX_STREAM_BITS", 96)
    network = _network(DEFAULT_MODEL)
    first, last = network.layers[0], network.layers[-1]
    found = search_folding(network, 1, None)
    assert found.folding[first.name].simd * first.in_fmt.width <= 96
    assert found.folding[last.name].pe * last.out_fmt.width <= 96
    # SIMD 16 (64 bits) is the widest 4-bit input word within 96 bits (SIMD | 64): the first layer binds at
    # 64 / 16 = 4 cycles, where it would reach 1 uncapped
    assert found.cycles == 4 == first.cycles_at(64, 16) and first.cycles_at(64, 64) == 1
    assert "at most 96 bits" in found.note and "Gemm_0" in found.note


def test_nothing_fits_is_one_error():
    with pytest.raises(RtlgenError, match="no folding fits --max-luts 100: even the smallest"):
        search_folding(_network(DEFAULT_MODEL), None, Budget(luts=100, label="--max-luts 100"))


def test_folding_json_reads_back_and_cli_conflicts(tmp_path):
    out = tmp_path / "searched"
    code, stdout, stderr = rtlgen("build", "-o", out, "--target-fps", "1e6", "--clock-mhz", "200")
    assert code == 0, stderr
    assert "folding search: cheapest folding for at most 200 cycles per frame within xc7z020clg400-1" in stdout
    again = tmp_path / "again"
    code, _, stderr = rtlgen("build", "-o", again, "--folding", out / "folding.json")
    assert code == 0, stderr
    layers = lambda d: [(l["name"], l["PE"], l["SIMD"]) for l in json.loads((d / "report.json").read_text())["layers"]]  # noqa: E731
    assert layers(out) == layers(again)
    assert_user_error(*rtlgen("build", "-o", tmp_path / "x", "--target-cycles", "64", "--folding", out / "folding.json"),
                      "--folding and a folding target or budget")
    assert_user_error(*rtlgen("build", "-o", tmp_path / "y", "--target-fps", "1000"), "--target-fps needs the clock")
    assert_user_error(*rtlgen("build", "-o", tmp_path / "z", "--max-luts", "100"), "no folding fits")
    assert not (tmp_path / "z").exists()


def test_finn_folding_json():
    """FINN's node names map to layers in order; a pool's PE is its SIMD; resType/ram_style carry over."""
    network = _network(OWN_MODELS / "cnn_w4a4_stride2_pad.onnx")  # Conv_0, Conv_1, MaxPool_0, Gemm_0
    finn = {"Defaults": {}, "ConvolutionInputGenerator_rtl_0": {"SIMD": 1}, "MVAU_hls_1": {"PE": 4, "SIMD": 2},
            "MVAU_hls_0": {"PE": 8, "SIMD": 1, "resType": "dsp"}, "StreamingMaxPool_hls_0": {"PE": 2},
            "MVAU_rtl_2": {"PE": 2, "SIMD": 4, "ram_style": "distributed"}, "StreamingFIFO_rtl_3": {"depth": 64}}
    folding, note = parse_folding(finn, network, "f.json")
    assert [(folding[n].pe, folding[n].simd) for n in ("Conv_0", "Conv_1", "Gemm_0")] == [(8, 1), (4, 2), (2, 4)]
    assert folding["MaxPool_0"].simd == 2
    assert dict(folding["Conv_0"].options) == {"mac_resource": "dsp"}
    assert dict(folding["Gemm_0"].options) == {"memory_style": "lutram"}
    assert "FINN format" in note and "StreamingFIFO_rtl_3" in note
    with pytest.raises(RtlgenError, match="2 FINN matrix node"):
        parse_folding({"MVAU_hls_0": {"PE": 1}, "MVAU_hls_1": {"PE": 1}}, network, "f.json")
