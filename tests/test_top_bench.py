"""Whole generated designs under cocotb with cocotbext-axi: random input gaps and random output back-pressure
(several seeds and densities) and named pause patterns (always ready, long stalls of 50-200 cycles, saturating
input against long output stalls and the reverse), every output word compared with the golden model and
TLAST checked on the last word of every output frame. The stream protocol checker watches s_axis and m_axis
in every run, and the first run of each design also resets it in the middle of a frame (the bench's
`reset_mid_frame` test) and sends the frames again with one input frame a word short and (another run)
a word long (the bench's `framing_errors` test: the frames after the damaged one must equal the golden
model, the error flag must rise right at the damaged frame and not before). Runs of one design share its
Verilator build. The golden model itself is checked against qonnx in test_golden_vs_qonnx.py, so this closes
the chain hardware == golden == qonnx under back-pressure."""
from __future__ import annotations

import re

import numpy as np
import pytest

from conftest import own_model, shared_model, shared_refs
from ip_cores.elements import pack_words, unpack_words
from ip_cores.input_framer import input_framer_reference
from rtlgen.build import BuildOptions, build
from rtlgen.frontend import parse_dtype
from rtlgen.runner import check_inputs, host_head, load_design
from sim.framing import corrupt_frames
from sim.top_bench_runner import run_top_bench

# traffic: (p_in_gap, p_out_stall, seed) or (pause pattern, seed)
CASES = {
    "default-digits": (None, None, [(0.5, 0.5, 1), (0.0, 0.9, 2), ("always_ready", 7), ("long_stalls", 8)]),
    "tfc_w2a2-dwc": ("tfc_w2a2", {"layers": {"MatMul_0": {"PE": 4, "SIMD": 49}, "MatMul_1": {"PE": 8, "SIMD": 2},
                                             "MatMul_2": {"PE": 2, "SIMD": 16}, "MatMul_3": {"PE": 5, "SIMD": 4}}},
                     [(0.5, 0.5, 3), (0.8, 0.2, 4), ("always_ready/long_stalls", 9)]),
    "w1a1_bipolar-parallel": ("own:w1a1_bipolar", {"defaults": {"PE": "max", "SIMD": "max"}},
                              [(0.3, 0.7, 5), ("long_stalls/always_ready", 10)]),
    "w8a8-serial": ("own:w8a8_signed_narrow", {"defaults": {"PE": 1, "SIMD": 1}}, [(0.5, 0.5, 6)]),
    # a CNN: 100-word input frames (4 channels a word) held in the sliding windows' line buffers, 10-word output
    # frames; depthwise + pointwise convolutions, an overlapping max-pool and width converters between them
    "cnn_depthwise-default": ("own:cnn_depthwise_w4a4", None, [(0.5, 0.5, 11)]),
}


def _model_and_inputs(spec):
    from conftest import REPO

    if spec is None:
        return REPO / "rtlgen" / "models" / "default_digits_mlp.onnx", np.load(REPO / "rtlgen" / "models" / "default_digits_inputs.npy")[:12]
    if spec.startswith("own:"):
        path, x, _ = own_model(spec[4:])
        return path, x[:8]
    x, _ = shared_refs(spec)
    return shared_model(spec), x[:4]


def framing_cases(io: dict, network, in_words: list[int]) -> list[dict]:
    """Frame 1 a word short (word J dropped) and, separately, a word long (word J doubled), J in the middle of the
    frame, each with the output the design must give: golden of what the framer hands the chain (the short frame
    padded with zero words, the long one cut after N words; `input_framer_reference`, not the hardware)."""
    n = io["in_words_per_frame"]
    in_fmt, out_fmt = parse_dtype(io["input_dtype"]), parse_dtype(io["output_dtype"])
    corruptions = ([{"drop": (1, n // 2)}] if n > 1 else []) + [{"extra": (1, n // 2)}]
    cases = []
    for corruption in corruptions:
        sent = corrupt_frames(in_words, n, [corruption["drop"]] if "drop" in corruption else [],
                              [corruption["extra"]] if "extra" in corruption else [])
        seen, bad = input_framer_reference(sent, n)
        assert bad == [1]
        hw_in = np.stack([unpack_words(f, in_fmt, io["in_elems_per_word"], io["in_elems"]) for f in seen])
        expected = [w for frame in network.golden(hw_in) for w in pack_words(frame, out_fmt, io["out_elems_per_word"])]
        cases.append({**corruption, "expected_out_words": expected})
    return cases


RESET_REPORT = re.compile(r"reset mid-frame: reset aimed at (\w+) mid-frame struck after \d+ input words "
                          r"\(word (\d+) of input frame \d+\) and \d+ output words \(word (\d+) of output frame")


def _assert_resets_inside_frames(log_file, io: dict) -> None:
    """A CNN holds part of a frame in its line buffers: the bench's reset aimed at an input frame must strike
    with an input frame partly accepted, the one aimed at an output frame with an output frame partly sent
    (not merely with whole frames in flight), read from the resets the bench logged."""
    struck = {aim: (int(w_in), int(w_out)) for aim, w_in, w_out in RESET_REPORT.findall(log_file.read_text())}
    assert set(struck) == {"input", "output"}, f"reset_mid_frame did not log both resets ({struck}, {log_file})"
    if io["in_words_per_frame"] > 1:
        assert struck["input"][0] != 0, f"the reset aimed at an input frame struck at a frame boundary: {struck}"
    if io["out_words_per_frame"] > 1:
        assert struck["output"][1] != 0, f"the reset aimed at an output frame struck at a frame boundary: {struck}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_design_under_random_backpressure(case, tmp_path):
    spec, folding, patterns = CASES[case]
    model, x = _model_and_inputs(spec)
    out = tmp_path / "design"
    build(model, out, BuildOptions(folding_spec=folding, package_ip=False))
    design = load_design(out)
    io = design.io
    from rtlgen.frontend import load_model, lower_model

    hw_in = host_head(design, check_inputs(design, x))
    network = lower_model(load_model(model)).network
    golden = network.golden(hw_in)
    in_fmt, out_fmt = parse_dtype(io["input_dtype"]), parse_dtype(io["output_dtype"])
    in_words = [w for frame in hw_in for w in pack_words(frame, in_fmt, io["in_elems_per_word"])]
    out_words = [w for frame in golden for w in pack_words(frame, out_fmt, io["out_elems_per_word"])]
    damaged = framing_cases(io, network, in_words)
    for index, traffic in enumerate(patterns):
        p_in, p_out, pattern = (*traffic[:2], None) if len(traffic) == 3 else (0.0, 0.0, traffic[0])
        bench = run_top_bench(design.verilog, design.report["top"], tmp_path / "bench", in_words, out_words,
                              io["in_words_per_frame"], io["out_words_per_frame"], seed=traffic[-1], p_in_gap=p_in,
                              p_out_stall=p_out, pattern=pattern, reset_mid_frame=index == 0,
                              framing_cases=damaged if index == 0 else (),
                              timeout_cycles=50 * (design.report["estimate"]["latency_cycles"] + len(x) * design.report["estimate"]["ii_cycles"]))
        if index == 0 and any("sliding_window" in layer for layer in design.report["layers"]):
            _assert_resets_inside_frames(bench.log_file, io)


def test_bench_catches_a_wrong_word(tmp_path):
    """The bench fails when one expected word is off (so a pass above means something)."""
    from sim.verilator_harness import SimulationError

    model, x = _model_and_inputs(None)
    out = tmp_path / "design"
    build(model, out, BuildOptions(package_ip=False))
    design = load_design(out)
    io = design.io
    from rtlgen.frontend import load_model, lower_model

    hw_in = host_head(design, check_inputs(design, x[:3]))
    golden = lower_model(load_model(model)).network.golden(hw_in)
    golden[1, 3] += 1
    out_fmt, in_fmt = parse_dtype(io["output_dtype"]), parse_dtype(io["input_dtype"])
    in_words = [w for frame in hw_in for w in pack_words(frame, in_fmt, io["in_elems_per_word"])]
    out_words = [w for frame in golden for w in pack_words(frame, out_fmt, io["out_elems_per_word"])]
    with pytest.raises(SimulationError):
        run_top_bench(design.verilog, design.report["top"], tmp_path / "bench", in_words, out_words,
                      io["in_words_per_frame"], io["out_words_per_frame"], seed=1, p_in_gap=0.3, p_out_stall=0.3)
