"""QONNX convolutional networks for testing rtlgen: the FINN/Brevitas CNV topology and random small CNNs.

Both are built with `onnx.helper` and the qonnx custom ops (domain `qonnx.custom_op.general`, opset 13), no
torch, with the builder and quantizer helpers of `random_models.py`.

`cnv_model(weight_bits, act_bits, seed)` is the CNV network of FINN's BNN-PYNQ examples for CIFAR-10 with
random weights: (1, 3, 32, 32) input in [0, 1], host preprocessing 2x - 1, an 8-bit signed input Quant (scale
2^-7), six 3x3 convolutions without padding (64, 64, pool, 128, 128, pool, 256, 256 channels; spatial
32-30-28-14-12-10-5-3-1), each with BatchNormalization and an activation quantizer, MaxPool 2x2 after the
second and fourth, Flatten, two 512-wide MatMul layers with BatchNormalization and quantizer, MatMul 512 -> 10
and a per-class affine (Mul, Add) left to the host tail. `FINN_CNV_W1A1_FOLDING` is FINN's published folding
for CNV-W1A1, `cnv_folding_spec` turns it into rtlgen's folding JSON (`cnv_layer_names()` gives the names),
`cnv_cycles` the cycles per frame of each compute layer under a folding.

`random_cnn(seed)` builds a small random CNN plus float inputs, a random folding and a one-line description.
Everything is drawn from `numpy.random.default_rng(seed)`, so a seed names a model forever (as long as this
file's drawing order is unchanged: append new choices at the end of a block, never in the middle, or old
regression seeds stop meaning what their comments say). `cnv_model` is likewise stable per seed.

What varies in `random_cnn` (within rtlgen's limits: weights and every quantizer after the input at most 8 bits,
activation scales per tensor except on the last layer):
- the input: 2-D (1, C, H, W) with H, W in 3..12, or 1-D (1, C, L) with L in 4..24; C in 1..12;
- optional host preprocessing before the input quantizer (Add / Mul / Div by scalar or per-channel constants);
- the input quantizer: Quant (1-8 bits, signed/unsigned, narrow, every rounding mode, scale a power of two or
  arbitrary, rarely negative) or BipolarQuant;
- 1-3 convolutions, each: kernel k x k or k x 1 (k in 1..4; k for 1-D), stride 1..3, padding none, symmetric
  or asymmetric (ONNX pads [top, left, bottom, right], total pad per axis < kernel; zero padding only when the
  padded tensor's quantizer can represent 0, i.e. is not bipolar), standard (groups 1, 1..12 output channels)
  or depthwise (groups = channels >= 2, channel multiplier 1); weights through Quant (1-8 bits, signed/unsigned,
  narrow, every rounding mode, per-tensor or per-output-channel scale of shape (OC, 1, 1[, 1]), rarely negative
  per channel, some weights on rounding ties) or BipolarQuant; optional bias (Conv's third input: centred like a
  trained bias or on the accumulator grid); optional BatchNormalization (gamma of either sign); Relu followed by
  an unsigned Quant, or a signed/unsigned Quant or BipolarQuant without Relu (scale of either sign); only the
  network's last layer may end without a quantizer (float tail) or with a per-channel activation scale;
- optional MaxPool (kernel 1..3 per axis, stride 1..kernel, no padding, ceil_mode 0) right after an activation
  quantizer whose scales are all positive; one after the network's last quantizer is host-tail work for rtlgen,
  so it has no folding entry and is not in `RandomModel.layers`;
- then either the network ends, or Flatten and 1-2 dense layers (MatMul or Gemm with transB, the same weight,
  bias, BatchNormalization, Relu and quantizer choices);
- folding: convolutions PE | OC, SIMD | IC (the sliding window needs SIMD to divide the channels); depthwise
  PE | C; MaxPool SIMD | C; dense layers as in `random_models._random_folding` (PE | MH, SIMD | MW, "max",
  gcd width converters);
- inputs: as `random_models._random_inputs` (in range, outside, on levels, on ties, zeros).

Scales and BatchNorm statistics are calibrated on a batch of random inputs pushed through the model as it is
built (numpy, float64, with a float32 shadow bounding each quantizer's step from below), so the quantizers see a
spread over many of their levels rather than all-clipped values, like a trained network; channels that a
quantizer deciding at 0 (Relu, unsigned, bipolar) would hold constant get a centred bias or BatchNorm beta.
Layer names are the ones qonnx's cleanup gives (`Conv_0`, `MaxPool_0`, `MatMul_0`, `Gemm_0`, in graph order).

`python tests/cnn_models.py` runs every generator through qonnx (cleanup + execute) as a self-test.
"""
from __future__ import annotations

import numpy as np
import onnx
from numpy.lib.stride_tricks import sliding_window_view
from onnx import TensorProto, helper

from random_models import (N_FRAMES, OPSET, QONNX_DOMAIN, QSpec, RandomModel, _act_scale_magnitude, _bias_node,
                           _divisors, _Graph, _pick_scale, _quant_features, _random_folding, _random_inputs,
                           _random_quant, _scalar_shape, _up)

N_CALIBRATION_CNN = 48


# ------------------------------------------------------------------------------------------- numpy reference ops
# Internally every feature map is (N, C, H, W); a 1-D map of length L is (N, C, L, 1).

def _conv(x: np.ndarray, w: np.ndarray, stride: tuple[int, int], pads: tuple[int, int, int, int],
          depthwise: bool) -> np.ndarray:
    """Cross-correlation like ONNX Conv: x (N, C, H, W), w (OC, C or 1, KH, KW), pads (top, left, bottom, right);
    computed in x's dtype."""
    pt, pl, pb, pr = pads
    kh, kw = w.shape[2], w.shape[3]
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    win = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::stride[0], ::stride[1]]  # (N, C, OH, OW, KH, KW)
    w = w.astype(x.dtype)
    if depthwise:
        return np.einsum("nchwij,cij->nchw", win, w[:, 0])
    return np.tensordot(win, w, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)


def _maxpool(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    win = sliding_window_view(x, kernel, axis=(2, 3))[:, :, ::stride[0], ::stride[1]]
    return win.max(axis=(4, 5))


def _out_size(size: int, k: int, s: int, pad: int = 0) -> int:
    return (size + pad - k) // s + 1


def _channel_shape(y: np.ndarray) -> tuple:
    """Shape that broadcasts a per-channel vector over y (channel axis 1)."""
    return (1, y.shape[1]) + (1,) * (y.ndim - 2)


def _per_channel(y: np.ndarray) -> np.ndarray:
    """(samples, C) view of y with channel axis 1: every pixel of every frame is a sample."""
    return np.moveaxis(y, 1, -1).reshape(-1, y.shape[1])


# ------------------------------------------------------------------------------------------- CNV

# FINN's folding for CNV-W1A1: compute layer index (6 convolution MVAUs, then 3 fully-connected MVAUs) -> (PE, SIMD).
# Source: Xilinx/finn-examples, build/bnn-pynq/folding_config/cnv-w1a1_folding_config.json at commit
# 6dcc92c53313bab3699de21be0ac4deac92f1400 (MVAU_hls_0..8; the same numbers as MatrixVectorActivation_0..8 at
# 087ad90f39dc350799925ca67fddcf7aa6b6541a), identical to fold_cnv_large() in Xilinx/finn,
# tests/end2end/test_end2end_bnn_pynq.py at commit 9adcf51c9f92e7fbc960242d6c4e773c7f9f2be1.
# (FINN also sets the ConvolutionInputGenerator SIMD to the MVAU's SIMD, and PE 1 on the input Thresholding.)
#
# Cycles per frame, conv: OH*OW * (OC/PE) * (KH*KW*IC/SIMD); FC: (MH/PE) * (MW/SIMD):
#   0 conv  3-> 64, 30x30: 900 * ( 64/16) * (  27/3)  = 32400
#   1 conv 64-> 64, 28x28: 784 * ( 64/32) * ( 576/32) = 28224
#   2 conv 64->128, 12x12: 144 * (128/16) * ( 576/32) = 20736
#   3 conv128->128, 10x10: 100 * (128/16) * (1152/32) = 28800
#   4 conv128->256,  3x3 :   9 * (256/4)  * (1152/32) = 20736
#   5 conv256->256,  1x1 :   1 * (256/1)  * (2304/32) = 18432
#   6 fc  256->512       :       (512/1)  * ( 256/4)  = 32768
#   7 fc  512->512       :       (512/1)  * ( 512/8)  = 32768
#   8 fc  512-> 10       :       ( 10/5)  * ( 512/1)  =  1024
# bottleneck: 32768 cycles per frame (layers 6 and 7), conv 0 close behind at 32400.
# The max-pools (28x28x64 and 10x10x128 inputs) take H*W*C/SIMD cycles in rtlgen: SIMD >= 2 on the first one
# keeps it under the bottleneck; `cnv_folding_spec` gives each the PE of the convolution before it (32, 16).
FINN_CNV_W1A1_FOLDING: dict[int, tuple[int, int]] = {
    0: (16, 3), 1: (32, 32), 2: (16, 32), 3: (16, 32), 4: (4, 32), 5: (1, 32),
    6: (1, 4), 7: (1, 8), 8: (5, 1),
}
CNV_CONV_CHANNELS = (64, 64, 128, 128, 256, 256)
CNV_POOL_AFTER = (1, 3)  # MaxPool 2x2 after these convolutions (0-based)
CNV_FC_WIDTHS = (512, 512, 10)
N_CALIBRATION_CNV = 24  # the first N_FRAMES of them are the returned inputs


def cnv_folding_spec(layer_names: list[str], maxpool_names: list[str] | None = None) -> dict:
    """rtlgen folding JSON for CNV-W1A1 from FINN's folding, given the 9 compute-layer names in order (6 Conv,
    3 MatMul, e.g. ["Conv_0", ..., "Conv_5", "MatMul_0", "MatMul_1", "MatMul_2"]). With `maxpool_names` (the
    2 MaxPool nodes) each pool gets SIMD = the PE of the convolution before it."""
    if len(layer_names) != len(FINN_CNV_W1A1_FOLDING):
        raise ValueError(f"CNV has {len(FINN_CNV_W1A1_FOLDING)} compute layers, got {len(layer_names)} names")
    layers = {name: {"PE": FINN_CNV_W1A1_FOLDING[i][0], "SIMD": FINN_CNV_W1A1_FOLDING[i][1]}
              for i, name in enumerate(layer_names)}
    if maxpool_names is not None:
        if len(maxpool_names) != len(CNV_POOL_AFTER):
            raise ValueError(f"CNV has {len(CNV_POOL_AFTER)} MaxPool layers, got {len(maxpool_names)} names")
        for name, conv in zip(maxpool_names, CNV_POOL_AFTER):
            layers[name] = {"SIMD": FINN_CNV_W1A1_FOLDING[conv][0]}
    return {"layers": layers}


def cnv_cycles(folding: dict[int, tuple[int, int]] = FINN_CNV_W1A1_FOLDING) -> list[int]:
    """Cycles per frame of the 9 compute layers of CNV under a (PE, SIMD) folding (the table above)."""
    out, ic, size = [], 3, 32
    for i, oc in enumerate(CNV_CONV_CHANNELS):
        size -= 2
        pe, simd = folding[i]
        out.append(size * size * (oc // pe) * (9 * ic // simd))
        ic = oc
        if i in CNV_POOL_AFTER:
            size //= 2
    mw = ic
    for j, mh in enumerate(CNV_FC_WIDTHS):
        pe, simd = folding[len(CNV_CONV_CHANNELS) + j]
        out.append((mh // pe) * (mw // simd))
        mw = mh
    return out


def _cifar_like_images(rng, n: int) -> np.ndarray:
    """(n, 3, 32, 32) float32 images in [0, 1] on the k/255 grid: smooth colour blobs plus texture."""
    coarse = rng.uniform(0, 1, size=(n, 3, 4, 4))
    img = np.repeat(np.repeat(coarse, 8, axis=2), 8, axis=3)
    for _ in range(3):  # box blur the blocks into blobs
        p = np.pad(img, ((0, 0), (0, 0), (2, 2), (2, 2)), mode="edge")
        img = sliding_window_view(p, (5, 5), axis=(2, 3)).mean(axis=(4, 5))
    img = img + rng.normal(size=img.shape) * rng.uniform(0.02, 0.15, size=(n, 1, 1, 1))
    return (np.round(np.clip(img, 0, 1) * 255) / 255).astype(np.float32)


def _cnv_weight_quant(w: np.ndarray, bits: int) -> QSpec:
    if bits == 1:
        return QSpec("bipolar", 1.0)
    hi = 2 ** (bits - 1) - 1  # narrow signed: -hi..hi
    sigma = float(np.std(w))
    return QSpec("quant", np.float32(sigma * (1.0 if hi == 1 else 2.5 / hi)), bits, True, True, "ROUND")


def _cnv_act_quant(bits: int) -> QSpec:
    if bits == 1:
        return QSpec("bipolar", 1.0)
    return QSpec("quant", np.float32(2.0 ** -(bits - 1)), bits, True, False, "ROUND")  # levels in [-1, 1)


def _cnv_bn_act(g: _Graph, rng, cur: str, y: np.ndarray, qa: QSpec) -> tuple[str, np.ndarray]:
    """BatchNormalization with the batch's statistics and a 'trained' gamma/beta spreading y over qa's levels."""
    c = y.shape[1]
    flat = _per_channel(y)
    mean = flat.mean(axis=0).astype(np.float32)
    var = (flat.var(axis=0) + 1e-6).astype(np.float32)
    reach = 1.0  # the quantizer's outer level magnitude (bipolar: 1; signed Quant with scale 2^-(b-1): ~1)
    gamma = (reach * rng.uniform(0.3, 0.8, size=c) * rng.choice([-1, 1], size=c, p=[0.1, 0.9])).astype(np.float32)
    beta = (reach * rng.normal(size=c) * 0.25).astype(np.float32)
    eps = 1e-4
    cur = g.node("BatchNormalization", [cur, g.const(gamma, "bn_g"), g.const(beta, "bn_b"), g.const(mean, "bn_m"),
                                        g.const(var, "bn_v")], epsilon=eps)
    cs = _channel_shape(y)
    z = gamma.reshape(cs) * (y - mean.reshape(cs)) / np.sqrt(var.reshape(cs).astype(np.float64) + eps) + beta.reshape(cs)
    return g.quant(cur, qa), qa.apply(z)


def cnv_model(weight_bits: int = 1, act_bits: int = 1, seed: int = 0) -> tuple[onnx.ModelProto, np.ndarray]:
    """CNV-W{weight_bits}A{act_bits} with random weights and calibrated BatchNorm, and N_FRAMES float32 inputs
    (N_FRAMES, 3, 32, 32) in [0, 1] (each one frame of the (1, 3, 32, 32) model input)."""
    if not (1 <= weight_bits <= 8 and 1 <= act_bits <= 8):
        raise ValueError("CNV weight and activation bits must be 1..8")
    rng = np.random.default_rng(seed)
    g = _Graph()
    images = _cifar_like_images(rng, N_CALIBRATION_CNV)
    cur = "global_in"
    # host preprocessing as Brevitas' CNV: 2x - 1
    cur = g.node("Mul", [cur, g.const(np.float32(2.0), "pre")])
    cur = g.node("Sub", [cur, g.const(np.float32(1.0), "pre")])
    x = images.astype(np.float64) * 2.0 - 1.0
    qin = QSpec("quant", np.float32(2.0**-7), 8, True, False, "ROUND")
    cur = g.quant(cur, qin)
    x = qin.apply(x)

    ic = 3
    for li, oc in enumerate(CNV_CONV_CHANNELS):
        w = rng.normal(size=(oc, ic, 3, 3)).astype(np.float32)
        wq = _cnv_weight_quant(w, weight_bits)
        cur = g.node("Conv", [cur, g.quant(g.const(w, "w"), wq)], kernel_shape=[3, 3], pads=[0, 0, 0, 0],
                     strides=[1, 1], dilations=[1, 1], group=1)
        y = _conv(x, wq.apply(w), (1, 1), (0, 0, 0, 0), False)
        cur, x = _cnv_bn_act(g, rng, cur, y, _cnv_act_quant(act_bits))
        if li in CNV_POOL_AFTER:
            cur = g.node("MaxPool", [cur], kernel_shape=[2, 2], strides=[2, 2])
            x = _maxpool(x, (2, 2), (2, 2))
        ic = oc
    cur = g.node("Flatten", [cur], axis=1)
    x = x.reshape(len(x), -1)
    mw = x.shape[1]
    for j, mh in enumerate(CNV_FC_WIDTHS):
        w = rng.normal(size=(mw, mh)).astype(np.float32)
        wq = _cnv_weight_quant(w, weight_bits)
        cur = g.node("MatMul", [cur, g.quant(g.const(w, "w"), wq)])
        y = x @ wq.apply(w)
        if j < len(CNV_FC_WIDTHS) - 1:
            cur, x = _cnv_bn_act(g, rng, cur, y, _cnv_act_quant(act_bits))
        else:
            # per-class affine (like Brevitas' TensorNorm after the last layer): float, on the host
            mul = (rng.uniform(0.5, 1.5, size=(1, mh)) / (np.std(y) + 1e-6)).astype(np.float32)
            add = (rng.normal(size=(1, mh)) * 0.05).astype(np.float32)
            cur = g.node("Mul", [cur, g.const(mul, "tail_mul")])
            cur = g.node("Add", [cur, g.const(add, "tail_add")])
            x = y * mul + add
        mw = mh

    in_vi = helper.make_tensor_value_info("global_in", TensorProto.FLOAT, [1, 3, 32, 32])
    out_vi = helper.make_tensor_value_info(cur, TensorProto.FLOAT, [1, CNV_FC_WIDTHS[-1]])
    graph = helper.make_graph(g.nodes, f"cnv_w{weight_bits}a{act_bits}_{seed}", [in_vi], [out_vi], initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(QONNX_DOMAIN, 1)],
                              producer_name="rtlgen-cnn-models")
    model.ir_version = 8
    return model, images[:N_FRAMES].copy()


def cnv_layer_names() -> tuple[list[str], list[str]]:
    """(compute-layer names, MaxPool names) of `cnv_model` after qonnx cleanup."""
    return [f"Conv_{i}" for i in range(6)] + [f"MatMul_{i}" for i in range(3)], ["MaxPool_0", "MaxPool_1"]


# ------------------------------------------------------------------------------------------- random CNN

def _pads_for(rng, k: int, allowed: bool) -> tuple[int, int, str]:
    """(begin, end, kind) padding of one axis for kernel size k: begin + end < k."""
    if not allowed or k == 1:
        return 0, 0, "none"
    r = rng.random()
    if r < 0.4:
        return 0, 0, "none"
    if r < 0.7 and k >= 3:
        p = int(rng.integers(1, (k - 1) // 2 + 1))
        return p, p, "sym"
    total = int(rng.integers(1, k))
    begin = int(rng.integers(0, total + 1))
    return begin, total - begin, ("sym" if begin == total - begin else "asym")


def _fold_value(rng, full: int) -> int:
    r = rng.random()
    if r < 0.3:
        return 1
    if r < 0.5:
        return full
    return int(rng.choice(_divisors(full)))


class _Epilogue:
    """BatchNorm / Relu / activation quantizer after a Conv or MatMul, shared by both; y has channels on axis 1.

    Order per layer: `draw_quantizer` (before the layer, so its bias can avoid dead channels), the layer's bias,
    `draw_batchnorm`, `revive` (dead channels get a centred bias or BatchNorm beta), the layer node, `apply`."""

    def __init__(self, g: _Graph, rng, pow2, feat: set[str], parts: list[str]):
        self.g, self.rng, self.pow2, self.feat, self.parts = g, rng, pow2, feat, parts

    def draw_quantizer(self, last: bool) -> tuple[QSpec | None, bool, bool]:
        """(activation quantizer with unit scale or None, relu, negative scale)."""
        rng = self.rng
        has_q = not last or rng.random() < 0.65
        relu = bool(rng.random() < (0.5 if has_q else 0.2))
        qa = None
        if has_q and relu:
            qa = _random_quant(rng, self.pow2(), allow_bipolar=False)
            qa.signed = False  # Relu then an unsigned quantizer
            if qa.bits == 1 and qa.narrow:
                qa.narrow = False
        elif has_q:
            qa = _random_quant(rng, self.pow2(), p_bipolar=0.15)
        negative = bool(qa is not None and not relu and rng.random() < 0.1)
        return qa, relu, negative

    def draw_batchnorm(self, y: np.ndarray) -> dict | None:
        """BatchNormalization parameters for pre-activation y, or None (no BatchNorm)."""
        rng = self.rng
        if rng.random() >= 0.4:
            return None
        c = y.shape[1]
        flat = _per_channel(y)
        return {
            "mean": (flat.mean(axis=0) + rng.normal(size=c) * (flat.std(axis=0) + 1e-3) * 0.3).astype(np.float32),
            "var": (flat.var(axis=0) * rng.uniform(0.5, 2.0, size=c) + 1e-2 * (np.std(flat) + 1e-3) ** 2 + 1e-4).astype(np.float32),
            "gamma": (rng.uniform(0.3, 2.0, size=c) * rng.choice([-1, 1], size=c, p=[0.3, 0.7])).astype(np.float32),
            "beta": (rng.normal(size=c) * 0.5).astype(np.float32),
            "eps": float(np.float32(rng.choice([1e-5, 1e-3]))),
        }

    @staticmethod
    def _bn(y: np.ndarray, bn: dict | None, dtype=np.float64) -> np.ndarray:
        if bn is None:
            return y
        cs = _channel_shape(y)
        gm, bt, mn, vr = (bn[k].reshape(cs) for k in ("gamma", "beta", "mean", "var"))
        if dtype == np.float32:
            return gm * (y - mn) / np.sqrt(vr + np.float32(bn["eps"])) + bt
        return gm * (y - mn) / np.sqrt(vr.astype(np.float64) + bn["eps"]) + bt

    def revive(self, y: np.ndarray, bias: np.ndarray | None, bn: dict | None, qa: QSpec | None, relu: bool,
               negative: bool) -> tuple[np.ndarray | None, bool]:
        """Channels whose quantizer (or Relu) decides at 0 and that sit on the dead side of 0 for (nearly) all
        calibration values would be constant, which a trained network avoids: centre them (BatchNorm beta when
        there is a BatchNorm, else the layer's bias, created if needed). y is the layer output before its bias.
        Returns (bias, whether anything changed)."""
        if not (relu or (qa is not None and (qa.bipolar or not qa.signed))):
            return bias, False
        yb = y if bias is None else y + bias.reshape(_channel_shape(y)).astype(np.float64)
        pre = _per_channel(self._bn(yb, bn))
        pos = np.mean(pre > 0, axis=0)
        # a sign decision: bipolar, or two levels {0, s} reached by any positive value (CEIL / UP)
        sign_like = qa is not None and (qa.bipolar or (not qa.signed and np.subtract(*qa.int_range()) == -1
                                                       and qa.rounding in ("CEIL", "UP")))
        if sign_like:
            dead = (pos < 0.05) | (pos > 0.95)
        elif negative and not relu:  # unsigned quantizer with a negative scale: its levels are at x <= 0
            dead = pos > 0.95
        else:
            dead = pos < 0.05
        dead &= np.std(pre, axis=0) > 1e-6 * (np.abs(np.mean(pre, axis=0)) + 1e-6)  # not a constant channel
        if not np.any(dead):
            return bias, False
        rng = self.rng
        q = rng.uniform(0.2, 0.8, size=pre.shape[1])
        centre = np.array([np.quantile(pre[:, i], q[i]) for i in range(pre.shape[1])])
        centre = centre + rng.normal(size=pre.shape[1]) * 0.1 * (pre.std(axis=0) + 1e-6)  # off the sample values
        if bn is not None:
            bn["beta"] = np.where(dead, bn["beta"] - centre, bn["beta"]).astype(np.float32)
            return bias, True
        base = np.zeros(pre.shape[1], dtype=np.float32) if bias is None else bias
        return np.where(dead, base - centre, base).astype(np.float32), True

    def apply(self, cur: str, y: np.ndarray, y32: np.ndarray, bn: dict | None, qa: QSpec | None, relu: bool,
              negative: bool, last: bool, onnx_ch_shape: tuple) -> tuple[str, np.ndarray, QSpec | None]:
        g, rng = self.g, self.rng
        c = y.shape[1]
        cs = _channel_shape(y)
        if bn is not None:
            cur = g.node("BatchNormalization", [cur, g.const(bn["gamma"], "bn_g"), g.const(bn["beta"], "bn_b"),
                                                g.const(bn["mean"], "bn_m"), g.const(bn["var"], "bn_v")], epsilon=bn["eps"])
            y, y32 = self._bn(y, bn), self._bn(y32, bn, np.float32)
            self.parts.append("BN" + ("-" if np.any(bn["gamma"] < 0) else ""))
            self.feat |= {"batchnorm"} | ({"batchnorm_neg_gamma"} if np.any(bn["gamma"] < 0) else set())
        if relu:
            cur = g.node("Relu", [cur])
            y = np.maximum(y, 0)
            y32 = np.maximum(y32, np.float32(0))
            self.parts.append("Relu")
            self.feat.add("relu")
        if qa is None:
            self.parts.append("float tail")
            self.feat.add("float_tail")
            return cur, y, None
        vals = _per_channel(y)
        mag = _act_scale_magnitude(qa, vals, negative, rng)
        # float32 error of this layer on the calibration data, per channel; the step stays >= 4000x it
        floor = 4000.0 * np.max(np.abs(_per_channel(y - y32.astype(np.float64))), axis=0)
        per_ch = last and c > 1 and rng.random() < 0.2
        p2 = self.pow2()
        if per_ch:
            sc = np.array([max(_pick_scale(rng, m, p2), _up(f, p2)) for m, f in zip(mag, floor)])
            if negative:
                sc = -sc if rng.random() < 0.5 else sc * rng.choice([-1, 1], size=c)
            sc = sc.astype(np.float32)
            onnx_scale = sc.reshape(onnx_ch_shape)
            qa.scale = sc.reshape(cs)
        else:
            s = np.float32(max(_pick_scale(rng, float(np.max(mag)), p2), _up(float(np.max(floor)), p2)) * (-1 if negative else 1))
            onnx_scale = np.asarray(s, dtype=np.float32).reshape(_scalar_shape(rng))
            qa.scale = np.asarray(s, dtype=np.float32)
        cur = g.quant(cur, QSpec(qa.kind, onnx_scale, qa.bits, qa.signed, qa.narrow, qa.rounding))
        y = qa.apply(y)
        self.parts.append("A:" + qa.describe().replace("BipolarQuant ", "bipolar ").replace("Quant ", ""))
        self.feat |= _quant_features("act", qa) | ({"act_per_channel"} if per_ch else set())
        return cur, y, qa


def _weight_quant(rng, pow2, w: np.ndarray, per_channel_axis0: bool) -> tuple[np.ndarray, QSpec, bool]:
    """Quantizer for weights w with output channels on axis 0 (scale shape (OC, 1, ...) when per channel);
    returns (float32 weights, possibly moved onto ties, QSpec with scale shaped for w, per_channel)."""
    wq = _random_quant(rng, pow2(), p_bipolar=0.12)
    if wq.kind == "quant" and not wq.signed and rng.random() < 0.5:
        w = np.abs(w)
    per_channel = bool(per_channel_axis0 and rng.random() < 0.5)
    lo, hi = wq.int_range()
    top = max(abs(lo), abs(hi), 1)
    oc = w.shape[0]
    cshape = (oc,) + (1,) * (w.ndim - 1)
    # levels {0, 1}: scale by the median, not the maximum, or FLOOR / HALF_UP leave (nearly) every weight at 0
    # (whole channels of a small kernel with it)
    absw = np.abs(w.reshape(oc, -1))
    reduce = (lambda a, **kw: np.median(a, **kw)) if (wq.kind == "quant" and not wq.bipolar and hi - lo == 1) else np.max
    if per_channel:
        base = reduce(absw, axis=1) / top
        scale = np.array([_pick_scale(rng, b * rng.uniform(0.7, 1.3), pow2()) for b in base])
        if rng.random() < 0.08:  # negative weight scales on some channels (legal in qonnx)
            scale = scale * rng.choice([-1, 1], size=oc)
        wq.scale = scale.astype(np.float32).reshape(cshape)
    else:
        wq.scale = np.asarray(_pick_scale(rng, float(reduce(absw)) / top * rng.uniform(0.7, 1.3), pow2()),
                              dtype=np.float32)
    if wq.kind == "quant" and not wq.bipolar and rng.random() < 0.3:
        ties = rng.random(w.shape) < 0.25
        k = rng.integers(lo, max(hi, lo + 1), size=w.shape) + 0.5
        w = np.where(ties, k * np.broadcast_to(wq.scale.astype(np.float64), w.shape), w)
    return w.astype(np.float32), wq, per_channel


def _bias(rng, y: np.ndarray, in_step: float, wq: QSpec) -> tuple[np.ndarray | None, str]:
    """Optional per-channel bias for pre-activation y (channels on axis 1): none, centred, or on the grid."""
    c = y.shape[1]
    kind = ["none", "none", "centre", "grid"][rng.integers(4)]
    if kind == "none":
        return None, kind
    if kind == "centre":  # like a trained bias: each channel's threshold somewhere inside its spread
        flat = _per_channel(y)
        centre = np.quantile(flat, rng.uniform(0.2, 0.8), axis=0) + rng.normal(size=c) * 0.1 * (flat.std(axis=0) + 1e-6)
        return (-centre).astype(np.float32), kind
    wstep = float(np.min(np.abs(wq.scale.astype(np.float64))))
    return (rng.integers(-8, 9, size=c) * 0.5 * in_step * wstep).astype(np.float32), kind


def random_cnn(seed: int) -> tuple[onnx.ModelProto, np.ndarray, dict, str]:
    """(model, float inputs (N_FRAMES, 1, C, H, W) or (N_FRAMES, 1, C, L), folding spec, description)."""
    r = build_random_cnn(seed)
    return r.model, r.inputs, r.folding, r.description


def build_random_cnn(seed: int) -> RandomModel:
    rng = np.random.default_rng(seed)
    g = _Graph()
    desc: list[str] = []
    feat: set[str] = set()
    pow2_rate = [0.0, 0.5, 1.0, 1.0][rng.integers(4)]

    def pow2() -> bool:
        return bool(rng.random() < pow2_rate)

    one_d = bool(rng.random() < 0.3)
    c_in = int(rng.integers(1, 13))
    if one_d:
        h, w_ = int(rng.integers(4, 25)), 1
        onnx_in = [1, c_in, h]
    else:
        h, w_ = int(rng.integers(3, 13)), int(rng.integers(3, 13))
        onnx_in = [1, c_in, h, w_]
    n_conv = int(rng.integers(1, 4))
    n_dense = int(rng.integers(1, 3)) if rng.random() < 0.4 else 0
    feat.add("conv1d" if one_d else "conv2d")

    def onnx_ch(c: int) -> tuple:  # per-channel constant shape in the ONNX feature-map layout
        return (1, c, 1) if one_d else (1, c, 1, 1)

    # ---------------------------------------------------------------- host preprocessing (optional)
    x_name = "global_in"
    cur = x_name
    cal = rng.normal(size=(N_CALIBRATION_CNN, c_in, h, w_)) * rng.choice([0.5, 1.0, 4.0])
    head_ops: list[tuple[str, np.ndarray]] = []  # (op, constant broadcast to (1, C, H, W))
    if rng.random() < 0.25:
        for _ in range(int(rng.integers(1, 3))):
            op = ["Add", "Mul", "Div"][rng.integers(3)]
            shape = onnx_ch(c_in) if rng.random() < 0.5 else _scalar_shape(rng)
            if op == "Add":
                k = rng.normal(size=shape).astype(np.float32)
            else:
                k = (rng.uniform(0.25, 4.0, size=shape) * rng.choice([-1, 1])).astype(np.float32)
            cur = g.node(op, [cur, g.const(k, "pre")])
            cfull = np.broadcast_to(k.reshape(-1, 1, 1) if k.size == c_in and k.size > 1 else k.reshape(()),
                                    (c_in, h, w_)).reshape(1, c_in, h, w_)
            cal = {"Add": np.add, "Mul": np.multiply, "Div": np.divide}[op](cal, cfull.astype(np.float64))
            head_ops.append((op, cfull))
        desc.append("head " + "/".join(op for op, _ in head_ops))
        feat.add("head_ops")

    # ---------------------------------------------------------------- input quantizer
    qin = _random_quant(rng, pow2(), max_bits=8, p_bipolar=0.12)
    neg_in = bool(rng.random() < 0.08)
    mag = _act_scale_magnitude(qin, _per_channel(cal), neg_in, rng)
    qin.scale = np.asarray(_pick_scale(rng, float(np.max(mag)), pow2()) * (-1 if neg_in else 1),
                           dtype=np.float32).reshape(_scalar_shape(rng))
    cur = g.quant(cur, qin)
    flat_head = [(op, k.reshape(1, -1)) for op, k in head_ops]
    n_in = c_in * h * w_
    cal = _random_inputs(rng, qin, flat_head, n_in, N_CALIBRATION_CNN).reshape(N_CALIBRATION_CNN, c_in, h, w_).astype(np.float64)
    for op, k in head_ops:
        cal = {"Add": np.add, "Mul": np.multiply, "Div": np.divide}[op](cal, k.astype(np.float64))
    cal = qin.apply(cal)
    sh = cal.astype(np.float32)
    cur_q = qin  # the quantizer that produced the current tensor
    in_step = abs(float(qin.scale.ravel()[0]))
    desc.append(f"in {'x'.join(map(str, onnx_in[1:]))} {qin.describe()}")
    feat |= _quant_features("in", qin)

    epi = _Epilogue(g, rng, pow2, feat, [])
    layer_names: list[str] = []
    fold_layers: dict[str, dict] = {}
    fold_draws: list[tuple[str, str, int, int]] = []  # (name, kind, in channels, out channels), drawn at the end
    c = c_in
    for li in range(n_conv):
        last = li == n_conv - 1 and n_dense == 0
        parts: list[str] = []
        epi.parts = parts
        depthwise = c >= 2 and bool(rng.random() < 0.25)
        oc = c if depthwise else int(rng.integers(1, 13))
        if one_d:
            kh, kw = int(rng.integers(1, min(4, h) + 1)), 1
        elif rng.random() < 0.7:
            kh = kw = int(rng.integers(1, min(4, h, w_) + 1))
        else:
            kh, kw = int(rng.integers(1, min(4, h) + 1)), 1
        stride = int(rng.choice([1, 2, 3], p=[0.55, 0.3, 0.15]))
        pad_ok = not cur_q.bipolar
        pt, pb, kind_h = _pads_for(rng, kh, pad_ok)
        pl, pr, kind_w = _pads_for(rng, kw, pad_ok)
        pads = (pt, pl, pb, pr)
        oh, ow = _out_size(h, kh, stride, pt + pb), (1 if one_d else _out_size(w_, kw, stride, pl + pr))

        w = rng.normal(size=(oc, 1 if depthwise else c, kh, kw))
        w, wq, per_channel = _weight_quant(rng, pow2, w, True)
        w_levels = wq.apply(w)
        qa, relu, negative = epi.draw_quantizer(last)
        y = _conv(cal, w_levels, (stride, stride), pads, depthwise)
        y32 = _conv(sh, w_levels.astype(np.float32), (stride, stride), pads, depthwise)
        bias, bias_kind = _bias(rng, y, in_step, wq) if rng.random() < 0.6 else (None, "none")
        bn = epi.draw_batchnorm(y if bias is None else y + bias.reshape(1, oc, 1, 1))
        bias, revived = epi.revive(y, bias, bn, qa, relu, negative)
        if revived:
            feat.add("revived")
            bias_kind = bias_kind if bias_kind != "none" or bias is None else "revive"

        # ONNX layout: 1-D drops the trailing unit axis
        w_onnx = w[..., 0] if one_d else w
        s_onnx = wq.scale.reshape(oc, 1, 1) if (one_d and per_channel) else wq.scale
        w_name = g.quant(g.const(w_onnx, "w"), QSpec(wq.kind, s_onnx, wq.bits, wq.signed, wq.narrow, wq.rounding))
        inputs = [cur, w_name] + ([g.const(bias, "conv_b")] if bias is not None else [])
        attrs = dict(kernel_shape=[kh] if one_d else [kh, kw], strides=[stride] if one_d else [stride, stride],
                     pads=[pt, pb] if one_d else [pt, pl, pb, pr], group=c if depthwise else 1)
        if rng.random() < 0.5:
            attrs["dilations"] = [1] if one_d else [1, 1]
        cur = g.node("Conv", inputs, **attrs)
        name = f"Conv_{g.op_count['Conv'] - 1}"
        if bias is not None:
            y = y + bias.reshape(1, oc, 1, 1).astype(np.float64)
            y32 = y32 + bias.reshape(1, oc, 1, 1)
        layer_names.append(name)
        fold_draws.append((name, "dw" if depthwise else "conv", c, oc))
        pad_kind = "asym" if "asym" in (kind_h, kind_w) else ("sym" if "sym" in (kind_h, kind_w) else "none")
        wdesc = wq.describe().replace("BipolarQuant ", "W:bipolar ").replace("Quant ", "W:")
        ktxt = f"k{kh}" if one_d else f"k{kh}x{kw}"
        ptxt = "" if pad_kind == "none" else (f" p[{pt},{pb}]" if one_d else f" p[{pt},{pl},{pb},{pr}]")
        parts.append(f"{name} {c}->{oc}{' dw' if depthwise else ''} {ktxt} s{stride}{ptxt} "
                     f"-> {oh}{'' if one_d else 'x' + str(ow)} {wdesc}{' pc' if per_channel else ''}"
                     f"{'' if bias is None else ' +b(' + bias_kind + ')'}")
        feat |= _quant_features("w", wq) | {f"conv_pad_{pad_kind}", f"conv_stride_{stride}", f"conv_bias_{bias_kind}"}
        feat |= {"depthwise"} if depthwise else set()
        feat |= {"w_per_channel"} if per_channel else set()
        feat |= {"kernel_kx1"} if (not one_d and kw == 1 and kh > 1) else set()
        feat |= {"stride_gt_kernel"} if stride > max(kh, kw) else set()

        cur, y, qa = epi.apply(cur, y, y32, bn, qa, relu, negative, last, onnx_ch(oc))
        cal = y
        h, w_, c = oh, ow, oc
        if qa is not None:
            cur_q = qa
            in_step = float(np.min(np.abs(qa.scale)))
            # ------------------------------------------------------------ MaxPool (after a positive-scale quantizer)
            if np.all(qa.scale > 0) and rng.random() < 0.35:
                kmax = min(3, h, w_ if not one_d else h)
                kp = int(rng.integers(2, kmax + 1)) if kmax >= 2 and rng.random() < 0.9 else 1
                sp = int(rng.integers(1, kp + 1))
                kern, strd = ((kp, 1), (sp, 1)) if one_d else ((kp, kp), (sp, sp))
                cur = g.node("MaxPool", [cur], kernel_shape=[kp] if one_d else [kp, kp],
                             strides=[sp] if one_d else [sp, sp])
                pname = f"MaxPool_{g.op_count['MaxPool'] - 1}"
                cal = _maxpool(cal, kern, strd)
                h, w_ = cal.shape[2], cal.shape[3]
                if not last:
                    layer_names.append(pname)
                    fold_draws.append((pname, "pool", c, c))
                # after the network's last quantizer the pool is float work for the host tail: no folding entry
                parts.append(f"{pname}{' (tail)' if last else ''} k{kp} s{sp} -> {h}{'' if one_d else 'x' + str(w_)}")
                feat |= {"maxpool_tail" if last else "maxpool"} | ({"maxpool_overlap"} if kp > sp else set())
        desc.append(" ".join(parts))
        sh = cal.astype(np.float32)

    # ---------------------------------------------------------------- dense layers (optional)
    out_shape: list[int] = [1, c, h] if one_d else [1, c, h, w_]
    dense_names: list[str] = []
    dense_dims: list[int] = []
    if n_dense:
        cur = g.node("Flatten", [cur], axis=1)
        fan_in = c * h * w_
        cal = cal.reshape(len(cal), fan_in)
        sh = cal.astype(np.float32)
        dense_dims.append(fan_in)
        desc.append(f"Flatten {fan_in}")
        for di in range(n_dense):
            last = di == n_dense - 1
            parts = []
            epi.parts = parts
            n_out = int(rng.integers(1, 33))
            op = "Gemm" if rng.random() < 0.4 else "MatMul"
            trans_b = op == "Gemm" and bool(rng.random() < 0.5)
            wt = rng.normal(size=(n_out, fan_in))  # output channels first, as for the convolutions
            wt, wq, per_channel = _weight_quant(rng, pow2, wt, True)
            w_levels = wq.apply(wt).T  # (fan_in, n_out)
            qa, relu, negative = epi.draw_quantizer(last)
            y = cal @ w_levels
            y32 = sh @ w_levels.astype(np.float32)
            bias, bias_kind = _bias(rng, y, in_step, wq)
            bn = epi.draw_batchnorm(y if bias is None else y + bias)
            bias, revived = epi.revive(y, bias, bn, qa, relu, negative)
            if revived:
                feat.add("revived")
                bias_kind = bias_kind if bias_kind != "none" or bias is None else "revive"
            if trans_b:
                w_name = g.quant(g.const(wt, "w"), wq)
            else:
                s = wq.scale.reshape(1, n_out) if per_channel else wq.scale
                w_name = g.quant(g.const(np.ascontiguousarray(wt.T), "w"), QSpec(wq.kind, s, wq.bits, wq.signed, wq.narrow, wq.rounding))
            if op == "Gemm":
                inputs = [cur, w_name]
                use_c = bias is not None and rng.random() < 0.7
                if use_c:
                    inputs.append(g.const(bias, "gemm_c"))
                cur = g.node("Gemm", inputs, transB=int(trans_b))
                name = f"Gemm_{g.op_count['Gemm'] - 1}"
                if bias is not None and not use_c:
                    cur, _ = _bias_node(g, rng, cur, y, bias)
            else:
                cur = g.node("MatMul", [cur, w_name])
                name = f"MatMul_{g.op_count['MatMul'] - 1}"
                if bias is not None:
                    cur, _ = _bias_node(g, rng, cur, y, bias)
            if bias is not None:
                y = y + bias.astype(np.float64)
                y32 = y32 + bias
            layer_names.append(name)
            dense_names.append(name)
            dense_dims.append(n_out)
            wdesc = wq.describe().replace("BipolarQuant ", "W:bipolar ").replace("Quant ", "W:")
            parts.append(f"{name} {fan_in}->{n_out}{' tB' if trans_b else ''} {wdesc}{' pc' if per_channel else ''}"
                         f"{'' if bias is None else ' +b(' + bias_kind + ')'}")
            feat |= _quant_features("w", wq) | {op, f"dense_bias_{bias_kind}"}
            feat |= {"w_per_channel"} if per_channel else set()
            cur, y, qa = epi.apply(cur, y, y32, bn, qa, relu, negative, last, (1, n_out))
            if qa is not None:
                in_step = float(np.min(np.abs(qa.scale)))
            desc.append(" ".join(parts))
            cal = y
            sh = cal.astype(np.float32)
            fan_in = n_out
        out_shape = [1, fan_in]
        feat.add(f"dense_{n_dense}")
    feat.add(f"conv_{n_conv}")

    in_vi = helper.make_tensor_value_info(x_name, TensorProto.FLOAT, onnx_in)
    out_vi = helper.make_tensor_value_info(cur, TensorProto.FLOAT, out_shape)
    graph = helper.make_graph(g.nodes, f"random_cnn_{seed}", [in_vi], [out_vi], initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(QONNX_DOMAIN, 1)],
                              producer_name="rtlgen-cnn-models")
    model.ir_version = 8

    # ---------------------------------------------------------------- folding, inputs
    for name, kind, cin, cout in fold_draws:
        if kind == "conv":
            fold_layers[name] = {"PE": _fold_value(rng, cout), "SIMD": _fold_value(rng, cin)}
        elif kind == "dw":
            fold_layers[name] = {"PE": _fold_value(rng, cout)}
        else:
            fold_layers[name] = {"SIMD": _fold_value(rng, cin)}
    if dense_names:
        fold_layers.update(_random_folding(rng, dense_names, dense_dims)["layers"])
    folding = {"layers": {name: fold_layers[name] for name in layer_names}}
    x = _random_inputs(rng, qin, flat_head, n_in).reshape([N_FRAMES] + onnx_in)
    fold_txt = ",".join(f"{v.get('PE', '-')}x{v.get('SIMD', '-')}" for v in folding["layers"].values())
    description = f"seed {seed}: " + "; ".join(desc) + f"; fold PExSIMD {fold_txt}"
    return RandomModel(model, x, folding, description, layer_names, feat)


# ------------------------------------------------------------------------------------------- self-test

def _run_qonnx(model: onnx.ModelProto, inputs: np.ndarray, frame_shape: list[int]) -> tuple[np.ndarray, list]:
    """Outputs of qonnx (cleanup, then execute_onnx frame by frame) stacked, and the cleaned model's nodes."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

    mw = cleanup_model(ModelWrapper(onnx.ModelProto.FromString(model.SerializeToString())))
    iname, oname = mw.graph.input[0].name, mw.graph.output[0].name
    outs = [execute_onnx(mw, {iname: np.asarray(f, dtype=np.float32).reshape(frame_shape)})[oname] for f in inputs]
    return np.stack(outs), list(mw.graph.node)


def _ops_summary(nodes: list) -> str:
    from collections import Counter

    return " ".join(f"{k}{'' if v == 1 else 'x' + str(v)}" for k, v in Counter(
        n.op_type for n in nodes if n.op_type not in ("Quant", "BipolarQuant")).items())


def _layer_names(nodes: list) -> list[str]:
    return [n.name for n in nodes if n.op_type in ("Conv", "MaxPool", "MatMul", "Gemm")]


def main() -> int:
    import time
    import warnings

    warnings.filterwarnings("ignore")
    failures = 0
    for wb, ab in ((1, 1), (2, 2)):
        t = time.monotonic()
        model, x = cnv_model(wb, ab, seed=0)
        y, ops = _run_qonnx(model, x, [1, 3, 32, 32])
        y = y.reshape(len(x), -1)
        classes = y.argmax(axis=1)
        compute, pools = cnv_layer_names()
        ok = (bool(np.all(np.isfinite(y))) and len(set(classes.tolist())) > 1
              and sorted(_layer_names(ops)) == sorted(compute + pools))
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} cnv-w{wb}a{ab}: in {x.shape} out {y.shape} classes {classes.tolist()} "
              f"ops {_ops_summary(ops)} ({time.monotonic() - t:.1f}s)")
    names = cnv_layer_names()
    print(f"     cnv folding: {cnv_folding_spec(*names)['layers']}")
    print(f"     cnv cycles per layer {cnv_cycles()}, bottleneck {max(cnv_cycles())}")
    for seed in range(50):
        t = time.monotonic()
        try:
            rm = build_random_cnn(seed)
            y, ops = _run_qonnx(rm.model, rm.inputs, list(rm.inputs.shape[1:]))
            names = _layer_names(ops)  # a trailing MaxPool (host tail) is not among the layers
            ok = (bool(np.all(np.isfinite(y))) and names[:len(rm.layers)] == rm.layers == list(rm.folding["layers"])
                  and all(n.startswith("MaxPool") for n in names[len(rm.layers):]))
            msg = f"in {tuple(rm.inputs.shape[1:])} out {tuple(y.shape[1:])} ops {_ops_summary(ops)}"
        except Exception as err:  # noqa: BLE001 - report every failure
            ok, msg = False, f"{type(err).__name__}: {err}"
            rm = None
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} random_cnn {seed}: {msg} ({time.monotonic() - t:.1f}s)")
        if rm is not None:
            print(f"     {rm.description}")
    print(f"{failures} failure(s)")
    return int(failures > 0)


if __name__ == "__main__":
    raise SystemExit(main())
