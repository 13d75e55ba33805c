"""`rtlgen build`: model -> checked, lowered, folded network -> Verilog, host models, IP folder, report.

Everything is written into a temporary folder beside the output folder and moved into place only when the
whole build succeeded, so a failed build never leaves a folder that looks finished.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import onnx

from . import __version__
from .errors import RtlgenError
from .cost import PARTS, TOP_LEVEL_RESOURCES, Budget
from .folding import FoldingChoice, apply_folding, default_folding, folding_spec, load_folding, parse_folding
from .frontend import InputFormat, LoweredModel, load_model, lower_model, tensor_shape
from .argmax import select_label_in_hardware
from .folding import PE_ONLY
from .graph import AddLayer, DepthwiseLayer, LabelSelectLayer, MaxPoolLayer, MVTULayer, fmt_name
from .driver_files import write_driver
from .host import build_head, build_tail, portable, tail_input_shape
from .portable_onnx import is_standard
from .memfiles import externalize_rom_contents
from .progress import step
from .report_html import write_report_html
from .testbench import write_testbench
from .stitch import DEFAULT_FIFO_DEPTH, generate_verilog, io_words, residual_fifos, stream_widths
from .timing import estimate
from ip_cores.resources import Resources

DEFAULT_MODEL = Path(__file__).parent / "models" / "default_digits_mlp.onnx"


FIFO_SIZINGS = ("rule", "analysed")


@dataclass
class BuildOptions:
    folding_file: Path | None = None
    folding_spec: dict | None = None  # the same as a file's content (for scripts and tests)
    input_format: InputFormat | None = None
    fifo_depth: int | None = DEFAULT_FIFO_DEPTH
    force: bool = False
    top_name: str | None = None
    part: str = "xc7z020clg400-1"
    clock_ns: float = 10.0
    vendor: str = "rtlgen.org"
    library: str = "rtlgen"
    version: str = "1.0"
    package_ip: bool = True
    input_tlast: bool = True  # False: no s_axis_tlast, the input is not framed (--ignore-input-tlast)
    synth: bool = False  # Yosys xc7 synthesis per stage and of the top into report["synthesis"] (rtlgen.synth)
    # folding search (rtlgen/fold_search.py): a cycles-per-frame target and/or resource limits; the part's
    # capacities are the budget where no explicit limit replaces them
    target_cycles: int | None = None
    fifo_sizing: str = "analysed"  # from each block's word schedule (rtlgen.timing); "rule": a frame before dense
    #                                 layers, two rows before windows and pools
    max_resources: dict = field(default_factory=dict)  # {"luts", "ffs", "bram36", "dsp"} -> limit
    latency: bool = False  # --latency: every layer unrolled into one pipeline, a frame a cycle (ip_cores/unrolled.py)
    argmax_in_hardware: bool = False  # the model's TopK(1)/ArgMax as a label-select core (rtlgen/argmax.py)

    @property
    def searching(self) -> bool:
        return self.target_cycles is not None or bool(self.max_resources)

    def budget(self) -> Budget:
        part = PARTS.get(self.part)
        base = part or Budget(label="")
        limits = {k: v for k, v in self.max_resources.items() if v is not None}
        explicit = ", ".join(f"--max-{k.replace('36', '')} {v:g}" for k, v in limits.items())
        label = " and ".join(x for x in (base.label, explicit) if x) or "no budget"
        return replace(base, **limits, label=label)


def sanitize_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", text)
    if not name or not name[0].isalpha():
        name = "m_" + name
    return name.lower()


def _check_output_dir(out_dir: Path, force: bool) -> None:
    """Refuse an output path that cannot become the build's folder, before any work is done.

    Missing parent folders are fine (they are created like `mkdir -p` once the build succeeded); the nearest
    existing ancestor must be a writable folder.
    """
    if out_dir.exists():
        if not out_dir.is_dir():
            raise RtlgenError(f"output path {out_dir} exists and is not a folder; choose another -o")
        if any(out_dir.iterdir()) and not force:
            raise RtlgenError(f"output folder {out_dir} exists and is not empty; pass --force to replace it or choose another -o")
    ancestor = out_dir.resolve().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise RtlgenError(f"cannot create output folder {out_dir}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise RtlgenError(f"cannot write output folder {out_dir}: {ancestor} is not writable")


def _make_parents(out_dir: Path) -> list[Path]:
    """Create the missing parents of `out_dir` (outermost first); returns them so a failed build can remove them."""
    missing = []
    parent = out_dir.resolve().parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    missing.reverse()
    try:
        for folder in missing:
            folder.mkdir()
    except OSError as exc:
        _remove_empty(missing)
        raise RtlgenError(f"cannot create output folder {out_dir}: {exc.strerror or exc}") from None
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            pass


def _activation(layer) -> str:
    if layer.requant is not None:
        rq = layer.requant
        return f"requantize: clip({rq.rounding}((acc*mult + offset) / 2^{rq.shift}), {rq.lo}, {rq.hi})"
    return "thresholds" if layer.thresholds is not None else "none (accumulator out)"




def _resource_report(report: dict, stages) -> dict:
    """The analytic estimate of every stage (each core's `resources()`), per layer (its blocks plus the FIFO and
    width converters in front of it, as `rtlgen.synth` groups them) and for the design: milliseconds, no
    synthesis; `--synth` measures."""
    from .synth import layer_of_stages
    per_stage = {s.name: s.model.resources() for s in stages}
    owner = layer_of_stages(report)
    layers = {}
    for stage in stages:
        if stage.kind == "unrolled":  # latency mode: one stage holds every layer, which knows each one's share
            for layer, res in zip(stage.layer.layers, stage.model.layer_resources()):
                layers[layer.name] = res
            continue
        layers[owner[stage.name]] = layers.get(owner[stage.name], Resources()) + per_stage[stage.name]
    total = sum(per_stage.values(), TOP_LEVEL_RESOURCES)
    return {"model": "analytic estimate of Yosys xc7 counts from each core's structure (ip_cores/resources.py); "
                     "bench/bench_hardware.py compares it with synthesis",
            "stages": {n: r.as_dict() for n, r in per_stage.items()},
            "layers": {n: r.as_dict() for n, r in layers.items()}, "total": total.as_dict()}


def _layer_report(layer, stages) -> dict:
    """One layer's entry in report.json: its shape, folding, formats, memories and cycles per frame."""
    blocks = [{"kind": s.kind, "name": s.name, "cycles_per_frame": s.cycles()} for s in stages if s.layer is layer]
    common = {"name": layer.name, "op": layer.op, "PE": layer.pe, "SIMD": layer.simd,
              "input_dtype": fmt_name(layer.in_fmt), "output_dtype": fmt_name(layer.out_fmt),
              "in_stream_bits": layer.in_elems_per_word * layer.in_fmt.width,
              "out_stream_bits": layer.out_elems_per_word * layer.out_fmt.width,
              "in_elems": layer.in_elems, "out_elems": layer.out_elems,
              "cycles_per_frame": layer.cycles, "blocks": blocks, "sources": layer.sources}
    if isinstance(layer, MaxPoolLayer):
        return {**common, "pool": layer.pool.describe()}
    if isinstance(layer, LabelSelectLayer):
        return {**common, "label_select": {"channels": layer.channels, "ties": "last index" if layer.last_on_tie
                                           else "first index"}}
    entry = {
        **common, "MW": layer.mw, "MH": layer.mh, "NF": layer.nf, "SF": layer.sf,
        "weight_dtype": fmt_name(layer.w_fmt),
        "accumulator_bits": layer.acc_width, "accumulator_range": [layer.acc_lo, layer.acc_hi],
        "activation": _activation(layer),
        "thresholds_per_channel": 0 if layer.thresholds is None else int(layer.thresholds.shape[1]),
        "weight_memory_bits": int(layer.weights.size) * layer.w_fmt.width,
        "threshold_memory_bits": 0 if layer.thresholds is None else int(layer.thresholds.size) * layer.acc_width,
        "multipliers": layer.pe * (1 if isinstance(layer, PE_ONLY) else layer.simd),
        "xnor_popcount": layer.in_fmt.kind == "bipolar" and layer.w_fmt.kind == "bipolar",
    }
    unrolled = next((s for s in stages if s.kind == "unrolled"), None)
    if unrolled is not None:
        core = unrolled.model
        index = unrolled.layer.layers.index(layer)
        entry["implementation"] = {"unrolled": True, "multipliers": "constant weights, canonical signed digits in a "
                                   "bit heap (no DSP, no weight memory)",
                                   "activation": core.specs[index].activation()[0],
                                   "pipeline_registers": core.layer_registers[index],
                                   "counter_levels": core.layer_levels[index]}
        return entry
    entry["implementation"] = next(s.implementation() for s in stages if s.layer is layer and
                                   s.implementation() is not None)
    if isinstance(layer, AddLayer):
        entry["residual_add"] = {"inputs": layer.sources.get("add_inputs"), "alignment_multipliers":
                                 layer.sources.get("alignment"), "input_dtypes": [fmt_name(f) for f in layer.input_fmts]}
    if layer.conv is not None:
        entry["conv"] = {**layer.conv.describe(), "depthwise": isinstance(layer, DepthwiseLayer)}
        if "average_pool" in layer.sources:
            entry["conv"]["average_pool"] = layer.sources["average_pool"]
        swg = next((s for s in stages if s.layer is layer and s.kind == "swg"), None)
        if swg is not None:
            core = swg.model
            entry["sliding_window"] = {"buffer_words": core.buffer_depth,
                                       "start_up_input_words": core.initial_latency(),
                                       "cycles_per_frame": core.cycles_per_frame()}
    return entry


def build(model_path: str | Path | None, out_dir: str | Path, options: BuildOptions | None = None) -> dict:
    """Build a model into `out_dir`; returns the report (also written as out_dir/report.json)."""
    options = options or BuildOptions()
    start = time.monotonic()
    out_dir = Path(out_dir)
    model_path = Path(model_path) if model_path is not None else DEFAULT_MODEL
    _check_output_dir(out_dir, options.force)
    if options.fifo_depth is not None and options.fifo_depth < 1:
        raise RtlgenError(f"--fifo-depth {options.fifo_depth}: must be at least 1")
    if options.fifo_sizing not in FIFO_SIZINGS:
        raise RtlgenError(f"--fifo-sizing {options.fifo_sizing}: use one of {', '.join(FIFO_SIZINGS)}")
    if options.synth:
        from .synth import require_yosys
        require_yosys()

    model = load_model(model_path)
    top_name = options.top_name or sanitize_name(model_path.stem)
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", top_name):
        raise RtlgenError(f"--name {top_name}: must be a Verilog identifier (letters, digits, _; starting with a letter)")
    lowered = lower_model(model, input_format=options.input_format, name=top_name)
    if options.argmax_in_hardware:
        if options.latency:
            raise RtlgenError("--argmax-in-hardware and --latency exclude each other: latency mode unrolls dense layers only")
        lowered = select_label_in_hardware(lowered)
    network = lowered.network
    if options.searching and (options.folding_file is not None or options.folding_spec is not None):
        raise RtlgenError("--folding and a folding target or budget (--target-cycles, --target-fps, --max-*) exclude "
                          "each other; give one")
    if options.latency:
        folding, folding_note = _latency_folding(network, options)
    elif options.searching:
        from .fold_search import search_folding
        with step("folding search"):
            found = search_folding(network, options.target_cycles, options.budget(), options.fifo_depth, options.fifo_sizing)
        folding, folding_note = found.folding, found.note
    elif options.folding_file is not None:
        folding, folding_note = load_folding(options.folding_file, network)
    elif options.folding_spec is not None:
        folding, folding_note = parse_folding(options.folding_spec, network, "folding")
    else:
        folding, folding_note = default_folding(network)
    network = apply_folding(network, folding)
    if options.latency:  # one pipeline with registers placed for the clock
        network = replace(network, unrolled_clock_ns=options.clock_ns)
    lowered = replace(lowered, network=network)

    fifo_depths, fifo_report = size_fifos(network, options)
    verilog, stages = generate_verilog(network, top_name, options.fifo_depth, input_tlast=options.input_tlast,
                                       fifo_depths=fifo_depths)
    verilog, memory_files = externalize_rom_contents(verilog)
    timing = estimate(stages)
    head, tail = portable(build_head(lowered)), portable(build_tail(lowered))

    created = _make_parents(out_dir)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.resolve().parent))
    except OSError as exc:
        _remove_empty(created)
        raise RtlgenError(f"cannot write output folder {out_dir}: {exc.strerror or exc}") from None
    try:
        (tmp / "ip" / "hdl").mkdir(parents=True)
        (tmp / "host").mkdir()
        (tmp / "ip" / "hdl" / f"{top_name}.v").write_text(verilog)
        for file_name, contents in memory_files.items():
            (tmp / "ip" / "hdl" / file_name).write_text(contents)
        onnx.save(head, str(tmp / "host" / "head.onnx"))
        onnx.save(tail, str(tmp / "host" / "tail.onnx"))
        report = _report(model_path, lowered, stages, timing, folding_note, top_name, options)
        report["resources"] = _resource_report(report, stages)
        report["memory_files"] = memory_manifest(memory_files, top_name, report)
        report["fifo_sizing"] = fifo_report
        report["host"]["runtime"] = "onnxruntime" if is_standard(head) and is_standard(tail) else "qonnx"
        report["notes"] = report["notes"] + write_driver(tmp, report, head, tail)
        with step("testbench: golden frames"):
            write_testbench(tmp / "sim", network, report, options.clock_ns, bool(_INSTANTIATES_LUTS.search(verilog)))
        if options.package_ip:
            _package_ip(tmp, top_name, options, model_path, sorted(memory_files))
        report["build_seconds"] = round(time.monotonic() - start, 3)
        if options.synth:
            from .synth import synthesize_build
            report["synthesis"] = synthesize_build(tmp, top_name, report)
        (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        (tmp / "folding.json").write_text(json.dumps(folding_spec(network), indent=2) + "\n")
        write_report_html(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(created)
        raise RtlgenError(f"cannot write output folder {out_dir}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(created)
        raise
    return report


def _latency_folding(network, options: BuildOptions) -> tuple[dict, str]:
    """Latency mode: every layer fully unrolled (PE = MH, SIMD = MW) in one pipeline whose registers are placed
    for --clock-ns; dense networks only, and no folding of its own."""
    if options.searching or options.folding_file is not None or options.folding_spec is not None:
        raise RtlgenError("--latency unrolls every layer; it takes no --folding, --target-* or --max-* (give one)")
    for layer in network.layers:
        if not isinstance(layer, MVTULayer) or layer.conv is not None:
            raise RtlgenError(f"--latency: layer {layer.name} is a {layer.op}; latency mode unrolls dense (MatMul/Gemm) "
                              "layers only: build without --latency")
    folding = {layer.name: FoldingChoice(layer.mh, layer.mw) for layer in network.layers}
    return folding, (f"latency mode: every layer unrolled (PE = MH, SIMD = MW) into one pipeline, a frame a cycle, "
                     f"registers placed for a {options.clock_ns:g} ns clock")


def size_fifos(network, options: BuildOptions) -> tuple[dict[str, int] | None, dict]:
    """FIFO depths by `options.fifo_sizing` and what they cost beside the rule's (bits, seconds)."""
    from .stitch import plan_stages
    from .timing import sized_stages

    start = time.monotonic()
    sized, depths = sized_stages(network, options.fifo_depth, options.fifo_sizing)
    bits = lambda stages: sum(s.depth * s.in_elems_per_word * s.elem_width_in for s in stages if s.kind == "fifo")  # noqa: E731
    method = options.fifo_sizing if options.fifo_depth is None else f"--fifo-depth {options.fifo_depth}"
    return depths, {"method": method, "bits": bits(sized), "rule_bits": bits(plan_stages(network, options.fifo_depth)),
                    "skip_path_bits": bits(residual_fifos(sized)),
                    "depths": {s.name: s.depth for s in sized if s.kind == "fifo"},
                    "seconds": round(time.monotonic() - start, 3)}


def memory_manifest(memory_files: dict[str, str], top_name: str, report: dict) -> list[dict]:
    """Each read-only memory file with the stage and layer it belongs to and the sha256 of its contents, so
    `rtlgen verify` can say which layer's memories changed after the build when the hardware disagrees."""
    from .synth import layer_of_stages

    owner = layer_of_stages(report)
    stage_of_file = re.compile(rf"^{re.escape(top_name)}_stage(\d+)_")
    manifest = []
    for name in sorted(memory_files):
        m = stage_of_file.match(name)
        stage = report["stages"][int(m.group(1))]["name"] if m and int(m.group(1)) < len(report["stages"]) else None
        manifest.append({"file": name, "stage": stage, "layer": owner.get(stage),
                         "sha256": hashlib.sha256(memory_files[name].encode()).hexdigest()})
    return manifest


_INSTANTIATES_LUTS = re.compile(r"^\s*LUT[1-6]\s*#\(", re.M)


def _package_ip(tmp: Path, top_name: str, options: BuildOptions, model_path: Path, memory_files: list[str]) -> None:
    """The Vivado IP folder, with the port list read back from the emitted Verilog (never a hand-kept list)."""
    from sim.toolchain import XILINX_LUT_MODELS

    from .ipxact import IpOptions, write_ip_package
    from .verilog_ports import VerilogPortError, read_verilog_ports

    try:
        verilog = tmp / "ip" / "hdl" / f"{top_name}.v"
        ports = read_verilog_ports(verilog, top_name)
        ip_options = IpOptions(vendor=options.vendor, library=options.library, name=top_name, version=options.version,
                               part=options.part, clock_ns=options.clock_ns)
        sim_models = []
        if _INSTANTIATES_LUTS.search(verilog.read_text()):  # latency mode's counters (ip_cores/bit_heap.py)
            (tmp / "ip" / "sim").mkdir()
            shutil.copyfile(XILINX_LUT_MODELS, tmp / "ip" / "sim" / XILINX_LUT_MODELS.name)
            sim_models = [f"sim/{XILINX_LUT_MODELS.name}"]
        write_ip_package(tmp, top_name=top_name, ports=ports, hdl_files=[f"{top_name}.v", *memory_files],
                         options=ip_options, sim_models=sim_models,
                         description=f"rtlgen streaming accelerator for {model_path.name}")
    except VerilogPortError as exc:
        raise RtlgenError(f"could not read the ports of the generated Verilog: {exc}") from None
    except ValueError as exc:
        raise RtlgenError(str(exc)) from None


def _input_names(network, index: int) -> list[str]:
    """The layers (or "input") a layer reads, in input order."""
    return [network.layers[p].name if p >= 0 else "input" for p in network.producers(index)]


def _report(model_path: Path, lowered: LoweredModel, stages, timing, folding_note: str, top_name: str,
            options: BuildOptions) -> dict:
    network = lowered.network
    first, last = network.layers[0], network.layers[-1]
    in_w, out_w = stream_widths(network)
    in_words, out_words = io_words(network)
    from ip_cores.axis_top import axis_width

    out_shape = tensor_shape(lowered.model, lowered.output_name)
    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()
    return {
        "rtlgen_version": __version__,
        "model": {"path": str(model_path), "name": model_path.name, "sha256": digest},
        "top": top_name,
        "verilog": [f"ip/hdl/{top_name}.v"],
        "folding": folding_note,
        "layers": [{**_layer_report(layer, stages), "inputs": _input_names(network, index)}
                   for index, layer in enumerate(network.layers)],
        "stages": [{"kind": s.kind, "name": s.name, "title": s.describe()[0], "detail": s.describe()[1],
                    "in_elems_per_word": s.in_elems_per_word,
                    "out_elems_per_word": s.out_elems_per_word, **({"depth": s.depth} if s.kind == "fifo" else {}),
                    **({"outputs": s.outputs} if s.kind == "dup" else {}),
                    # latency mode: cycles from a frame's input handshake to its output word (the registers on
                    # the path, what HLS calls latency; the estimate's latency also counts the first cycle)
                    **({"pipeline_cycles": s.model.latency} if s.kind == "unrolled" else {}),
                    "feeds": [name for name, _ in s.feeds]}
                   for s in stages],
        "estimate": {
            "ii_cycles": timing.ii_cycles, "latency_cycles": timing.latency_cycles, "bottleneck": timing.bottleneck,
            "clock_ns": options.clock_ns,
            "frames_per_second_at_clock": round(1e9 / (options.clock_ns * timing.ii_cycles), 1),
            "model": "event model (rtlgen/timing.py): MVTU/VVU one step a cycle, word out after the core's pipeline latency; sliding window "
                     "cycle model with start-up; VVU/max-pool one word a cycle; FIFO latency 1; input always valid, output always ready",
        },
        "io": {
            "input_name": lowered.input_name, "input_shape": list(lowered.input_shape),
            "hw_in_shape": list(lowered.hw_in_shape),
            "input_dtype": fmt_name(network.input_fmt), "in_elems": first.in_elems,
            "in_elems_per_word": first.in_elems_per_word, "in_words_per_frame": in_words,
            "in_stream_bits": in_w, "s_axis_tdata_bits": axis_width(in_w),
            "output_name": lowered.output_name, "output_shape": list(out_shape) if out_shape else None,
            "output_dtype": fmt_name(network.output_fmt), "out_elems": last.out_elems,
            "out_elems_per_word": last.out_elems_per_word, "out_words_per_frame": out_words,
            "out_stream_bits": out_w, "m_axis_tdata_bits": axis_width(out_w),
            "input_tlast": options.input_tlast,
            # a DMA buffer of one frame: every word zero-padded to whole TDATA bytes, least significant byte first
            "in_frame_bytes": in_words * axis_width(in_w) // 8, "out_frame_bytes": out_words * axis_width(out_w) // 8,
            "tail_input_shape": list(tail_input_shape(lowered)),
            "input_format": None if lowered.input_format is None else
            {"dtype": lowered.input_format.dtype, "scale": lowered.input_format.scale},
            "argmax_in_hardware": options.argmax_in_hardware,
        },
        "host": {"head": "host/head.onnx", "tail": "host/tail.onnx"},
        "notes": lowered.notes,
    }
