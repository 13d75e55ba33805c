"""The folding policy (rtlgen/folding.py) on real networks, checked against figures worked out by hand:

- default: the largest layer gets 64 multipliers and every layer is as cheap as possible at its cycles;
- no layer is folded faster than the slowest layer can go (the ECON-T-like encoder's first convolution
  streams its 8x8 single-channel input through a 3x3 window: 144 cycles whatever its PE);
- target_cycles: every layer meets the target with the fewest multipliers.
"""
from __future__ import annotations

import pytest

from conftest import OWN_MODELS
from rtlgen.build import DEFAULT_MODEL
from rtlgen.folding import default_folding, parse_folding
from rtlgen.frontend import load_model, lower_model


def _network(path):
    return lower_model(load_model(path), name="m").network


def _cycles(network, folding):
    return {layer.name: layer.cycles_at(folding[layer.name].pe, folding[layer.name].simd) for layer in network.layers}


def test_default_folding_gives_the_largest_layer_64_multipliers():
    network = _network(DEFAULT_MODEL)  # dense 64-64-32-10
    folding, note = default_folding(network)
    assert folding["Gemm_0"].pe * folding["Gemm_0"].simd == 64  # 64x64 MACs: 64 cycles a frame
    assert max(_cycles(network, folding).values()) == 64
    # cheapest at 64 cycles: Gemm_1 (64x32 MACs) needs 32 multipliers, Gemm_2 (32x10) 5
    assert folding["Gemm_1"].pe * folding["Gemm_1"].simd == 32
    assert folding["Gemm_2"].pe * folding["Gemm_2"].simd == 5
    assert "64 cycles" in note and "64 multipliers" in note


def test_no_layer_faster_than_the_slowest_can_go():
    path = OWN_MODELS / "econt_encoder_w6a8.onnx"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    network = _network(path)  # conv 3x3/2 on 8x8x1 -> 4x4x8, dense 128->16, dense 16->10
    folding, note = default_folding(network)
    cycles = _cycles(network, folding)
    assert cycles["Conv_0"] == 144  # 8*8 input words at 1 channel and 16 windows of 9 words: max(64, 144)
    assert max(cycles.values()) == 144 and "Conv_0 cannot go faster" in note
    # the dense layers are only as fast as 144 cycles needs: 128*16 MACs in <= 144 cycles takes 16 multipliers
    assert folding["Gemm_0"].pe * folding["Gemm_0"].simd == 16
    assert folding["Gemm_1"].pe * folding["Gemm_1"].simd == 2  # 160 MACs: 2 multipliers, 80 cycles


def test_target_cycles_with_the_fewest_multipliers():
    network = _network(DEFAULT_MODEL)
    folding, note = parse_folding({"target_cycles": 256}, network)
    cycles = _cycles(network, folding)
    assert max(cycles.values()) <= 256
    assert [folding[n].pe * folding[n].simd for n in ("Gemm_0", "Gemm_1", "Gemm_2")] == [16, 8, 2]
    assert "256" in note
