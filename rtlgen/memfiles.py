"""Read-only memory contents (weights, thresholds, requantization tables) as `$readmemh` files beside the Verilog.

Amaranth's Verilog initialises a memory inline (`initial begin weights[0] = 256'h...; ... end`). A Vivado user
wants the contents in files: to diff two builds' weights, to swap them in a bitstream with an `updatemem`-style
flow, to read them. So every table the cores mark as read-only (the `logic_block` / `rom_style` attributes of
ip_cores/memories.py) gets its initial block replaced by `initial $readmemh("<file>.mem", <memory>);` and a file
with one hex word per line, address 0 first. Written memories (FIFOs, line buffers) keep their inline zeros.

Simulators and synthesis tools resolve the file name relative to the Verilog file's folder (Yosys, Vivado)
or to the simulator's working folder (Verilator, Icarus): the harness runs in `ip/hdl`, the cocotb benches copy
the files into their build folder.
"""
from __future__ import annotations

import re

__all__ = ["externalize_rom_contents"]

_MODULE = re.compile(r"^module (\\?\S+)\s*\(")
_DECL = re.compile(r"^\s*reg \[(\d+):0\] (\\?\S+)\s*\[(\d+):0\];\s*$")
_WORD = re.compile(r"^\s*(\\?\S+?)\s*\[(\d+)\] = \d+'([hdb])([0-9a-fA-F]+);\s*$")
_BASES = {"h": 16, "d": 10, "b": 2}  # Yosys writes most words in hex, 32-bit ones sometimes in decimal
_READ_ONLY = ("logic_block", "rom_style")


def _file_stem(module: str, memory: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", f"{module.lstrip(chr(92))}_{memory.lstrip(chr(92))}").strip("_")


def externalize_rom_contents(verilog: str) -> tuple[str, dict[str, str]]:
    """`verilog` with every read-only memory's inline initialisation replaced by `$readmemh`, and the files:
    {file name: contents}. Names are `<module>_<memory>.mem` with anything but letters and digits as `_`."""
    lines = verilog.splitlines(keepends=True)
    out, files = [], {}
    module = ""
    k = 0
    while k < len(lines):
        line = lines[k]
        if (m := _MODULE.match(line)):
            module = m.group(1)
        decl = _DECL.match(line)
        read_only = k > 0 and any(attr in lines[k - 1] for attr in _READ_ONLY)
        if decl and read_only and k + 1 < len(lines) and lines[k + 1].strip() == "initial begin":
            width, name, last = int(decl.group(1)) + 1, decl.group(2), int(decl.group(3))
            words, j = {}, k + 2
            while lines[j].strip() != "end":
                word = _WORD.match(lines[j])
                if word is None or word.group(1) != name:
                    raise ValueError(f"unexpected line in the initialisation of {name}: {lines[j].strip()!r}")
                words[int(word.group(2))] = int(word.group(4), _BASES[word.group(3)])
                j += 1
            digits = -(-width // 4)
            stem = _file_stem(module, name)
            if f"{stem}.mem" in files:
                raise ValueError(f"two read-only memories would share the file {stem}.mem")
            files[f"{stem}.mem"] = "".join(f"{words.get(a, 0):0{digits}x}\n" for a in range(last + 1))
            reference = name + (" " if name.startswith("\\") else "")
            out += [line, f'  initial $readmemh("{stem}.mem", {reference});\n']
            k = j + 1
            continue
        out.append(line)
        k += 1
    return "".join(out), files
