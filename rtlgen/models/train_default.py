"""Train and export rtlgen's default model: a small W4A4 MLP on scikit-learn's digits.

Run with ``python -m rtlgen.models.train_default`` (needs the ``export`` extra:
torch, brevitas, onnxoptimizer, scikit-learn). Deterministic (fixed seeds, one CPU
thread) and takes a few seconds. It writes, next to this file:

* ``default_digits_mlp.onnx``  : QONNX model, exported by Brevitas and cleaned with
  qonnx ``cleanup_model``
* ``default_digits_mlp.json``  : metadata (dataset, architecture, preprocessing, accuracy)
* ``default_digits_inputs.npy``: 32 held-out test inputs, float32, shape (32, 1, 64)
* ``default_digits_labels.npy``: their labels, int64, shape (32,)

The dataset ships inside scikit-learn (no download). Preprocessing is
``x = pixels / 16`` (digits pixels are integers 0..16), flattened to 64 float32
features; the model's first layer is a 4-bit unsigned quantizer with a fixed
scale of 1/15 (so it maps [0, 1] to the integers 0..15).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
ONNX_NAME = "default_digits_mlp.onnx"
JSON_NAME = "default_digits_mlp.json"
INPUTS_NAME = "default_digits_inputs.npy"
LABELS_NAME = "default_digits_labels.npy"

SEED = 0
SPLIT_SEED = 42
TEST_FRACTION = 0.25
EPOCHS = 60
BATCH = 64
LR = 0.01
N_SAVED_INPUTS = 32

HIDDEN = (64, 32)
W_BITS = 4
A_BITS = 4
IN_BITS = 4


def load_data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)  # (1797, 64), values in [0, 1]
    y = digits.target.astype(np.int64)
    return train_test_split(
        x, y, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=y
    )


def build_model():
    import torch.nn as nn
    from brevitas.nn import QuantIdentity, QuantLinear, QuantReLU
    from brevitas.quant import Int8WeightPerTensorFloat, Uint8ActPerTensorFloat

    layers = [
        # Fixed-scale unsigned input quantizer: [0, 1] -> {0, 1/15, ..., 15/15}.
        QuantIdentity(
            act_quant=Uint8ActPerTensorFloat,
            bit_width=IN_BITS,
            scaling_impl_type="const",
            max_val=1.0,
            return_quant_tensor=True,
        )
    ]
    width = 64
    for h in HIDDEN:
        layers += [
            QuantLinear(
                width,
                h,
                bias=False,
                weight_quant=Int8WeightPerTensorFloat,
                weight_bit_width=W_BITS,
            ),
            nn.BatchNorm1d(h),
            QuantReLU(bit_width=A_BITS, return_quant_tensor=True),
        ]
        width = h
    layers.append(
        QuantLinear(
            width,
            10,
            bias=True,  # float bias, logits stay float (no output quantizer)
            weight_quant=Int8WeightPerTensorFloat,
            weight_bit_width=W_BITS,
        )
    )
    return nn.Sequential(*layers)


def train(model, x_tr, y_tr, log=print):
    import torch
    import torch.nn as nn

    g = torch.Generator().manual_seed(SEED)
    xt = torch.from_numpy(x_tr)
    yt = torch.from_numpy(y_tr)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    steps_per_epoch = (len(xt) + BATCH - 1) // BATCH
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=LR, epochs=EPOCHS, steps_per_epoch=steps_per_epoch
    )
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for epoch in range(EPOCHS):
        perm = torch.randperm(len(xt), generator=g)
        total = 0.0
        for i in range(steps_per_epoch):
            idx = perm[i * BATCH : (i + 1) * BATCH]
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        if epoch % 10 == 9 or epoch == EPOCHS - 1:
            log(f"epoch {epoch + 1:3d}  loss {total / len(xt):.4f}")
    model.eval()
    return model


def torch_logits(model, x):
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(x)).detach().numpy()


def strip_export_metadata(model_proto):
    """Drop the dynamo exporter's per-node debug metadata (torch FX text, Python stack
    traces with absolute local paths). It is 1/3 of the file, and would make the
    shipped model depend on where it was built. Graph semantics are untouched."""
    for n in model_proto.graph.node:
        del n.metadata_props[:]
        n.doc_string = ""
    for vi in list(model_proto.graph.value_info) + list(model_proto.graph.input) + list(
        model_proto.graph.output
    ):
        del vi.metadata_props[:]
        vi.doc_string = ""
    for t in model_proto.graph.initializer:
        del t.metadata_props[:]
        t.doc_string = ""
    del model_proto.graph.metadata_props[:]
    del model_proto.metadata_props[:]
    model_proto.graph.doc_string = ""
    model_proto.doc_string = ""


def export(model, path: Path):
    import torch
    from brevitas.export import export_qonnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    # The raw export goes to a scratch dir: the dynamo exporter may write an
    # external-data sidecar (<file>.data) next to it.
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        export_qonnx(model, args=torch.zeros(1, 64), export_path=str(raw))
        m = cleanup_model(ModelWrapper(str(raw)))  # onnx.load pulls external data in
    strip_export_metadata(m.model)
    m.save(str(path))
    return ModelWrapper(str(path))


def qonnx_logits(model_wrapper, x):
    from qonnx.core.onnx_exec import execute_onnx

    iname = model_wrapper.graph.input[0].name
    oname = model_wrapper.graph.output[0].name
    ishape = model_wrapper.get_tensor_shape(iname)
    out = []
    for row in x:
        res = execute_onnx(model_wrapper, {iname: row.reshape(ishape).astype(np.float32)})
        out.append(np.asarray(res[oname]).reshape(-1))
    return np.stack(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", type=Path, default=HERE, help="where to write the files")
    args = ap.parse_args(argv)
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)

    import torch

    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    torch.use_deterministic_algorithms(True)

    import brevitas
    import onnx
    import qonnx  # noqa: F401
    from importlib.metadata import version

    t0 = time.perf_counter()
    x_tr, x_te, y_tr, y_te = load_data()
    model = build_model()
    train(model, x_tr, y_tr)
    t_train = time.perf_counter() - t0

    torch_out = torch_logits(model, x_te)
    acc_torch = float((torch_out.argmax(1) == y_te).mean())
    acc_torch_train = float((torch_logits(model, x_tr).argmax(1) == y_tr).mean())

    t1 = time.perf_counter()
    onnx_path = out_dir / ONNX_NAME
    mw = export(model, onnx_path)
    t_export = time.perf_counter() - t1

    t2 = time.perf_counter()
    q_out = qonnx_logits(mw, x_te)
    t_qonnx = time.perf_counter() - t2
    acc_qonnx = float((q_out.argmax(1) == y_te).mean())
    agree = float((q_out.argmax(1) == torch_out.argmax(1)).mean())
    max_diff = float(np.abs(q_out - torch_out).max())

    iname = mw.graph.input[0].name
    ishape = [int(d) for d in mw.get_tensor_shape(iname)]
    # Batch axis first, then exactly the model's input shape: saved_x[i] feeds the model.
    saved_x = x_te[:N_SAVED_INPUTS].reshape([N_SAVED_INPUTS] + ishape).astype(np.float32)
    saved_y = y_te[:N_SAVED_INPUTS].astype(np.int64)
    np.save(out_dir / INPUTS_NAME, saved_x)
    np.save(out_dir / LABELS_NAME, saved_y)

    meta = {
        "name": "default_digits_mlp",
        "file": ONNX_NAME,
        "dataset": {
            "name": "scikit-learn load_digits (UCI optical digits, 8x8)",
            "n_samples": int(len(x_tr) + len(x_te)),
            "n_train": int(len(x_tr)),
            "n_test": int(len(x_te)),
            "split": f"sklearn train_test_split(test_size={TEST_FRACTION}, "
            f"random_state={SPLIT_SEED}, stratify=y)",
            "classes": 10,
        },
        "preprocessing": {
            "formula": "x = pixels / 16.0 (pixels are integers 0..16, row-major 8x8 flattened to 64)",
            "dtype": "float32",
            "input_name": iname,
            "input_shape": ishape,
            "value_range": [0.0, 1.0],
            "input_quantizer": f"Quant uint{IN_BITS}, fixed scale 1/{2**IN_BITS - 1}, zero point 0",
        },
        "output": {
            "name": mw.graph.output[0].name,
            "shape": [int(d) for d in mw.get_tensor_shape(mw.graph.output[0].name)],
            "meaning": "float logits for digits 0..9; prediction = argmax",
        },
        "architecture": {
            "summary": "QuantIdentity(u4) -> [QuantLinear 64->64 (w4, no bias) -> BatchNorm1d -> QuantReLU(u4)]"
            " -> [QuantLinear 64->32 (w4, no bias) -> BatchNorm1d -> QuantReLU(u4)]"
            " -> QuantLinear 32->10 (w4, float bias), float logits",
            "input_bits": IN_BITS,
            "weight_bits": W_BITS,
            "weight_quant": "Int8WeightPerTensorFloat (signed, narrow range, per-tensor scale) with bit_width=4",
            "activation_bits": A_BITS,
            "hidden": list(HIDDEN),
            "onnx_nodes": [n.op_type for n in mw.graph.node],
        },
        "training": {
            "seed": SEED,
            "epochs": EPOCHS,
            "batch_size": BATCH,
            "optimizer": f"Adam, OneCycleLR max_lr={LR}",
            "threads": 1,
        },
        "accuracy": {
            "train_torch": round(acc_torch_train, 4),
            "test_torch": round(acc_torch, 4),
            "test_qonnx": round(acc_qonnx, 4),
            "test_argmax_agreement_torch_vs_qonnx": round(agree, 4),
            "test_max_abs_logit_diff_torch_vs_qonnx": max_diff,
        },
        "saved_inputs": {
            "inputs": INPUTS_NAME,
            "labels": LABELS_NAME,
            "count": N_SAVED_INPUTS,
            "inputs_shape": [N_SAVED_INPUTS] + ishape,
            "note": "the first 32 samples of the held-out test split, preprocessed as above; "
            "inputs[i] has exactly the model input shape",
        },
        "versions": {
            "torch": torch.__version__,
            "brevitas": brevitas.__version__,
            "onnx": onnx.__version__,
            "qonnx": version("qonnx"),
        },
        "regenerate": "python -m rtlgen.models.train_default",
    }
    (out_dir / JSON_NAME).write_text(json.dumps(meta, indent=2) + "\n")

    print(f"train {t_train:.1f} s, export+cleanup {t_export:.1f} s, qonnx eval {t_qonnx:.1f} s")
    print(f"test accuracy: torch {acc_torch:.4f}  qonnx {acc_qonnx:.4f}  "
          f"(argmax agreement {agree:.4f}, max |logit diff| {max_diff:.2e})")
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size} bytes), {JSON_NAME}, {INPUTS_NAME}, {LABELS_NAME}")


if __name__ == "__main__":
    main()
