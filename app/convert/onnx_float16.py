"""The page's float16 copy of an ONNX model (onnx-float16/model.onnx): half the download, the
same arithmetic.

Like TF.js's float16 weights (targets/graph.py), only the stored weights are float16: each
float32 initializer becomes a float16 one and a Cast back to float32, which ONNX Runtime folds
into a float32 constant when the session starts. Every operator still computes in float32, so
the copy runs wherever the original runs (ONNX Runtime Web's WebAssembly kernels are float32).
A weight that float16 cannot hold (beyond 65504, as the -1e9 of an attention mask) stays
float32. The copy is kept only when its numbers pass the float16 gate on the probe images
(verify.compare with "float16", as for TF.js); the page then downloads it, and ?weights=float32
the original.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from app.convert import verify

FLOAT16_MAX = 65504.0
SMALLEST = 16  # tensors with fewer values stay float32: nothing to gain
PAGE_FOLDER = "onnx-float16"


def write(source: Path, target: Path) -> bool:
    """``target`` (a model.onnx) from ``source`` with float16 weights; False (nothing written) when
    the model's weights live in external data files or none would change."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(source), load_external_data=False)
    if any(init.data_location == TensorProto.EXTERNAL for init in model.graph.initializer):
        return False
    graph_inputs = {value.name for value in model.graph.input}
    initializers = []
    casts = []
    for init in model.graph.initializer:
        if init.data_type != TensorProto.FLOAT or init.name in graph_inputs or np.prod(init.dims) < SMALLEST:
            initializers.append(init)
            continue
        values = numpy_helper.to_array(init)
        if not np.all(np.isfinite(values)) or np.abs(values).max() > FLOAT16_MAX:
            initializers.append(init)
            continue
        half = numpy_helper.from_array(values.astype(np.float16), f"{init.name}__float16")
        initializers.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT,
                                      name=f"{init.name}__to_float32"))
    if not casts:
        return False
    nodes = casts + list(model.graph.node)
    model.graph.ClearField("initializer")
    model.graph.initializer.extend(initializers)
    model.graph.ClearField("node")
    model.graph.node.extend(nodes)
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(target))
    return True


def gate(reference, web_outputs: dict, copy: Path) -> dict | None:
    """The float16 copy's report against ``reference`` (verify.compare with the float16 gate) from
    ONNX Runtime Web's outputs (keyed by PAGE_FOLDER), or None when there was no copy; the copy's
    folder is removed when it fails."""
    if PAGE_FOLDER not in web_outputs:
        return None
    report = verify.compare(reference, web_outputs[PAGE_FOLDER], "float16")
    if not report["ok"]:
        shutil.rmtree(copy.parent, ignore_errors=True)
    return report


def page_weights(report: dict | None) -> dict:
    """What the page downloads of the ONNX model: {"folder", "dtype", "reason"}; the float16 copy
    when it passed its check (``report``: verify.compare's, None when there is no copy)."""
    if report and report["ok"]:
        return {"folder": f"{PAGE_FOLDER}/", "dtype": "float16", "reason": None}
    reason = (f"float16 weights change its numbers too much ({verify.describe(report)})" if report else
              "no float16 copy (weights in external data, or none to halve)")
    return {"folder": "onnx/", "dtype": "float32", "reason": reason}
