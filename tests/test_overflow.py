"""Overflow proofs: every layer's accumulator and thresholds fit the widths the compiler chose, on worst-case
inputs (all-max, all-min, alternating, and for each channel the input that drives it to each extreme), and
the widths are tight (one bit less would overflow: the check below would catch a one-bit-too-narrow
accumulator).

Whole input frames reaching those extremes (tests/extreme_frames.py: per channel for dense layers, per
channel and window position for convolution and depthwise layers) are checked here for every layer of
every model in plain numpy, and shown to be sharper than uniform frames. The hardware side (the first
layer's extreme frames through the RTL, compared with the golden model) is `check_extremes_in_rtl`, called
by the end-to-end tests (test_end_to_end.py `_check`, test_cnn_end_to_end.py random CNNs)."""
from __future__ import annotations

import numpy as np
import pytest

from cnn_models import random_cnn
from conftest import own_model, shared_model
from extreme_frames import (MIN_WORST_FRAMES, aimed_accumulators, aimed_values, check_reaches_extremes, check_targets,
                            extreme_frames, input_range, is_whole, uniform_frames, window_taps, worst_case_frames)
from rtlgen.frontend import InputFormat, clean_model, load_model, lower_model

SHARED_FC = ["tfc_w1a1", "tfc_w1a2", "tfc_w2a2", "tfc_w1a1_quant1bit", "tfc_w1a1_finnonnx", "kwsmlp_w3a3",
             "kws_w3a3_mlperftiny", "unsw_nb15_mlp_w2a2", "bnn_fc_1layer", "qkeras_dense_w1_w4"]
OWN = ["w4a4_perchannel_bias", "w8a8_signed_narrow", "w2a2_bn", "w1a1_bipolar", "mixed_357_u8in", "quant_output"]
OWN_CNN = ["cnn_w4a4_stride2_pad", "cnn_depthwise_w4a4", "cnn1d_w2a2", "cnn_w1a1_kx1", "cnn_w8a8_pad_nobias",
           "econt_encoder_w6a8"]
# (mnist_cnn_qkeras_qonnx2mdc takes 10 s to lower; its first layer's extremes go through the RTL in test_qkeras_cnns)
SHARED_CNN = {"radioml_vgg10_w8a8": None, "qkeras_qconv2d_conversion": InputFormat("INT8", 2.0**-7)}


def worst_case_inputs(layer) -> np.ndarray:
    """All-max, all-min, alternating, and per channel the inputs pushing its accumulator to each extreme.

    These are vectors of the layer's weight rows (for a convolution: im2col windows, each element free to
    take any value, padding included, since 0 lies in every non-bipolar input range)."""
    fmt = layer.in_fmt
    lo, hi = (-1, 1) if fmt.kind == "bipolar" else (fmt.min, fmt.max)
    mw = layer.mw
    frames = [np.full(mw, hi), np.full(mw, lo), np.where(np.arange(mw) % 2, hi, lo), np.where(np.arange(mw) % 2, lo, hi)]
    for row in layer.weights:
        frames.append(np.where(row > 0, hi, lo))
        frames.append(np.where(row > 0, lo, hi))
    return np.stack(frames).astype(np.int64)


def fits_signed(values: np.ndarray, width: int) -> bool:
    return bool(np.all(values >= -(2 ** (width - 1))) and np.all(values <= 2 ** (width - 1) - 1))


def _check_layers(lowered):
    for layer in lowered.network.layers:
        if layer.op == "MaxPool":
            continue  # no arithmetic
        if layer.op == "DepthwiseVVU":  # one filter per channel: worst case per channel
            rows = worst_case_inputs(layer)
            acc = np.stack([rows[:, : layer.mw] @ w for w in layer.weights], axis=1)
        else:
            acc = worst_case_inputs(layer) @ layer.weights.T  # plain int64 matrix product, not the compiler's bounds
        needed = [acc.min(), acc.max()]
        assert fits_signed(acc, layer.acc_width), (layer.name, layer.acc_width, needed)
        if layer.thresholds is not None:
            assert fits_signed(layer.thresholds, layer.acc_width), layer.name
            needed += [layer.thresholds.min(), layer.thresholds.max()]
        # tight: the extremes actually reached (accumulators, or a threshold just beyond them) need every bit
        assert not fits_signed(np.array(needed), layer.acc_width - 1), (layer.name, layer.acc_width, needed)
        if layer.thresholds is None and layer.requant is None:  # the raw accumulator leaves the layer: the output format must hold it
            assert layer.out_fmt.kind == "signed" and fits_signed(acc, layer.out_fmt.width)


@pytest.mark.parametrize("name", SHARED_FC)
def test_shared_model_widths(name):
    _check_layers(lower_model(load_model(shared_model(name))))


@pytest.mark.parametrize("name", OWN)
def test_own_model_widths(name):
    path, _, _ = own_model(name)
    _check_layers(lower_model(load_model(path)))


def test_a_narrow_accumulator_would_be_caught():
    """Take a real layer, shave one bit off its accumulator: the worst-case check above must fail."""
    lowered = lower_model(load_model(shared_model("kwsmlp_w3a3")))
    layer = lowered.network.layers[0]
    layer.acc_width -= 1
    with pytest.raises(AssertionError):
        _check_layers(lowered)


# ---------------------------------------------------------------------------------------------------------
# Whole frames at the accumulator extremes (dense, convolution, depthwise)


def _network(name: str):
    """The lowered network of an own model, a shared model or a random CNN ("random<seed>")."""
    if name.startswith("random"):
        return lower_model(clean_model(random_cnn(int(name[6:]))[0])).network
    if name in OWN + OWN_CNN:
        return lower_model(load_model(own_model(name)[0])).network
    return lower_model(load_model(shared_model(name)), input_format=SHARED_CNN.get(name)).network


def _mac_layers(network):
    return [layer for layer in network.layers if layer.op != "MaxPool"]


def _check_extreme_frames(layer) -> None:
    """The extreme frames of one layer prove themselves: every aimed window at its analytic extreme (numpy),
    the golden model's accumulators equal to those numbers, every channel spanning its extremes, the
    layer-wide range the compiler sized the accumulator for reached at both ends (when a window lies wholly
    inside the image), and windows overhanging the padding aimed at (when there are such)."""
    ef = extreme_frames(layer)
    check_targets(layer, ef)
    acc = layer.accumulate(ef.frames)
    np.testing.assert_array_equal(aimed_accumulators(acc, ef), aimed_values(layer, ef.targets))
    check_reaches_extremes(layer, acc)
    conv = getattr(layer, "conv", None)
    pixels = range(conv.pixels_out) if conv is not None else []
    if conv is None or any(is_whole(conv, p) for p in pixels):  # (with no whole window the bound is not reachable)
        assert (int(acc.min()), int(acc.max())) == (layer.acc_lo, layer.acc_hi), layer.name
    if any(not is_whole(conv, p) for p in pixels):  # windows overhanging the padding are aimed at too
        assert any(not is_whole(conv, t.pixel) for t in ef.targets), layer.name


@pytest.mark.parametrize("name", OWN + OWN_CNN + SHARED_FC + list(SHARED_CNN) + [f"random{s}" for s in range(60)])
def test_extreme_frames_reach_every_layer(name):
    """Every MAC layer (not only the first) of every model: the frames reach every channel's extremes."""
    for layer in _mac_layers(_network(name)):
        _check_extreme_frames(layer)


def test_extreme_frames_cover_each_layer_kind():
    """Among the models above there are dense, convolution and depthwise layers, padded and strided windows."""
    layers = [layer for name in OWN_CNN + ["random58"] for layer in _mac_layers(_network(name))]
    assert {"MVTU", "ConvMVTU", "DepthwiseVVU"} <= {layer.op for layer in layers}
    convs = [layer.conv for layer in layers if getattr(layer, "conv", None) is not None]
    assert any(c.padded for c in convs) and any(c.stride_h > 1 or c.stride_w > 1 for c in convs)


def _layer(name: str, op: str):
    return next(layer for layer in _mac_layers(_network(name)) if layer.op == op)


KINDS = [("kwsmlp_w3a3", "MVTU"), ("cnn_w4a4_stride2_pad", "ConvMVTU"), ("cnn_depthwise_w4a4", "DepthwiseVVU"),
         ("random58", "DepthwiseVVU")]


@pytest.mark.parametrize("name,op", KINDS, ids=[f"{n}-{op}" for n, op in KINDS])
def test_uniform_frames_miss_the_extremes(name, op):
    """The old worst cases (all-max, all-min, alternating) do not reach a mixed-sign channel's extremes: the
    check that the extreme frames pass fails on them."""
    layer = _layer(name, op)
    with pytest.raises(AssertionError):
        check_reaches_extremes(layer, layer.accumulate(uniform_frames(layer)))


@pytest.mark.parametrize("name,op", KINDS, ids=[f"{n}-{op}" for n, op in KINDS])
def test_a_spoiled_window_is_caught(name, op):
    """One input of one aimed window moved to the other extreme (at its largest weight): the numpy check
    fails, and so does the golden model's accumulator at that window."""
    layer = _layer(name, op)
    ef = extreme_frames(layer)
    t = ef.targets[len(ef.targets) // 2]
    elems, cols = window_taps(layer, t.channel, t.pixel)
    k = int(np.argmax(np.abs(layer.weights[t.channel, cols])))
    lo, hi = input_range(layer)
    ef.frames[t.frame, elems[k]] = lo + hi - ef.frames[t.frame, elems[k]]
    with pytest.raises(AssertionError):
        check_targets(layer, ef)
    acc = layer.accumulate(ef.frames)
    assert acc[t.frame, t.pixel, t.channel] != aimed_values(layer, [t])[0]


def _wrapping(bits: int):
    """An accumulator that keeps only `bits` bits (two's complement wrap), as a too-narrow register would."""
    half = 1 << (bits - 1)
    return lambda acc: (acc + half) % (2 * half) - half


# (model, frames the end-to-end check sends at most, whether the uniform frames alone miss the fault)
FIRST_LAYERS = [("kwsmlp_w3a3", MIN_WORST_FRAMES, True), ("w4a4_perchannel_bias", MIN_WORST_FRAMES, True),
                ("cnn_w4a4_stride2_pad", MIN_WORST_FRAMES, True), ("cnn1d_w2a2", MIN_WORST_FRAMES, True),
                ("random58", MIN_WORST_FRAMES, True), ("radioml_vgg10_w8a8", 4, False)]


@pytest.mark.parametrize("name,budget,uniform_misses", FIRST_LAYERS, ids=[c[0] for c in FIRST_LAYERS])
def test_a_narrow_first_layer_accumulator_would_show_at_the_output(name, budget, uniform_misses):
    """Emulate hardware whose first-layer accumulator is one bit narrower (it wraps): on the worst-case frames
    the end-to-end check sends (at its smallest budget; radioml's is 4 frames) the network outputs differ from
    the golden model's, so the RTL comparison would fail. For all but radioml, the uniform frames alone (the
    old worst cases of a convolution) would not have shown it."""
    network = _network(name)
    layer = network.layers[0]
    sent, uniform = worst_case_frames(layer, budget).frames, uniform_frames(layer)
    want_sent, want_uniform = network.golden(sent), network.golden(uniform)
    exact, wrap = layer.accumulate, _wrapping(layer.acc_width - 1)
    layer.accumulate = lambda x: wrap(exact(x))  # the golden model of the faulty hardware
    assert np.any(network.golden(sent) != want_sent)
    if uniform_misses:
        np.testing.assert_array_equal(network.golden(uniform), want_uniform)
