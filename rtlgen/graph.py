"""The lowered network: integer layers as plain dataclasses.

Everything here is integer. A `Network` is what the golden model executes, what folding annotates, what
stitching turns into hardware and what report.json describes. Nothing here knows about ONNX nodes except
their names, kept for messages and reports.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ip_cores.elements import ElementFormat


def fmt_name(fmt: ElementFormat) -> str:
    """qonnx-style DataType name of a stream format (BIPOLAR, INT4, UINT8...)."""
    if fmt.kind == "bipolar":
        return "BIPOLAR"
    return f"{'INT' if fmt.kind == 'signed' else 'UINT'}{fmt.width}"


@dataclass
class MVTULayer:
    """Matrix-vector(-threshold) layer: out = count(W @ x >= T) + offset, or W @ x with no activation.

    `weights` is (MH, MW) in stream order: column i multiplies stream element i of the input frame, row c
    produces output channel c. Bipolar inputs/weights are held as -1/+1.
    """

    name: str
    weights: np.ndarray
    in_fmt: ElementFormat
    w_fmt: ElementFormat
    acc_lo: int  # smallest and largest accumulator value over all channels and all inputs in range
    acc_hi: int
    acc_width: int
    thresholds: np.ndarray | None
    out_fmt: ElementFormat
    out_offset: int
    pe: int = 1
    simd: int = 1
    sources: dict = field(default_factory=dict)  # ONNX node names this layer came from, for reports

    op = "MVTU"

    @property
    def mw(self) -> int:
        return self.weights.shape[1]

    @property
    def mh(self) -> int:
        return self.weights.shape[0]

    @property
    def nf(self) -> int:
        return self.mh // self.pe

    @property
    def sf(self) -> int:
        return self.mw // self.simd

    @property
    def cycles(self) -> int:
        """Cycles per frame at II = 1: one (neuron fold, synapse fold) step a cycle."""
        return self.nf * self.sf

    @property
    def in_elems(self) -> int:
        return self.mw

    @property
    def out_elems(self) -> int:
        return self.mh

    @property
    def in_elems_per_word(self) -> int:
        return self.simd

    @property
    def out_elems_per_word(self) -> int:
        return self.pe

    def golden(self, x: np.ndarray) -> np.ndarray:
        """Integer execution on a batch of input frames x (N, MW) -> (N, MH)."""
        acc = np.asarray(x, dtype=np.int64) @ self.weights.T.astype(np.int64)
        if self.thresholds is None:
            return acc
        counts = (acc[:, :, None] >= self.thresholds[None, :, :]).sum(axis=2)
        if self.out_fmt.kind == "bipolar":
            return 2 * counts - 1
        return counts + self.out_offset


@dataclass
class Network:
    """A chain of integer layers plus what the host does around them."""

    name: str
    layers: list[MVTULayer]
    input_fmt: ElementFormat
    output_fmt: ElementFormat

    @property
    def in_elems(self) -> int:
        return self.layers[0].in_elems

    @property
    def out_elems(self) -> int:
        return self.layers[-1].out_elems

    def golden(self, x: np.ndarray) -> np.ndarray:
        """The golden model: integer frames in (N, in_elems), integer frames out (N, out_elems)."""
        for layer in self.layers:
            x = layer.golden(x)
        return x

    def golden_per_layer(self, x: np.ndarray) -> list[np.ndarray]:
        outs = []
        for layer in self.layers:
            x = layer.golden(x)
            outs.append(x)
        return outs
