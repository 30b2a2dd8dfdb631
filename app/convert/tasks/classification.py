"""The classification task: a model that outputs one row of class scores per image (every
`belka convert` source but coco-ssd, and the heads taught in the page, app/teach.py).

Its SavedModel is exported from the original model (with Grad-CAM signatures when no layers
model will do Grad-CAM in the page); its check runs the SavedModel in TensorFlow and the TF.js
models in Node on the probe batch against the original model; its manifest section says
whether the output is logits or probabilities, how Grad-CAM works and where the features a
taught head reads are.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from app.convert import export, onnx_float16, verify
from app.convert.formats import FLOAT16_GRAPH_DIR, FORMAT_DIRS
from app.convert.progress import Progress
from app.convert.request import Request
from app.convert.sources import SourceModel
from app.convert.targets import graph, layers, onnx

TASK = "classification"
REFERENCE = "saved"  # the format the task writes first, that the server runs
LOAD_STEP = "Loading the source model"
SAVED_STEP = "Exporting the TensorFlow SavedModel (used by the server)"
LAYERS_LOSS = ("The graph model and the SavedModel are complete; without a layers model, Grad-CAM "
               "in the page runs on the graph model at one layer only (no layer choice)")
ONNX_LOSS = ("The rest of the model is complete; without an ONNX model the page runs it on TF.js only and the "
             "server in TensorFlow")


def gradcam_in_graph(source: SourceModel, request: Request) -> bool:
    """Whether the SavedModel and the graph model carry the Grad-CAM features: only when no
    layers model will do Grad-CAM (they cost an export of the gradient; the graph model keeps one
    output)."""
    return source.split is not None and (source.keras_model is None or "layers" not in request.formats)


def write_saved_model(source: SourceModel, out: Path, request: Request) -> None:
    export.write_saved_model(source, out, gradcam_in_graph(source, request))


def check_numbers(source: SourceModel, staging: Path, request: Request, unwritten: dict[str, str],
                  progress: Progress) -> tuple[dict, dict]:
    """(verification, {"reference": the original's outputs, "layers_reason": why there is no
    layers model}). A layers model that fails its check is dropped; then, for a model with
    Grad-CAM features, the SavedModel and the graph model are exported again with them."""
    verification, reference, layers_reason = _check(source, staging, request, unwritten.get("layers"))
    if layers_reason and source.split is not None and not gradcam_in_graph(source, request):
        progress.note("no layers model: exporting the SavedModel and the graph model again, "
                      "with the Grad-CAM features")
        shutil.rmtree(staging / FORMAT_DIRS["saved"])
        shutil.rmtree(staging / FORMAT_DIRS["graph"], ignore_errors=True)
        export.write_saved_model(source, staging / FORMAT_DIRS["saved"], True)
        if graph.FORMAT in request.formats:
            graph.write(source, staging, request, TASK)
        verification, reference, layers_reason = _check(source, staging, request, layers_reason)
    onnx_reason = unwritten.get(onnx.FORMAT)
    if onnx.FORMAT in request.formats and onnx_reason is None:
        height, width, _ = source.input_shape
        onnx_reason, reports, onnx_runtime, onnx_half = onnx.check(
            staging, verify.probe_batch(height, width, source.preprocessing), reference)
        verification["formats"].update(reports)
        if onnx_runtime:
            verification["onnx_runtime"] = onnx_runtime
        if onnx_half is not None:
            verification["onnx_float16"] = onnx_half
    for fmt, report in verification["formats"].items():
        progress.note(f"{fmt}: max |diff| {report['max_abs_diff']:.2e}, top-1 agreement "
                      f"{report['top1_agreement']:.0%}")
    float16 = verification.get("float16")
    if float16 and not float16["ok"]:
        progress.note(f"the page downloads float32 weights: float16 ones change the numbers "
                      f"too much ({verify.describe(float16)})")
    if layers_reason and layers.FORMAT in request.formats:
        progress.warn(f"NO LAYERS MODEL: {layers_reason}. {LAYERS_LOSS}")
    if onnx_reason and onnx.FORMAT in request.formats:
        progress.warn(f"NO ONNX MODEL: {onnx_reason}. {ONNX_LOSS}")
    return verification, {"reference": reference, "layers_reason": layers_reason, "onnx_reason": onnx_reason}


def _check(source: SourceModel, staging: Path, request: Request, layers_reason: str | None):
    """(verification, reference outputs, why there is no layers model). The SavedModel and the
    graph model must match the original (else VerificationFailed); a layers model that TF.js
    cannot load or that computes other numbers is removed, with the reason."""
    height, width, _ = source.input_shape
    batch = verify.probe_batch(height, width, source.preprocessing)
    reference = source.reference(batch)
    outputs = {"saved": verify.run_saved_model(staging / FORMAT_DIRS["saved"], source.signature, batch)}
    quantize = {"saved": "none"}
    runtime = {}
    float16 = None
    if graph.FORMAT in request.formats:
        tfjs_outputs, runtime = graph.run(staging, batch, output_key=source.signature["output"])
        if FLOAT16_GRAPH_DIR in tfjs_outputs:
            float16 = graph.check_float16(reference, tfjs_outputs.pop(FLOAT16_GRAPH_DIR), staging)
        outputs.update(tfjs_outputs)
        quantize["graph"] = request.quantize
    reports = verify.check(reference, outputs, quantize)
    if layers.FORMAT in request.formats and layers_reason is None:
        layers_reason, report, layers_runtime = layers.check(staging, batch, reference, request.quantize)
        if report is not None:
            reports["layers"] = report
            runtime = runtime or layers_runtime
            runtime.setdefault("load_ms", {}).update(layers_runtime.get("load_ms", {}))
    verification = {"reference": "original model",
                    "probe": {"count": int(batch.shape[0]), "seed": verify.PROBE_SEED},
                    "formats": reports, "runtime": runtime}
    if float16:
        verification["float16"] = float16
    return verification, reference, layers_reason


def manifest_section(source: SourceModel, request: Request, staging: Path, written: list[str],
                     verification: dict, facts: dict) -> dict:
    height, width, channels = source.input_shape
    output = {"shape": [None, source.num_classes], "dtype": "float32", "kind": output_kind(facts["reference"])}
    if source.binary:
        output["binary"] = {"head": source.binary, "negative": source.labels[0], "positive": source.labels[1]}
    return {
        "input": {"shape": [None, height, width, channels], "dtype": "float32"},
        "output": output,
        "signature": source.signature,
        "page_weights": page_weights(request, verification, written),
        "explain": explain_info(source, staging, written),
        "features": features_info(source, staging, written),
        "conversion": {"layers_model": {"written": layers.FORMAT in written,
                                        "reason": None if layers.FORMAT in written else
                                        (facts["layers_reason"] or "not in --formats")},
                       "onnx_model": {"written": onnx.FORMAT in written,
                                      "reason": None if onnx.FORMAT in written else
                                      (facts["onnx_reason"] or "not in --formats")}},
    }


def page_weights(request: Request, verification: dict, written: list[str]) -> dict | None:
    """What a page downloads: the graph model's folder (targets/graph.py) and, with an ONNX model,
    its folder under "onnx" (onnx_float16.py: the float16 copy when it passed its check)."""
    chosen = graph.page_weights(request.quantize, verification) if graph.FORMAT in written else {}
    if onnx.FORMAT in written:
        chosen["onnx"] = onnx_float16.page_weights(verification.get("onnx_float16"))
    return chosen or None


def explain_info(source: SourceModel, staging: Path, written: list[str]) -> dict:
    """How Grad-CAM works for this model, in the page and on the server."""
    if "layers" in written:
        return {"gradcam": "layers", "server": "layers"}
    node = export.features_node(staging / "graph") if "graph" in written else None
    if source.explain is None or node is None:
        return {"gradcam": None, "server": None,
                "reason": "the model has no layer with an [h, w, channels] output that its output depends on alone"}
    return {"gradcam": "graph", "server": "saved_model", "layer": source.explain["layer"],
            "shape": source.explain["shape"],
            "graph": {"features": node, "output": source.signature["output"]},
            "signature": export.GRADCAM_SIGNATURE}


def features_info(source: SourceModel, staging: Path, written: list[str]) -> dict | None:
    """Where the features the classifier's head reads come from (export.pooled_features): the
    graph model's node, their size, and the layers model's layer of that name when it has one
    (node names carry their Keras layer's: ".../global_average_pooling2d/Mean", Keras 3's
    ".../pool_1/Mean" for a layer "pool"). None without a
    graph model or a dense head."""
    if "graph" not in written:
        return None
    found = export.pooled_features(staging / "graph", source.signature["output"])
    if found is None:
        return None
    layer = None
    if "layers" in written:
        topology = json.loads((staging / "layers" / "model.json").read_text())["modelTopology"]
        config = topology.get("model_config", topology)["config"]
        names = {entry["config"]["name"] for entry in config.get("layers", [])}
        # Keras 3 scopes ops as "<layer>_1": the name without that suffix when only it matches
        candidates = (name for part in reversed(found["node"].split("/")[:-1])
                      for name in (part, re.sub(r"_\d+$", "", part)))
        layer = next((name for name in candidates if name in names), None)
    return {**found, "layer": layer}


def output_kind(outputs) -> str:
    """"probabilities" when the model already applies softmax (rows are distributions),
    else "logits" (readers apply softmax)."""
    sums = outputs.sum(axis=1)
    is_distribution = bool((outputs >= 0).all() and abs(sums - 1).max() < 1e-3)
    return "probabilities" if is_distribution else "logits"
