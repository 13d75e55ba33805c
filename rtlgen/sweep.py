"""`rtlgen sweep`: one model built at many foldings (folding files, or folding-search targets), each candidate a
task on a Dask cluster (`rtlgen.cluster`; in this process, one after another, without --workers/--scheduler),
with --synth each one synthesized too; then a table and the Pareto front of cycles a frame against LUT, BRAM and
DSP (Yosys' counts where synthesized, the analytic estimate otherwise).

Every candidate is a complete build folder, OUT/<name>/, so the chosen one is ready to use; OUT/sweep.json holds
the table, OUT/sweep.md the same as a Markdown table.
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

from .errors import RtlgenError

COLUMNS = ("ii_cycles", "latency_cycles", "luts", "ffs", "bram36", "dsp")


def build_candidate(model: str, out: str, options) -> dict:
    """One candidate (on a worker): build it and summarize its report."""
    from .build import build

    start = time.monotonic()
    report = build(model, out, options)
    row = {"name": Path(out).name, "folding": report["folding"], "ii_cycles": report["estimate"]["ii_cycles"],
           "latency_cycles": report["estimate"]["latency_cycles"], "seconds": round(time.monotonic() - start, 2)}
    total = report["resources"]["total"]
    row.update(luts=total["luts"] + total["lutram"], ffs=total["ffs"], bram36=total["bram36"], dsp=total["dsp"],
               counts="analytic")
    if "synthesis" in report:
        t = report["synthesis"]["total"]
        row.update(luts=t["LUT"] + t["LUTRAM"], ffs=t["FF"], bram36=t["BRAM36_equivalent"], dsp=t["DSP48"],
                   counts="yosys", worst_path_ns=t.get("worst_path_ns"))
    return row


def pareto_front(rows: list[dict]) -> list[str]:
    """Names of the candidates no other one beats: at most its cycles, LUT, BRAM and DSP, fewer of one."""
    keys = ("ii_cycles", "luts", "bram36", "dsp")

    def dominates(a, b):
        return all(a[k] <= b[k] for k in keys) and any(a[k] < b[k] for k in keys)
    return [r["name"] for r in rows if not any(dominates(o, r) for o in rows if o is not r)]


def candidates(foldings: list[str] | None, targets: list[int] | None, options) -> list[tuple[str, object]]:
    """(name, BuildOptions) for each folding file or target."""
    if bool(foldings) == bool(targets):
        raise RtlgenError("rtlgen sweep: give --foldings F1.json F2.json ... or --targets N1 N2 ... (one of them)")
    if foldings:
        out = []
        for path in foldings:
            if not Path(path).is_file():
                raise RtlgenError(f"--foldings: {path} not found")
            out.append((Path(path).stem, replace(options, folding_file=Path(path))))
        if len({name for name, _ in out}) != len(out):
            raise RtlgenError("--foldings: two files have the same name; rename one (each names its build folder)")
        return out
    if any(t < 1 for t in targets):
        raise RtlgenError("--targets: cycles a frame must be at least 1")
    return [(f"target_{t}", replace(options, target_cycles=t)) for t in dict.fromkeys(targets)]


def sweep(model: Path, out_dir: Path, cands: list[tuple[str, object]], workers: int | None = None,
          scheduler: str | None = None) -> dict:
    """Build every candidate into out_dir/<name>/; returns (and writes) the table with the Pareto front."""
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    jobs = [(str(model), str(out_dir / name), options) for name, options in cands]
    if workers is None and scheduler is None:
        rows = [build_candidate(*job) for job in jobs]
    else:
        from .cluster import dask_client

        with dask_client(workers, scheduler) as client:
            futures = [client.submit(build_candidate, *job, pure=False) for job in jobs]
            try:
                rows = client.gather(futures)
            except RtlgenError:
                raise
            except Exception as exc:
                raise RtlgenError(f"a sweep candidate failed on the cluster: {type(exc).__name__}: {exc}") from None
    front = pareto_front(rows)
    for row in rows:
        row["pareto"] = row["name"] in front
    result = {"model": str(model), "wall_seconds": round(time.monotonic() - start, 2), "candidates": rows,
              "pareto_front": front}
    (out_dir / "sweep.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / "sweep.md").write_text(table(rows) + "\n")
    return result


def table(rows: list[dict]) -> str:
    """The candidates as a Markdown table, fastest first; * marks the Pareto front."""
    head = "| candidate | ii cycles | latency | LUT | FF | BRAM36 | DSP | counts | worst ns | build s |"
    lines = [head, "|" + "---|" * 10]
    for r in sorted(rows, key=lambda r: (r["ii_cycles"], r["luts"])):
        worst = f"{r['worst_path_ns']:.2f}" if r.get("worst_path_ns") else "-"
        lines.append(f"| {r['name']}{' *' if r.get('pareto') else ''} | {r['ii_cycles']} | {r['latency_cycles']} | "
                     f"{r['luts']} | {r['ffs']} | {r['bram36']:g} | {r['dsp']} | {r['counts']} | {worst} | {r['seconds']} |")
    return "\n".join(lines)
