"""Export the QCDQ models (QuantizeLinear / Clip / DequantizeLinear around float ops) rtlgen's tests compile.

Companion of ``export_test_models.py`` and ``export_test_cnns.py``, whose training loop and helpers it reuses;
these are exported with Brevitas' ``export_onnx_qcdq`` instead of ``export_qonnx``: standard ONNX only, the
form ONNX Runtime and most deployment tools take. Needs the ``export`` extra. Run from the repository root:

    OMP_NUM_THREADS=1 python tests/models/export_test_qcdq.py [--only NAME ...]

For every model NAME it writes, next to this script:

* ``NAME.onnx``   : the raw ``export_onnx_qcdq`` output as a user has it (not cleaned by qonnx), with the
  exporter's per-node debug metadata stripped
* ``NAME_in.npy`` : 16 float32 inputs, (16, *model input shape without the batch axis); ``NAME_in.npy[i][None]``
  is one model input. A few values lie outside the input quantizer's range.
* ``NAME_out.npy``: onnxruntime's outputs of ``NAME.onnx`` itself (the original QCDQ graph, not a conversion),
  one sample at a time, stacked: (16, 1, K), float32.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_test_cnns import CnnSpec, cnn_spec, torch_out  # noqa: E402
from export_test_models import N_SAMPLES, describe, run_exports, sample, strip_export_metadata, train  # noqa: E402


def m_qcdq_mlp_w4a4():
    """(1) MLP 16 -> 24 -> 16 -> 8: int8 input, per-channel 4-bit weights, float biases, ReLU4 activations,
    float logits. (Brevitas' dynamo QCDQ export refuses quantized biases.)"""
    import torch.nn as nn
    from brevitas.nn import QuantIdentity, QuantLinear, QuantReLU
    from brevitas.quant import Int8ActPerTensorFloat, Int8WeightPerChannelFloat, Int8WeightPerTensorFloat

    return nn.Sequential(
        QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=8, return_quant_tensor=True),
        QuantLinear(16, 24, bias=True, weight_quant=Int8WeightPerChannelFloat, weight_bit_width=4),
        QuantReLU(bit_width=4, return_quant_tensor=True),
        QuantLinear(24, 16, bias=True, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=4),
        QuantReLU(bit_width=4, return_quant_tensor=True),
        QuantLinear(16, 8, bias=True, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=4),
    )


def m_qcdq_cnn_w4a4():
    """(2) CNN 3x12x12: int8 input, 3x3 pad 1 conv (per-channel 4-bit weights) + BN + ReLU4, 3x3 stride 2 pad 1
    conv + BN + ReLU4, MaxPool 2, Flatten 144, Linear -> 10 with a float bias."""
    import torch.nn as nn
    from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
    from brevitas.quant import Int8ActPerTensorFloat, Int8WeightPerChannelFloat, Int8WeightPerTensorFloat

    return nn.Sequential(
        QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=8, return_quant_tensor=True),
        QuantConv2d(3, 8, 3, padding=1, bias=False, weight_quant=Int8WeightPerChannelFloat, weight_bit_width=4),
        nn.BatchNorm2d(8),
        QuantReLU(bit_width=4, return_quant_tensor=True),
        QuantConv2d(8, 16, 3, stride=2, padding=1, bias=False, weight_quant=Int8WeightPerTensorFloat,
                    weight_bit_width=4),
        nn.BatchNorm2d(16),
        QuantReLU(bit_width=4, return_quant_tensor=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        QuantLinear(144, 10, bias=True, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=4),
    )


SPECS = [
    cnn_spec("qcdq_mlp_w4a4", m_qcdq_mlp_w4a4, (16,), 8, "normal", 301,
             "QCDQ MLP W4A4, int8 input, per-channel weights, float biases and logits"),
    cnn_spec("qcdq_cnn_w4a4", m_qcdq_cnn_w4a4, (3, 12, 12), 10, "normal", 302,
             "QCDQ CNN W4A4, pad 1, stride 2, BN, MaxPool 2, dense head"),
]


def export_raw(model, in_shape, path: Path):
    import onnx
    import torch
    from brevitas.export import export_onnx_qcdq

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        export_onnx_qcdq(model, args=torch.zeros(1, *in_shape), export_path=str(raw))
        proto = onnx.load(str(raw))  # pulls an external-data sidecar in
    strip_export_metadata(proto)
    onnx.save(proto, str(path))
    return proto


def run_onnxruntime(proto, x):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.stack([session.run(None, {name: xi[None].astype(np.float32)})[0] for xi in x])


def input_range(proto):
    """(lo, hi) of the input quantizer: QuantizeLinear(scale, zero point 0), then a Clip(lo, hi) when its range
    is narrower than the zero point's integer type."""
    import onnx

    inits = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    q = next(n for n in proto.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == proto.graph.input[0].name)
    scale = float(inits[q.input[1]])
    clip = [n for n in proto.graph.node if n.op_type == "Clip" and n.input[0] == q.output[0]]
    if clip:
        return float(inits[clip[0].input[1]]) * scale, float(inits[clip[0].input[2]]) * scale
    info = np.iinfo(inits[q.input[2]].dtype)
    return info.min * scale, info.max * scale


def export_one(spec: CnnSpec, out_dir: Path):
    import torch.nn as nn

    import torch
    torch.manual_seed(spec.seed)
    rng = np.random.default_rng(spec.seed)
    t0 = time.perf_counter()
    model = spec.build()
    acc = train(nn.Sequential(nn.Unflatten(1, spec.in_shape), model), spec, rng)
    t_train = time.perf_counter() - t0

    x_check = sample(spec.dist, 64, spec.in_features, np.random.default_rng(spec.seed + 1000))
    x_check = x_check.reshape(64, *spec.in_shape)
    ref = torch_out(model, x_check)

    t1 = time.perf_counter()
    path = out_dir / f"{spec.name}.onnx"
    proto = export_raw(model, spec.in_shape, path)
    t_export = time.perf_counter() - t1

    lo, hi = input_range(proto)
    span = hi - lo
    x = rng.uniform(lo - 0.3 * span, hi + 0.3 * span, size=(N_SAMPLES, *spec.in_shape)).astype(np.float32)
    flat = x.reshape(N_SAMPLES, -1)
    flat[0, 0], flat[0, 1], flat[0, 2] = lo, hi, 0.0
    y = run_onnxruntime(proto, x)
    np.save(out_dir / f"{spec.name}_in.npy", x)
    np.save(out_dir / f"{spec.name}_out.npy", y)

    q = run_onnxruntime(proto, x_check).reshape(64, -1)
    diff = max(float(np.abs(q - ref).max()),
               float(np.abs(y.reshape(N_SAMPLES, -1) - torch_out(model, x)).max()))
    print(f"{spec.name:22s} train {t_train:4.1f}s export {t_export:4.1f}s  teacher-acc {acc:.2f}  "
          f"max|torch-onnxruntime| {diff:.1e}  {path.stat().st_size:6d} B  in {x.shape} out {y.shape}")

    class _Nodes:  # describe() reads .graph.node
        graph = proto.graph
    print(f"    {' '.join(describe(_Nodes))}")
    return diff


def main(argv=None):
    run_exports(SPECS, export_one, argv)


if __name__ == "__main__":
    main()
