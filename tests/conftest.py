"""Shared test helpers: where the third-party models live, building designs into temporary folders, and
clocking an Amaranth pipeline in its own simulator."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_MODELS = REPO.parent / "shared" / "models"
OWN_MODELS = REPO / "tests" / "models"

warnings.filterwarnings("ignore", module="qonnx")


def shared_model(name: str) -> Path:
    """Path of a third-party model in ../shared/models, or skip the test with the reason."""
    path = SHARED_MODELS / f"{name}.onnx"
    if not path.is_file():
        pytest.skip(f"{path} not found: the third-party models live in ../shared/models beside the checkout")
    return path


def shared_refs(name: str) -> tuple[np.ndarray, np.ndarray]:
    """qonnx reference inputs and outputs from ../shared/models/refs (16 frames, batch axis first)."""
    x = SHARED_MODELS / "refs" / f"{name}_in.npy"
    y = SHARED_MODELS / "refs" / f"{name}_out.npy"
    if not x.is_file():
        pytest.skip(f"{x} not found: reference data lives in ../shared/models/refs")
    return np.load(x), np.load(y)


def own_model(name: str) -> tuple[Path, np.ndarray, np.ndarray]:
    """One of the project's own exported test models with its qonnx inputs and outputs."""
    path = OWN_MODELS / f"{name}.onnx"
    x, y = np.load(OWN_MODELS / f"{name}_in.npy"), np.load(OWN_MODELS / f"{name}_out.npy")
    # stored as qonnx's per-sample outputs stacked, (N, 1, ...): the batch axis replaces the model's batch-1 axis
    return path, x, y.reshape((len(y),) + y.shape[2:])


def run_pipeline(m, steps: list[list[tuple]], out, latency: int) -> list[int]:
    """Clock `m` (with a `sync` domain) in Amaranth's simulator: in cycle k set the (signal, value) pairs of
    `steps[k]`, and read `out` from cycle `latency` on, once per step. Returns the values read, in order."""
    from amaranth.sim import Simulator

    got = []

    async def bench(ctx):
        for cycle in range(len(steps) + latency):
            if cycle < len(steps):
                for signal, value in steps[cycle]:
                    ctx.set(signal, int(value))
            if cycle >= latency:
                got.append(ctx.get(out))
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got
