"""Export the small QONNX MLPs that rtlgen's tests compile.

Needs the ``export`` extra (torch, brevitas, onnxoptimizer); the tests themselves
only read the files this writes. Run from the repository root:

    OMP_NUM_THREADS=1 python tests/models/export_test_models.py [--only NAME ...]

For every model NAME it writes, next to this script:

* ``NAME.onnx``   : Brevitas ``export_qonnx`` output, cleaned with qonnx ``cleanup_model``
  (and stripped of the exporter's per-node debug metadata)
* ``NAME_in.npy`` : 16 float32 inputs, shape (16, *model input shape), i.e. (16, 1, F);
  ``NAME_in.npy[i]`` is one model input. A few values lie outside the input
  quantizer's range to exercise clipping.
* ``NAME_out.npy``: qonnx ``execute_onnx`` outputs of the cleaned model, run one
  sample at a time and stacked: shape (16, 1, K), float32.

Each model is trained for a few hundred steps on a synthetic task (a random
teacher MLP labels Gaussian/uniform inputs) so that activation scales and
BatchNorm statistics are realistic rather than degenerate. Everything is
seeded; one CPU thread.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
N_SAMPLES = 16
TRAIN_STEPS = 300
BATCH = 64


@dataclass
class Spec:
    name: str
    build: Callable  # () -> torch.nn.Module
    in_features: int
    n_classes: int
    # Training input distribution: "unit" = U(0, 1), "normal" = N(0, 1), "pm1" = U(-1, 1).
    dist: str
    seed: int
    description: str


# --------------------------------------------------------------------------- models


def m_w4a4_perchannel_bias():
    """(a) W4A4, per-channel weight scales, float biases, ReLU."""
    import torch.nn as nn
    from brevitas.nn import QuantIdentity, QuantLinear, QuantReLU
    from brevitas.quant import Int8ActPerTensorFloat, Int8WeightPerChannelFloat

    def lin(i, o):
        return QuantLinear(i, o, bias=True, weight_quant=Int8WeightPerChannelFloat, weight_bit_width=4)

    return nn.Sequential(
        QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=4, return_quant_tensor=True),
        lin(16, 24),
        QuantReLU(bit_width=4, return_quant_tensor=True),
        lin(24, 16),
        QuantReLU(bit_width=4, return_quant_tensor=True),
        lin(16, 8),
    )


def m_w8a8_signed_narrow():
    """(b) W8A8, signed activations (QuantHardTanh and a plain signed QuantIdentity),
    narrow-range weights, power-of-two (fixed-point) scales everywhere."""
    import torch.nn as nn
    from brevitas.nn import QuantHardTanh, QuantIdentity, QuantLinear
    from brevitas.quant import Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint

    def lin(i, o, bias):
        return QuantLinear(i, o, bias=bias, weight_quant=Int8WeightPerTensorFixedPoint, weight_bit_width=8)

    return nn.Sequential(
        QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=8, return_quant_tensor=True),
        lin(20, 16, bias=False),
        QuantHardTanh(
            act_quant=Int8ActPerTensorFixedPoint,
            bit_width=8,
            min_val=-1.0,
            max_val=1.0,
            return_quant_tensor=True,
        ),
        lin(16, 16, bias=True),
        # No nonlinearity: a signed requantization straight after the linear layer.
        QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=8, return_quant_tensor=True),
        lin(16, 10, bias=False),
    )


def m_w2a2_bn():
    """(c) W2A2 (2-bit narrow weights = ternary {-1,0,1}*s), BatchNorm1d, learned
    float (non-power-of-two) scales."""
    import torch.nn as nn
    from brevitas.nn import QuantIdentity, QuantLinear, QuantReLU
    from brevitas.quant import Int8ActPerTensorFloat, Int8WeightPerTensorFloat

    def lin(i, o):
        return QuantLinear(i, o, bias=False, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=2)

    return nn.Sequential(
        QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=2, return_quant_tensor=True),
        lin(12, 20),
        nn.BatchNorm1d(20),
        QuantReLU(bit_width=2, return_quant_tensor=True),
        lin(20, 10),
        nn.BatchNorm1d(10),
        QuantReLU(bit_width=2, return_quant_tensor=True),
        lin(10, 4),
    )


def m_w1a1_bipolar():
    """(d) W1A1: bipolar (+-1) input and hidden activations, binary weights
    (BipolarQuant in QONNX), BatchNorm1d before each sign activation."""
    import torch.nn as nn
    from brevitas.nn import QuantIdentity, QuantLinear
    from brevitas.quant import SignedBinaryActPerTensorConst, SignedBinaryWeightPerTensorConst

    def lin(i, o):
        return QuantLinear(i, o, bias=False, weight_quant=SignedBinaryWeightPerTensorConst)

    def sign():
        return QuantIdentity(act_quant=SignedBinaryActPerTensorConst, return_quant_tensor=True)

    return nn.Sequential(
        sign(),
        lin(24, 32),
        nn.BatchNorm1d(32),
        sign(),
        lin(32, 16),
        nn.BatchNorm1d(16),
        sign(),
        lin(16, 6),
    )


def m_mixed_357_u8in():
    """(e) Mixed bit widths per layer: uint8 input; weights 3/5/7 bits; ReLU
    activations 5/7 bits; odd layer widths; int16-quantized bias on layer 1 (float
    biases elsewhere); per-channel scales on layer 2."""
    import torch.nn as nn
    from brevitas.nn import QuantIdentity, QuantLinear, QuantReLU
    from brevitas.quant import (
        Int8WeightPerChannelFloat,
        Int8WeightPerTensorFloat,
        Int16Bias,
        Uint8ActPerTensorFloat,
    )

    return nn.Sequential(
        QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=8, return_quant_tensor=True),
        # Integer bias: exported as a 16-bit Quant node with scale = input scale * weight scale.
        QuantLinear(
            10, 13, bias=True, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=3, bias_quant=Int16Bias
        ),
        QuantReLU(bit_width=5, return_quant_tensor=True),
        QuantLinear(13, 7, bias=True, weight_quant=Int8WeightPerChannelFloat, weight_bit_width=5),
        QuantReLU(bit_width=7, return_quant_tensor=True),
        QuantLinear(7, 3, bias=True, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=7),
    )


def m_quant_output():
    """(f) Ends on a quantizer: the last linear layer is followed by a signed
    8-bit output QuantIdentity."""
    import torch.nn as nn
    from brevitas.nn import QuantIdentity, QuantLinear, QuantReLU
    from brevitas.quant import Int8ActPerTensorFloat, Int8WeightPerTensorFloat, Uint8ActPerTensorFloat

    return nn.Sequential(
        QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=4, return_quant_tensor=True),
        QuantLinear(16, 12, bias=True, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=4),
        QuantReLU(bit_width=3, return_quant_tensor=True),
        QuantLinear(12, 5, bias=True, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=4),
        QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=8, return_quant_tensor=False),
    )


SPECS = [
    Spec("w4a4_perchannel_bias", m_w4a4_perchannel_bias, 16, 8, "normal", 101,
         "W4A4, int4 signed input, per-channel weight scales, float bias, ReLU"),
    Spec("w8a8_signed_narrow", m_w8a8_signed_narrow, 20, 10, "normal", 102,
         "W8A8 signed (HardTanh + identity requant), narrow weights, power-of-two scales"),
    Spec("w2a2_bn", m_w2a2_bn, 12, 4, "normal", 103,
         "W2A2 (ternary weights), BatchNorm1d, non-power-of-two scales"),
    Spec("w1a1_bipolar", m_w1a1_bipolar, 24, 6, "pm1", 104,
         "W1A1 bipolar: BipolarQuant weights and activations, BatchNorm1d"),
    Spec("mixed_357_u8in", m_mixed_357_u8in, 10, 3, "unit", 105,
         "mixed 3/5/7-bit weights, 5/7-bit activations, uint8 input, odd widths, int16 bias"),
    Spec("quant_output", m_quant_output, 16, 5, "unit", 106,
         "network ends on an int8 output quantizer"),
]


# --------------------------------------------------------------------------- pipeline


def sample(dist, n, f, rng):
    if dist == "unit":
        return rng.random((n, f), dtype=np.float32)
    if dist == "pm1":
        return (rng.random((n, f), dtype=np.float32) * 2 - 1).astype(np.float32)
    return rng.standard_normal((n, f), dtype=np.float32)


def teacher_labels(x, n_classes, rng):
    w1 = rng.standard_normal((x.shape[1], 32)).astype(np.float32)
    w2 = rng.standard_normal((32, n_classes)).astype(np.float32)
    h = np.maximum(x @ w1 - np.median(x @ w1, axis=0), 0)
    return (h @ w2).argmax(1).astype(np.int64)


def train(model, spec, rng):
    import torch
    import torch.nn as nn

    x = sample(spec.dist, 2048, spec.in_features, rng)
    y = teacher_labels(x, spec.n_classes, rng)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    g = torch.Generator().manual_seed(spec.seed)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(TRAIN_STEPS):
        idx = torch.randint(0, len(xt), (BATCH,), generator=g)
        opt.zero_grad()
        out = model(xt[idx])
        out = out.value if hasattr(out, "value") else out
        loss_fn(out, yt[idx]).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        out = model(xt)
        out = out.value if hasattr(out, "value") else out
        acc = float((out.argmax(1) == yt).float().mean())
    return acc


def strip_export_metadata(model_proto):
    """Drop the dynamo exporter's per-node debug metadata (FX text, stack traces
    with absolute local paths). Graph semantics are untouched."""
    g = model_proto.graph
    for n in g.node:
        del n.metadata_props[:]
        n.doc_string = ""
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        del vi.metadata_props[:]
        vi.doc_string = ""
    for t in g.initializer:
        del t.metadata_props[:]
        t.doc_string = ""
    del g.metadata_props[:]
    del model_proto.metadata_props[:]
    g.doc_string = ""
    model_proto.doc_string = ""


def export_clean(model, in_features, path: Path):
    import torch
    from brevitas.export import export_qonnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    # The raw export goes to a scratch dir: the dynamo exporter may write an
    # external-data sidecar (<file>.data) next to it.
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        export_qonnx(model, args=torch.zeros(1, in_features), export_path=str(raw))
        m = cleanup_model(ModelWrapper(str(raw)))  # onnx.load pulls external data in
    strip_export_metadata(m.model)
    m.save(str(path))
    return ModelWrapper(str(path))


def input_range(mw):
    """(lo, hi) of the first (input) quantizer, read from the cleaned graph."""
    iname = mw.graph.input[0].name
    q = mw.find_consumer(iname)
    if q.op_type == "BipolarQuant":
        s = float(mw.get_initializer(q.input[1]).reshape(-1)[0])
        return -s, s
    assert q.op_type == "Quant", q.op_type
    attrs = {a.name: a.i for a in q.attribute if a.name in ("signed", "narrow")}
    s = float(mw.get_initializer(q.input[1]).reshape(-1)[0])
    z = float(mw.get_initializer(q.input[2]).reshape(-1)[0])
    b = int(mw.get_initializer(q.input[3]).reshape(-1)[0])
    if attrs.get("signed", 1):
        qmin = -(2 ** (b - 1)) + (1 if attrs.get("narrow", 0) else 0)
        qmax = 2 ** (b - 1) - 1
    else:
        qmin, qmax = 0, 2**b - 1 - (1 if attrs.get("narrow", 0) else 0)
    return (qmin - z) * s, (qmax - z) * s


def make_inputs(mw, n, rng):
    """Uniform over the input quantizer's range widened by 30 % on each side, so
    roughly a third of the values clip. Bipolar inputs: N(0, 1) (sign only)."""
    iname = mw.graph.input[0].name
    shape = [int(d) for d in mw.get_tensor_shape(iname)]
    lo, hi = input_range(mw)
    span = hi - lo
    x = rng.uniform(lo - 0.3 * span, hi + 0.3 * span, size=[n] + shape).astype(np.float32)
    # Make sure the extremes are hit exactly, plus a zero.
    flat = x.reshape(n, -1)
    flat[0, 0], flat[0, 1], flat[0, 2] = lo, hi, 0.0
    return x


def run_qonnx(mw, x):
    from qonnx.core.onnx_exec import execute_onnx

    iname = mw.graph.input[0].name
    oname = mw.graph.output[0].name
    outs = [np.asarray(execute_onnx(mw, {iname: xi})[oname], dtype=np.float32) for xi in x]
    return np.stack(outs)


def describe(mw):
    nodes = []
    for n in mw.graph.node:
        dom = f"[{n.domain}]" if n.domain else ""
        nodes.append(n.op_type + dom)
    return nodes


def export_one(spec: Spec, out_dir: Path):
    import torch

    torch.manual_seed(spec.seed)
    rng = np.random.default_rng(spec.seed)
    t0 = time.perf_counter()
    model = spec.build()
    acc = train(model, spec, rng)
    t_train = time.perf_counter() - t0

    x_check = sample(spec.dist, 64, spec.in_features, np.random.default_rng(spec.seed + 1000))
    with torch.no_grad():
        ref = model(torch.from_numpy(x_check))
        ref = (ref.value if hasattr(ref, "value") else ref).numpy()

    t1 = time.perf_counter()
    path = out_dir / f"{spec.name}.onnx"
    mw = export_clean(model, spec.in_features, path)
    t_export = time.perf_counter() - t1

    x = make_inputs(mw, N_SAMPLES, rng)
    y = run_qonnx(mw, x)
    np.save(out_dir / f"{spec.name}_in.npy", x)
    np.save(out_dir / f"{spec.name}_out.npy", y)

    # Cross-check torch vs qonnx on in-distribution data and on the saved inputs
    # (which include clipped values and an exact zero).
    q = run_qonnx(mw, x_check.reshape(64, 1, -1)).reshape(64, -1)
    with torch.no_grad():
        ref_saved = model(torch.from_numpy(x.reshape(N_SAMPLES, -1)))
        ref_saved = (ref_saved.value if hasattr(ref_saved, "value") else ref_saved).numpy()
    diff = max(
        float(np.abs(q - ref).max()),
        float(np.abs(y.reshape(N_SAMPLES, -1) - ref_saved).max()),
    )
    print(
        f"{spec.name:22s} train {t_train:4.1f}s export {t_export:4.1f}s  teacher-acc {acc:.2f}  "
        f"max|torch-qonnx| {diff:.1e}  {path.stat().st_size:5d} B  in {x.shape} out {y.shape}"
    )
    print(f"    {' '.join(describe(mw))}")
    return diff


def run_exports(specs: list, export: Callable, argv=None) -> None:
    """The command line shared by the export scripts: --only NAME..., --out-dir; `export(spec, out_dir)`
    returns the largest |torch - qonnx| difference, which is reported when above 1e-4."""
    ap = argparse.ArgumentParser(description=(sys.modules["__main__"].__doc__ or "").splitlines()[0] if
                                 sys.modules["__main__"].__doc__ else None)
    ap.add_argument("--only", nargs="*", help="export just these model names")
    ap.add_argument("--out-dir", type=Path, default=HERE)
    args = ap.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)

    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    chosen = [s for s in specs if not args.only or s.name in args.only]
    unknown = set(args.only or []) - {s.name for s in specs}
    if unknown:
        sys.exit(f"unknown model(s): {sorted(unknown)}; known: {[s.name for s in specs]}")
    t0 = time.perf_counter()
    bad = []
    for spec in chosen:
        if export(spec, args.out_dir) > 1e-4:
            bad.append(spec.name)
    print(f"total {time.perf_counter() - t0:.1f}s")
    if bad:
        print(f"WARNING: torch and qonnx disagree for {bad}")


def main(argv=None):
    run_exports(SPECS, export_one, argv)


if __name__ == "__main__":
    main()
