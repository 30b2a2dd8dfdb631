"""The `belka convert coco-ssd` source: an SSD object detector for the browser and the server,
converted by the detection task (app/convert/tasks/detection.py).

The source is a TensorFlow Object Detection API export: the model zoo's
``ssd_mobilenet_v2_320x320_coco17_tpu-8`` (``--source zoo``, downloaded once into
~/.keras/models), a SavedModel folder of your own exported the same way (``--source DIR``,
``exporter_main_v2.py``), or a TF1 frozen graph (``--source FILE.pb``,
``export_inference_graph.py --input_type image_tensor``, e.g. the ssdlite_mobilenet_v2_coco
that @tensorflow-models/coco-ssd was made from). What Belka needs from it:

- boxes [1, N, 4]: every anchor's box, decoded, before non-max suppression: (ymin, xmin,
  ymax, xmax) as fractions of the image (a SavedModel's ``raw_detection_boxes``, a frozen
  graph's ``Postprocessor/ExpandDims_1``);
- scores [1, N, 1 + classes]: every anchor's sigmoid score per class, column 0 the
  background (``raw_detection_scores``; a frozen graph's ``Postprocessor/Slice`` has no
  background column, which Belka puts back as zeros so both give one layout).

The graph is frozen and cut (app/convert/graph_cut.py) between the exporter's per-image
preprocessing loop and those two tensors: no loop, no non-max suppression and no ``Assert``
stays. The input size is the network's own (the preprocessing loop's output shape, else the
pipeline.config next to the model, else ``--size``) and the loop's pixel scaling becomes the
manifest's ``value_range``: the page and the server resize and scale, then run the network;
both do the rest like @tensorflow-models/coco-ssd (best class per anchor, a score threshold,
NMS). The cut is saved as the SavedModel the server runs, and converted to the TF.js graph
model; both are checked against the original, whole model on probe pictures: the raw tensors
and the detections after post-processing (app/convert/verify.py).
"""
from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from app import tf_runtime
from app.convert import graph_cut
from app.convert.errors import BadInput, DownloadFailed
from app.convert.files import sha256_of
from app.convert.frozen import freeze_signature, imported_graph, wrapped_graph
from app.convert.sources import preprocessing_spec, read_labels

ZOO_MODEL = "ssd_mobilenet_v2_320x320_coco17_tpu-8"
ZOO_URL = f"http://download.tensorflow.org/models/object_detection/tf2/20200711/{ZOO_MODEL}.tar.gz"
COCO_LABELS = Path(__file__).resolve().parent.parent / "data" / "coco_labels.json"
RAW_BOXES, RAW_SCORES = "raw_detection_boxes", "raw_detection_scores"
FROZEN_INPUT, FROZEN_BOXES, FROZEN_SCORES = "image_tensor", "Postprocessor/ExpandDims_1", "Postprocessor/Slice"
# What the page and the server do after the model, unless asked otherwise.
POSTPROCESSING = {"score_threshold": 0.5, "iou_threshold": 0.5, "max_boxes": 20, "nms": "class-agnostic"}

OFFLINE_MESSAGE = (
    "Could not download the COCO SSD model from the TensorFlow model zoo ({reason}). It is "
    "downloaded once (about 20 MB) and cached in ~/.keras/models; this machine could not reach "
    "the zoo. With a copy on disk (the unpacked folder, or its saved_model/ inside), run "
    "`belka convert coco-ssd --source FOLDER`."
)


@dataclass
class DetectorSource:
    path: Path                       # the Object Detection API SavedModel folder or frozen graph file
    format: str                      # "saved-model" or "frozen-graph"
    cut: graph_cut.CutGraph          # the network alone: preprocessed image -> raw boxes, scores
    labels: list[str | None]         # the name of each score column after the background
    class_ids: list[int]             # the dataset id of each of those columns
    weights: dict
    source: dict
    original: Callable               # uint8 pictures [1, H, W, 3] -> (boxes, scores): the whole model
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        return self.cut.size

    @property
    def preprocessing(self) -> dict:
        """The page and the server resize (no crop) and scale to the cut's value range."""
        return preprocessing_spec(*self.size, self.cut.value_range, crop="none")


def coco_labels(columns: int) -> tuple[list[str | None], list[int]]:
    """COCO's names for score columns 1..columns (ids 1..90; unused ids have no name)."""
    names = json.loads(COCO_LABELS.read_text())
    ids = list(range(1, columns + 1))
    return [names.get(str(i)) for i in ids], ids


def download_zoo() -> Path:
    """The zoo model's SavedModel folder, downloaded and unpacked once (DownloadFailed offline)."""
    tf_keras = tf_runtime.tf_keras()
    try:
        archive = tf_keras.utils.get_file(f"{ZOO_MODEL}.tar.gz", ZOO_URL, cache_subdir="models")
    except Exception as exc:  # noqa: BLE001 - Keras raises a bare Exception on URL errors
        raise DownloadFailed(OFFLINE_MESSAGE.format(reason=" ".join(str(exc).split())[:240])) from exc
    folder = Path(archive).parent / ZOO_MODEL
    if not (folder / "saved_model" / "saved_model.pb").is_file():
        with tarfile.open(archive) as tar:
            tar.extractall(Path(archive).parent, filter="data")
    return folder / "saved_model"


def load_source(source: str, size: tuple[int, int] | None, labels_path: Path | None) -> DetectorSource:
    """``zoo``, a SavedModel folder (the zoo's unpacked folder, with saved_model/ inside, works
    too) or a frozen graph file; ``size`` (--size) only where the model does not fix its own."""
    if source == "zoo":
        folder = download_zoo()
        provenance = {"provenance": "zoo", "trained": True, "model": ZOO_MODEL, "url": ZOO_URL}
    else:
        folder = Path(source)
        if folder.is_dir() and not (folder / "saved_model.pb").is_file() and (folder / "saved_model").is_dir():
            folder = folder / "saved_model"
        if not folder.exists():
            raise BadInput(f"--source {source}: no such file or folder (use zoo, a SavedModel folder or a "
                           "frozen graph .pb)")
        if folder.is_dir() and not (folder / "saved_model.pb").is_file():
            raise BadInput(f"--source {source} is not a SavedModel folder (no saved_model.pb inside)")
        provenance = {"provenance": "file", "trained": True, "file": folder.name,
                      "sha256": sha256_of(folder / "saved_model.pb" if folder.is_dir() else folder)}
    if folder.is_dir():
        fmt, (graph_def, input_name, outputs, original) = "saved-model", _saved_model_graph(folder)
    else:
        fmt, (graph_def, input_name, outputs, original) = "frozen-graph", _frozen_graph(folder)
    cut = graph_cut.cut(graph_def, input_name, outputs, size, graph_cut.read_pipeline_size(folder))
    columns = _columns(cut, fmt)
    if labels_path is not None:
        labels = read_labels(labels_path)
        if len(labels) != columns:
            raise BadInput(f"--labels {labels_path}: {len(labels)} labels, but the model scores {columns} "
                           f"classes (plus the background)")
        class_ids = list(range(1, columns + 1))
    else:
        labels, class_ids = coco_labels(columns)
    return DetectorSource(path=folder, format=fmt, cut=cut, labels=labels, class_ids=class_ids,
                          weights=provenance, original=original, notes=list(cut.notes),
                          source={"kind": "coco-ssd", "format": fmt,
                                  "source": source if source == "zoo" else folder.name,
                                  "input_size_from": cut.size_from, "cut_preprocessing": cut.preprocessing_cut})


def _saved_model_graph(folder: Path):
    """(frozen GraphDef, input name, [boxes, scores] names, the whole model as a function)."""
    tf = tf_runtime.tensorflow()
    loaded = _load(folder)
    signature = loaded.signatures["serving_default"]
    (input_name, spec), = signature.structured_input_signature[1].items()
    graph_def, graph_input, outputs = freeze_signature(signature)

    def original(pixels):
        out = signature(**{input_name: tf.constant(pixels, spec.dtype)})
        return out[RAW_BOXES].numpy(), out[RAW_SCORES].numpy()
    original.keep = loaded
    return graph_def, graph_input, [outputs[RAW_BOXES], outputs[RAW_SCORES]], original


def _frozen_graph(path: Path):
    """(GraphDef, input name, [boxes, scores] names, the whole model as a function)."""
    tf = tf_runtime.tensorflow()
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise BadInput(f"--source {path} is not a TensorFlow frozen graph (GraphDef): "
                       f"{' '.join(str(exc).split())[:200]}") from exc
    names = {node.name for node in graph_def.node}
    missing = [n for n in (FROZEN_INPUT, FROZEN_BOXES, FROZEN_SCORES) if n not in names]
    if missing:
        raise BadInput(f"--source {path}: the frozen graph has no {', '.join(missing)} node; Belka cuts TF1 "
                       f"Object Detection API graphs at {FROZEN_BOXES} and {FROZEN_SCORES}, as coco-ssd does")
    wrapped = wrapped_graph(graph_def)
    whole = wrapped.prune(feeds=f"{FROZEN_INPUT}:0", fetches=[f"{FROZEN_BOXES}:0", f"{FROZEN_SCORES}:0"])

    def original(pixels):
        boxes, scores = _standard_layout(*whole(tf.constant(pixels, tf.uint8)))
        return boxes.numpy(), scores.numpy()
    return graph_def, f"{FROZEN_INPUT}:0", [f"{FROZEN_BOXES}:0", f"{FROZEN_SCORES}:0"], original


def _standard_layout(boxes, scores):
    """A frozen graph's boxes [1, N, 1, 4] and background-less scores -> [1, N, 4] and
    [1, N, 1 + classes] (zeros in the background column); numpy arrays or tensors."""
    tf = tf_runtime.tensorflow()
    if len(boxes.shape) == 4:
        boxes = tf.squeeze(boxes, 2)
    return boxes, tf.concat([tf.zeros_like(scores[:, :, :1]), scores], axis=-1)


def _columns(cut: graph_cut.CutGraph, fmt: str) -> int:
    """How many classes the detector scores (the background column not counted)."""
    graph = imported_graph(cut.graph_def)
    columns = graph.get_tensor_by_name(cut.outputs[1]).shape[-1]
    if columns is None:
        raise BadInput("cannot tell how many classes this detector scores (its scores have no fixed last "
                       "dimension)")
    return int(columns) - (1 if fmt == "saved-model" else 0)


def _load(folder: Path):
    """The SavedModel, checked to be a detector Belka can cut (BadInput says why not)."""
    tf = tf_runtime.tensorflow()
    try:
        with tf_runtime.quiet_stdout(), tf_runtime.quiet_native():
            loaded = tf.saved_model.load(str(folder))
    except Exception as exc:  # noqa: BLE001 - TF raises anything for unreadable models
        raise BadInput(f"could not load the SavedModel in {folder}: {' '.join(str(exc).split())[:300]}") from exc
    signature = loaded.signatures.get("serving_default")
    if signature is None:
        raise BadInput(f"{folder}: the SavedModel has no 'serving_default' signature")
    outputs = signature.structured_outputs
    missing = [name for name in (RAW_BOXES, RAW_SCORES) if name not in outputs]
    if missing:
        raise BadInput(f"{folder}: the detector's signature has no {' and no '.join(missing)} output; Belka "
                       f"needs the boxes and scores before non-max suppression, as the TF Object Detection "
                       f"API's exporter writes them (outputs found: {', '.join(sorted(outputs))})")
    inputs = signature.structured_input_signature[1]
    if len(inputs) != 1:
        raise BadInput(f"{folder}: expected one image input, found {sorted(inputs)}")
    return loaded


def network_function(source: DetectorSource):
    """The cut network as a TF function: model input [1, H, W, 3] (pixels scaled as the
    manifest's value_range says) -> (boxes [1, N, 4], scores [1, N, 1 + classes])."""
    tf = tf_runtime.tensorflow()
    cut = source.cut
    wrapped = wrapped_graph(cut.graph_def)
    network = wrapped.prune(feeds=cut.input_name, fetches=cut.outputs)

    def run(images):
        if not cut.preprocessing_cut:  # the graph takes the pictures themselves (uint8, usually)
            images = tf.cast(tf.clip_by_value(tf.round(images), 0, 255), cut.input_dtype)
        boxes, scores = network(images)
        if source.format == "frozen-graph":
            return _standard_layout(boxes, scores)
        return boxes, scores
    run.keep = wrapped
    return run


def write_cut_saved_model(source: DetectorSource, out: Path) -> None:
    """The SavedModel Belka serves: model input float32 [1, H, W, 3] -> {boxes, scores}."""
    tf = tf_runtime.tensorflow()
    network = network_function(source)
    height, width = source.size

    class Cut(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, height, width, 3], tf.float32, name="images")])
        def serve(self, images):
            boxes, scores = network(images)
            return {"boxes": boxes, "scores": scores}

    module = Cut()
    with tf_runtime.quiet_stdout(), tf_runtime.quiet_native():
        tf.saved_model.save(module, str(out), signatures={"serving_default": module.serve})


def run_original(source: DetectorSource, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """The whole original model's raw outputs for integer pixel pictures [N, H, W, 3], one at a time."""
    rows = [source.original(np.round(image[None]).astype(np.uint8)) for image in pixels]
    return {"boxes": np.concatenate([boxes for boxes, _ in rows]),
            "scores": np.concatenate([scores for _, scores in rows])}


def run_saved(saved_dir: Path, images: np.ndarray) -> dict[str, np.ndarray]:
    """The cut SavedModel's outputs for model inputs [N, H, W, 3], one at a time."""
    tf = tf_runtime.tensorflow()
    fn = tf.saved_model.load(str(saved_dir)).signatures["serving_default"]
    rows = [fn(images=tf.constant(image[None])) for image in images]
    return {key: np.concatenate([r[key].numpy() for r in rows]) for key in ("boxes", "scores")}


def graph_output_names(graph_dir: Path) -> dict[str, str]:
    """The graph model's node names of its outputs {"boxes": "Identity:0", ...}."""
    signature = json.loads((graph_dir / "model.json").read_text())["signature"]["outputs"]
    return {key: value["name"] for key, value in signature.items()}


def graph_execution(graph_dir: Path) -> str:
    """"execute" when the TF.js graph model has no op that needs executeAsync() (control flow,
    dynamic shapes), else "executeAsync"."""
    topology = json.loads((graph_dir / "model.json").read_text())["modelTopology"]
    ops = {node["op"] for node in topology.get("node", [])}
    for function in topology.get("library", {}).get("function", []):
        ops |= {node["op"] for node in function.get("nodeDef", [])}
    return "executeAsync" if ops & TFJS_ASYNC_OPS else "execute"


# Ops for which TF.js's GraphModel.execute() refuses to run and asks for executeAsync().
TFJS_ASYNC_OPS = frozenset({
    "Enter", "Exit", "Merge", "Switch", "NextIteration", "LoopCond", "While", "StatelessWhile", "If",
    "StatelessIf", "NonMaxSuppressionV2", "NonMaxSuppressionV3", "NonMaxSuppressionV4", "NonMaxSuppressionV5",
    "Where", "ListDiff", "TensorArrayV3", "TensorListReserve", "HashTableV2", "LookupTableFindV2",
})
