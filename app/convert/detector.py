"""`belka convert coco-ssd`: an SSD object detector for the browser and the server.

The source is a TensorFlow Object Detection API SavedModel: the model zoo's
``ssd_mobilenet_v2_320x320_coco17_tpu-8`` (``--source zoo``, downloaded once into
~/.keras/models) or a folder of your own exported the same way (``--source DIR``); or a
TF1 Object Detection API frozen graph (``--source FILE.pb``, e.g. the
ssdlite_mobilenet_v2_coco that coco-ssd was made from), cut where coco-ssd cuts it:
``Postprocessor/ExpandDims_1`` (boxes) and ``Postprocessor/Slice`` (scores without the
background column, which Belka puts back as zeros so both sources give one layout). We
chose the TF2 zoo's SavedModel over the TF1 frozen graph that @tensorflow-models/coco-ssd
was made from because its serving signature already names the tensors we need:

- ``raw_detection_boxes`` [1, N, 4]: every anchor's box, decoded, before non-max
  suppression: (ymin, xmin, ymax, xmax) as fractions of the image;
- ``raw_detection_scores`` [1, N, 1 + classes]: every anchor's sigmoid score per class,
  column 0 the background.

Like @tensorflow-models/coco-ssd, Belka cuts the graph there, before the model's own
non-max suppression (its while loops are slow in TF.js and hard to convert), and runs
the rest in JavaScript and Python (the best class per anchor, a score threshold, NMS).
The cut is a new SavedModel whose one signature takes float32 pixels [1, H, W, 3] in
0..255 (what the page's canvas gives, resized; rounded to uint8 inside, as the zoo
model wants) and returns ``boxes`` and ``scores``: TensorFlow's graph pruning drops the
suppression. That SavedModel is what the server runs and what the TF.js graph model
is converted from; both are checked against the source on probe images.
"""
from __future__ import annotations

import json
import shutil
import tarfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from app import tf_runtime
from app.convert import export, pipeline, verify
from app.convert.errors import BadInput, DownloadFailed
from app.convert.files import list_files, sha256_of
from app.convert.progress import Progress
from app.convert.sources import preprocessing_spec, read_labels

ZOO_MODEL = "ssd_mobilenet_v2_320x320_coco17_tpu-8"
ZOO_URL = f"http://download.tensorflow.org/models/object_detection/tf2/20200711/{ZOO_MODEL}.tar.gz"
ZOO_SIZE = 320
COCO_LABELS = Path(__file__).resolve().parent.parent / "data" / "coco_labels.json"
RAW_BOXES, RAW_SCORES = "raw_detection_boxes", "raw_detection_scores"
FROZEN_INPUT, FROZEN_BOXES, FROZEN_SCORES = "image_tensor", "Postprocessor/ExpandDims_1", "Postprocessor/Slice"
FORMATS = ("graph", "saved")
STEPS = 5
# What the page and the server do after the model, unless asked otherwise.
POSTPROCESSING = {"score_threshold": 0.5, "iou_threshold": 0.5, "max_boxes": 20, "nms": "class-agnostic"}

OFFLINE_MESSAGE = (
    "Could not download the COCO SSD model from the TensorFlow model zoo ({reason}). It is "
    "downloaded once (about 20 MB) and cached in ~/.keras/models; this machine could not reach "
    "the zoo. With a copy on disk (the unpacked folder, or its saved_model/ inside), run "
    "`belka convert coco-ssd --source FOLDER --size 320x320`."
)


@dataclass
class DetectorSource:
    path: Path                       # the Object Detection API SavedModel folder or frozen graph file
    format: str                      # "saved-model" or "frozen-graph"
    size: tuple[int, int]            # the model input's height and width
    labels: list[str | None]         # the name of each score column after the background
    class_ids: list[int]             # the dataset id of each of those columns
    weights: dict
    source: dict
    notes: list[str] = field(default_factory=list)


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
    """``zoo`` or a SavedModel folder (the zoo's unpacked folder, with saved_model/ inside, works too)."""
    if source == "zoo":
        folder, provenance = download_zoo(), {"provenance": "zoo", "trained": True, "model": ZOO_MODEL,
                                              "url": ZOO_URL}
        size = size or (ZOO_SIZE, ZOO_SIZE)
    else:
        folder = Path(source)
        if folder.is_dir() and not (folder / "saved_model.pb").is_file() and (folder / "saved_model").is_dir():
            folder = folder / "saved_model"
        if not folder.exists():
            raise BadInput(f"--source {source}: no such file or folder (use zoo, a SavedModel folder or a "
                           "frozen graph .pb)")
        if folder.is_dir() and not (folder / "saved_model.pb").is_file():
            raise BadInput(f"--source {source} is not a SavedModel folder (no saved_model.pb inside)")
        if size is None:
            raise BadInput("--size HxW is needed for your own detector: the input size it was trained "
                           "at (the zoo's SSD MobileNet V2 uses 320x320, coco-ssd's frozen graph 300x300)")
        provenance = {"provenance": "file", "trained": True, "file": folder.name,
                      "sha256": sha256_of(folder / "saved_model.pb" if folder.is_dir() else folder)}
    fmt = "saved-model" if folder.is_dir() else "frozen-graph"
    columns = _columns(folder, fmt)
    if labels_path is not None:
        labels = read_labels(labels_path)
        if len(labels) != columns:
            raise BadInput(f"--labels {labels_path}: {len(labels)} labels, but the model scores {columns} "
                           f"classes (plus the background)")
        class_ids = list(range(1, columns + 1))
    else:
        labels, class_ids = coco_labels(columns)
    return DetectorSource(path=folder, format=fmt, size=size, labels=labels, class_ids=class_ids,
                          weights=provenance, source={"kind": "coco-ssd", "source": source if source == "zoo"
                                                      else folder.name})


def _columns(path: Path, fmt: str) -> int:
    """How many classes the detector scores (the background column not counted)."""
    if fmt == "frozen-graph":
        return int(_frozen(path).outputs[1].shape[-1])
    return int(_load(path).signatures["serving_default"].structured_outputs[RAW_SCORES].shape[-1]) - 1


def _frozen(path: Path):
    """The frozen graph as a function image_tensor -> (ExpandDims_1, Slice) (BadInput says why not)."""
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
    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    return wrapped.prune(feeds=f"{FROZEN_INPUT}:0", fetches=[f"{FROZEN_BOXES}:0", f"{FROZEN_SCORES}:0"])


def raw_function(source: DetectorSource):
    """(fn, keep): fn maps float32 pixels [1, H, W, 3] in 0..255 to the raw (boxes [1, N, 4],
    scores [1, N, 1 + classes]) of either source format; ``keep`` holds what fn needs alive."""
    tf = tf_runtime.tensorflow()
    if source.format == "frozen-graph":
        pruned = _frozen(source.path)

        def frozen(pixels):
            boxes, scores = pruned(tf.cast(tf.clip_by_value(tf.round(pixels), 0, 255), tf.uint8))
            return tf.squeeze(boxes, 2), tf.concat([tf.zeros_like(scores[:, :, :1]), scores], axis=-1)
        return frozen, pruned
    loaded = _load(source.path)
    signature = loaded.signatures["serving_default"]
    (input_name, spec), = signature.structured_input_signature[1].items()

    def saved(pixels):
        outputs = signature(**{input_name: tf.cast(tf.clip_by_value(tf.round(pixels), 0, 255), spec.dtype)})
        return outputs[RAW_BOXES], outputs[RAW_SCORES]
    return saved, loaded


def _load(folder: Path):
    """The SavedModel, checked to be a detector Belka can cut (BadInput says why not)."""
    tf = tf_runtime.tensorflow()
    try:
        with tf_runtime.quiet_stdout():
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


def write_cut_saved_model(source: DetectorSource, out: Path) -> None:
    """The SavedModel Belka serves: float32 pixels [1, H, W, 3] in 0..255 -> {boxes, scores}."""
    tf = tf_runtime.tensorflow()
    raw, keep = raw_function(source)
    height, width = source.size

    class Cut(tf.Module):
        def __init__(self):
            super().__init__()
            if source.format == "saved-model":
                self.detector = keep  # the SavedModel's variables, saved again with the cut

        @tf.function(input_signature=[tf.TensorSpec([1, height, width, 3], tf.float32, name="images")])
        def serve(self, images):
            boxes, scores = raw(images)
            return {"boxes": boxes, "scores": scores}

    module = Cut()
    with tf_runtime.quiet_stdout():
        tf.saved_model.save(module, str(out), signatures={"serving_default": module.serve})


def run_source(source: DetectorSource, images: np.ndarray) -> dict[str, np.ndarray]:
    """The source model's raw outputs for float32 pixel images [N, H, W, 3], one at a time."""
    tf = tf_runtime.tensorflow()
    raw, _ = raw_function(source)
    rows = [raw(tf.constant(image[None], tf.float32)) for image in images]
    return {"boxes": np.concatenate([boxes.numpy() for boxes, _ in rows]),
            "scores": np.concatenate([scores.numpy() for _, scores in rows])}


def run_saved(saved_dir: Path, images: np.ndarray) -> dict[str, np.ndarray]:
    """The cut SavedModel's outputs for float32 pixel images [N, H, W, 3], one at a time."""
    tf = tf_runtime.tensorflow()
    fn = tf.saved_model.load(str(saved_dir)).signatures["serving_default"]
    rows = [fn(images=tf.constant(image[None])) for image in images]
    return {key: np.concatenate([r[key].numpy() for r in rows]) for key in ("boxes", "scores")}


def graph_output_names(graph_dir: Path) -> dict[str, str]:
    """The graph model's node names of its outputs {"boxes": "Identity:0", ...}."""
    signature = json.loads((graph_dir / "model.json").read_text())["signature"]["outputs"]
    return {key: value["name"] for key, value in signature.items()}


def check_request(request: pipeline.Request) -> None:
    unknown = [f for f in request.formats if f not in FORMATS]
    if unknown:
        raise BadInput(f"--formats: a detector converts to {','.join(FORMATS)} only (no TF.js layers model: "
                       f"it is a TensorFlow graph, not Keras layers); got {','.join(request.formats)}")
    pipeline.check_request(request, "coco-ssd")


def convert(load: Callable[[], DetectorSource], request: pipeline.Request, progress: Progress | None = None) -> dict:
    """Load -> cut SavedModel -> graph model -> verify -> manifest, atomically (see pipeline.py)."""
    progress = progress or Progress(STEPS, enabled=False)
    check_request(request)
    started = time.perf_counter()
    if request.out.is_dir():
        pipeline.remove_stale_staging(request.out)
    with progress.step("Loading the detector"), tf_runtime.quiet_stdout():
        source = load()
    with pipeline.staging_folder(request) as staging:
        saved_dir = staging / "saved_model"
        with progress.step("Cutting the graph before non-max suppression (SavedModel for the server)"):
            write_cut_saved_model(source, saved_dir)
        with progress.step("Converting to a TF.js graph model" if "graph" in request.formats
                           else "Skipping the graph model (not in --formats)"):
            if "graph" in request.formats:
                export.write_graph_model(saved_dir, staging / "graph", request.quantize)
        with progress.step("Checking the numbers in TF.js (Node) and TensorFlow"):
            verification, names, reference = _verify(source, staging, request)
            for fmt, report in verification["formats"].items():
                progress.note(f"{fmt}: max |diff| boxes {report['boxes']['max_abs_diff']:.2e}, "
                              f"scores {report['scores']['max_abs_diff']:.2e}")
        if "saved" not in request.formats:
            shutil.rmtree(saved_dir)
        with progress.step(f"Writing the manifest and moving into {request.out / request.name}"):
            manifest = build_manifest(source, request, staging, verification, names,
                                      anchors=reference["boxes"].shape[1], columns=reference["scores"].shape[2])
            manifest["conversion"]["steps"] = progress.steps
            manifest["conversion"]["seconds"] = round(time.perf_counter() - started, 3)
            pipeline.publish(staging, manifest, request.out / request.name)
    return pipeline.summary(manifest, request.out / request.name)


def _verify(source: DetectorSource, staging: Path, request: pipeline.Request) -> tuple[dict, dict, dict]:
    """(the verification report, the graph model's output node names, the source's outputs)."""
    height, width = source.size
    probe = verify.probe_batch(height, width, [0, 255])[[0, 3]]  # a noise image and the blocks
    reference = run_source(source, probe)
    outputs = {"saved": run_saved(staging / "saved_model", probe)}
    names = {}
    runtime = {}
    if "graph" in request.formats:
        names = graph_output_names(staging / "graph")
        tfjs, runtime = verify.run_tfjs(staging, ["graph"], probe, output_names=[names["boxes"], names["scores"]])
        outputs["graph"] = {key: tfjs["graph"][names[key]] for key in ("boxes", "scores")}
    quantize = {"saved": "none", "graph": request.quantize}
    reports = {}
    failures = []
    for fmt, out in outputs.items():
        reports[fmt] = {key: _compare(reference[key], out[key], quantize[fmt]) for key in ("boxes", "scores")}
        failures += [f"{fmt} {key}: {r['reason']}" for key, r in reports[fmt].items() if not r["ok"]]
    if failures:
        raise verify.VerificationFailed("the converted detector does not compute what the original computes: "
                                        + "; ".join(failures))
    return {"reference": "original model", "probe": {"count": len(probe), "seed": verify.PROBE_SEED},
            "formats": reports, "runtime": runtime}, names, reference


def _compare(reference: np.ndarray, candidate: np.ndarray, quantize: str) -> dict:
    if candidate.shape != reference.shape:
        return {"ok": False, "reason": f"shape {list(candidate.shape)} != {list(reference.shape)}"}
    diff = float(np.abs(candidate.astype(np.float64) - reference).max())
    spread = float(reference.max() - reference.min()) or 1.0
    if quantize == "none":
        ok, limit = diff <= verify.FLOAT32_TOLERANCE, {"max_abs_diff": verify.FLOAT32_TOLERANCE}
    else:
        ok, limit = diff / spread <= verify.QUANTIZED_MAX_RELATIVE[quantize], \
            {"max_rel_diff": verify.QUANTIZED_MAX_RELATIVE[quantize]}
    report = {"ok": ok, "max_abs_diff": diff, "max_rel_diff": diff / spread, "threshold": limit}
    if not ok:
        report["reason"] = f"max difference {diff:.3g} (relative {diff / spread:.3g}), allowed {limit}"
    return report


def build_manifest(source: DetectorSource, request: pipeline.Request, staging: Path, verification: dict,
                   names: dict, anchors: int, columns: int) -> dict:
    height, width = source.size
    return {
        "manifest_version": pipeline.MANIFEST_VERSION,
        "name": request.name,
        "task": "detection",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": source.source,
        "weights": source.weights,
        "input": {"shape": [1, height, width, 3], "dtype": "float32"},
        "output": {
            "boxes": {"node": names.get("boxes"), "shape": [1, int(anchors), 4],
                      "layout": "ymin, xmin, ymax, xmax as fractions of the image, decoded, before NMS"},
            "scores": {"node": names.get("scores"), "shape": [1, int(anchors), int(columns)], "activation": "sigmoid",
                       "background_column": 0},
        },
        "signature": {"input": "images", "outputs": ["boxes", "scores"]},
        "preprocessing": preprocessing_spec(height, width, [0, 255], crop="none"),
        "labels": source.labels,
        "class_ids": source.class_ids,
        "postprocessing": POSTPROCESSING,
        "formats": {f: pipeline.FORMAT_DIRS[f] + "/" for f in FORMATS if f in request.formats},
        "quantization": request.quantize,
        "files": list_files(staging),
        "verification": verification,
        "conversion": {"notes": source.notes},
        "versions": pipeline._versions(),
    }
