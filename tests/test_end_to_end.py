"""Build + run in Verilator, compared with qonnx's outputs on the original models (references computed by
qonnx and stored beside the models, not by rtlgen), under several foldings; measured interval vs estimate."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import own_model, shared_model, shared_refs
from ipxact_checks import check_ip_folder
from rtlgen.build import BuildOptions, build
from rtlgen.frontend import InputFormat, load_model, lower_model, parse_dtype
from rtlgen.reference import qonnx_execute
from rtlgen.runner import run_design
from extreme_frames import check_extremes_in_rtl
from rtlgen.verify import NEAR_TIE, compare_with_qonnx

SERIAL = {"defaults": {"PE": 1, "SIMD": 1}}
PARALLEL = {"defaults": {"PE": "max", "SIMD": "max"}}

# (model, folding name, folding spec); None = the default policy
SHARED_CASES = [
    ("tfc_w1a1", "serial", SERIAL),
    ("tfc_w1a1", "default", None),
    ("tfc_w1a1", "mixed", {"layers": {"MatMul_0": {"PE": 16, "SIMD": 49}, "MatMul_1": {"PE": 64, "SIMD": 64},
                                      "MatMul_2": {"PE": "max", "SIMD": 16}, "MatMul_3": {"PE": 10, "SIMD": 4}}}),
    ("tfc_w2a2", "serial", SERIAL),
    ("tfc_w2a2", "default", None),
    ("tfc_w2a2", "target256", {"target_cycles": 256}),
    ("kwsmlp_w3a3", "default", None),
    ("kwsmlp_w3a3", "serial", SERIAL),
    ("kwsmlp_w3a3", "dwc", {"layers": {"MatMul_0": {"PE": 8, "SIMD": 10}, "MatMul_1": {"PE": 4, "SIMD": 8},
                                       "MatMul_2": {"PE": 16, "SIMD": 2}, "MatMul_3": {"PE": 3, "SIMD": 32}}}),
    ("unsw_nb15_mlp_w2a2", "serial", SERIAL),
    ("unsw_nb15_mlp_w2a2", "default", None),
    ("unsw_nb15_mlp_w2a2", "parallel_tail", {"layers": {"Gemm_0": {"PE": 8, "SIMD": 50},
                                                        "Gemm_1": {"PE": "max", "SIMD": "max"},
                                                        "Gemm_2": {"PE": "max", "SIMD": "max"},
                                                        "Gemm_3": {"PE": "max", "SIMD": "max"}}}),
    ("bnn_fc_1layer", "serial", SERIAL),  # BipolarQuant input + Gemm, 3 -> 4
    ("qkeras_dense_w1_w4", "default", None),  # QKeras Dense, bare `qonnx` domain, 6-bit unsigned input quantizer
]

OWN_CASES = [(name, fold_name, fold) for name in ("w4a4_perchannel_bias", "w8a8_signed_narrow", "w2a2_bn",
                                                  "w1a1_bipolar", "mixed_357_u8in", "quant_output")
             for fold_name, fold in (("parallel", PARALLEL), ("serial", SERIAL))]


def _check(model_path, x, y_ref, folding, out_dir, input_format=None, max_tie_frames=1, worst_frames=None,
           backpressure=None):
    """Build, run and compare (see the module docstring); `worst_frames` caps the worst-case frames (default:
    a simulated-cycle budget, extreme_frames.WORST_CASE_CYCLES); `backpressure` (a probability) also runs the
    frames with random input gaps and output stalls of that probability: no deadlock, hardware == golden."""
    report = build(model_path, out_dir, BuildOptions(folding_spec=folding, input_format=input_format))
    check_ip_folder(out_dir)  # every model that builds leaves a valid Vivado IP folder
    result = run_design(out_dir, x)
    lowered = lower_model(load_model(model_path), input_format=input_format)
    golden = lowered.network.golden(result.hw_in)
    # 1) hardware == golden model, every element
    np.testing.assert_array_equal(result.hw_out, golden)
    # 2) final outputs == qonnx's stored outputs, except frames qonnx decided by float32 rounding at a boundary
    cmp = compare_with_qonnx(lowered, x, result.hw_in, y_hw=result.outputs)
    assert not cmp.unexplained, cmp.unexplained
    tie_frames = {t.frame for t in cmp.near_ties}
    assert all(t.distance_steps <= NEAR_TIE for t in cmp.near_ties)
    assert len(tie_frames) <= max_tie_frames, f"more near-ties than expected: {cmp.near_ties}"
    y = result.outputs.reshape(len(x), -1).astype(np.float64)
    ref = y_ref.reshape(len(x), -1).astype(np.float64)
    for f in range(len(x)):
        if f in tie_frames:
            continue
        np.testing.assert_allclose(y[f], ref[f], rtol=1e-5, atol=1e-5 * max(1.0, np.abs(ref[f]).max()))
    assert result.outputs.shape == y_ref.shape
    # 2b) worst-case integer frames straight into the RTL: all-max, all-min, alternating, and frames driving each
    #     channel of the first layer (dense, convolution or depthwise) to its accumulator maximum and minimum,
    #     proven to reach them before they are sent; an accumulator or threshold too narrow would show here
    check_extremes_in_rtl(out_dir, lowered.network, report["estimate"]["ii_cycles"], worst_frames)
    # 3) measured steady-state interval and first-frame latency within 2% of the estimate
    est = report["estimate"]["ii_cycles"]
    assert abs(result.stats["ii_cycles"] - est) <= 0.02 * est, (result.stats, report["estimate"])
    est_latency = report["estimate"]["latency_cycles"]
    assert abs(result.stats["latency_cycles"] - est_latency) <= 0.02 * est_latency, (result.stats, report["estimate"])
    if backpressure:
        pressed = run_design(out_dir, x, p_in_gap=backpressure, p_out_stall=backpressure, seed=len(x))
        np.testing.assert_array_equal(pressed.hw_out, golden)
    return report, result


@pytest.mark.parametrize("name,fold_name,folding", SHARED_CASES, ids=[f"{c[0]}-{c[1]}" for c in SHARED_CASES])
def test_shared_model_bit_exact(name, fold_name, folding, tmp_path):
    path = shared_model(name)
    x, y_ref = shared_refs(name)
    report, _ = _check(path, x, y_ref, folding, tmp_path / "design")
    if fold_name == "serial":
        assert all(layer["PE"] == 1 and layer["SIMD"] == 1 for layer in report["layers"])


@pytest.mark.parametrize("name,fold_name,folding", OWN_CASES, ids=[f"{c[0]}-{c[1]}" for c in OWN_CASES])
def test_own_model_bit_exact(name, fold_name, folding, tmp_path):
    path, x, y_ref = own_model(name)
    report, _ = _check(path, x, y_ref, folding, tmp_path / "design")
    if fold_name == "parallel":
        assert report["estimate"]["ii_cycles"] == 1


def test_kws_mlperftiny_real_sample(tmp_path):
    """The exact MLPerf Tiny KWS model (Quant nodes without a domain) on its real sample: label 3."""
    from conftest import SHARED_MODELS

    path = shared_model("kws_w3a3_mlperftiny")
    x = np.load(SHARED_MODELS / "data" / "kws_w3a3_mlperftiny_input.npy").reshape(1, 1, 10, 49)
    label = int(np.load(SHARED_MODELS / "data" / "kws_w3a3_mlperftiny_expected_label.npy").ravel()[0])
    rng = np.random.default_rng(1)
    x = np.concatenate([x, x + rng.normal(scale=2.0, size=(3, 1, 10, 49))]).astype(np.float32)
    from rtlgen.reference import qonnx_execute

    y_ref, _ = qonnx_execute(load_model(path), x)
    _, result = _check(path, x, y_ref.reshape(len(x), -1), None, tmp_path / "design")
    assert int(np.argmax(result.outputs[0])) == label


def test_finnonnx_multithreshold(tmp_path):
    """FINN-ONNX TFC (MultiThreshold activations, UINT8 input, TopK tail) through the RTL on its 16 reference
    frames; frame 0 is FINN's own sample and must come out as its stored label."""
    from conftest import SHARED_MODELS

    path = shared_model("tfc_w1a1_finnonnx")
    x, y_ref = shared_refs("tfc_w1a1_finnonnx")
    sample = np.load(SHARED_MODELS / "data" / "finn_tfc_input_0to255.npy").reshape(x.shape[1:])
    assert np.array_equal(x[0], sample)
    _, result = _check(path, x, y_ref, None, tmp_path / "design")
    assert int(result.outputs[0].ravel()[0]) == int(np.load(SHARED_MODELS / "data" / "finn_tfc_expected_label.npy").ravel()[0])


# float-input QKeras models: the host snaps x to a fixed-point grid (`--input-dtype/--input-scale`) and the RTL
# takes the integers; the references are qonnx's outputs on inputs already on that grid
FLOAT_INPUT_CASES = [("jettagging_qkeras_w6a6", InputFormat("INT16", 2.0**-8)),
                     ("qkeras_qdense_0", InputFormat("INT12", 2.0**-6))]


@pytest.mark.parametrize("name,fmt", FLOAT_INPUT_CASES, ids=[c[0] for c in FLOAT_INPUT_CASES])
def test_float_input_model_bit_exact(name, fmt, tmp_path):
    """Jet tagger (INT16 host input, Softmax tail; 7 of its 16 frames put an activation exactly on a rounding
    tie) from its stored grid-snapped refs; qkeras_qdense_0's stored inputs snapped to INT12/2^-6 here, with
    qonnx run on the snapped inputs for the reference."""
    path = shared_model(name)
    if name == "jettagging_qkeras_w6a6":
        x, y_ref = shared_refs(f"{name}_fx")
    else:
        x, _ = shared_refs(name)
        grid = parse_dtype(fmt.dtype)
        x = (np.clip(np.round(x / fmt.scale), grid.min, grid.max) * fmt.scale).astype(np.float32)
        y_ref, _ = qonnx_execute(load_model(path), x)
        y_ref = y_ref.reshape(len(x), -1)
    assert np.array_equal(x / fmt.scale, np.round(x / fmt.scale))  # on the grid: the head changes nothing
    report, _ = _check(path, x, y_ref, None, tmp_path / "design", input_format=fmt)
    assert report["layers"][0]["input_dtype"] == fmt.dtype
