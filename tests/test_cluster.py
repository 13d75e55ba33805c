"""Scale-out on Dask (rtlgen/cluster.py, rtlgen/sweep.py) on a local two-worker cluster: `rtlgen run --workers 2`
gives exactly the single-worker outputs, a worker that dies mid-shard has its shard run again (nothing dropped),
and `rtlgen sweep` builds every candidate and marks the Pareto front."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from rtlgen.build import DEFAULT_MODEL, build
from test_cli import rtlgen

pytest.importorskip("distributed", reason="Dask is not installed (pip install 'dask[distributed]')")
pytestmark = pytest.mark.xdist_group("cluster")

INPUTS = REPO / "rtlgen" / "models" / "default_digits_inputs.npy"


@pytest.fixture(scope="module")
def default_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster") / "design"
    build(DEFAULT_MODEL, root)
    return root


def test_run_on_two_workers_equals_one(default_build, tmp_path):
    code, _, err = rtlgen("run", default_build, "--inputs", INPUTS, "--out", tmp_path / "one.npy", "--backpressure", "0.2")
    assert code == 0, err
    code, out, err = rtlgen("run", default_build, "--inputs", INPUTS, "--out", tmp_path / "two.npy", "--workers", "2",
                            "--stats", tmp_path / "stats.json", "--backpressure", "0.2")
    assert code == 0, err
    assert np.array_equal(np.load(tmp_path / "one.npy"), np.load(tmp_path / "two.npy"))
    stats = json.loads((tmp_path / "stats.json").read_text())
    n = len(np.load(INPUTS))
    assert stats["workers"] == 2 and [s["frames"] for s in stats["shards"]] == [n // 2, n - n // 2]
    assert stats["frames"] == n and stats["ii_cycles"] == pytest.approx(64, rel=0.02)


def dying_shard(root: str, hw_in: np.ndarray, sim_options: dict):
    """A shard whose first attempt anywhere kills its worker process (as the OOM killer would)."""
    from rtlgen.cluster import simulate_shard

    marker = Path(root).parent / "a_worker_died"
    if not marker.exists():
        marker.touch()
        os._exit(1)
    return simulate_shard(root, hw_in, sim_options)


def test_a_worker_that_dies_is_retried(default_build):
    import cloudpickle
    from dask.distributed import Client, LocalCluster

    from rtlgen.cluster import TASK_RETRIES, simulate_sharded
    from rtlgen.runner import check_inputs, host_head, load_design, simulate

    import dask
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    design = load_design(default_build)
    hw_in = host_head(design, check_inputs(design, np.load(INPUTS)))
    want, _ = simulate(design, hw_in)
    with dask.config.set({"distributed.scheduler.allowed-failures": TASK_RETRIES}):
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                          silence_logs=50) as cluster, Client(cluster) as client:
            got, stats = simulate_sharded(default_build, hw_in, client, {}, shard_fn=dying_shard)
    assert (default_build.parent / "a_worker_died").exists()  # it did die
    assert np.array_equal(got, want) and stats["frames"] == len(hw_in)


def test_sweep_builds_every_candidate_and_marks_the_front(tmp_path):
    foldings = {"slow": {"layers": {"Gemm_0": {"PE": 1, "SIMD": 8}}},
                "fast": {"layers": {"Gemm_0": {"PE": 4, "SIMD": 16}, "Gemm_1": {"PE": 2, "SIMD": 16}}}}
    paths = []
    for name, spec in foldings.items():
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(spec))
    code, out, err = rtlgen("sweep", DEFAULT_MODEL, "-o", tmp_path / "sweep", "--foldings", *paths, "--workers", "2")
    assert code == 0, err
    result = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    rows = {r["name"]: r for r in result["candidates"]}
    assert set(rows) == {"slow", "fast"}
    for name in rows:  # each a complete build, its estimate the table's
        report = json.loads((tmp_path / "sweep" / name / "report.json").read_text())
        assert report["estimate"]["ii_cycles"] == rows[name]["ii_cycles"]
    assert rows["fast"]["ii_cycles"] < rows["slow"]["ii_cycles"] and rows["fast"]["luts"] > rows["slow"]["luts"]
    assert set(result["pareto_front"]) == {"slow", "fast"}  # neither beats the other on every axis
    assert "Pareto front" in out and "| fast * |" in out


def test_pareto_front():
    from rtlgen.sweep import pareto_front

    rows = [{"name": "a", "ii_cycles": 10, "luts": 100, "bram36": 1, "dsp": 0},
            {"name": "b", "ii_cycles": 20, "luts": 50, "bram36": 1, "dsp": 0},
            {"name": "c", "ii_cycles": 20, "luts": 120, "bram36": 1, "dsp": 0},  # beaten by a and b
            {"name": "d", "ii_cycles": 10, "luts": 100, "bram36": 1, "dsp": 2}]  # beaten by a (more DSP)
    assert pareto_front(rows) == ["a", "b"]


def test_sweep_refuses_bad_options(tmp_path):
    code, _, err = rtlgen("sweep", DEFAULT_MODEL, "-o", tmp_path / "s")
    assert code == 2 and "--foldings" in err and "Traceback" not in err
    code, _, err = rtlgen("sweep", DEFAULT_MODEL, "-o", tmp_path / "s", "--foldings", tmp_path / "missing.json")
    assert code == 2 and "missing.json not found" in err
