"""Build + run in Verilator, compared with qonnx's outputs on the original models (references computed by
qonnx and stored beside the models, not by rtlgen), under several foldings; measured interval vs estimate."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import own_model, shared_model, shared_refs
from ipxact_checks import check_ip_folder
from rtlgen.build import BuildOptions, build
from rtlgen.frontend import load_model, lower_model
from rtlgen.runner import load_design, run_design, simulate
from test_overflow import worst_case_frames
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
]

OWN_CASES = [(name, fold_name, fold) for name in ("w4a4_perchannel_bias", "w8a8_signed_narrow", "w2a2_bn",
                                                  "w1a1_bipolar", "mixed_357_u8in", "quant_output")
             for fold_name, fold in (("parallel", PARALLEL), ("serial", SERIAL))]


def _check(model_path, x, y_ref, folding, out_dir, input_format=None, max_tie_frames=1):
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
    # 2b) worst-case integer frames straight into the RTL (all-max, all-min, alternating, per-channel extremes of
    #     the first layer): an accumulator or threshold too narrow for them would show here
    worst = worst_case_frames(lowered.network.layers[0])[:24]
    hw_worst, _ = simulate(load_design(out_dir), worst)
    np.testing.assert_array_equal(hw_worst, lowered.network.golden(worst))
    # 3) measured steady-state interval and first-frame latency within 5% of the estimate
    est = report["estimate"]["ii_cycles"]
    assert abs(result.stats["ii_cycles"] - est) <= 0.05 * est, (result.stats, report["estimate"])
    est_latency = report["estimate"]["latency_cycles"]
    assert abs(result.stats["latency_cycles"] - est_latency) <= 0.05 * est_latency, (result.stats, report["estimate"])
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
