"""Random QONNX residual MLPs for fuzzing rtlgen's DAG: forks, skip paths and residual Adds.

`build_random_residual(seed)` builds a fully-connected network with `onnx.helper` and the qonnx Quant op, in the
form `tests/random_models.py` returns (`RandomModel`: model, float inputs, a random folding, a description, the
layer names rtlgen must find), so its `check_golden` and `check_end_to_end` run it. Everything is drawn from
`numpy.random.default_rng([seed, 0x7E5])`, a stream of its own: a seed names a model forever.

What varies:
- input 2-16 features, width 2-12, 1-3 blocks, a dense stem and a dense head (float accumulators or a quantizer);
- each block: a long path of one or two dense layers (the inner ones ReLU + unsigned quantizer, the last a signed
  or unsigned quantizer), or a nested block followed by a dense layer; a skip path that is the fork itself or a
  dense projection with its own quantizer;
- after the Add: a per-channel positive Mul (a folded BatchNormalization) or none, a ReLU or none, then an
  unsigned or signed quantizer;
- activation bits 2-6, weights 2-4 bits with power-of-two scales, activation scales powers of two calibrated on
  random data, and in one block of five a long path whose scale is 3x or 1.5x the skip's (alignment 3:1, 4:3...);
- the folding: every layer's PE and SIMD any divisor (the Adds' PE too).
"""
from __future__ import annotations

import numpy as np

from random_models import N_CALIBRATION, N_FRAMES, QSpec, RandomModel, _Graph, _divisors, _random_inputs


def _po2(magnitude: float) -> float:
    magnitude = float(np.clip(magnitude, 2.0**-12, 2.0**12)) if np.isfinite(magnitude) and magnitude > 0 else 1.0
    return float(2.0 ** np.ceil(np.log2(magnitude)))


class _Builder:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng([seed, 0x7E5])
        self.g = _Graph()
        self.layers: list[str] = []  # in rtlgen's order: a block's long path, its skip path, its Add
        self.dims: dict[str, tuple[int, int]] = {}  # layer -> (MW, MH) for the folding (an Add: (C, C))
        self.desc: list[str] = []
        self.features: set[str] = set()

    def quantize(self, cur: str, val: np.ndarray, bits: int, signed: bool, scale: float | None = None,
                 near: float | None = None):
        """A Quant calibrated on `val` (a power-of-two scale spreading it over the levels, within 2^6 of `near` when
        given: an Add's inputs must align with small multipliers) unless `scale` is given."""
        q = QSpec("quant", 1.0, bits, signed, False, "ROUND")
        lo, hi = q.int_range()
        if scale is None:
            spread = np.quantile(np.abs(val) if signed else np.clip(val, 0, None), 0.9)
            scale = _po2(spread / max(abs(lo), hi))
            if near is not None:
                scale = float(np.clip(scale, near / 64, near * 64))
        q.scale = np.asarray(scale, dtype=np.float32)
        return self.g.quant(cur, q), q.apply(val), q

    def dense(self, cur: str, val: np.ndarray, n_out: int):
        rng = self.rng
        bits = int(rng.integers(2, 5))
        levels = rng.integers(-(2 ** (bits - 1)) + 1, 2 ** (bits - 1), size=(val.shape[1], n_out))
        scale = 2.0 ** -int(rng.integers(0, 4))
        wq = QSpec("quant", np.float32(scale), bits, True, False, "ROUND")
        w = self.g.quant(self.g.const(levels * scale, "w"), wq)
        cur = self.g.node("MatMul", [cur, w])
        self.layers.append(cur)  # named by its output tensor until `sorted_names`
        self.dims[cur] = (val.shape[1], n_out)
        return cur, val @ (levels * scale)

    def block(self, cur: str, val: np.ndarray, q_in: QSpec, depth: int):
        """A residual block on the quantized tensor `cur` (values `val`, quantizer `q_in`)."""
        rng = self.rng
        width = val.shape[1]
        bits = int(rng.integers(2, 7))
        # long path: a nested block and a dense layer, or one or two dense layers
        a, va = cur, val
        nested = depth < 2 and rng.random() < 0.25
        if nested:  # a dense layer, then a block of its own, then the long path's last dense layer
            a, va = self.dense(a, va, width)
            a = self.g.node("Relu", [a])
            a, va, q_mid = self.quantize(a, np.maximum(va, 0), bits, signed=False)
            a, va, _ = self.block(a, va, q_mid, depth + 1)
            self.features.add("nested")
            steps = 1
        else:
            steps = int(rng.integers(1, 3))
        for step in range(steps - 1):
            a, va = self.dense(a, va, width)
            a = self.g.node("Relu", [a])
            a, va, _ = self.quantize(a, np.maximum(va, 0), bits, signed=False)
        a, va = self.dense(a, va, width)
        # skip path: the fork itself, or a dense projection with a quantizer of its own
        if rng.random() < 0.5:
            b, vb, qb = cur, val, q_in
            self.features.add("identity_skip")
        else:
            b, vb = self.dense(cur, val, width)
            b, vb, qb = self.quantize(b, vb, bits + 1, signed=True, near=float(q_in.scale))
            self.features.add("projection_skip")
        odd = rng.random() < 0.2  # a long-path scale 3x or 1.5x the skip's: alignment multipliers not powers of two
        scale = float(qb.scale) * float(rng.choice([3.0, 1.5])) if odd else None
        a, va, qa = self.quantize(a, va, bits + 1, signed=bool(rng.random() < 0.7), scale=scale, near=float(qb.scale))
        if odd:
            self.features.add("odd_alignment")
        s = self.g.node("Add", [a, b])
        self.layers.append(s)
        self.dims[s] = (width, width)
        vs = va + vb
        post = []
        if rng.random() < 0.3:
            gain = (2.0 ** rng.integers(-1, 2, size=(1, width))).astype(np.float32)
            s = self.g.node("Mul", [s, self.g.const(gain, "gain")])
            vs = vs * gain
            post.append("Mul")
        relu = rng.random() < 0.7
        if relu:
            s = self.g.node("Relu", [s])
            vs = np.maximum(vs, 0)
            post.append("Relu")
        out, vout, q = self.quantize(s, vs, bits, signed=not relu and rng.random() < 0.5)
        self.desc.append(f"block{depth}[{'nested+1' if nested else steps} long, "
                         f"{'id' if b is cur else 'proj'} skip, {'/'.join(post) or '-'}, {bits}b]")
        return out, vout, q

    def sort_and_name(self) -> dict[str, str]:
        """Put the nodes in the order qonnx's SortGraph gives them (`toposort_flatten`: level by level, by index
        within a level) and name them as its GiveUniqueNodeNames will (op type and count in that order), so the
        layer names the generator hands out are rtlgen's; returns output tensor -> node name."""
        from onnx import helper
        from toposort import toposort_flatten

        producer = {out: i for i, n in enumerate(self.g.nodes) for out in n.output}
        deps = {i: {producer[x] for x in n.input if x in producer} for i, n in enumerate(self.g.nodes)}
        order = toposort_flatten(deps)
        counts: dict[str, int] = {}
        named, by_output = [], {}
        for i in order:
            n = self.g.nodes[i]
            name = f"{n.op_type}_{counts.get(n.op_type, 0)}"
            counts[n.op_type] = counts.get(n.op_type, 0) + 1
            node = helper.make_node(n.op_type, list(n.input), list(n.output), name=name, domain=n.domain)
            node.attribute.extend(n.attribute)
            named.append(node)
            by_output[n.output[0]] = name
        self.g.nodes[:] = named
        return by_output

    def folding(self, names: dict[str, str]) -> dict:
        layers = {}
        for out in self.layers:
            mw, mh = self.dims[out]
            entry = {"PE": int(self.rng.choice(_divisors(mh)))}
            if not names[out].startswith("Add"):
                entry["SIMD"] = int(self.rng.choice(_divisors(mw)))
            layers[names[out]] = entry
        return {"layers": layers}


def build_random_residual(seed: int) -> RandomModel:
    import onnx
    from onnx import TensorProto, helper

    b = _Builder(seed)
    rng = b.rng
    n_in, width = int(rng.integers(2, 17)), int(rng.integers(2, 13))
    cal = rng.normal(size=(N_CALIBRATION, n_in))
    qin = QSpec("quant", np.float32(_po2(np.abs(cal).max() / 127)), 8, True, False, "ROUND")
    cur = b.g.quant("global_in", qin)
    val = qin.apply(cal)
    cur, val = b.dense(cur, val, width)
    cur = b.g.node("Relu", [cur])
    cur, val, q = b.quantize(cur, np.maximum(val, 0), int(rng.integers(2, 7)), signed=False)
    blocks = int(rng.integers(1, 4))
    for _ in range(blocks):
        cur, val, q = b.block(cur, val, q, 0)
    n_out = int(rng.integers(2, 11))
    cur, val = b.dense(cur, val, n_out)
    if rng.random() < 0.5:
        cur, val, _ = b.quantize(cur, val, 8, signed=True)
    names = b.sort_and_name()
    graph = helper.make_graph(b.g.nodes, f"residual_{seed}",
                              [helper.make_tensor_value_info("global_in", TensorProto.FLOAT, [1, n_in])],
                              [helper.make_tensor_value_info(cur, TensorProto.FLOAT, [1, n_out])], b.g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                    helper.make_opsetid("qonnx.custom_op.general", 1)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    inputs = _random_inputs(rng, qin, [], n_in, N_FRAMES)
    desc = f"residual in {n_in} width {width} " + " ".join(b.desc) + f" head {n_out}"
    return RandomModel(model, inputs, b.folding(names), desc, [names[out] for out in b.layers],
                       b.features | {f"blocks_{blocks}"})
