"""`belka convert onnx MODEL.onnx`: an ONNX image classifier (a PyTorch export, a tf2onnx
conversion) as a conversion source.

What the graph says (app/convert/onnx_model.py) becomes the SourceModel: the size, the layout
(written into the preprocessing spec, so the page and the server feed NCHW or NHWC), the
classes (which the labels must match), and the reference the conversion is checked against:
the original file run in onnxruntime. torchvision's convention (``torch``: 0..1, ImageNet mean
and std) is the default preprocessing for an NCHW model, TensorFlow's ``tf`` (-1..1) for NHWC.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from app.convert import onnx_model, onnx_runtime
from app.convert.errors import BadInput
from app.convert.files import sha256_of
from app.convert.sources import SourceModel, preprocessing_spec, read_labels

DEFAULT_PRESETS = {"NCHW": "torch", "NHWC": "tf"}


def to_layout(batch: np.ndarray, layout: str) -> np.ndarray:
    """Images [N, H, W, C] (what preprocessing gives) in the model's layout."""
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2) if layout == "NCHW" else batch, dtype=np.float32)


def load(path: Path, labels_path: Path, preset: str | None, size: tuple[int, int] | None,
         crop: str = "center") -> SourceModel:
    path = Path(path)
    if path.is_dir():
        raise BadInput(f"{path} is a folder; give the .onnx file (its .onnx.data file beside it, if any)")
    found = onnx_model.read(path, size)
    labels = read_labels(labels_path)
    if found.classes is not None and found.classes != len(labels):
        raise BadInput(f"--labels {labels_path}: {len(labels)} labels for a model with {found.classes} classes")
    preset = preset or DEFAULT_PRESETS[found.layout]
    height, width = found.size
    spec = preprocessing_spec(height, width, (0.0, 1.0), crop, preset)
    spec["layout"] = found.layout
    notes = []
    if found.softmax:
        notes.append("the graph ends in a Softmax: its outputs are probabilities")

    def reference(batch: np.ndarray) -> np.ndarray:
        return onnx_runtime.run_python(path, to_layout(batch, found.layout))

    return SourceModel(
        kind="onnx", input_shape=(height, width, 3), num_classes=len(labels), labels=labels,
        preprocessing=spec, reference=reference, onnx=found, notes=notes,
        layers_unavailable="an ONNX model has no Keras layers",
        weights={"provenance": "file", "trained": True, "file": path.name, "sha256": sha256_of(path)},
        source={"kind": "onnx", "file": path.name, "opset": found.opset, "producer": found.producer,
                "layout": found.layout, "batch": "dynamic" if found.batch is None else found.batch,
                "size_from": "graph" if found.size_fixed else "--size",
                "external_data": found.external_data})
