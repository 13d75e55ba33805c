"""Scale-out on Dask: `rtlgen run --workers N` shards frames over workers, `rtlgen sweep` builds (and with
--synth synthesizes) many foldings of one model at once.

A cluster is a `dask.distributed.LocalCluster` of N single-threaded worker processes on this machine, or an
existing one (`--scheduler tcp://host:8786`) whose workers see the same files (the build folder, the model):
each task names folders, not data, except the integer frames of its shard. Worker processes that die (a crash,
the OOM killer, a lost node) are replaced by the cluster's nannies and their task is run again elsewhere, up to
`TASK_RETRIES` times (the scheduler's `allowed-failures`); a task that raises (a deadlock, a bad design) is not
retried, it fails the whole run with its error. Nothing is dropped: every shard's outputs come back, in frame
order.

`simulate_sharded`: the harness is compiled once here before the shards go out (workers reuse it); shard k
simulates frames [k*S, (k+1)*S) from reset, with the back-pressure seed `seed + k`. The outputs equal a
single-worker run's (the hardware is deterministic and every frame stands alone); the cycle figures (ii,
latency) are those of shard 0, a run of its own.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np

from .errors import RtlgenError

TASK_RETRIES = 3


@contextlib.contextmanager
def dask_client(workers: int | None, scheduler: str | None = None):
    """A distributed Client: on `scheduler` if given, else on a LocalCluster of `workers` processes."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise RtlgenError("--workers/--scheduler need Dask: pip install 'dask[distributed]' "
                          "(or install rtlgen with the cluster extra)") from None
    import dask

    # a task whose worker died is re-run on another worker up to this many times before it counts as failed
    with dask.config.set({"distributed.scheduler.allowed-failures": TASK_RETRIES}):
        if scheduler:
            try:
                client = Client(scheduler, timeout="20s")
            except OSError as exc:
                raise RtlgenError(f"--scheduler {scheduler}: cannot connect ({exc})") from None
            with client:
                yield client
            return
        if workers is None or workers < 1:
            raise RtlgenError(f"--workers {workers}: must be at least 1")
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                          silence_logs=50) as cluster, Client(cluster) as client:
            yield client


def simulate_shard(root: str, hw_in: np.ndarray, sim_options: dict) -> tuple[np.ndarray, dict]:
    """One shard on a worker: the build folder's harness on these integer frames."""
    from .runner import load_design, simulate

    return simulate(load_design(root), hw_in, **sim_options)


def shard_bounds(n_frames: int, shards: int) -> list[tuple[int, int]]:
    """Contiguous [start, end) slices, as equal as they come, none empty."""
    shards = max(1, min(shards, n_frames))
    edges = np.linspace(0, n_frames, shards + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def simulate_sharded(root: Path, hw_in: np.ndarray, client, sim_options: dict,
                     shard_fn=simulate_shard) -> tuple[np.ndarray, dict]:
    """Simulate `hw_in` as one shard a worker; outputs in frame order, stats of shard 0 with the totals."""
    from .runner import harness_optimisation, load_design
    from sim.verilator_harness import CompiledHarness

    design = load_design(root)
    CompiledHarness.build(design.verilog, design.report["top"], design.root / "sim_build", opt=harness_optimisation(design))
    workers = max(1, len(client.scheduler_info().get("workers", {})))
    bounds = shard_bounds(len(hw_in), workers)
    start = time.monotonic()
    futures = [client.submit(shard_fn, str(root), hw_in[a:b], dict(sim_options, seed=sim_options.get("seed", 0) + k),
                             pure=False) for k, (a, b) in enumerate(bounds)]
    try:
        results = client.gather(futures)
    except RtlgenError:
        raise
    except Exception as exc:  # a task that failed on every try: its error, not a Dask traceback
        raise RtlgenError(f"a shard failed on the cluster: {type(exc).__name__}: {exc}") from None
    wall = time.monotonic() - start
    hw_out = np.concatenate([out for out, _ in results])
    stats = dict(results[0][1])
    stats.update(frames=len(hw_in), workers=workers, shards=[{"frames": b - a, "total_cycles": s["total_cycles"],
                                                              "simulation_seconds": s["simulation_seconds"]}
                                                             for (a, b), (_, s) in zip(bounds, results)],
                 total_cycles=sum(s["total_cycles"] for _, s in results), simulation_seconds=round(wall, 3))
    return hw_out, stats
