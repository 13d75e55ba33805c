"""Export the residual QONNX CNNs rtlgen's residual tests compile (ResNet-style blocks with an element-wise Add).

Companion of ``export_test_cnns.py`` (same training, export, input generation and qonnx execution). Needs the
``export`` extra. Run from the repository root:

    OMP_NUM_THREADS=1 python tests/models/export_test_resnets.py [--only NAME ...]

Writes ``NAME.onnx``, ``NAME_in.npy`` and ``NAME_out.npy`` as ``export_test_cnns.py`` does.

The blocks are the classic ResNet basic block: conv3x3 + BN + ReLU, conv3x3 + BN, then a signed QuantIdentity so
the long path reaches the Add quantized; the skip path is the block input itself or, where the block changes the
channel count or strides, a 1x1 strided conv + BN + QuantIdentity; after the Add a QuantReLU. Activations use
power-of-two scales (Brevitas' fixed-point quantizers), so the two Add inputs align with small exact integer
multipliers, as they do in hardware-oriented ResNets (FINN's ResNet-50 shares or restricts its Add scales too).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_test_cnns import cnn_spec, export_one  # noqa: E402
from export_test_models import run_exports  # noqa: E402


def _plain(t):
    """A QuantTensor's real values (Brevitas refuses to add QuantTensors of different scales)."""
    return t.value if hasattr(t, "value") else t


def _residual_net(widths: list[tuple[int, int]], stem: int, in_ch: int, classes: int, bits: int, pool: int):
    """A stem conv, one basic block per (channels, stride) of `widths`, a global TruncAvgPool2d and a dense head."""
    import torch.nn as nn
    from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU, TruncAvgPool2d
    from brevitas.quant import Int8ActPerTensorFixedPoint, Int8WeightPerTensorFloat, Uint8ActPerTensorFixedPoint

    def conv(i, o, k, stride=1):
        return QuantConv2d(i, o, k, stride=stride, padding=k // 2, bias=False, weight_quant=Int8WeightPerTensorFloat,
                           weight_bit_width=bits)

    def relu():
        return QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=bits, return_quant_tensor=True)

    def ident():
        return QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=bits + 1, return_quant_tensor=True)

    class Block(nn.Module):
        def __init__(self, i, o, stride):
            super().__init__()
            self.long = nn.Sequential(conv(i, o, 3, stride), nn.BatchNorm2d(o), relu(),
                                      conv(o, o, 3), nn.BatchNorm2d(o), ident())
            self.skip = (nn.Sequential(conv(i, o, 1, stride), nn.BatchNorm2d(o), ident())
                         if stride != 1 or i != o else None)
            self.out = relu()

        def forward(self, x):
            skip = self.skip(x) if self.skip is not None else x
            return self.out(_plain(self.long(x)) + _plain(skip))  # two scales: add the real values

    layers = [QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=8, return_quant_tensor=True),
              conv(in_ch, stem, 3), nn.BatchNorm2d(stem), relu()]
    channels = stem
    for width, stride in widths:
        layers.append(Block(channels, width, stride))
        channels = width
    layers += [TruncAvgPool2d(kernel_size=pool, stride=1, bit_width=bits + 2), nn.Flatten(),
               QuantLinear(channels, classes, bias=True, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=bits)]
    return nn.Sequential(*layers)


def m_resnet_w4a4():
    """(1) A small ResNet at 12x12x3: stem conv 3 -> 8, an identity block (8), a block with a strided 1x1
    projection (8 -> 16, stride 2), another identity block (16), a global TruncAvgPool2d(6) and Linear 16 -> 10."""
    return _residual_net([(8, 1), (16, 2), (16, 1)], stem=8, in_ch=3, classes=10, bits=4, pool=6)


def m_resnet8_w4a4():
    """(2) MLPerf Tiny's image-classification ResNet-8 topology at 32x32x3: stem conv 3 -> 16, blocks of 16
    (identity skip), 32 and 64 channels (stride 2, 1x1 projections), global average pool 8x8, Linear 64 -> 10."""
    return _residual_net([(16, 1), (32, 2), (64, 2)], stem=16, in_ch=3, classes=10, bits=4, pool=8)


SPECS = [
    cnn_spec("resnet_w4a4", m_resnet_w4a4, (3, 12, 12), 10, "normal", 501,
             "ResNet-style W4A4 at 12x12, three residual blocks (identity, strided 1x1 projection, identity)"),
    cnn_spec("resnet8_w4a4", m_resnet8_w4a4, (3, 32, 32), 10, "normal", 502,
             "MLPerf Tiny ResNet-8 topology W4A4 at 32x32x3 (16/32/64 channels)"),
]


def main(argv=None):
    run_exports(SPECS, export_one, argv)


if __name__ == "__main__":
    main()
