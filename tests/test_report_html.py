"""report.html: written by every build, refreshed by `rtlgen run` with the measured cycles, self-contained, and
rendered by a real browser (headless Chromium from Debian's packages; skipped where it is not installed)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from conftest import OWN_MODELS
from rtlgen.report_html import render
from test_cli import rtlgen

CNN = OWN_MODELS / "cnn_w4a4_stride2_pad.onnx"


@pytest.fixture(scope="module")
def measured_cnn(tmp_path_factory):
    """A CNN build (width converters, a pool, sliding windows), then `rtlgen run` on 2 frames."""
    out = tmp_path_factory.mktemp("page") / "design"
    code, _, stderr = rtlgen("build", CNN, "-o", out)
    assert code == 0, stderr
    x = np.load(OWN_MODELS / "cnn_w4a4_stride2_pad_in.npy")[:2]
    np.save(out.parent / "x.npy", x)
    code, _, stderr = rtlgen("run", out, "--inputs", out.parent / "x.npy", "--out", out.parent / "y.npy")
    assert code == 0, stderr
    return out


def test_page_has_every_block_and_the_measurement(measured_cnn):
    report = json.loads((measured_cnn / "report.json").read_text())
    page = (measured_cnn / "report.html").read_text()
    assert not re.search(r"<script|<link|src=|https?://", page)  # self-contained: nothing fetched or run
    for layer in report["layers"]:
        assert f'data-layer="{layer["name"]}"' in page
    assert page.count('class="block"') == len(report["stages"])
    measured = json.loads((measured_cnn / "measured.json").read_text())
    assert measured["frames"] == 2 and f"{int(measured['latency_cycles']):,}</td>" in page
    bottleneck = report["estimate"]["bottleneck"]
    assert re.search(rf'data-name="{bottleneck}"><rect[^>]*stroke="#e67300"', page)


def test_worst_path_layer_is_marked(measured_cnn):
    """With --synth results, the layer whose estimated worst path is longest gets the critical-path mark."""
    report = json.loads((measured_cnn / "report.json").read_text())
    names = [layer["name"] for layer in report["layers"]]
    counts = {"LUT": 1, "LUTRAM": 0, "FF": 1, "BRAM36_equivalent": 0, "DSP48": 0}
    report["synthesis"] = {"total": {**counts, "worst_path_ns": 4.0, "fmax_mhz_estimate": 250.0},
                           "layers": {n: {**counts, "worst_path_ns": 3.0 + (n == names[1])} for n in names}}
    page = render(report)
    assert re.search(rf'<tr class="[^"]*cp[^"]*" data-layer="{names[1]}"', page)
    assert "4.00 ns" in page and "Yosys LUT" in page


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no Chromium on this machine (Debian: apt-get install chromium); the page itself is checked above")


def test_chromium_renders_the_page(measured_cnn, tmp_path):
    browser = _chromium()
    url = (measured_cnn / "report.html").resolve().as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run([browser, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    report = json.loads((measured_cnn / "report.json").read_text())
    for layer in report["layers"]:
        assert f'data-layer="{layer["name"]}"' in dom.stdout
    assert dom.stdout.count('class="block"') == len(report["stages"])
    assert not re.search(r"Uncaught|SyntaxError|CONSOLE\(", dom.stderr), dom.stderr[-2000:]
    shot = tmp_path / "page.png"
    done = subprocess.run([browser, *flags, "--window-size=1200,900", f"--screenshot={shot}", url],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.stat().st_size > 20_000, done.stderr[-2000:]
