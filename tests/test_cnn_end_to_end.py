"""Convolutional networks end to end: build + Verilator run, compared with qonnx, under several foldings.

References are qonnx's outputs (stored refs, or `execute_onnx` on the cleaned original for inputs the host
grid-snaps), never rtlgen's. Every case checks: hardware == golden model on every element, final outputs ==
qonnx, worst-case frames through the RTL, and the measured interval within 2 % of the estimate.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from cnn_models import FINN_CNV_W1A1_FOLDING, cnv_folding_spec, cnv_layer_names, cnv_model, random_cnn
from conftest import own_model, shared_model, shared_refs
from rtlgen.build import BuildOptions, build
from rtlgen.frontend import InputFormat, clean_model, load_model, lower_model
from rtlgen.reference import qonnx_execute
from rtlgen.runner import run_design
from extreme_frames import check_extremes_in_rtl
from test_end_to_end import PARALLEL, SERIAL, _check

INT8_IN = InputFormat("INT8", 2.0**-7)  # the QKeras models take floats in [-1, 1]

OWN_CNN_CASES = [
    ("cnn_w4a4_stride2_pad", "default", None),
    ("cnn_w4a4_stride2_pad", "parallel", PARALLEL),
    ("cnn_depthwise_w4a4", "default", None),
    ("cnn_depthwise_w4a4", "serial", SERIAL),
    ("cnn1d_w2a2", "serial", SERIAL),
    ("cnn1d_w2a2", "mixed", {"layers": {"Conv_0": {"PE": 4, "SIMD": 2}, "MaxPool_0": {"SIMD": 2},
                                        "Conv_1": {"PE": 16, "SIMD": 8}, "Gemm_0": {"PE": 3, "SIMD": 16}}}),
    ("cnn_w1a1_kx1", "default", None),
    ("cnn_w1a1_kx1", "parallel", PARALLEL),
    ("cnn_w8a8_pad_nobias", "serial", SERIAL),
    ("cnn_w8a8_pad_nobias", "target", {"target_cycles": 200}),
    ("econt_encoder_w6a8", "default", None),  # the hardware-quality benchmark's ECON-T-like encoder
    ("econt_encoder_w6a8", "serial", SERIAL),
]


@pytest.mark.parametrize("name,fold_name,folding", OWN_CNN_CASES, ids=[f"{c[0]}-{c[1]}" for c in OWN_CNN_CASES])
def test_own_cnn_bit_exact(name, fold_name, folding, tmp_path):
    path, x, y_ref = own_model(name)
    report, _ = _check(path, x, y_ref, folding, tmp_path / "design")
    if fold_name == "serial":
        assert all(layer["PE"] == 1 for layer in report["layers"] if layer["op"] != "MaxPool")
    convs = [layer for layer in report["layers"] if "conv" in layer]
    assert convs and all(layer["sliding_window"]["start_up_input_words"] > 0 for layer in convs
                         if "sliding_window" in layer)


def test_radioml_vgg10(tmp_path):
    """RadioML VGG10 (1-D convolutions, 8-bit, every reference frame has exact rounding ties): 4 frames; 4
    worst-case frames (all-max, all-min, and the two that put each of the 64 first-layer channels at its
    maximum and minimum somewhere): the -O0 harness simulates about 2.7 s a frame."""
    x, y_ref = shared_refs("radioml_vgg10_w8a8")
    # 2 of the 16 reference frames have a quantizer input within 1e-5 steps of a boundary in qonnx's float32
    _check(shared_model("radioml_vgg10_w8a8"), x[:4], y_ref[:4], None, tmp_path / "design", worst_frames=4)


def _float_input_refs(name: str, frames: int):
    """The QKeras CNNs take floats; the host snaps them to INT8/2^7, and qonnx runs on the snapped inputs."""
    x, _ = shared_refs(name)
    x = x[:frames]
    snapped = (np.clip(np.round(x / INT8_IN.scale), -128, 127) * INT8_IN.scale).astype(np.float32)
    y_ref, _ = qonnx_execute(load_model(shared_model(name)), snapped)
    return x, y_ref.reshape((len(x),) + y_ref.shape[2:])


@pytest.mark.parametrize("name,folding", [
    ("qkeras_qconv2d_conversion", None),
    ("qkeras_qconv2d_conversion", {"layers": {"Conv_0": {"PE": 32, "SIMD": 1}, "Conv_1": {"PE": 8, "SIMD": 4},
                                              "MatMul_0": {"PE": 10, "SIMD": 16}}}),
    ("mnist_cnn_qkeras_qonnx2mdc", None),
    ("mnist_cnn_qkeras_qonnx2mdc", {"layers": {"Conv_0": {"PE": 32}, "MaxPool_0": {"SIMD": 32},
                                               "Conv_1": {"PE": 4, "SIMD": 8}, "MaxPool_1": {"SIMD": 4},
                                               "MatMul_0": {"PE": 2, "SIMD": 8}}}),
], ids=["conversion-default", "conversion-wide", "mnist-default", "mnist-wide"])
def test_qkeras_cnns(name, folding, tmp_path):
    """qkeras_qconv2d_conversion: two convolutions with no activation between them (the first one's
    accumulators feed the second), NHWC input through Reshape/Transpose. mnist_cnn: 16-bit activations,
    requantized exactly (multiply, shift, round half to even, clip) instead of 65535 thresholds."""
    x, y_ref = _float_input_refs(name, 6)
    report, _ = _check(shared_model(name), x, y_ref, folding, tmp_path / "design", input_format=INT8_IN)
    if name.startswith("mnist"):
        assert report["layers"][0]["activation"].startswith("requantize")
        assert report["layers"][0]["output_dtype"] == "UINT16"


def test_cnv_w1a1_at_finn_folding(tmp_path):
    """A CNV-class network (CIFAR-10 sized, 6 conv + 3 dense, W1A1) at FINN's published CNV-W1A1 folding:
    the bottleneck is 32768 cycles (two dense layers); 3 frames through the RTL."""
    model, x = cnv_model(1, 1, seed=0)
    path = tmp_path / "cnv_w1a1.onnx"
    import onnx

    onnx.save(model, str(path))
    compute, pools = cnv_layer_names()
    spec = cnv_folding_spec(compute, pools)
    assert len(FINN_CNV_W1A1_FOLDING) == 9
    y_ref, _ = qonnx_execute(load_model(path), x[:3])
    # 4 worst-case frames (all-max, all-min, every first-layer channel at both extremes): 0.15 s a frame
    report, result = _check(path, x[:3], y_ref.reshape(3, -1), spec, tmp_path / "design", worst_frames=4)
    assert report["estimate"]["ii_cycles"] == 32768
    assert result.stats["ii_cycles"] == 32768


RANDOM_CNN_GOLDEN_SEEDS = range(60)
RANDOM_CNN_E2E_SEEDS = [0, 1, 2, 3, 5, 10, 17, 23, 58]  # 58: a depthwise first layer (3x3, INT8 in, side padding)


@pytest.mark.parametrize("seed", RANDOM_CNN_GOLDEN_SEEDS)
def test_random_cnn_golden_vs_qonnx(seed):
    """Random small CNNs (1-D/2-D, k x k and k x 1, strides, symmetric and asymmetric padding, depthwise,
    max-pool, BN, every quantizer kind): the golden model equals qonnx, or differs only at near-ties."""
    from rtlgen.host import build_head, execute_frames
    from rtlgen.verify import NEAR_TIE, compare_with_qonnx

    model, x, _, description = random_cnn(seed)
    lowered = lower_model(clean_model(model))
    hw_in = np.round(execute_frames(build_head(lowered), x).reshape(len(x), -1)).astype(np.int64)
    cmp = compare_with_qonnx(lowered, x, hw_in)
    assert not cmp.unexplained, (description, cmp.unexplained)
    assert all(t.distance_steps <= NEAR_TIE for t in cmp.near_ties), description


def test_random_cnn_end_to_end_seeds_cover_every_first_layer_kind():
    """The seeds run through the RTL start with a convolution and with a depthwise layer (their extreme frames
    are the only depthwise-first accumulator extremes the RTL sees; no own or shared model starts with one)."""
    firsts = {lower_model(clean_model(random_cnn(seed)[0])).network.layers[0].op for seed in RANDOM_CNN_E2E_SEEDS}
    assert {"ConvMVTU", "DepthwiseVVU"} <= firsts, firsts


@pytest.mark.parametrize("seed", RANDOM_CNN_E2E_SEEDS)
def test_random_cnn_end_to_end(seed, tmp_path):
    """Random CNNs at random foldings through the RTL with random gaps and stalls: hardware == golden; then
    frames driving every channel of the first layer (a convolution, or for seed 58 a depthwise layer) to its
    accumulator extremes."""
    import onnx

    model, x, folding, description = random_cnn(seed)
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    report = build(path, tmp_path / "design", BuildOptions(folding_spec=folding))
    result = run_design(tmp_path / "design", x, p_in_gap=0.3, p_out_stall=0.3, seed=seed)
    lowered = lower_model(load_model(path))
    np.testing.assert_array_equal(result.hw_out, lowered.network.golden(result.hw_in), err_msg=description)
    steady = run_design(tmp_path / "design", x)
    est = report["estimate"]["ii_cycles"]
    assert abs(steady.stats["ii_cycles"] - est) <= 0.02 * est, (description, steady.stats, json.dumps(report["estimate"]))
    est_latency = report["estimate"]["latency_cycles"]
    assert abs(steady.stats["latency_cycles"] - est_latency) <= 0.02 * est_latency, (description, steady.stats)
    check_extremes_in_rtl(tmp_path / "design", lowered.network, est)
