"""The integer golden model against qonnx's execution of the original model, layer by layer and at the
output, on every fully-connected model in ../shared/models and on the project's own exports.

qonnx's outputs are independent of rtlgen: stored references (refs/*_out.npy, tests/models/*_out.npy) or
`execute_onnx` on the cleaned original, and every quantizer's levels read from qonnx's execution context.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import SHARED_MODELS, own_model, shared_model, shared_refs
from rtlgen.frontend import InputFormat, load_model, lower_model
from rtlgen.host import build_head, execute_frames
from rtlgen.reference import qonnx_execute
from rtlgen.verify import NEAR_TIE, compare_with_qonnx, random_inputs


def _golden_vs_qonnx(path, x, y_ref=None, input_format=None, max_near_tie_frames=0):
    lowered = lower_model(load_model(path), input_format=input_format)
    hw_in = np.round(execute_frames(build_head(lowered), x).reshape(len(x), -1)).astype(np.int64)
    result = compare_with_qonnx(lowered, x, hw_in)
    assert not result.unexplained, result.unexplained
    assert all(t.distance_steps <= NEAR_TIE for t in result.near_ties)
    assert len({t.frame for t in result.near_ties}) <= max_near_tie_frames, result.near_ties
    assert result.golden_qonnx_equal + len({t.frame for t in result.near_ties}) == len(x)
    if y_ref is not None:  # the stored reference agrees with the qonnx run inside compare_with_qonnx
        y_now, _ = qonnx_execute(lowered.model, x if input_format is None else
                                 (hw_in * input_format.scale).reshape(x.shape).astype(np.float32))
        np.testing.assert_allclose(y_now.reshape(y_ref.shape), y_ref, rtol=1e-6, atol=1e-6)
    return lowered, result


@pytest.mark.parametrize("name", ["tfc_w1a1", "tfc_w1a2", "tfc_w2a2", "kwsmlp_w3a3", "unsw_nb15_mlp_w2a2"])
def test_shared_models_with_refs(name):
    x, y_ref = shared_refs(name)
    # kwsmlp_w3a3 has one frame within ~1.5e-7 relative of a quantizer boundary (see ../shared/models/README.md)
    _golden_vs_qonnx(shared_model(name), x, y_ref, max_near_tie_frames=1 if name == "kwsmlp_w3a3" else 0)


def test_jettagging_with_host_input_format():
    """Float-input model: the host quantizes x to INT16/2^-8; qonnx sees the same grid-snapped inputs.
    7 of its 16 reference frames put an activation exactly on a rounding tie (ROUND is half-to-even)."""
    x, _ = shared_refs("jettagging_qkeras_w6a6")
    lowered, result = _golden_vs_qonnx(shared_model("jettagging_qkeras_w6a6"), x, input_format=InputFormat("INT16", 2.0**-8))
    assert [layer.in_fmt.width for layer in lowered.network.layers][0] == 16


@pytest.mark.parametrize("name", ["tfc_w1a1_finnonnx", "tfc_w1a1_quant1bit", "kws_w3a3_mlperftiny", "bnn_fc_1layer",
                                  "qkeras_dense_w1_w4", "qkeras_qdense_0"])
def test_shared_models_random_inputs(name):
    path = shared_model(name)
    model = load_model(path)
    try:
        lowered = lower_model(model)
        fmt = None
    except Exception as err:  # float input: supply a host input format
        assert "--input-dtype" in str(err)
        fmt = InputFormat("INT12", 2.0**-6)
        lowered = lower_model(model, input_format=fmt)
    x = random_inputs(lowered, 12, seed=3)
    if name == "tfc_w1a1_finnonnx":
        x = np.round(np.abs(x) * 255).clip(0, 255).astype(np.float32)
        x[0] = np.load(SHARED_MODELS / "data" / "finn_tfc_input_0to255.npy").reshape(x.shape[1:])
    if name == "tfc_w1a1_quant1bit":
        x = np.abs(x).clip(0, 1)
    _golden_vs_qonnx(path, x, input_format=fmt)


@pytest.mark.parametrize("name", ["w4a4_perchannel_bias", "w8a8_signed_narrow", "w2a2_bn", "w1a1_bipolar",
                                  "mixed_357_u8in", "quant_output"])
def test_own_models(name):
    path, x, y_ref = own_model(name)
    _golden_vs_qonnx(path, x, y_ref)


def test_tfc_real_sample_label():
    """TFC-W1A1 through head + golden + tail classifies the real MNIST sample as its label (7)."""
    x = np.load(SHARED_MODELS / "data" / "tfc_mnist_input_0to255.npy") / 255.0 if (SHARED_MODELS / "data").is_dir() else None
    if x is None:
        pytest.skip("../shared/models/data not found")
    from rtlgen.host import build_tail

    lowered = lower_model(load_model(shared_model("tfc_w1a1")))
    hw_in = np.round(execute_frames(build_head(lowered), x.reshape(1, 1, 28, 28))).reshape(1, -1).astype(np.int64)
    y = execute_frames(build_tail(lowered), lowered.network.golden(hw_in).astype(np.float32))
    assert int(np.argmax(y)) == int(np.load(SHARED_MODELS / "data" / "tfc_mnist_expected_label.npy").ravel()[0])


@pytest.mark.parametrize("name,max_ties", [("radioml_vgg10_w8a8", 2)])
def test_shared_cnn_with_refs(name, max_ties):
    """RadioML VGG10: every reference frame has activation inputs exactly on rounding ties (exact in the golden
    model); 2 frames have a quantizer input within 1e-5 steps of a boundary, where qonnx's float32 decides."""
    x, y_ref = shared_refs(name)
    _golden_vs_qonnx(shared_model(name), x, y_ref, max_near_tie_frames=max_ties)


@pytest.mark.parametrize("name", ["qkeras_qconv2d_conversion", "mnist_cnn_qkeras_qonnx2mdc"])
def test_qkeras_cnns_with_host_input_format(name):
    """Float-input QKeras CNNs: the host quantizes x to INT8/2^7; qonnx sees the same grid-snapped inputs."""
    x, _ = shared_refs(name)
    _golden_vs_qonnx(shared_model(name), x, input_format=InputFormat("INT8", 2.0**-7))


@pytest.mark.parametrize("name", ["cnn_w4a4_stride2_pad", "cnn_depthwise_w4a4", "cnn1d_w2a2", "cnn_w1a1_kx1",
                                  "cnn_w8a8_pad_nobias", "econt_encoder_w6a8"])
def test_own_cnns(name):
    path, x, y_ref = own_model(name)
    _golden_vs_qonnx(path, x, y_ref)
