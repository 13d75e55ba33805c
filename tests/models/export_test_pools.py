"""Export the average-pooling QONNX CNNs rtlgen's pooling tests compile (MobileNet-V1 style and friends).

Companion of ``export_test_cnns.py`` (same training, export, input generation and qonnx execution), for
networks with AveragePool, ReduceMean (PyTorch's AdaptiveAvgPool2d(1)) and Brevitas' TruncAvgPool2d
(AveragePool + qonnx Trunc). Needs the ``export`` extra. Run from the repository root:

    OMP_NUM_THREADS=1 python tests/models/export_test_pools.py [--only NAME ...]

Writes ``NAME.onnx``, ``NAME_in.npy`` and ``NAME_out.npy`` as ``export_test_cnns.py`` does.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_test_cnns import cnn_spec, export_one  # noqa: E402
from export_test_models import run_exports  # noqa: E402


def m_mobilenet_w4a4():
    """(1) MobileNet-V1 style at 32x32x3: int8 input, 3x3 stride 2 conv 3 -> 16 + BN + ReLU4, then two
    depthwise-separable blocks (depthwise 3x3 + BN + ReLU4, pointwise 1x1 + BN + ReLU4; the second block's
    depthwise conv has stride 2), a global TruncAvgPool2d(8) (AveragePool + Trunc, FLOOR, 4 bits), Flatten,
    Linear 32 -> 10."""
    import torch.nn as nn
    from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU, TruncAvgPool2d
    from brevitas.quant import Int8ActPerTensorFloat, Int8WeightPerChannelFloat, Int8WeightPerTensorFloat

    def conv_bn_relu(i, o, k, stride=1, groups=1):
        wq = Int8WeightPerChannelFloat if groups > 1 else Int8WeightPerTensorFloat
        return [QuantConv2d(i, o, k, stride=stride, padding=k // 2, groups=groups, bias=False, weight_quant=wq,
                            weight_bit_width=4),
                nn.BatchNorm2d(o), QuantReLU(bit_width=4, return_quant_tensor=True)]

    return nn.Sequential(
        QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=8, return_quant_tensor=True),
        *conv_bn_relu(3, 16, 3, stride=2),                        # 16x16x16
        *conv_bn_relu(16, 16, 3, groups=16), *conv_bn_relu(16, 32, 1),
        *conv_bn_relu(32, 32, 3, stride=2, groups=32),            # 8x8x32
        *conv_bn_relu(32, 32, 1),
        TruncAvgPool2d(kernel_size=8, stride=1, bit_width=4),     # 1x1x32
        nn.Flatten(),
        QuantLinear(32, 10, bias=True, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=4),
    )


def m_cnn_avgpool_w4a4():
    """(2) Average pools inside and at the end: uint8 input, 3x3 pad 1 conv 2 -> 8 + ReLU4, AvgPool2d(2) then a
    signed 5-bit QuantIdentity, 3x3 conv 8 -> 8 + BN + ReLU4, a ROUND TruncAvgPool2d(2, 2 bits), 1x1 conv + ReLU4,
    AdaptiveAvgPool2d(1) (exported as ReduceMean) then an unsigned 6-bit QuantIdentity, Flatten, Linear 8 -> 4."""
    import torch.nn as nn
    from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU, TruncAvgPool2d
    from brevitas.quant import Int8ActPerTensorFloat, Int8WeightPerTensorFloat, Uint8ActPerTensorFloat

    def conv(i, o, k):
        return QuantConv2d(i, o, k, padding=k // 2, bias=False, weight_quant=Int8WeightPerTensorFloat,
                           weight_bit_width=4)

    return nn.Sequential(
        QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=8, return_quant_tensor=True),
        conv(2, 8, 3), QuantReLU(bit_width=4, return_quant_tensor=True),                 # 12x12x8
        nn.AvgPool2d(2),                                                                  # 6x6x8
        QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=5, return_quant_tensor=True),
        conv(8, 8, 3), nn.BatchNorm2d(8), QuantReLU(bit_width=4, return_quant_tensor=True),
        TruncAvgPool2d(kernel_size=2, stride=2, bit_width=2, float_to_int_impl_type="ROUND"),  # 3x3x8
        conv(8, 8, 1), QuantReLU(bit_width=4, return_quant_tensor=True),
        nn.AdaptiveAvgPool2d(1),
        QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=6, return_quant_tensor=True),
        nn.Flatten(),
        QuantLinear(8, 4, bias=True, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=4),
    )


SPECS = [
    cnn_spec("mobilenet_w4a4", m_mobilenet_w4a4, (3, 32, 32), 10, "normal", 401,
             "MobileNet-V1 style W4A4 at 32x32, depthwise-separable blocks, stride 2, global TruncAvgPool2d"),
    cnn_spec("cnn_avgpool_w4a4", m_cnn_avgpool_w4a4, (2, 12, 12), 4, "unit", 402,
             "AvgPool2d + QuantIdentity inside, ROUND TruncAvgPool2d, AdaptiveAvgPool2d(1) (ReduceMean) at the end"),
]


def main(argv=None):
    run_exports(SPECS, export_one, argv)


if __name__ == "__main__":
    main()
