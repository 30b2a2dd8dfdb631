"""A classifier taught in the browser (issue 14's /teach page) made into a Belka model.

The page trains a small head on the features a converted classifier's head reads (the
manifest's ``features``: e.g. MobileNetV2's pooled [1280]) and sends its weights. Here the
head goes back on top of that base, then one or two Dense layers with the page's weights (a
hidden ReLU layer when the page used one; logits out, softmax in the readers, as every Belka
classifier). The base comes from one of two places:

- its TF.js layers model, loaded into Keras (tensorflowjs's loader) and cut at the features
  layer: the taught model is a Keras model, converted to graph, layers and SavedModel;
- without a layers model (a SavedModel source, or a Keras model TF.js layers cannot hold), its
  SavedModel: the signature its graph model was made from, frozen, and cut at the features
  node the page read (the same node names: the graph model is converted from that signature),
  with the Grad-CAM feature maps when the base has them. The taught model is then converted to
  graph and SavedModel, with Grad-CAM on the graph as for its base.

Either way it goes through the same conversion as `belka convert` (verified against the model
built here), with the base's preprocessing and the page's class names, into the models folder.

The head's weights come as TF.js saves them: ``weightSpecs`` ([{name, shape, dtype}], kernel
then bias per layer) and the little-endian float32 values of all of them, in that order.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from app.convert.errors import BadInput, VerificationFailed
from app.registry import ModelInfo

NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
MIN_CLASSES, MAX_CLASSES = 2, 100
MAX_LABEL_CHARS = 100


class TeachError(Exception):
    """A save the server refuses, with the HTTP status that says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def check_name(name: str) -> str:
    if not NAME.fullmatch(name or ""):
        raise TeachError(422, f"model name {name!r}: use 1 to 64 characters, lowercase letters, digits, "
                              "'.', '_' or '-', starting with a letter or digit")
    return name


def check_labels(labels) -> list[str]:
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise TeachError(422, "labels: a JSON list of class names")
    labels = [label.strip() for label in labels]
    if not MIN_CLASSES <= len(labels) <= MAX_CLASSES:
        raise TeachError(422, f"labels: {len(labels)} classes; teach {MIN_CLASSES} to {MAX_CLASSES}")
    if any(not label or len(label) > MAX_LABEL_CHARS for label in labels):
        raise TeachError(422, f"labels: every class needs a name of 1 to {MAX_LABEL_CHARS} characters")
    if len(set(labels)) != len(labels):
        raise TeachError(422, "labels: two classes have the same name")
    return labels


def check_base(base: ModelInfo | None, name: str) -> dict:
    """The base's features entry; TeachError when it cannot carry a taught head."""
    if base is None or base.task != "classification":
        raise TeachError(404, f"no classifier {name!r} to teach on; GET /api/models lists them")
    features = base.manifest.get("features") or {}
    formats = base.manifest["formats"]
    from_layers = features.get("layer") and "layers" in formats
    if not features.get("node") or not (from_layers or "saved" in formats):
        raise TeachError(422, f"the model {name!r} names no features a head can be put on (its manifest's "
                              "features), or has neither a layers model nor a SavedModel to build from: "
                              "convert it again with this version of Belka")
    return features


def read_head(specs, data: bytes, features: int, classes: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(kernel, bias), ...] from TF.js weight specs and their bytes, checked to chain
    ``features`` -> (hidden) -> ``classes``."""
    if not isinstance(specs, list) or len(specs) not in (2, 4):
        raise TeachError(422, "head: weightSpecs must list a kernel and a bias per layer, one or two layers")
    arrays, offset = [], 0
    for spec in specs:
        shape = spec.get("shape") if isinstance(spec, dict) else None
        if spec.get("dtype", "float32") != "float32" or not isinstance(shape, list) or \
                not all(isinstance(n, int) and n > 0 for n in shape):
            raise TeachError(422, f"head: a weight spec must be float32 with a positive shape, not {spec!r}")
        count = int(np.prod(shape))
        if offset + 4 * count > len(data):
            raise TeachError(422, f"head: the weights hold {len(data)} bytes, fewer than the specs need")
        arrays.append(np.frombuffer(data, "<f4", count, offset).reshape(shape).astype(np.float32))
        offset += 4 * count
    if offset != len(data):
        raise TeachError(422, f"head: the weights hold {len(data)} bytes, the specs {offset}")
    layers = [(arrays[i], arrays[i + 1]) for i in range(0, len(arrays), 2)]
    width = features
    for kernel, bias in layers:
        if kernel.ndim != 2 or kernel.shape[0] != width or bias.shape != (kernel.shape[1],):
            raise TeachError(422, f"head: a layer of kernel {list(kernel.shape)} and bias {list(bias.shape)} "
                                  f"does not take {width} features")
        width = kernel.shape[1]
    if width != classes:
        raise TeachError(422, f"head: it outputs {width} scores for {classes} labels")
    if not all(np.isfinite(a).all() for a in arrays):
        raise TeachError(422, "head: the weights hold NaN or infinite values")
    return layers


def build(base: ModelInfo, features: dict, head: list[tuple[np.ndarray, np.ndarray]]):
    """The Keras (tf_keras) model: the base's layers model up to its features layer, then the head."""
    from app import tf_runtime

    tf_runtime.tensorflowjs()
    import tf_keras
    from tensorflowjs.converters import keras_tfjs_loader

    loaded = keras_tfjs_loader.load_keras_model(str(base.path / "layers" / "model.json"))
    x = loaded.get_layer(features["layer"]).output
    for index, (kernel, bias) in enumerate(head):
        last = index == len(head) - 1
        dense = tf_keras.layers.Dense(kernel.shape[1], activation=None if last else "relu",
                                      name="taught_logits" if last else f"taught_hidden_{index + 1}")
        x = dense(x)
        dense.set_weights([kernel, bias])
    return tf_keras.Model(loaded.inputs, x, name="taught")


class _Dense:
    """The head as TensorFlow ops on the features: [N, features] -> logits [N, classes]."""

    def __init__(self, head):
        tf = _tf()
        self.layers = [(tf.Variable(kernel, name="kernel"), tf.Variable(bias, name="bias")) for kernel, bias in head]

    def __call__(self, x):
        tf = _tf()
        for index, (kernel, bias) in enumerate(self.layers):
            x = tf.matmul(x, kernel) + bias
            if index < len(self.layers) - 1:
                x = tf.nn.relu(x)
        return x


def _tf():
    from app import tf_runtime

    return tf_runtime.tensorflow()


def build_from_saved(base: ModelInfo, features: dict, head):
    """The taught model on a base without a layers model (see the module doc): a tf.Module
    called as ``model(images, training=False)`` -> logits, and its Grad-CAM split
    ``split(images, training=False)`` -> (feature maps, logits) when the base has Grad-CAM
    features in its SavedModel, else None."""
    tf = _tf()
    from app.convert import export
    from app.convert.frozen import freeze_signature, wrapped_graph

    saved = base.path / base.manifest["formats"]["saved"]
    loaded = tf.saved_model.load(str(saved))
    graph_def, input_name, outputs = freeze_signature(loaded.signatures[export.graph_signature(saved)])
    node = features["node"]
    if node not in {n.name for n in graph_def.node}:
        raise TeachError(422, f"the base model {base.name!r}: its SavedModel has no node {node!r} (the features "
                              "its graph model names): convert it again with this version of Belka")
    wrapped = wrapped_graph(graph_def)
    graph = wrapped.graph
    images = graph.get_tensor_by_name(input_name)
    pooled = graph.get_tensor_by_name(f"{node}:0")
    dense = _Dense(head)

    def logits(x):
        return dense(x if len(pooled.shape) == 2 else tf.reshape(x, [tf.shape(x)[0], -1]))

    maps = None
    if "features" in outputs:  # the Grad-CAM feature maps (export.FEATURES_SIGNATURE): the op, not its Identity
        maps = graph.get_tensor_by_name(outputs["features"])
        while maps.op.type == "Identity":
            maps = maps.op.inputs[0]
    if maps is None:
        to_pooled = wrapped.prune(images, pooled)

        class Taught(tf.Module):
            def __call__(self, x, training=False):
                return logits(to_pooled(x))
    else:  # two cuts, so that the logits are a function of the maps that gradients go through
        to_maps, maps_to_pooled = wrapped.prune(images, maps), wrapped.prune(maps, pooled)

        class Taught(tf.Module):
            def __call__(self, x, training=False):
                return logits(maps_to_pooled(to_maps(x)))

            def split(self, x, training=False):
                values = to_maps(x)
                return values, logits(maps_to_pooled(values))

    model = Taught(name="taught")
    model.head = [v for layer in dense.layers for v in layer]
    return model, (model.split if maps is not None else None)


def save(models_dir: Path, name: str, base: ModelInfo, labels: list[str], head, settings: dict):
    """Converts the taught model into ``models_dir/name`` (atomically, verified, as `belka
    convert` does) and returns the conversion's summary."""
    from app.convert import pipeline, sources
    from app.convert.progress import Progress
    from app.convert.request import Request

    features = check_base(base, base.name)
    on_layers = bool(features.get("layer")) and "layers" in base.manifest["formats"]
    recorded = {k: settings[k] for k in sorted(settings) if isinstance(settings[k], (int, float, str, bool))}
    weights = {"provenance": "taught in the browser", "trained": True, "base": base.name,
               "base_weights": base.manifest["weights"].get("provenance")}
    source = {"kind": "taught", "base": base.name, "features": features["layer"] if on_layers else features["node"],
              "head": [list(kernel.shape) for kernel, _ in head], "training": recorded}
    preprocessing = dict(base.manifest["preprocessing"])

    def load():
        if on_layers:
            return sources.from_keras(build(base, features, head), kind="taught", labels=labels,
                                      preprocessing=preprocessing, weights=weights, source=source, where=Path(name))
        return from_saved(base, features, head, labels, preprocessing, weights, source)

    formats = ("graph", "layers", "saved") if on_layers else ("graph", "saved")
    request = Request(name=name, out=models_dir, formats=formats, quantize="none")
    try:
        return pipeline.convert(load, request, "taught", Progress(pipeline.step_count("taught"), enabled=False))
    except BadInput as exc:
        raise TeachError(422, str(exc)) from exc
    except VerificationFailed as exc:
        raise TeachError(500, f"the converted model does not compute what the taught one does: {exc}") from exc


def from_saved(base: ModelInfo, features: dict, head, labels, preprocessing, weights, source):
    """The SourceModel of a taught model built on the base's SavedModel (build_from_saved)."""
    from app.convert import sources

    tf = _tf()
    model, split = build_from_saved(base, features, head)
    size = tuple(preprocessing["size"])
    explain = base.manifest.get("explain") or {}

    def reference(x: np.ndarray) -> np.ndarray:
        return model(tf.constant(x, tf.float32)).numpy()

    return sources.SourceModel(
        kind="taught", input_shape=(*size, 3), num_classes=len(labels), labels=labels, preprocessing=preprocessing,
        weights=weights, source=source, reference=reference, model=model,
        layers_unavailable=f"its base {base.name!r} has no TF.js layers model", split=split,
        explain={"layer": explain["layer"], "shape": explain["shape"]} if split is not None else None)


def parse_json(text: str | None, what: str, default=None):
    if text is None:
        if default is not None:
            return default
        raise TeachError(422, f"{what}: missing")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise TeachError(422, f"{what}: not valid JSON ({exc})") from exc


def download_zip(model: ModelInfo) -> bytes:
    """A model for use outside Belka, as one zip: ``NAME/`` holding the TF.js graph model
    (``tfjs_graph/``), the TF.js layers model (``tfjs_layers/``) and the same model as a Keras
    file (``NAME.keras``, tf_keras, loaded back from the layers model) when it has one, else its
    TensorFlow SavedModel (``saved_model/``, what Python runs without Keras layers), the labels
    (``labels.txt``, one per line) and the manifest (preprocessing included)."""
    import io
    import tempfile
    import zipfile

    manifest = model.manifest
    folders = {"graph": "tfjs_graph", "layers": "tfjs_layers"}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        root = model.name
        archive.writestr(f"{root}/manifest.json", json.dumps(manifest, indent=2))
        archive.writestr(f"{root}/labels.txt", "".join(f"{label}\n" for label in manifest.get("labels", [])))
        for fmt, target in folders.items():
            folder = manifest["formats"].get(fmt)
            if not folder:
                continue
            for path in sorted((model.path / folder).iterdir()):
                if path.is_file() and not path.name.startswith("."):
                    archive.write(path, f"{root}/{target}/{path.name}")
        if "layers" in manifest["formats"]:
            from app import tf_runtime

            tf_runtime.tensorflowjs()
            from tensorflowjs.converters import keras_tfjs_loader

            keras_model = keras_tfjs_loader.load_keras_model(str(model.path / manifest["formats"]["layers"] / "model.json"))
            with tempfile.TemporaryDirectory() as scratch:
                path = Path(scratch) / f"{model.name}.keras"
                keras_model.save(path)
                archive.write(path, f"{root}/{model.name}.keras")
        elif manifest["formats"].get("saved"):
            saved = model.path / manifest["formats"]["saved"]
            for path in sorted(p for p in saved.rglob("*") if p.is_file()):
                archive.write(path, f"{root}/saved_model/{path.relative_to(saved)}")
    return buffer.getvalue()
