"""The label-select core (ip_cores/label_select.py) in Amaranth's simulator, and the label-select layer end to end.

Expected labels come from numpy's argmax on the frames (and its reversed form for last-index ties), never from
the core's own reference function."""
from __future__ import annotations

import numpy as np
import pytest

from ip_cores.elements import ElementFormat
from ip_cores.label_select import LabelSelect, label_select_reference

S, U = ElementFormat.signed, ElementFormat.unsigned
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")  # a core refused in __init__


def _pack(frame_words, fmt):
    word = 0
    for j, v in enumerate(frame_words):
        word |= (int(v) & ((1 << fmt.width) - 1)) << (j * fmt.width)
    return word


def simulate_label_select(core: LabelSelect, frames: np.ndarray, p_gap: float, p_stall: float, seed: int = 0):
    """Drive `frames` (N, C) through the core with random input gaps and output stalls; returns the labels read
    and the cycle each label left."""
    from amaranth.sim import Simulator

    rng = np.random.default_rng(seed)
    words = [_pack(f[k * core.simd:(k + 1) * core.simd], core.fmt) for f in frames for k in range(core.folds)]
    got, times = [], []

    async def bench(ctx):
        i, cycle = 0, 0
        while len(got) < len(frames):
            offer = i < len(words) and rng.random() >= p_gap
            ctx.set(core.i.valid, int(offer))
            ctx.set(core.i.payload, words[i] if i < len(words) else 0)
            ready = rng.random() >= p_stall
            ctx.set(core.o.ready, int(ready))
            if offer and ctx.get(core.i.ready):
                i += 1
            if ready and ctx.get(core.o.valid):
                got.append(ctx.get(core.o.payload))
                times.append(cycle)
            await ctx.tick()
            cycle += 1
            assert cycle < 200 * len(words) + 200, "label select stopped (deadlock)"

    sim = Simulator(core)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return np.array(got), times


CASES = [(S(4), 10, 1, False), (S(4), 10, 5, False), (U(6), 12, 4, False), (S(8), 16, 16, False),
         (U(2), 6, 3, True), (S(11), 5, 5, True), (ElementFormat.bipolar(), 8, 2, False)]


@pytest.mark.parametrize("fmt,channels,simd,last_on_tie", CASES)
def test_label_select_core(fmt, channels, simd, last_on_tie):
    rng = np.random.default_rng(channels * 7 + simd)
    lo, hi = (0, 1) if fmt.kind == "bipolar" else (fmt.min, fmt.max)
    frames = rng.integers(lo, hi + 1, size=(40, channels))
    frames[0] = hi  # every element tied at the maximum
    frames[1] = lo
    frames[2, :] = lo
    frames[2, [1, channels - 1]] = hi  # two maxima, far apart
    core = LabelSelect(channels, simd, fmt, last_on_tie=last_on_tie)
    got, _ = simulate_label_select(core, frames, p_gap=0.3, p_stall=0.4, seed=channels)
    want = (channels - 1 - np.argmax(frames[:, ::-1], axis=1)) if last_on_tie else np.argmax(frames, axis=1)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(label_select_reference(frames, last_on_tie)[:, 0], want)


def test_label_select_full_rate():
    """Free-running: one input word a cycle, one label every C/SIMD cycles."""
    core = LabelSelect(24, 4, S(6))
    frames = np.random.default_rng(1).integers(-32, 32, size=(30, 24))
    got, times = simulate_label_select(core, frames, p_gap=0.0, p_stall=0.0)
    np.testing.assert_array_equal(got, np.argmax(frames, axis=1))
    assert np.all(np.diff(times[5:]) == core.cycles_per_frame())


def test_label_select_rejects_bad_folding():
    with pytest.raises(ValueError, match="SIMD 4 must divide the 10 channels"):
        LabelSelect(10, 4, S(4))


# ---------------------------------------------------------------------------------------------------------
# the layer end to end: `--argmax-in-hardware`

def _with_label_op(path, out_path, op="ArgMax", **attrs):
    """An own test model with a TopK/ArgMax appended, its index the model's output."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    scores = model.graph.output[0].name
    if op == "TopK":
        k = attrs.pop("k", 1)
        model.graph.initializer.append(numpy_helper.from_array(np.array([k], dtype=np.int64), "topk_k"))
        node = helper.make_node("TopK", [scores, "topk_k"], ["topk_values", "label"], name="topk", axis=-1, **attrs)
    else:
        node = helper.make_node("ArgMax", [scores], ["label"], name="argmax", axis=1, keepdims=1, **attrs)
    model.graph.node.append(node)
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info("label", TensorProto.INT64, [1, 1]))
    onnx.save(model, str(out_path))
    return out_path


def _build_and_run(path, x, out_dir, folding=None, **sim):
    from rtlgen.build import BuildOptions, build
    from rtlgen.runner import run_design

    report = build(path, out_dir, BuildOptions(argmax_in_hardware=True, folding_spec=folding))
    return report, run_design(out_dir, x, **sim)


def test_finn_tfc_label_in_hardware(tmp_path):
    """FINN's TFC-W1A1 (TopK tail): labels equal qonnx's on its 16 reference frames, one byte a frame out."""
    from conftest import SHARED_MODELS, shared_model, shared_refs

    path = shared_model("tfc_w1a1_finnonnx")
    x, y_ref = shared_refs("tfc_w1a1_finnonnx")
    report, result = _build_and_run(path, x, tmp_path / "d", p_in_gap=0.2, p_out_stall=0.5, seed=3)
    np.testing.assert_array_equal(result.outputs.reshape(-1), y_ref.reshape(-1).astype(np.int64))
    assert result.outputs.dtype == np.int64
    expected = int(np.load(SHARED_MODELS / "data" / "finn_tfc_expected_label.npy").ravel()[0])
    assert int(result.outputs.reshape(-1)[0]) == expected
    assert report["io"]["out_frame_bytes"] == 1 and report["layers"][-1]["op"] == "LabelSelect"
    free = _build_and_run(path, x, tmp_path / "free")[1]
    est = report["estimate"]["ii_cycles"]
    assert abs(free.stats["ii_cycles"] - est) <= 0.02 * est


@pytest.mark.parametrize("op,attrs,folding", [
    ("ArgMax", {}, None),
    ("ArgMax", {"select_last_index": 1}, {"layers": {"ArgMax_0_label": {"SIMD": 5}}}),
    ("TopK", {}, {"layers": {"Gemm_1": {"PE": 5, "SIMD": 12}, "TopK_0_label": {"SIMD": 1}}}),
])
def test_own_model_label_in_hardware(op, attrs, folding, tmp_path):
    """quant_output ends on an int8 output quantizer (one scale): the label of its levels is the label of its
    scores. Hardware == golden; labels == qonnx's on the model with the TopK/ArgMax."""
    from conftest import own_model
    from rtlgen.frontend import load_model
    from rtlgen.reference import qonnx_execute

    base, x, _ = own_model("quant_output")
    path = _with_label_op(base, tmp_path / "label.onnx", op, **attrs)
    x = np.concatenate([x, np.random.default_rng(2).uniform(-1, 2, size=(24,) + x.shape[1:]).astype(np.float32)])
    report, result = _build_and_run(path, x, tmp_path / "d", folding, p_in_gap=0.3, p_out_stall=0.3, seed=1)
    y_ref, _ = qonnx_execute(load_model(path), x)
    np.testing.assert_array_equal(result.outputs.reshape(-1), y_ref.reshape(-1))
    assert report["layers"][-1]["label_select"]["ties"] == ("last index" if attrs else "first index")


@pytest.mark.parametrize("name,op,attrs,why", [
    ("w4a4_perchannel_bias", "ArgMax", {}, "not the same function of every channel"),
    ("quant_output", "TopK", {"k": 2}, "k is 2"),
    ("quant_output", "TopK", {"largest": 0}, "largest=0"),
])
def test_label_in_hardware_refusals(name, op, attrs, why, tmp_path):
    from conftest import own_model
    from rtlgen.build import BuildOptions, build
    from rtlgen.errors import RtlgenError

    base, _, _ = own_model(name)
    path = _with_label_op(base, tmp_path / "label.onnx", op, **attrs)
    with pytest.raises(RtlgenError, match=why):
        build(path, tmp_path / "d", BuildOptions(argmax_in_hardware=True))
    assert not (tmp_path / "d").exists()


def test_label_in_hardware_needs_a_label_op(tmp_path):
    from conftest import own_model
    from rtlgen.build import BuildOptions, build
    from rtlgen.errors import RtlgenError

    path, _, _ = own_model("quant_output")
    with pytest.raises(RtlgenError, match="does not end in a TopK or ArgMax"):
        build(path, tmp_path / "d", BuildOptions(argmax_in_hardware=True))
