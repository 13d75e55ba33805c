"""`DIR/driver/`: the PYNQ driver every build writes (rtlgen/board_driver.py and rtlgen/stream_packing.py,
copied verbatim, with the design's stream formats and its host models)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx

from .portable_onnx import is_standard

PACKAGE = "rtlgen_driver"

RUN_ON_BOARD = '''#!/usr/bin/env python3
"""Run the core on a PYNQ board: python3 run_on_board.py --bitfile rtlgen_demo.bit --inputs X.npy --out Y.npy"""
import sys

from rtlgen_driver import main

sys.exit(main())
'''


def write_driver(out_dir: Path, report: dict, head: onnx.ModelProto, tail: onnx.ModelProto) -> list[str]:
    """Write `out_dir/driver/`; returns notes for the report (a host model the board cannot run alone)."""
    here = Path(__file__).resolve().parent
    package = out_dir / "driver" / PACKAGE
    package.mkdir(parents=True)
    shutil.copyfile(here / "board_driver.py", package / "__init__.py")
    shutil.copyfile(here / "stream_packing.py", package / "stream_packing.py")
    onnx.save(head, str(package / "head.onnx"))
    onnx.save(tail, str(package / "tail.onnx"))
    design = {"top": report["top"], "io": report["io"], "estimate": report["estimate"],
              "host": {"head": "head.onnx", "tail": "tail.onnx"}}
    (package / "design.json").write_text(json.dumps(design, indent=2) + "\n")
    (out_dir / "driver" / "run_on_board.py").write_text(RUN_ON_BOARD)
    custom = [name for name, model in (("head", head), ("tail", tail)) if not is_standard(model)]
    if custom:
        return [f"driver: the host {' and '.join(custom)} keep{'s' * (len(custom) == 1)} qonnx custom ops "
                "(no standard ONNX form); onnxruntime on the board cannot run them"]
    return []
