"""Load what the user wants converted into one SourceModel.

Three sources: MobileNetV2 built here, the user's Keras file (.keras / .h5, from
Keras 2 or Keras 3) and the user's SavedModel folder. Whatever the source, the
result holds a legacy-Keras model when a TF.js layers model can be written,
the labels, the preprocessing spec and a ``reference`` function: the ORIGINAL
model's outputs, which every converted artifact is checked against.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from app import tf_runtime
from app.convert import mobilenet
from app.convert.errors import BadInput
from app.convert.files import sha256_of

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
IMAGENET_LABELS = Path(__file__).resolve().parent.parent / "data" / "imagenet_labels.json"


@dataclass
class SourceModel:
    kind: str                       # "mobilenet-v2" | "keras" | "saved-model"
    input_shape: tuple[int, int, int]
    num_classes: int
    labels: list[str]
    preprocessing: dict
    weights: dict                   # provenance, written to the manifest
    source: dict                    # what was converted, written to the manifest
    reference: Callable[[np.ndarray], np.ndarray]
    keras_model: Any = None         # tf_keras model, when a layers model can be written
    saved_model_dir: Path | None = None  # the user's SavedModel, when that is the source
    signature: dict = field(default_factory=lambda: {"input": "input", "output": "output"})
    notes: list[str] = field(default_factory=list)


def preprocessing_spec(height: int, width: int, value_range, crop: str = "center") -> dict:
    """The one preprocessing spec, written to the manifest and read by browser and server."""
    return {
        "size": [height, width],
        "crop": crop,                # "center": largest centred square (aspect kept); "none": squash
        "resize": "bilinear",
        "color": "rgb",
        "value_range": [float(v) for v in value_range],  # pixel p -> lo + p * (hi - lo) / 255
        "exif_orientation": True,
    }


def imagenet_labels() -> list[str]:
    return json.loads(IMAGENET_LABELS.read_text())


def mobilenet_v2(alpha: float, size: int, weights: str, seed: int = 0) -> SourceModel:
    model, provenance = mobilenet.build(alpha, size, weights, seed)
    return SourceModel(
        kind="mobilenet-v2",
        input_shape=(size, size, 3),
        num_classes=mobilenet.NUM_CLASSES,
        labels=imagenet_labels(),
        preprocessing=preprocessing_spec(size, size, mobilenet.VALUE_RANGE),
        weights=provenance,
        source={"kind": "mobilenet-v2", "alpha": alpha, "size": size,
                "builder": "tf_keras.applications.MobileNetV2(include_top=True, classifier_activation=None)"},
        reference=_keras_predict(model),
        keras_model=model,
    )


def read_labels(path: Path) -> list[str]:
    """Labels from a .txt file (one per line) or a .json list / {"index": "label"} object."""
    if not path.is_file():
        raise BadInput(f"--labels: no such file: {path}")
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadInput(f"--labels {path}: not valid JSON ({exc})") from exc
        if isinstance(data, dict):
            try:
                data = [data[k] for k in sorted(data, key=int)]
            except ValueError as exc:
                raise BadInput(f"--labels {path}: object keys must be class indices") from exc
        if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
            raise BadInput(f"--labels {path}: expected a list of strings")
        labels = data
    else:
        labels = [line.strip() for line in text.splitlines()]
        while labels and not labels[-1]:
            labels.pop()
    if not labels or any(not label for label in labels):
        raise BadInput(f"--labels {path}: empty file or blank label")
    return labels


def keras_file(path: Path, labels_path: Path, value_range, crop: str) -> SourceModel:
    if not path.exists():
        raise BadInput(f"no such file: {path}")
    if path.is_dir():
        raise BadInput(f"{path} is a folder; for a SavedModel use `belka convert saved-model {path}`")
    version = _keras_file_version(path)
    labels = read_labels(labels_path)
    notes: list[str] = []
    if version.startswith("3"):
        tf_runtime.tensorflow()
        import keras

        original = _load(lambda: keras.models.load_model(str(path), compile=False), path)
        from app.convert.keras3_compat import to_legacy_keras

        legacy, notes = to_legacy_keras(original)
        reference = _keras_predict(original)
    else:
        tf_keras = tf_runtime.tf_keras()

        legacy = _load(lambda: tf_keras.models.load_model(str(path), compile=False), path)
        reference = _keras_predict(legacy)
    height, width = _image_input(legacy.input_shape, path)
    num_classes = _class_count(legacy.output_shape, labels, path)
    return SourceModel(
        kind="keras",
        input_shape=(height, width, 3),
        num_classes=num_classes,
        labels=labels,
        preprocessing=preprocessing_spec(height, width, value_range, crop),
        weights={"provenance": "file", "trained": True, "file": path.name, "sha256": sha256_of(path)},
        source={"kind": "keras", "file": path.name, "keras_version": version},
        reference=reference,
        keras_model=legacy,
        notes=notes,
    )


def saved_model(path: Path, labels_path: Path, value_range, crop: str) -> SourceModel:
    tf = tf_runtime.tensorflow()
    if not path.is_dir():
        raise BadInput(f"no such folder: {path}" if not path.exists()
                       else f"{path} is a file; a SavedModel is a folder with saved_model.pb")
    if not (path / "saved_model.pb").is_file():
        raise BadInput(f"{path} is not a SavedModel folder (no saved_model.pb inside)")
    labels = read_labels(labels_path)
    loaded = _load(lambda: tf.saved_model.load(str(path)), path)
    signature = loaded.signatures.get("serving_default")
    if signature is None:
        raise BadInput(f"{path}: the SavedModel has no 'serving_default' signature")
    inputs = signature.structured_input_signature[1]
    outputs = signature.structured_outputs
    if len(inputs) != 1 or len(outputs) != 1:
        raise BadInput(f"{path}: expected one input and one output, found inputs {sorted(inputs)} "
                       f"and outputs {sorted(outputs)}")
    (input_name, spec), = inputs.items()
    (output_name, output_spec), = outputs.items()
    if spec.dtype != tf.float32:
        raise BadInput(f"{path}: input {input_name!r} is {spec.dtype.name}; Belka classifiers take float32 images")
    height, width = _image_input(tuple(spec.shape), path)
    num_classes = _class_count(tuple(output_spec.shape), labels, path)

    def reference(x: np.ndarray) -> np.ndarray:
        return signature(**{input_name: tf.constant(x)})[output_name].numpy()

    return SourceModel(
        kind="saved-model",
        input_shape=(height, width, 3),
        num_classes=num_classes,
        labels=labels,
        preprocessing=preprocessing_spec(height, width, value_range, crop),
        weights={"provenance": "file", "trained": True, "file": path.name,
                 "sha256": sha256_of(path / "saved_model.pb")},
        source={"kind": "saved-model", "folder": path.name},
        reference=reference,
        saved_model_dir=path,
        signature={"input": input_name, "output": output_name},
    )


def _keras_predict(model) -> Callable[[np.ndarray], np.ndarray]:
    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(model(x, training=False))
    return predict


def _keras_file_version(path: Path) -> str:
    """The Keras major version that wrote the file ("2..." or "3..."), or BadInput."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head == HDF5_SIGNATURE:
        import h5py

        try:
            with h5py.File(path, "r") as h5:
                if "model_config" not in h5.attrs:
                    raise BadInput(f"{path} holds only weights, no model architecture; save the whole "
                                   "model with model.save(...)")
                version = h5.attrs.get("keras_version", b"2")
        except BadInput:
            raise
        except Exception as exc:  # noqa: BLE001 - h5py raises OSError/KeyError/... for damage
            raise BadInput(f"{path} is a damaged HDF5 file ({_short(exc)})") from exc
        return version.decode() if isinstance(version, bytes) else str(version)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                names = set(z.namelist())
                if "config.json" not in names:
                    raise BadInput(f"{path} is a zip file but not a Keras model (no config.json)")
                meta = json.loads(z.read("metadata.json")) if "metadata.json" in names else {}
        except (zipfile.BadZipFile, json.JSONDecodeError) as exc:
            raise BadInput(f"{path} is a damaged .keras file ({_short(exc)})") from exc
        return str(meta.get("keras_version", "3"))
    raise BadInput(f"{path} is not a Keras model file (expected a .keras zip or an .h5 HDF5 file)")


def _load(loader: Callable[[], Any], path: Path):
    try:
        with tf_runtime.quiet_stdout():
            return loader()
    except BadInput:
        raise
    except Exception as exc:  # noqa: BLE001 - Keras/TF raise anything for unreadable models
        raise BadInput(f"could not load the model in {path}: {_short(exc)}") from exc


def _image_input(shape, path: Path) -> tuple[int, int]:
    shape = tuple(shape)
    if len(shape) != 4 or shape[-1] != 3 or shape[1] is None or shape[2] is None:
        raise BadInput(f"{path}: the model's input is {list(shape)}; Belka needs one RGB image "
                       "input of fixed size, [batch, height, width, 3]")
    return int(shape[1]), int(shape[2])


def _class_count(shape, labels: list[str], path: Path) -> int:
    shape = tuple(shape)
    if len(shape) != 2 or shape[1] is None:
        raise BadInput(f"{path}: the model's output is {list(shape)}; a classifier outputs [batch, classes]")
    if shape[1] != len(labels):
        raise BadInput(f"{path}: the model outputs {shape[1]} classes but the labels file has "
                       f"{len(labels)} labels")
    return int(shape[1])


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__
