"""TFC-W1A1 at FINN's folding keeps its interval of 64 cycles a frame when its input arrives the way the AXI DMA of
rtlgen's block designs delivers it.

The DMA configuration is not taken from the generator's Python: the board scripts (DIR/vivado/*_bd.tcl) run under
tclsh with Vivado's commands recorded (tests/test_ipxact.py), and the stream and memory widths are read from the
recorded block design. From them a deliberately simple model of the DMA side (stated here, and in docs/vivado.md):

- the DMA, its interconnect and the core run on one clock (the block designs connect one clock to all of them);
- during a transfer the DMA moves at most one stream beat a cycle, and the memory side at most as many bytes a
  cycle as its narrowest hop (the DMA's memory-mapped width, the Zynq HP port or the BRAM controller);
- a frame is one buffer of `words x TDATA bytes` (`rtlgen.stream_packing.words_to_bytes`), frames are queued back to back
  (a transfer or descriptor per frame ready before the previous one ends), memory always answers.

So the core gets at most one word every ceil(TDATA bytes / bytes a cycle) cycles: the compiled harness's
`in_cycles_per_word` (and `out_cycles_per_word` for the S2MM side). With the DMA sized to the core that is 1; a
narrow DMA stream (the 8-bit one a 7-byte TDATA used to get) must show up as a longer interval, which the last
test checks so that the first one can fail.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import shared_model, shared_refs
from ip_cores.elements import pack_words
from rtlgen.build import BuildOptions, build
from rtlgen.errors import RtlgenError
from rtlgen.frontend import load_model, lower_model, parse_dtype
from rtlgen.runner import check_inputs, host_head, input_words, load_design, simulate
from rtlgen.stream_packing import bytes_to_words, words_to_bytes
from sim.verilator_harness import CompiledHarness
from test_ipxact import TCLSH, bd_model, run_stubbed, stream_path

FINN_TFC_FOLDING = {"layers": {"MatMul_0": {"PE": 16, "SIMD": 49}, "MatMul_1": {"PE": 8, "SIMD": 8},
                               "MatMul_2": {"PE": 8, "SIMD": 8}, "MatMul_3": {"PE": 10, "SIMD": 8}}}
FINN_TFC_II = 64  # cycles a frame: MatMul_0 784x64 at PE 16, SIMD 49 is 4 x 16 steps

pytestmark = pytest.mark.skipif(TCLSH is None, reason="tclsh not installed (apt-get install tcl)")


@pytest.fixture(scope="module")
def tfc(tmp_path_factory):
    """TFC-W1A1 built at FINN's folding, its report, and 24 of qonnx's reference inputs as hardware frames."""
    root = tmp_path_factory.mktemp("tfc_dma") / "design"
    model = shared_model("tfc_w1a1")
    report = build(model, root, BuildOptions(folding_spec=FINN_TFC_FOLDING))
    x, _ = shared_refs("tfc_w1a1")
    design = load_design(root)
    hw_in = host_head(design, check_inputs(design, np.concatenate([x, x[:8]])))
    golden = lower_model(load_model(model)).network.golden(hw_in)
    return root, report, design, hw_in, golden


def dma_side(root: Path, script: str, tmp_path: Path) -> dict:
    """Widths of the recorded block design: DMA streams and memory-mapped sides, and the memory behind them."""
    calls = run_stubbed(tmp_path, root / "vivado" / script)
    cells, props, intf, _ = bd_model(calls)
    dma = props["axi_dma"]
    if "ps7" in cells:  # Pynq-Z2: the DMA's memory side goes through the PS's HP0 port
        memory_bits = int(props["ps7"]["CONFIG.PCW_S_AXI_HP0_DATA_WIDTH"])
    else:  # Arty: an AXI BRAM controller
        memory_bits = int(props["axi_bram_ctrl_0"]["CONFIG.DATA_WIDTH"])
    return {
        "mm2s_stream": int(dma["CONFIG.c_m_axis_mm2s_tdata_width"]),
        "mm2s_mm": int(dma["CONFIG.c_m_axi_mm2s_data_width"]),
        "s2mm_stream": int(dma["CONFIG.c_s_axis_s2mm_tdata_width"]),
        "s2mm_mm": int(dma["CONFIG.c_m_axi_s2mm_data_width"]),
        "memory": memory_bits,
        "in_path": stream_path(intf, "axi_dma/M_AXIS_MM2S", "accel/s_axis"),
        "out_path": stream_path(intf, "accel/m_axis", "axi_dma/S_AXIS_S2MM"),
    }


def cycles_per_word(tdata_bits: int, *hop_bits: int) -> int:
    """Cycles the DMA side needs for one core word: its bytes over the narrowest hop's bytes a cycle."""
    return math.ceil(tdata_bits / min(hop_bits))


def measure(design, hw_in, k_in: int, k_out: int):
    io = design.io
    harness = CompiledHarness.build(design.verilog, design.report["top"], design.root / "sim_build")
    return harness.run(input_words(design, hw_in), len(hw_in) * io["out_words_per_frame"], io["in_words_per_frame"],
                       io["out_words_per_frame"], in_cycles_per_word=k_in, out_cycles_per_word=k_out)


@pytest.mark.parametrize("script", ["pynq_z2_bd.tcl", "arty_a7_100t_bd.tcl"])
def test_tfc_w1a1_keeps_ii_64_through_the_dma(tfc, script, tmp_path):
    root, report, design, hw_in, golden = tfc
    io = report["io"]
    assert report["estimate"]["ii_cycles"] == FINN_TFC_II
    # 784 bipolar inputs at SIMD 49: 16 words of 49 bits, padded to a 64-bit TDATA (it was 56 bits = 7 bytes)
    assert (io["in_words_per_frame"], io["in_stream_bits"], io["s_axis_tdata_bits"]) == (16, 49, 64)

    side = dma_side(root, script, tmp_path)
    # the DMA is sized to the core: its streams are the core's TDATA, nothing in between
    assert side["mm2s_stream"] == io["s_axis_tdata_bits"] and len(side["in_path"]) == 2
    assert side["s2mm_stream"] == io["m_axis_tdata_bits"] and len(side["out_path"]) == 2
    assert side["mm2s_mm"] >= side["mm2s_stream"] and side["s2mm_mm"] >= side["s2mm_stream"]

    # a frame in memory: 16 words x 8 bytes, i.e. 16 beats of the 64-bit MM2S stream, one beat a word
    frame = words_to_bytes(input_words(design, hw_in[:1]), io["s_axis_tdata_bits"])
    assert len(frame) == io["in_frame_bytes"] == 16 * 8
    assert len(frame) // (side["mm2s_stream"] // 8) == io["in_words_per_frame"]
    assert bytes_to_words(frame, io["s_axis_tdata_bits"]) == input_words(design, hw_in[:1])

    k_in = cycles_per_word(io["s_axis_tdata_bits"], side["mm2s_stream"], side["mm2s_mm"], side["memory"])
    k_out = cycles_per_word(io["m_axis_tdata_bits"], side["s2mm_stream"], side["s2mm_mm"], side["memory"])
    assert k_in == 1  # one 64-bit word a cycle fits every hop of both boards
    result = measure(design, hw_in, k_in, k_out)
    words = result.out_words
    assert words == [w for f in golden for w in _pack_out(design, f)]
    assert not result.error_raised
    # steady state: the interval the report promises (within 5 %, as the end-to-end tests allow)
    assert abs(result.ii_cycles - FINN_TFC_II) <= 0.05 * FINN_TFC_II, result.ii_cycles


def test_a_narrow_dma_stream_would_cost_the_interval(tfc):
    """The model bites: the same core behind an 8-bit DMA stream (8 beats a 64-bit word, through a converter)
    needs at least 8 x 16 = 128 cycles a frame, not 64 (more, in fact: the first layer reads its input only in
    its first neuron fold, so the trickling words stretch that fold and the DMA waits during the others)."""
    _, report, design, hw_in, golden = tfc
    k_in = cycles_per_word(report["io"]["s_axis_tdata_bits"], 8)
    assert k_in == 8
    result = measure(design, hw_in, k_in, 1)
    assert result.out_words == [w for f in golden for w in _pack_out(design, f)]
    assert result.ii_cycles >= 0.95 * k_in * report["io"]["in_words_per_frame"] > 1.5 * FINN_TFC_II


def _pack_out(design, frame) -> list[int]:
    io = design.io
    return pack_words(frame, parse_dtype(io["output_dtype"]), io["out_elems_per_word"])


def test_runner_fails_on_a_raised_error_flag(tfc, tmp_path):
    """`rtlgen run` sends whole frames, so a raised error flag means a broken design or build folder, and the run
    fails saying so. Here a report that halves the frame length makes the harness put TLAST after every 8 of the
    16 words: the core's framer sees short frames."""
    root, _, _, hw_in, _ = tfc
    broken = tmp_path / "broken"
    shutil.copytree(root, broken)  # with its compiled harness
    report = json.loads((broken / "report.json").read_text())
    report["io"]["in_words_per_frame"] //= 2
    (broken / "report.json").write_text(json.dumps(report))
    with pytest.raises(RtlgenError, match=r"raised its error flag \(input framing\) in cycle \d+, at input frame 0"):
        simulate(load_design(broken), hw_in[:4])
