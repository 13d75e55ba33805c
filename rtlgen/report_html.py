"""report.html: the build on one self-contained page (inline CSS and SVG, no script, nothing fetched).

Written by every build next to report.json, and written again when `rtlgen run` or `rtlgen verify` has measured
the design (`measured.json` beside it), so the page shows estimated and measured cycles side by side. Contents:
the dataflow chain (every block with its folding, stream width and FIFO depth; the bottleneck block and the
layer with the worst estimated path marked), then per layer its cycles, the analytic resource estimate and, when
the build ran `--synth`, Yosys' counts and estimated worst path.
"""
from __future__ import annotations

import json
from html import escape
from pathlib import Path

MEASURED_FILE = "measured.json"
BOX_W, BOX_H, GAP, PER_ROW = 150, 64, 26, 6


def write_report_html(out_dir: str | Path) -> Path:
    """(Re)write DIR/report.html from DIR/report.json and, when present, DIR/measured.json."""
    out_dir = Path(out_dir)
    report = json.loads((out_dir / "report.json").read_text())
    measured_path = out_dir / MEASURED_FILE
    measured = json.loads(measured_path.read_text()) if measured_path.is_file() else None
    page = out_dir / "report.html"
    tmp = out_dir / ".report.html.tmp"
    tmp.write_text(render(report, measured))
    tmp.replace(page)
    return page


def record_measurement(out_dir: str | Path, stats: dict, command: str) -> None:
    """Keep what `run`/`verify` measured beside the report and refresh the page; a read-only build folder
    just keeps its old page."""
    out_dir = Path(out_dir)
    entry = {"command": command, **{k: stats.get(k) for k in ("ii_cycles", "latency_cycles", "frames")}}
    try:
        (out_dir / MEASURED_FILE).write_text(json.dumps(entry, indent=2) + "\n")
        write_report_html(out_dir)
    except OSError:
        pass


def render(report: dict, measured: dict | None = None) -> str:
    est = report["estimate"]
    synthesis = report.get("synthesis")
    critical = _critical_layer(synthesis)
    head = [f"<h1>{escape(report['top'])}</h1>",
            f"<p class=sub>{escape(report['model']['name'])} &middot; rtlgen {escape(str(report.get('rtlgen_version', '')))}"
            f" &middot; built in {report.get('build_seconds', 0):.2f} s</p>",
            f"<p>{escape(report['folding'])}</p>", _summary_table(report, measured, synthesis)]
    notes = "".join(f"<li>{escape(n)}</li>" for n in report.get("notes", []))
    body = "\n".join(head + ["<h2>Dataflow</h2>", _chain_svg(report, est["bottleneck"], critical),
                             "<p class=legend><span class=bn>&#9632;</span> bottleneck (sets the interval) &nbsp; "
                             "<span class=cp>&#9632;</span> layer with the worst estimated path (--synth) &nbsp; "
                             "dashed: a branch (a duplicator's second output, a residual Add's skip input)</p>",
                             "<h2>Layers</h2>", _layer_table(report, synthesis, est["bottleneck"], critical)]
                     + ([f"<h2>Notes</h2><ul>{notes}</ul>"] if notes else []))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(report['top'])}: rtlgen report</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }}
h1 {{ margin-bottom: 0; }} .sub {{ color: #666; margin-top: 2px; }}
table {{ border-collapse: collapse; margin: 8px 0 16px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
th {{ background: #f3f3f3; }} td.l, th.l {{ text-align: left; }}
tr.bn td {{ background: #fff1e6; }} tr.cp td.path {{ background: #fde8e8; font-weight: bold; }}
.bar {{ display: inline-block; height: 9px; background: #5b8def; vertical-align: middle; margin-left: 6px; }}
.legend .bn {{ color: #e67300; }} .legend .cp {{ color: #c62828; }}
svg text {{ font: 11px system-ui, sans-serif; }}
</style></head>
<body>
{body}
</body></html>
"""


def _summary_table(report: dict, measured: dict | None, synthesis: dict | None) -> str:
    est = report["estimate"]
    rows = [("interval (ii), cycles a frame", est["ii_cycles"], measured and measured.get("ii_cycles")),
            ("latency, cycles", est["latency_cycles"], measured and measured.get("latency_cycles"))]
    cells = "".join(f"<tr><td class=l>{name}</td><td>{e:,}</td><td>{_num(m)}</td></tr>" for name, e, m in rows)
    how = f" ({escape(measured['command'])}, {measured.get('frames')} frames)" if measured else " (after rtlgen run or verify)"
    total = report["resources"]["total"]
    res = (f"<p>Analytic estimate: LUT {total['luts']:,} (+{total['lutram']:,} LUTRAM), FF {total['ffs']:,}, "
           f"BRAM36 {total['bram36']:g}, DSP48 {total['dsp']:,}.")
    if synthesis:
        t = synthesis["total"]
        path = f", worst path ~{t['worst_path_ns']:.2f} ns (~{t['fmax_mhz_estimate']:.0f} MHz)" if t.get("worst_path_ns") else ""
        res += (f" Yosys xc7: LUT {t['LUT']:,} (+{t['LUTRAM']:,} LUTRAM), FF {t['FF']:,}, BRAM36 "
                f"{t['BRAM36_equivalent']:g}, DSP48 {t['DSP48']:,}{path}.")
    fps = f"{est['frames_per_second_at_clock']:,.0f} frames/s at {1000 / est['clock_ns']:.0f} MHz (estimate)"
    return (f"<table><tr><th class=l></th><th>estimated</th><th>measured{how}</th></tr>{cells}</table>"
            f"<p>{fps}; bottleneck {escape(est['bottleneck'])}.</p>{res}</p>")


def _num(value) -> str:
    if value is None:
        return "&mdash;"
    return f"{value:,.1f}" if isinstance(value, float) and not float(value).is_integer() else f"{int(value):,}"


def _critical_layer(synthesis: dict | None) -> str | None:
    if not synthesis:
        return None
    timed = [(v["worst_path_ns"], name) for name, v in synthesis["layers"].items() if v.get("worst_path_ns")]
    return max(timed)[1] if timed else None


def _block_label(stage: dict) -> tuple[str, str]:
    """What the block is and its size, as the build described it (`rtlgen.stages.Stage.describe`)."""
    return stage.get("title", stage["kind"]), stage.get("detail", "")


def _chain_svg(report: dict, bottleneck: str, critical: str | None) -> str:
    """The chain of blocks, left to right in rows, with the stream width between layers."""
    owner = {b["name"]: layer["name"] for layer in report["layers"] for b in layer["blocks"]}
    cycles = {b["name"]: b["cycles_per_frame"] for layer in report["layers"] for b in layer["blocks"]}
    stages = report["stages"]
    rows = -(-len(stages) // PER_ROW)
    width = PER_ROW * (BOX_W + GAP) + GAP
    height = rows * (BOX_H + 2 * GAP) + GAP
    parts = [f'<svg width="{width}" height="{height}" role="img" '
             f'aria-label="dataflow chain">',
             '<defs><marker id="arrow" markerWidth="8" markerHeight="8" refX="7" refY="4" orient="auto">'
             '<path d="M0,0 L8,4 L0,8 z" fill="#888"/></marker></defs>']
    for i, stage in enumerate(stages):
        row, col = divmod(i, PER_ROW)
        x, y = GAP + col * (BOX_W + GAP), GAP + row * (BOX_H + 2 * GAP)
        title, detail = _block_label(stage)
        layer_name = owner.get(stage["name"])
        stroke = "#e67300" if stage["name"] == bottleneck else "#c62828" if layer_name and layer_name == critical else "#777"
        fill = "#eef3fd" if stage["kind"] in ("mvtu", "vvu") else "#f5f5f5"
        cyc = f"{cycles[stage['name']]:,} cycles" if stage["name"] in cycles else ""
        parts.append(f'<g class="block" data-name="{escape(stage["name"])}"><rect x="{x}" y="{y}" width="{BOX_W}" '
                     f'height="{BOX_H}" rx="6" fill="{fill}" stroke="{stroke}" stroke-width="{3 if stroke != "#777" else 1}"/>'
                     f'<text x="{x + 8}" y="{y + 16}" font-weight="bold">{escape(title)}</text>'
                     f'<text x="{x + 8}" y="{y + 31}">{escape(stage["name"][:22])}</text>'
                     f'<text x="{x + 8}" y="{y + 45}">{escape(detail)}</text>'
                     f'<text x="{x + 8}" y="{y + 58}" fill="#555">{escape(cyc)}</text></g>')
        if i + 1 < len(stages) and stages[i]["name"] in stages[i + 1].get("feeds", [stages[i]["name"]]):
            if col + 1 < PER_ROW:
                parts.append(f'<line x1="{x + BOX_W}" y1="{y + BOX_H / 2}" x2="{x + BOX_W + GAP - 2}" y2="{y + BOX_H / 2}" '
                             'stroke="#888" marker-end="url(#arrow)"/>')
            else:
                parts.append(f'<path d="M{x + BOX_W / 2},{y + BOX_H} v{GAP / 2} H{GAP + BOX_W / 2} v{GAP + GAP / 2 - 2}" '
                             'fill="none" stroke="#888" marker-end="url(#arrow)"/>')
    parts += _branch_edges(stages)
    parts.append("</svg>")
    return "".join(parts)


def _box_origin(index: int) -> tuple[float, float]:
    row, col = divmod(index, PER_ROW)
    return GAP + col * (BOX_W + GAP), GAP + row * (BOX_H + 2 * GAP)


def _branch_edges(stages: list[dict]) -> list[str]:
    """Dashed connectors for the streams that do not run from one block to the next (a duplicator's second
    output, a residual Add's skip input): from under the source box, along the gap below its row, up into the
    reader from below."""
    index = {stage["name"]: i for i, stage in enumerate(stages)}
    parts = []
    for i, stage in enumerate(stages):
        for feed in stage.get("feeds", []):
            j = index.get(feed)
            if j is None or j == i - 1:
                continue
            (xs, ys), (xt, yt) = _box_origin(j), _box_origin(i)
            lane = ys + BOX_H + GAP * 0.6
            parts.append(f'<path class="branch" d="M{xs + BOX_W * 0.7},{ys + BOX_H} V{lane} H{xt + BOX_W * 0.3} '
                         f'V{yt + BOX_H + 2}" fill="none" stroke="#3367d6" stroke-dasharray="5,3" '
                         'marker-end="url(#arrow)"/>')
    return parts


def _layer_table(report: dict, synthesis: dict | None, bottleneck: str, critical: str | None) -> str:
    res = report["resources"]["layers"]
    slowest = max(layer["cycles_per_frame"] for layer in report["layers"]) or 1
    head = ("<tr><th class=l>layer</th><th class=l>op</th><th>PE</th><th>SIMD</th><th class=l>types</th>"
            "<th>in/out bits</th><th class=l>cycles a frame</th><th>LUT</th><th>LUTRAM</th><th>FF</th><th>BRAM36</th><th>DSP</th>")
    if synthesis:
        head += "<th>Yosys LUT</th><th>Yosys FF</th><th>Yosys BRAM36</th><th>Yosys DSP</th><th>worst path</th>"
    rows = [head + "</tr>"]
    for layer in report["layers"]:
        name = layer["name"]
        blocks = {b["name"] for b in layer["blocks"]}
        cls = " ".join(c for c, on in (("bn", bottleneck in blocks), ("cp", name == critical)) if on)
        r = res.get(name, {})
        bar = f'<span class=bar style="width:{max(1, round(120 * layer["cycles_per_frame"] / slowest))}px"></span>'
        types = f"{layer['input_dtype']} &rarr; {layer['output_dtype']}"
        cells = (f"<td class=l>{escape(name)}</td><td class=l>{escape(layer['op'])}</td><td>{layer['PE']}</td>"
                 f"<td>{layer['SIMD']}</td><td class=l>{types}</td><td>{layer['in_stream_bits']}/{layer['out_stream_bits']}</td>"
                 f"<td class=l>{layer['cycles_per_frame']:,}{bar}</td><td>{r.get('luts', 0):,}</td><td>{r.get('lutram', 0):,}</td>"
                 f"<td>{r.get('ffs', 0):,}</td><td>{r.get('bram36', 0):g}</td><td>{r.get('dsp', 0):,}</td>")
        if synthesis:
            s = synthesis["layers"].get(name, {})
            path = f"{s['worst_path_ns']:.2f} ns" if s.get("worst_path_ns") else "&mdash;"
            cells += (f"<td>{s.get('LUT', 0):,}</td><td>{s.get('FF', 0):,}</td><td>{s.get('BRAM36_equivalent', 0):g}</td>"
                      f"<td>{s.get('DSP48', 0):,}</td><td class=path>{path}</td>")
        rows.append(f'<tr class="{cls}" data-layer="{escape(name)}">{cells}</tr>')
    return f"<table>{''.join(rows)}</table>"
