"""Overflow proofs: every layer's accumulator and thresholds fit the widths the compiler chose, on worst-case
inputs (all-max, all-min, alternating, and for each channel the input that drives it to each extreme), and
the widths are tight (one bit less would overflow: the check below would catch a one-bit-too-narrow
accumulator). The hardware side (the same worst-case frames through the RTL) is in test_end_to_end.py."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import own_model, shared_model
from rtlgen.frontend import load_model, lower_model

SHARED_FC = ["tfc_w1a1", "tfc_w1a2", "tfc_w2a2", "tfc_w1a1_quant1bit", "tfc_w1a1_finnonnx", "kwsmlp_w3a3",
             "kws_w3a3_mlperftiny", "unsw_nb15_mlp_w2a2", "bnn_fc_1layer", "qkeras_dense_w1_w4"]
OWN = ["w4a4_perchannel_bias", "w8a8_signed_narrow", "w2a2_bn", "w1a1_bipolar", "mixed_357_u8in", "quant_output"]


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


def worst_case_frames(layer) -> np.ndarray:
    """Whole input frames at the extremes for the RTL: per-channel windows for a dense layer; for a
    convolution all-max, all-min and alternating images (a window pattern cannot repeat across an image)."""
    if getattr(layer, "conv", None) is None:
        return worst_case_inputs(layer)
    fmt = layer.in_fmt
    lo, hi = (-1, 1) if fmt.kind == "bipolar" else (fmt.min, fmt.max)
    n = layer.in_elems
    idx = np.arange(n)
    return np.stack([np.full(n, hi), np.full(n, lo), np.where(idx % 2, hi, lo), np.where(idx % 3, lo, hi)]).astype(np.int64)


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
