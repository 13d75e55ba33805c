"""A stand-in for the `pynq` package, for testing `DIR/driver/` off the board: the AXI DMA is the build's
compiled Verilator harness.

`Overlay(bitfile)` ignores the bitstream and simulates the build named by the environment variable
RTLGEN_STANDIN_BUILD. Every MM2S transfer is one run of beats with TLAST on its last (as a simple-mode DMA sends
it, whatever its length); each S2MM `wait()` simulates every transfer since the overlay was loaded, from reset
(so the core's sticky error flag is as it would be on the board), and fills the waiting buffer with the next
output frame. `error_gpio.channel1.read()` is the core's `error` after the latest simulation. Quadratic in the
number of frames: for tests of a few dozen frames, not for speed.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from rtlgen.runner import harness_optimisation, load_design
from rtlgen.stream_packing import bytes_to_words
from sim.verilator_harness import CompiledHarness

__all__ = ["Overlay", "allocate"]

BUILD_ENV = "RTLGEN_STANDIN_BUILD"


def allocate(shape, dtype=np.uint8):
    """A DMA buffer: here plain memory."""
    return np.zeros(shape, dtype=dtype)


class _Core:
    """The simulated core: every transfer sent since load, and what the simulation of them gave."""

    def __init__(self, root: Path):
        self.design = load_design(root)
        self.io = self.design.io
        self.harness = CompiledHarness.build(self.design.verilog, self.design.report["top"], root / "sim_build",
                                             opt=harness_optimisation(self.design))
        self.sent: list[bytes] = []
        self.received = 0
        self.error = False

    def output_frame(self) -> bytes:
        """Simulate every transfer so far; the bytes of the next output frame not yet received."""
        words, lasts = [], []
        for transfer in self.sent:
            beats = bytes_to_words(transfer, self.io["s_axis_tdata_bits"])
            words += beats
            lasts += [False] * (len(beats) - 1) + [True]
        per_frame = self.io["out_words_per_frame"]
        result = self.harness.run(words, len(self.sent) * per_frame, self.io["in_words_per_frame"], per_frame,
                                  in_lasts=lasts)
        self.error = result.error_raised
        frame = result.out_words[self.received * per_frame:(self.received + 1) * per_frame]
        self.received += 1
        step = self.io["m_axis_tdata_bits"] // 8
        return b"".join(int(w).to_bytes(step, "little") for w in frame)


class _SendChannel:
    def __init__(self, core: _Core):
        self.core = core

    def transfer(self, buffer) -> None:
        self.core.sent.append(np.asarray(buffer, dtype=np.uint8).tobytes())

    def wait(self) -> None:
        pass


class _RecvChannel:
    def __init__(self, core: _Core):
        self.core, self.buffer = core, None

    def transfer(self, buffer) -> None:
        self.buffer = buffer

    def wait(self) -> None:
        frame = np.frombuffer(self.core.output_frame(), dtype=np.uint8)
        self.buffer[:len(frame)] = frame
        self.buffer = None


class _Dma:
    def __init__(self, core: _Core):
        self.sendchannel, self.recvchannel = _SendChannel(core), _RecvChannel(core)


class _GpioChannel:
    def __init__(self, core: _Core):
        self.core = core

    def read(self) -> int:
        return int(self.core.error)


class _Gpio:
    def __init__(self, core: _Core):
        self.channel1 = _GpioChannel(core)


class Overlay:
    """The block design of DIR/vivado/pynq_z2_bd.tcl: `axi_dma` and `error_gpio`."""

    def __init__(self, bitfile: str):
        root = os.environ.get(BUILD_ENV)
        if not root:
            raise RuntimeError(f"stand-in pynq: set {BUILD_ENV} to the build folder to simulate")
        core = _Core(Path(root))
        self.axi_dma, self.error_gpio = _Dma(core), _Gpio(core)
        self.bitfile_name = bitfile
