"""The PYNQ driver every build writes (`DIR/driver/`), run off the board: a stand-in `pynq` module
(tests/standin_pynq/pynq.py) whose AXI DMA is the build's compiled Verilator harness, so the driver's whole data
path runs: its onnxruntime head, its packing into DMA bytes, one DMA transfer a frame, the core, the unpacking,
its tail. Expected outputs come from elsewhere: qonnx's execution of the host models (`build_head`/`build_tail`
in qonnx form) around the integer golden model, and the qonnx reference outputs of the shared models."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, shared_model, shared_refs
from rtlgen.build import DEFAULT_MODEL, BuildOptions, build
from rtlgen.frontend import load_model, lower_model
from rtlgen.host import build_head, build_tail, execute_frames

STANDIN = Path(__file__).resolve().parent / "standin_pynq"
pytestmark = pytest.mark.xdist_group("board_driver")


def load_driver(root: Path, monkeypatch):
    """The build's `rtlgen_driver` package, imported from DIR/driver under a name of its own, with the
    stand-in pynq first on the path and pointed at the build."""
    monkeypatch.syspath_prepend(str(STANDIN))
    monkeypatch.setenv("RTLGEN_STANDIN_BUILD", str(root))
    package = root / "driver" / "rtlgen_driver"
    name = f"rtlgen_driver_{abs(hash(str(root)))}"
    spec = importlib.util.spec_from_file_location(name, package / "__init__.py", submodule_search_locations=[str(package)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def reference(model: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(integer frames into the core, model outputs) by qonnx's host models around the golden model."""
    lowered = lower_model(load_model(model))
    hw_in = np.round(execute_frames(build_head(lowered), x).reshape(len(x), -1)).astype(np.int64)
    y = execute_frames(build_tail(lowered), lowered.network.golden(hw_in).astype(np.float32))
    return hw_in, y.reshape(len(x), *y.shape[2:])


@pytest.fixture(scope="module")
def default_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("driver_default") / "design"
    build(DEFAULT_MODEL, root)
    return root


@pytest.fixture(scope="module")
def tfc_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("driver_tfc") / "design"
    build(shared_model("tfc_w1a1"), root, BuildOptions(folding_spec={"layers": {
        "MatMul_0": {"PE": 16, "SIMD": 49}, "MatMul_1": {"PE": 8, "SIMD": 8}, "MatMul_2": {"PE": 8, "SIMD": 8},
        "MatMul_3": {"PE": 10, "SIMD": 8}}}))
    return root


def test_every_build_writes_a_driver_without_rtlgen(default_build):
    driver = default_build / "driver"
    package = driver / "rtlgen_driver"
    for name in ("__init__.py", "stream_packing.py", "design.json", "head.onnx", "tail.onnx"):
        assert (package / name).is_file(), name
    assert (driver / "run_on_board.py").is_file()
    for source in (package / "__init__.py", package / "stream_packing.py"):
        assert not re.search(r"^\s*(from rtlgen[\s.]|import rtlgen\b)", source.read_text(), re.M), source
    # the very files rtlgen packs its simulator's words with
    assert (package / "stream_packing.py").read_bytes() == (REPO / "rtlgen" / "stream_packing.py").read_bytes()
    import onnx
    for name in ("head.onnx", "tail.onnx"):
        assert all(node.domain in ("", "ai.onnx") for node in onnx.load(str(package / name)).graph.node), name


def test_run_on_board_script_on_the_default_model(default_build, tmp_path):
    """The script a user runs on the board, end to end, in a fresh interpreter that cannot import rtlgen's
    driver from anywhere but DIR/driver."""
    x = np.load(REPO / "rtlgen" / "models" / "default_digits_inputs.npy")[:12]
    np.save(tmp_path / "x.npy", x)
    env = dict(os.environ, RTLGEN_STANDIN_BUILD=str(default_build), PYTHONPATH=os.pathsep.join([str(STANDIN), str(REPO)]))
    proc = subprocess.run([sys.executable, str(default_build / "driver" / "run_on_board.py"), "--bitfile", "rtlgen_demo.bit",
                           "--inputs", str(tmp_path / "x.npy"), "--out", str(tmp_path / "y.npy")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "12 frames" in proc.stdout and "frames/s" in proc.stdout and "error flag 0" in proc.stdout
    _, y_ref = reference(DEFAULT_MODEL, x)
    assert np.array_equal(np.load(tmp_path / "y.npy"), y_ref)


def test_driver_on_tfc_w1a1_matches_qonnx_and_flags_a_short_frame(tfc_build, monkeypatch):
    driver = load_driver(tfc_build, monkeypatch)
    acc = driver.Accelerator("rtlgen_demo.bit")
    x, y_qonnx = shared_refs("tfc_w1a1")
    x = x[:6]
    y = acc.run(x)
    hw_in, y_ref = reference(shared_model("tfc_w1a1"), x)
    assert np.array_equal(y, y_ref)
    assert np.array_equal(y, y_qonnx[:6].reshape(y.shape))
    assert not acc.error

    # frame 1 sent one word short: the core pads it, answers it with one frame, raises error; then all is well
    packed = driver.pack_frames(hw_in[:4], acc.in_fmt)
    word = acc.in_fmt.word_bytes
    outs = [acc.transfer(packed[0]), acc.transfer(packed[1][:-word])]
    assert acc.error
    outs += [acc.transfer(packed[2]), acc.transfer(packed[3])]
    got = driver.unpack_frames(np.stack(outs), acc.out_fmt)
    golden = lower_model(load_model(shared_model("tfc_w1a1"))).network.golden(hw_in[:4])
    assert np.array_equal(got[[0, 2, 3]], golden[[0, 2, 3]])
    assert acc.error  # sticky until reset

    # a batch during which the flag rises is refused (its second transfer damaged on the way)
    fresh = driver.Accelerator("rtlgen_demo.bit")
    sent = []

    def damaged(frame):
        sent.append(frame)
        return type(fresh).transfer(fresh, frame[:-word] if len(sent) == 2 else frame)
    fresh.transfer = damaged
    with pytest.raises(driver.FramingError):
        fresh.run_integers(hw_in[:3])


def test_driver_flags_a_long_frame_on_the_default_model(default_build, monkeypatch):
    """The default model's frame is one word: it cannot be sent short, so one is sent a word long."""
    driver = load_driver(default_build, monkeypatch)
    acc = driver.Accelerator("rtlgen_demo.bit")
    x = np.load(REPO / "rtlgen" / "models" / "default_digits_inputs.npy")[:3]
    hw_in, _ = reference(DEFAULT_MODEL, x)
    packed = driver.pack_frames(hw_in, acc.in_fmt)
    outs = [acc.transfer(packed[0]), acc.transfer(np.concatenate([packed[1], packed[1]])), acc.transfer(packed[2])]
    assert acc.error
    got = driver.unpack_frames(np.stack(outs), acc.out_fmt)
    golden = lower_model(load_model(DEFAULT_MODEL)).network.golden(hw_in)
    assert np.array_equal(got[[0, 2]], golden[[0, 2]])
