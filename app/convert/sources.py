"""Load what the user wants converted into one SourceModel.

Four sources: MobileNetV2 built here, any ``keras.applications`` classifier by name, the
user's Keras file (.keras / .h5, from Keras 2 or Keras 3) and the user's SavedModel folder.
Whatever the source, the result holds the ORIGINAL model (the SavedModel and the TF.js graph
model are exported from it, so whatever TensorFlow can run converts), a legacy-Keras
rebuild when a TF.js layers model can be made (else the one-line reason why not), the
labels, the preprocessing spec and a ``reference`` function: the original model's outputs,
which every converted artifact is checked against.
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
    model: Any = None               # the original Keras model (Keras 3 or 2), for the SavedModel
    keras_model: Any = None         # its tf_keras rebuild, when a layers model can be written
    layers_unavailable: str | None = None  # else why not (one sentence)
    binary: str | None = None       # a one-unit head: "logit" or "sigmoid" (see keras_model)
    split: Any = None               # the model with two outputs (Grad-CAM features, output)
    explain: dict | None = None     # {"layer", "shape"} of the Grad-CAM features
    saved_model_dir: Path | None = None  # the user's SavedModel, when that is the source
    signature: dict = field(default_factory=lambda: {"input": "input", "output": "output"})
    notes: list[str] = field(default_factory=list)
    onnx: Any = None                # an ONNX source's graph facts (onnx_model.OnnxClassifier)


def preprocessing_spec(height: int, width: int, value_range, crop: str = "center",
                       preset: str | None = None) -> dict:
    """The one preprocessing spec, written to the manifest and read by browser and server
    (app/inference/preprocess.py says what each key does). ``preset``: a keras.applications
    preprocess_input mode (applications.PRESETS), which then replaces ``value_range``."""
    spec = {
        "size": [height, width],
        "crop": crop,                # "center": largest centred square (aspect kept); "none": squash
        "resize": "bilinear",
        "color": "rgb",
        "value_range": [float(v) for v in value_range],  # pixel p -> lo + p * (hi - lo) / 255
        "exif_orientation": True,
    }
    if preset is not None:
        from app.convert.applications import PRESETS

        spec.update(PRESETS[preset])
        spec["preset"] = preset
    return spec


def keras_application(name: str, size: int | None, weights: str, seed: int = 0) -> SourceModel:
    from app.convert import applications

    model, preset, size, provenance = applications.build(name, size, weights, seed)
    name = applications.lookup(name)
    return from_keras(
        model, kind="keras-app", labels=imagenet_labels(),
        preprocessing=preprocessing_spec(size, size, [0, 255], preset=preset), weights=provenance,
        source={"kind": "keras-app", "application": name, "size": size,
                "builder": f"keras.applications.{name}(include_top=True, classifier_activation=None)"},
        where=Path(name))


def imagenet_labels() -> list[str]:
    return json.loads(IMAGENET_LABELS.read_text())


def mobilenet_v2(alpha: float, size: int, weights: str, seed: int = 0) -> SourceModel:
    model, provenance = mobilenet.build(alpha, size, weights, seed)
    return from_keras(
        model, kind="mobilenet-v2", labels=imagenet_labels(),
        preprocessing=preprocessing_spec(size, size, mobilenet.VALUE_RANGE), weights=provenance,
        source={"kind": "mobilenet-v2", "alpha": alpha, "size": size,
                "builder": "tf_keras.applications.MobileNetV2(include_top=True, classifier_activation=None)"},
        where=Path(f"MobileNetV2 {alpha} {size}"))


def from_keras(model, *, kind: str, labels: list[str], preprocessing: dict | None, weights: dict,
               source: dict, where: Path, value_range=(0.0, 1.0), crop: str = "center",
               notes: list[str] | None = None) -> SourceModel:
    """A SourceModel from a loaded Keras model (Keras 3 or 2): identity layers switched off, a
    binary head made two classes, the Grad-CAM split found, the layers rebuild tried."""
    from app.convert import keras_model, layers_model

    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise BadInput(f"{where}: the model has {len(model.inputs)} inputs and {len(model.outputs)} "
                       "outputs; a Belka classifier takes one image and outputs one row of class scores")
    height, width = _image_input(tuple(model.inputs[0].shape), where)
    output_shape = tuple(model.outputs[0].shape)
    binary = None
    if len(output_shape) == 2 and output_shape[1] == 1 and len(labels) == 2:
        binary = keras_model.binary_head(model)
        output_shape = (output_shape[0], 2)
    num_classes = _class_count(output_shape, labels, where)
    identities = keras_model.inference_identities(model)
    found = keras_model.explain_split(model, identities)
    split = explain = None
    if found is not None:
        layer, tensor, shape = found
        split = keras_model.split_model(model, tensor)
        explain = {"layer": layer, "shape": shape}
    legacy, reason, notes = None, None, list(notes or [])
    try:
        legacy, more = layers_model.build(model, identities, binary)
        notes += more
    except layers_model.LayersUnavailable as exc:
        reason = str(exc)

    def reference(x: np.ndarray) -> np.ndarray:
        return np.asarray(keras_model.two_classes(model(x, training=False), binary))

    return SourceModel(
        kind=kind, input_shape=(height, width, 3), num_classes=num_classes, labels=labels,
        preprocessing=preprocessing or preprocessing_spec(height, width, value_range, crop),
        weights=weights, source=source, reference=reference, model=model, keras_model=legacy,
        layers_unavailable=reason, binary=binary, split=split, explain=explain, notes=notes)


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


def keras_file(path: Path, labels_path: Path, value_range, crop: str, preset: str | None = None) -> SourceModel:
    if not path.exists():
        raise BadInput(f"no such file: {path}")
    if path.is_dir():
        raise BadInput(f"{path} is a folder; for a SavedModel use `belka convert saved-model {path}`")
    version = _keras_file_version(path)
    labels = read_labels(labels_path)
    if version.startswith("3"):
        tf_runtime.tensorflow()
        import keras

        original = _load(lambda: keras.models.load_model(str(path), compile=False, safe_mode=False), path)
    else:
        tf_keras = tf_runtime.tf_keras()

        original = _load(lambda: tf_keras.models.load_model(str(path), compile=False, safe_mode=False), path)
    return from_keras(
        original, kind="keras", labels=labels, value_range=value_range, crop=crop,
        preprocessing=preset and preprocessing_spec(*_image_input(tuple(original.inputs[0].shape), path),
                                                    value_range, crop, preset),
        weights={"provenance": "file", "trained": True, "file": path.name, "sha256": sha256_of(path)},
        source={"kind": "keras", "file": path.name, "keras_version": version}, where=path)


def saved_model(path: Path, labels_path: Path, value_range, crop: str, preset: str | None = None) -> SourceModel:
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
    output_shape = tuple(output_spec.shape)
    binary = None
    if len(output_shape) == 2 and output_shape[1] == 1 and len(labels) == 2:
        binary = _signature_head(signature, output_name)
        output_shape = (output_shape[0], 2)
    num_classes = _class_count(output_shape, labels, path)

    def reference(x: np.ndarray) -> np.ndarray:
        from app.convert.keras_model import two_classes

        return np.asarray(two_classes(signature(**{input_name: tf.constant(x)})[output_name], binary))

    return SourceModel(
        kind="saved-model",
        input_shape=(height, width, 3),
        num_classes=num_classes,
        labels=labels,
        preprocessing=preprocessing_spec(height, width, value_range, crop, preset),
        weights={"provenance": "file", "trained": True, "file": path.name,
                 "sha256": sha256_of(path / "saved_model.pb")},
        source={"kind": "saved-model", "folder": path.name},
        reference=reference,
        binary=binary,
        saved_model_dir=path,
        signature={"input": input_name, "output": output_name},
        layers_unavailable="a SavedModel holds a TensorFlow graph, not Keras layers",
    )


def _signature_head(signature, output_name: str) -> str:
    """"sigmoid" when a SavedModel's one-unit output comes out of a Sigmoid op, else "logit"."""
    from app.convert.frozen import freeze_signature

    graph_def, _, outputs = freeze_signature(signature)
    nodes = {node.name: node for node in graph_def.node}
    node = nodes.get(outputs[output_name].split(":")[0])
    while node is not None and node.op == "Identity" and node.input:
        node = nodes.get(node.input[0].split(":")[0].lstrip("^"))
    return "sigmoid" if node is not None and node.op == "Sigmoid" else "logit"


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
        hint = ("; a binary classifier with one output unit needs exactly two labels, the "
                "negative class first" if shape[1] == 1 else "")
        raise BadInput(f"{path}: the model outputs {shape[1]} classes but the labels file has "
                       f"{len(labels)} labels{hint}")
    return int(shape[1])


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__
