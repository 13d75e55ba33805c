"""qonnx execution of the original (cleaned) model: the reference every build is compared against."""
from __future__ import annotations

import warnings

import numpy as np
import onnx


def qonnx_execute(model: onnx.ModelProto, frames: np.ndarray, taps: list[str] = ()) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Run `model` on each frame (batch axis first) with qonnx's `execute_onnx`.

    Returns the stacked graph output and, for each name in `taps`, the stacked intermediate tensor (taken
    from qonnx's full execution context, so they are exactly the values qonnx computed on the way).
    """
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    wrapper = ModelWrapper(model)
    in_name = model.graph.input[0].name
    out_name = model.graph.output[0].name
    in_shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    outs, tapped = [], {t: [] for t in taps}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for frame in frames:
            x = np.asarray(frame, dtype=np.float32).reshape(in_shape)
            ctx = execute_onnx(wrapper, {in_name: x}, return_full_exec_context=bool(taps))
            outs.append(np.asarray(ctx[out_name]))
            for t in taps:
                tapped[t].append(np.asarray(ctx[t]))
    return np.stack(outs), {t: np.stack(v) for t, v in tapped.items()}


def onnxruntime_execute(model: onnx.ModelProto, frames: np.ndarray) -> np.ndarray:
    """Run a standard-ONNX `model` (a QCDQ original, as its author exported it) on each frame with onnxruntime,
    graph optimizations off; returns the stacked graph output. The independent reference for a QCDQ model:
    it never sees rtlgen's or qonnx's conversion to Quant nodes."""
    from .portable_onnx import session

    run = session(model)
    name = run.get_inputs()[0].name
    in_shape = [d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim]
    return np.stack([run.run(None, {name: np.asarray(f, dtype=np.float32).reshape(in_shape)})[0] for f in frames])
