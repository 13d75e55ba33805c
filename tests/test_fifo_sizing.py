"""FIFOs sized by analysis (rtlgen/timing.py `fifo_words_needed`, the default): each FIFO holds what its producer's
and consumer's word schedules need at the steady-state interval.

- on every model here the analysed FIFOs take no more bits than the rule (a frame before a dense layer, two rows
  before a window or pool), and sizing takes well under a second;
- in Verilator the analysed design keeps the estimated interval exactly, and the same design with its largest
  FIFO a quarter smaller loses it: the sizes are needed, and the interval check can see a FIFO too small.
"""
from __future__ import annotations

import time

import pytest

from conftest import OWN_MODELS, shared_model
import rtlgen.timing as timing
from rtlgen.build import BuildOptions, build
from rtlgen.folding import apply_folding, default_folding
from rtlgen.frontend import load_model, lower_model
from rtlgen.runner import run_design
from rtlgen.stitch import plan_stages
from rtlgen.verify import random_inputs
from test_cli import assert_user_error, rtlgen


def _bits(stages) -> int:
    return sum(s.depth * s.in_elems_per_word * s.elem_width_in for s in stages if s.kind == "fifo")


@pytest.mark.parametrize("path", ["shared:tfc_w1a1", "shared:kwsmlp_w3a3", "shared:unsw_nb15_mlp_w2a2",
                                  "own:cnn_w4a4_stride2_pad", "own:cnn_depthwise_w4a4", "own:cnn1d_w2a2", "own:cnn_w1a1_kx1"])
def test_analysed_bits_not_above_the_rule(path):
    kind, name = path.split(":")
    model = shared_model(name) if kind == "shared" else OWN_MODELS / f"{name}.onnx"
    network = lower_model(load_model(model)).network
    network = apply_folding(network, default_folding(network)[0])
    start = time.monotonic()
    sized, depths = timing.sized_stages(network)
    assert time.monotonic() - start < 5
    assert depths and all(d >= 2 for d in depths.values())
    assert _bits(sized) <= _bits(plan_stages(network))


def _measured_ii(tmp_path, name: str) -> tuple[float, int, dict]:
    path = shared_model("tfc_w1a1")
    report = build(path, tmp_path / name, BuildOptions(package_ip=False))
    x = random_inputs(lower_model(load_model(path)), 5, 0)
    return run_design(tmp_path / name, x).stats["ii_cycles"], report["estimate"]["ii_cycles"], report["fifo_sizing"]


def test_analysed_fifos_keep_the_interval_and_smaller_ones_lose_it(tmp_path, monkeypatch):
    ii, estimate, sizing = _measured_ii(tmp_path, "analysed")
    assert sizing["method"] == "analysed" and sizing["bits"] < sizing["rule_bits"]
    assert ii == estimate
    largest = max(sizing["depths"], key=sizing["depths"].get)
    needed = timing.fifo_words_needed
    monkeypatch.setattr(timing, "fifo_words_needed", lambda stages, ii, frames: {
        k: (v - v // 4 if k == largest else v) for k, v in needed(stages, ii, frames).items()})
    ii_small, estimate_small, sizing_small = _measured_ii(tmp_path, "smaller")
    assert sizing_small["depths"][largest] < sizing["depths"][largest] and estimate_small == estimate
    assert ii_small > estimate


def test_fifo_sizing_option_is_checked(tmp_path):
    assert_user_error(*rtlgen("build", "-o", tmp_path / "x", "--fifo-sizing", "huge"), "--fifo-sizing huge", "rule")
