"""Random residual MLPs (tests/random_residuals.py): forks, identity and projection skips, nested blocks, alignment
multipliers that are not powers of two, random foldings.

- golden model vs qonnx on GOLDEN_SEEDS (the reference is qonnx's execution of the generated graph);
- end to end on E2E_SEEDS: build at the model's random folding, Verilator run with random gaps and stalls (or
  free-flowing, then measured ii == estimate and latency within 2 %), hardware == golden on every element.
More seeds outside CI: `bench/fuzz_random_models.py --residual --seeds 0-999`.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from random_models import check_end_to_end, check_golden
from random_residuals import build_random_residual
from rtlgen.verify import NEAR_TIE

GOLDEN_SEEDS = list(range(40))
# identity and projection skips, one to three blocks, nested blocks, odd alignment (seeds 0-11 cover them all)
E2E_SEEDS = [1, 4, 6, 8, 10]
FREE_FLOWING = {4, 8}


def test_generator_is_deterministic_and_covers_its_features():
    a, b = build_random_residual(3), build_random_residual(3)
    assert a.model.SerializeToString() == b.model.SerializeToString()
    np.testing.assert_array_equal(a.inputs, b.inputs)
    features = Counter(f for s in GOLDEN_SEEDS for f in build_random_residual(s).features)
    assert {"identity_skip", "projection_skip", "nested", "odd_alignment", "blocks_1", "blocks_2",
            "blocks_3"} <= set(features), features
    e2e = {f for s in E2E_SEEDS for f in build_random_residual(s).features}
    assert {"identity_skip", "projection_skip", "nested", "odd_alignment"} <= e2e, e2e


@pytest.mark.parametrize("seed", GOLDEN_SEEDS)
def test_golden_vs_qonnx(seed):
    res, lowered = check_golden(seed, build_random_residual(seed))
    assert res.ok, f"{res.reason()}\n{res.description}"
    assert not lowered.network.is_chain
    assert all(t.distance_steps <= NEAR_TIE for t in res.near_ties)
    assert res.golden_qonnx_equal + len({t.frame for t in res.near_ties}) == res.frames


@pytest.mark.parametrize("seed", E2E_SEEDS)
def test_end_to_end(seed, tmp_path):
    res = check_end_to_end(seed, tmp_path, build_random_residual(seed), free_flowing=seed in FREE_FLOWING)
    assert res.ok, f"{res.reason()}\n{res.description}"
    assert res.hw_checked and (res.timing_checked or seed not in FREE_FLOWING)
