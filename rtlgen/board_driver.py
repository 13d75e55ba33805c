"""PYNQ driver for an rtlgen core: the package every build writes to `DIR/driver/rtlgen_driver/`.

On a Pynq-Z2 (PYNQ image: numpy, pynq; `pip install onnxruntime` for the host head and tail), with the
bitstream of `DIR/vivado/pynq_z2_bd.tcl` (`rtlgen_demo.bit` and `.hwh` side by side):

    from rtlgen_driver import Accelerator
    acc = Accelerator("rtlgen_demo.bit")
    y = acc.run(x)              # x shaped like the model input, batch axis first; y like the model output

`run` does what `rtlgen run` does, with the board in place of Verilator: the host head (`head.onnx`, the
model's float pre-processing and input quantizer, in onnxruntime) turns x into the integers the core takes,
they are packed into DMA words by `stream_packing` (the very file `rtlgen run` packs the simulator's words
with), each frame goes through the AXI DMA (simple mode: one MM2S transfer a frame, ending with TLAST, and one
S2MM transfer for its output frame), and the host tail (`tail.onnx`) turns the output integers into the model's
output. The core's sticky `error` output (an AXI GPIO, `error_gpio`) is read before and after: it rises when a
frame reached the core with the wrong number of words (see docs/vivado.md, "Framing and the error flag").

This file is copied verbatim into every build and imports nothing of rtlgen: only numpy, pynq (when a board is
used) and onnxruntime (when the host models run).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from .stream_packing import StreamFormat, pack_frames, unpack_frames

__all__ = ["Accelerator", "FramingError", "HostModel", "main"]

HERE = Path(__file__).resolve().parent


class FramingError(RuntimeError):
    """The core's error flag rose during a batch: some frame had the wrong length."""


class HostModel:
    """A host ONNX model (head or tail) in onnxruntime, one frame a call (its batch axis is 1), with graph
    optimizations off so every op rounds as written (the build made it of standard ops, exact in float32)."""

    def __init__(self, path: Path):
        try:
            import onnxruntime as ort
        except ImportError:
            raise SystemExit("rtlgen_driver: the host head and tail need onnxruntime: pip install onnxruntime") from None
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        first = self.session.get_inputs()[0]
        self.input_name, self.input_shape = first.name, [int(d) for d in first.shape]
        self.output_name = self.session.get_outputs()[0].name

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames, dtype=np.float32)
        return np.stack([self.session.run([self.output_name], {self.input_name: f.reshape(self.input_shape)})[0]
                         for f in frames])


class Accelerator:
    """The core on the board: `run` (float in, float out, as the model), `run_integers` (the core's integers),
    `transfer` (one DMA round trip of raw bytes)."""

    def __init__(self, bitfile: str | Path, dma: str = "axi_dma", error_gpio: str = "error_gpio",
                 design: str | Path = HERE / "design.json"):
        from pynq import Overlay, allocate

        self.design = json.loads(Path(design).read_text())
        io = self.design["io"]
        self.in_fmt, self.out_fmt = StreamFormat.of_input(io), StreamFormat.of_output(io)
        self.overlay = Overlay(str(bitfile))
        self.dma = getattr(self.overlay, dma)
        self.error_gpio = getattr(self.overlay, error_gpio, None)
        self._allocate = allocate
        self.in_buffer = allocate(shape=(self.in_fmt.frame_bytes,), dtype=np.uint8)
        self.out_buffer = allocate(shape=(self.out_fmt.frame_bytes,), dtype=np.uint8)
        self._head = self._tail = None
        self.last_frames_per_second = None

    @property
    def error(self) -> bool:
        """The core's sticky error flag (False when the design has no `error_gpio`)."""
        return bool(self.error_gpio.channel1.read() & 1) if self.error_gpio is not None else False

    def transfer(self, frame_bytes: np.ndarray) -> np.ndarray:
        """Send one DMA transfer (TLAST on its last beat) and receive one output frame; returns its bytes.
        A transfer of other than `in_fmt.frame_bytes` bytes is a damaged frame: the core answers it with one
        (garbage) output frame and raises its error flag."""
        frame_bytes = np.asarray(frame_bytes, dtype=np.uint8).reshape(-1)
        buffer = self.in_buffer
        if len(frame_bytes) != len(buffer):
            buffer = self._allocate(shape=(len(frame_bytes),), dtype=np.uint8)
        buffer[:] = frame_bytes
        self.dma.recvchannel.transfer(self.out_buffer)
        self.dma.sendchannel.transfer(buffer)
        self.dma.sendchannel.wait()
        self.dma.recvchannel.wait()
        return np.array(self.out_buffer, dtype=np.uint8)

    def run_integers(self, hw_in: np.ndarray) -> np.ndarray:
        """Integer frames (N, in_elems) through the core; returns (N, out_elems). Raises FramingError if the
        error flag rose during the batch (it cannot for frames packed here; it means a damaged transfer)."""
        packed = pack_frames(hw_in, self.in_fmt)
        before = self.error
        out = np.empty((len(packed), self.out_fmt.frame_bytes), dtype=np.uint8)
        start = time.perf_counter()
        for k, frame in enumerate(packed):
            out[k] = self.transfer(frame)
        seconds = time.perf_counter() - start
        self.last_frames_per_second = len(packed) / seconds if seconds > 0 else float("inf")
        if self.error and not before:
            raise FramingError("the core's error flag rose during this batch: a frame had the wrong length")
        return unpack_frames(out, self.out_fmt)

    def head(self, x: np.ndarray) -> np.ndarray:
        """Model inputs -> the integers the core takes (N, in_elems)."""
        if self._head is None:
            self._head = HostModel(HERE / self.design["host"]["head"])
        k = self._head(x).reshape(len(x), -1)
        if not np.array_equal(k, np.round(k)):
            raise ValueError("the host head gave non-integers: is head.onnx the one built with this core?")
        return np.round(k).astype(np.int64)

    def tail(self, hw_out: np.ndarray) -> np.ndarray:
        """The core's output integers -> the model output (N, ...)."""
        if self._tail is None:
            self._tail = HostModel(HERE / self.design["host"]["tail"])
        y = self._tail(hw_out.astype(np.float32))
        return y.reshape((len(hw_out),) + tuple(self.design["io"]["output_shape"][1:]))

    def run(self, x: np.ndarray) -> np.ndarray:
        """Model inputs (N, *input_shape[1:]) -> model outputs (N, *output_shape[1:])."""
        full = tuple(self.design["io"]["input_shape"])
        shape = full[1:]
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == len(full) + 1 and x.shape[1:] == full:  # per-sample arrays stacked: (N, 1, ...)
            x = x.reshape((len(x),) + shape)
        if x.shape[1:] != shape:
            raise ValueError(f"inputs have shape {x.shape}; expected (N, {', '.join(map(str, shape))})")
        return self.tail(self.run_integers(self.head(x)))


def main(argv: list[str] | None = None) -> int:
    """run_on_board.py --bitfile B --inputs X.npy --out Y.npy"""
    parser = argparse.ArgumentParser(description="Run an rtlgen core on a PYNQ board.")
    parser.add_argument("--bitfile", required=True, help="the bitstream (its .hwh beside it)")
    parser.add_argument("--inputs", required=True, help=".npy of model inputs, batch axis first")
    parser.add_argument("--out", required=True, help=".npy to write the model outputs to")
    args = parser.parse_args(argv)
    try:
        x = np.load(args.inputs, allow_pickle=False)
    except (OSError, ValueError) as exc:
        print(f"run_on_board: cannot read {args.inputs}: {exc}", file=sys.stderr)
        return 2
    acc = Accelerator(args.bitfile)
    try:
        y = acc.run(x)
    except (ValueError, FramingError) as exc:
        print(f"run_on_board: {exc}", file=sys.stderr)
        return 1
    np.save(args.out, y)
    print(f"{len(x)} frames -> {args.out}: {acc.last_frames_per_second:.1f} frames/s through the DMA, "
          f"error flag {int(acc.error)}")
    return 0
