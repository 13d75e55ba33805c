"""Read a Verilog module's ports from the Verilog itself, through Verilator's JSON dump of its AST.

The IP-XACT writer takes its port list from whoever calls it; this module is the independent witness.
Verilator elaborates the sources (`--json-only`: parse, link, width, no C++), so what comes back is what a
synthesis tool sees: port order, direction and the elaborated width of every top-level port, parameters and
all. Tests use it to cross-check component.xml against the emitted top; the compiler may use it to build
the port list in the first place.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from rtlgen.ipxact import Port

_DIRECTIONS = {"INPUT": "in", "OUTPUT": "out", "INOUT": "inout"}

# Width of Verilator's basic types that carry no explicit range.
_KEYWORD_WIDTHS = {"logic": 1, "bit": 1, "wire": 1, "reg": 1, "byte": 8, "shortint": 16, "int": 32,
                   "integer": 32, "longint": 64, "time": 64}


class VerilogPortError(RuntimeError):
    """Verilator could not elaborate the sources, or the top module has a port type this reader cannot size."""


def read_verilog_ports(verilog_path: str | Path | Iterable[str | Path], top: str) -> list[Port]:
    """The ports of module `top`, in declaration order, as Verilator elaborates them.

    `verilog_path` is one file or several (all files a design needs: the top and its submodules).
    Raises `VerilogPortError` with Verilator's own message when elaboration fails.
    """
    paths = [Path(verilog_path)] if isinstance(verilog_path, (str, Path)) else [Path(p) for p in verilog_path]
    if not paths:
        raise ValueError("read_verilog_ports: no Verilog files given")
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"Verilog file not found: {p}")
    tree = _verilator_json(paths, top)
    return _top_ports(tree, top)


def _verilator_json(paths: list[Path], top: str) -> dict:
    # Imported here so that merely importing rtlgen (e.g. to write an IP package) needs no Verilator.
    from sim.toolchain import XILINX_LUT_MODELS, verilator_env, verilator_executable

    with tempfile.TemporaryDirectory(prefix="rtlgen_ports_") as tmp:
        out = Path(tmp) / "tree.json"
        cmd = [
            verilator_executable(), "--json-only", "--json-only-output", str(out), "-Mdir", tmp,
            "--top-module", top, "-Wno-fatal", "-Wno-lint", "-Wno-style", *[str(p.resolve()) for p in paths],
            str(XILINX_LUT_MODELS),
        ]
        # Run beside the first file so that relative $readmem paths resolve as they would for the user.
        proc = subprocess.run(cmd, cwd=paths[0].resolve().parent, env=verilator_env(),
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not out.exists():
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise VerilogPortError(f"Verilator could not elaborate {top}: " + " | ".join(detail[:8]))
        return json.loads(out.read_text())


def _index_nodes(node, index: dict[str, dict]) -> None:
    """Map every AST node's address, e.g. "(J)", to the node (dtypes are referenced by address)."""
    if isinstance(node, dict):
        addr = node.get("addr")
        if isinstance(addr, str):
            index[addr] = node
        for value in node.values():
            if isinstance(value, (list, dict)):
                _index_nodes(value, index)
    elif isinstance(node, list):
        for item in node:
            _index_nodes(item, index)


def _top_ports(tree: dict, top: str) -> list[Port]:
    index: dict[str, dict] = {}
    _index_nodes(tree, index)
    modules = [m for m in tree.get("modulesp", []) if m.get("type") == "MODULE"]
    module = next((m for m in modules if m.get("origName") == top or m.get("name") == top), None)
    if module is None:
        raise VerilogPortError(f"module {top} not found in Verilator's output")
    ports = []
    for stmt in module.get("stmtsp", []):
        if stmt.get("type") != "VAR" or stmt.get("direction") not in _DIRECTIONS:
            continue
        name = stmt.get("origName") or stmt["name"]
        width = _width(index.get(stmt.get("dtypep", "")), index, name)
        ports.append(Port(name=name, direction=_DIRECTIONS[stmt["direction"]], width=width))
    return ports


def _width(dtype: dict | None, index: dict[str, dict], port: str) -> int:
    if dtype is None:
        raise VerilogPortError(f"port {port}: Verilator gave no data type")
    kind = dtype.get("type")
    if kind == "BASICDTYPE":
        rng = dtype.get("range")
        if rng:
            hi, lo = (int(x) for x in rng.split(":"))
            return abs(hi - lo) + 1
        keyword = dtype.get("keyword", dtype.get("name", ""))
        if keyword in _KEYWORD_WIDTHS:
            return _KEYWORD_WIDTHS[keyword]
    if kind in ("REFDTYPE", "TYPEDEF") and dtype.get("refDTypep") in index:
        return _width(index[dtype["refDTypep"]], index, port)
    raise VerilogPortError(f"port {port}: unsupported port type {kind} {dtype.get('name', '')!r}")
