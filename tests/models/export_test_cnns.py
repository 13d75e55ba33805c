"""Export the small QONNX CNNs that rtlgen's convolution tests compile.

Companion of ``export_test_models.py`` (the MLPs), whose helpers it reuses: same
training loop, input generation, qonnx execution and metadata stripping. Needs
the ``export`` extra (torch, brevitas, onnxoptimizer). Run from the repository root:

    OMP_NUM_THREADS=1 python tests/models/export_test_cnns.py [--only NAME ...]

For every model NAME it writes, next to this script:

* ``NAME.onnx``   : Brevitas ``export_qonnx`` output, cleaned with qonnx ``cleanup_model``
  (and stripped of the exporter's per-node debug metadata)
* ``NAME_in.npy`` : 16 float32 inputs, shape (16, *model input shape without the
  batch axis), i.e. (16, C, H, W) or (16, C, L); ``NAME_in.npy[i][None]`` is one
  model input. A few values lie outside the input quantizer's range.
* ``NAME_out.npy``: qonnx ``execute_onnx`` outputs of the cleaned model, run one
  sample at a time and stacked: shape (16, 1, K), float32.

Training: the CNN is wrapped behind an ``nn.Unflatten`` so that the MLP script's
``train`` (a random teacher MLP labels the flattened random inputs, 300 Adam
steps) applies unchanged; the export is of the bare CNN with its (1, C, H, W)
input. Everything is seeded; one CPU thread.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_test_models import (  # noqa: E402
    N_SAMPLES,
    Spec,
    describe,
    make_inputs,
    run_exports,
    run_qonnx,
    sample,
    strip_export_metadata,
    train,
)


@dataclass
class CnnSpec(Spec):
    # Model input shape without the batch axis: (C, H, W) or (C, L).
    # ``in_features`` (the MLP field, used by ``train``) is its product.
    in_shape: tuple = ()


def cnn_spec(name, build, in_shape, n_classes, dist, seed, description):
    return CnnSpec(name, build, math.prod(in_shape), n_classes, dist, seed, description, tuple(in_shape))


# --------------------------------------------------------------------------- models


def m_cnn_w4a4_stride2_pad():
    """(1) 2-D, int8 input, 3x3 pad 1 conv (per-channel 4-bit weights, float conv
    bias) + BN + ReLU4, 3x3 stride 2 pad 1 conv + BN + ReLU4, MaxPool 2,
    Flatten, Linear 144 -> 10 with bias."""
    import torch.nn as nn
    from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
    from brevitas.quant import Int8ActPerTensorFloat, Int8WeightPerChannelFloat, Int8WeightPerTensorFloat

    return nn.Sequential(
        QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=8, return_quant_tensor=True),
        QuantConv2d(3, 8, 3, padding=1, bias=True, weight_quant=Int8WeightPerChannelFloat, weight_bit_width=4),
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


def m_cnn_depthwise_w4a4():
    """(2) 2-D, uint4 input, 3x3 conv + BN + ReLU4, depthwise 3x3 (groups=8,
    per-channel scales) + BN + ReLU4, pointwise 1x1 + BN + ReLU4, overlapping
    MaxPool k3 s2, Flatten, Linear 256 -> 10."""
    import torch.nn as nn
    from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
    from brevitas.quant import Int8WeightPerChannelFloat, Int8WeightPerTensorFloat, Uint8ActPerTensorFloat

    def conv(i, o, k, groups=1, wq=Int8WeightPerTensorFloat):
        return QuantConv2d(i, o, k, padding=k // 2, groups=groups, bias=False, weight_quant=wq, weight_bit_width=4)

    return nn.Sequential(
        QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=4, return_quant_tensor=True),
        conv(4, 8, 3),
        nn.BatchNorm2d(8),
        QuantReLU(bit_width=4, return_quant_tensor=True),
        conv(8, 8, 3, groups=8, wq=Int8WeightPerChannelFloat),
        nn.BatchNorm2d(8),
        QuantReLU(bit_width=4, return_quant_tensor=True),
        conv(8, 16, 1),
        nn.BatchNorm2d(16),
        QuantReLU(bit_width=4, return_quant_tensor=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Flatten(),
        QuantLinear(256, 10, bias=True, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=4),
    )


def m_cnn1d_w2a2():
    """(3) 1-D, int8 input, k5 pad 2 conv + BN + ReLU2, MaxPool1d 2, k3 stride 2
    conv (no pad) + BN + ReLU2, Flatten, Linear 112 -> 6. Ternary (2-bit narrow)
    weights everywhere."""
    import torch.nn as nn
    from brevitas.nn import QuantConv1d, QuantIdentity, QuantLinear, QuantReLU
    from brevitas.quant import Int8ActPerTensorFloat, Int8WeightPerTensorFloat

    return nn.Sequential(
        QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=8, return_quant_tensor=True),
        QuantConv1d(4, 8, 5, padding=2, bias=False, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=2),
        nn.BatchNorm1d(8),
        QuantReLU(bit_width=2, return_quant_tensor=True),
        nn.MaxPool1d(2),
        QuantConv1d(8, 16, 3, stride=2, bias=False, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=2),
        nn.BatchNorm1d(16),
        QuantReLU(bit_width=2, return_quant_tensor=True),
        nn.Flatten(),
        QuantLinear(112, 6, bias=True, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=2),
    )


def m_cnn_w1a1_kx1():
    """(4) Binarized, CNV style: int8 input, (3,1) conv with bipolar weights + BN +
    bipolar act, 3x3 bipolar conv + BN + bipolar act, MaxPool 2, Flatten, bipolar
    Linear 288 -> 4 without bias."""
    import torch.nn as nn
    from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
    from brevitas.quant import (
        Int8ActPerTensorFloat,
        SignedBinaryActPerTensorConst,
        SignedBinaryWeightPerTensorConst,
    )

    def sign():
        return QuantIdentity(act_quant=SignedBinaryActPerTensorConst, return_quant_tensor=True)

    return nn.Sequential(
        QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=8, return_quant_tensor=True),
        QuantConv2d(2, 16, (3, 1), bias=False, weight_quant=SignedBinaryWeightPerTensorConst),
        nn.BatchNorm2d(16),
        sign(),
        QuantConv2d(16, 16, 3, bias=False, weight_quant=SignedBinaryWeightPerTensorConst),
        nn.BatchNorm2d(16),
        sign(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        QuantLinear(288, 4, bias=False, weight_quant=SignedBinaryWeightPerTensorConst),
    )


def m_cnn_w8a8_pad_nobias():
    """(5) uint8 input, 5x5 pad 2 stride 2 conv + ReLU8 (no BN), 3x3 pad 1 conv +
    ReLU8, Flatten, Linear 150 -> 3; no bias anywhere."""
    import torch.nn as nn
    from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
    from brevitas.quant import Int8WeightPerTensorFloat, Uint8ActPerTensorFloat

    return nn.Sequential(
        QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=8, return_quant_tensor=True),
        QuantConv2d(1, 6, 5, stride=2, padding=2, bias=False, weight_quant=Int8WeightPerTensorFloat,
                    weight_bit_width=8),
        QuantReLU(bit_width=8, return_quant_tensor=True),
        QuantConv2d(6, 6, 3, padding=1, bias=False, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=8),
        QuantReLU(bit_width=8, return_quant_tensor=True),
        nn.Flatten(),
        QuantLinear(150, 3, bias=False, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=8),
    )


def m_econt_encoder_w6a8():
    """(6) ECON-T-like encoder (the CMS HGCAL ECON-T autoencoder's encoder, a FastML benchmark): a uint8 8x8
    single-channel sensor image, 3x3 stride 2 pad 1 conv 1 -> 8 (8x8 -> 4x4; per-channel 6-bit weights, float
    bias) + ReLU8, Flatten 128, Linear 128 -> 16 + ReLU8, Linear 16 -> 10 (float logits)."""
    import torch.nn as nn
    from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
    from brevitas.quant import Int8WeightPerChannelFloat, Int8WeightPerTensorFloat, Uint8ActPerTensorFloat

    return nn.Sequential(
        QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=8, return_quant_tensor=True),
        QuantConv2d(1, 8, 3, stride=2, padding=1, bias=True, weight_quant=Int8WeightPerChannelFloat,
                    weight_bit_width=6),
        QuantReLU(bit_width=8, return_quant_tensor=True),
        nn.Flatten(),
        QuantLinear(128, 16, bias=True, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=6),
        QuantReLU(bit_width=8, return_quant_tensor=True),
        QuantLinear(16, 10, bias=True, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=6),
    )


SPECS = [
    cnn_spec("cnn_w4a4_stride2_pad", m_cnn_w4a4_stride2_pad, (3, 12, 12), 10, "normal", 201,
             "W4A4 2-D, pad 1, stride 2, per-channel scales, conv bias, MaxPool 2"),
    cnn_spec("cnn_depthwise_w4a4", m_cnn_depthwise_w4a4, (4, 10, 10), 10, "unit", 202,
             "W4A4 2-D, depthwise 3x3 + pointwise 1x1, overlapping MaxPool k3 s2"),
    cnn_spec("cnn1d_w2a2", m_cnn1d_w2a2, (4, 32), 6, "normal", 203,
             "W2A2 1-D, pad 2, MaxPool1d 2, stride 2 without pad"),
    cnn_spec("cnn_w1a1_kx1", m_cnn_w1a1_kx1, (2, 16, 8), 4, "pm1", 204,
             "W1A1 bipolar 2-D, (3,1) kernel, int8 input, MaxPool 2 on bipolar values"),
    cnn_spec("cnn_w8a8_pad_nobias", m_cnn_w8a8_pad_nobias, (1, 9, 9), 3, "unit", 205,
             "W8A8 2-D, uint8 input, 5x5 pad 2 stride 2, no BN, no bias"),
    cnn_spec("econt_encoder_w6a8", m_econt_encoder_w6a8, (1, 8, 8), 10, "unit", 206,
             "W6A8 ECON-T-like encoder, uint8 8x8 input, 3x3 stride 2 pad 1 conv 1->8, dense 128->16->10"),
]


# --------------------------------------------------------------------------- pipeline


def export_clean_shape(model, in_shape, path: Path):
    """``export_test_models.export_clean`` for an N-d input shape (that one takes a
    feature count)."""
    import torch
    from brevitas.export import export_qonnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        export_qonnx(model, args=torch.zeros(1, *in_shape), export_path=str(raw))
        m = cleanup_model(ModelWrapper(str(raw)))
    strip_export_metadata(m.model)
    m.save(str(path))
    return ModelWrapper(str(path))


def torch_out(model, x):
    import torch

    with torch.no_grad():
        out = model(torch.from_numpy(np.ascontiguousarray(x)))
    return (out.value if hasattr(out, "value") else out).numpy()


def export_one(spec: CnnSpec, out_dir: Path):
    import torch
    import torch.nn as nn

    torch.manual_seed(spec.seed)
    rng = np.random.default_rng(spec.seed)
    t0 = time.perf_counter()
    model = spec.build()
    # train() feeds (batch, F) rows; the Unflatten shares the CNN's parameters.
    acc = train(nn.Sequential(nn.Unflatten(1, spec.in_shape), model), spec, rng)
    t_train = time.perf_counter() - t0

    x_check = sample(spec.dist, 64, spec.in_features, np.random.default_rng(spec.seed + 1000))
    x_check = x_check.reshape(64, *spec.in_shape)
    ref = torch_out(model, x_check)

    t1 = time.perf_counter()
    path = out_dir / f"{spec.name}.onnx"
    mw = export_clean_shape(model, spec.in_shape, path)
    t_export = time.perf_counter() - t1

    x = make_inputs(mw, N_SAMPLES, rng)  # (16, 1, *in_shape)
    x = x.reshape(N_SAMPLES, *spec.in_shape)
    y = run_qonnx(mw, x[:, None])
    np.save(out_dir / f"{spec.name}_in.npy", x)
    np.save(out_dir / f"{spec.name}_out.npy", y)

    q = run_qonnx(mw, x_check[:, None]).reshape(64, -1)
    diff = max(
        float(np.abs(q - ref).max()),
        float(np.abs(y.reshape(N_SAMPLES, -1) - torch_out(model, x)).max()),
    )
    print(
        f"{spec.name:22s} train {t_train:4.1f}s export {t_export:4.1f}s  teacher-acc {acc:.2f}  "
        f"max|torch-qonnx| {diff:.1e}  {path.stat().st_size:6d} B  in {x.shape} out {y.shape}"
    )
    print(f"    {' '.join(describe(mw))}")
    return diff


def main(argv=None):
    run_exports(SPECS, export_one, argv)


if __name__ == "__main__":
    main()
