"""The detection task: an SSD detector's network, cut before non-max suppression (the coco-ssd
source, app/convert/detector.py), outputs every anchor's box and class scores.

Its SavedModel is the cut network (images -> {boxes, scores}); its check gives the original,
whole model integer pixel pictures and the converted ones the same pictures as the page would
feed them (scaled to the value range), then compares the raw tensors and the detections after
post-processing (verify.check_detector); its manifest section names the graph model's output
nodes, their layout, how TF.js must execute it, and the post-processing.
"""
from __future__ import annotations

from pathlib import Path

from app.convert import detector, verify
from app.convert.detector import POSTPROCESSING, DetectorSource
from app.convert.formats import FORMAT_DIRS
from app.convert.progress import Progress
from app.convert.request import Request
from app.convert.targets import graph

TASK = "detection"
REFERENCE = "saved"  # the format the task writes first, that the server runs
LOAD_STEP = "Loading the detector and cutting its graph before non-max suppression"
SAVED_STEP = "Saving the cut network (SavedModel for the server)"


def write_saved_model(source: DetectorSource, out: Path, request: Request) -> None:
    detector.write_cut_saved_model(source, out)


def check_numbers(source: DetectorSource, staging: Path, request: Request, unwritten: dict[str, str],
                  progress: Progress) -> tuple[dict, dict]:
    """(the verification report, {"names": the graph model's output node names, "reference": the
    original's outputs})."""
    height, width = source.size
    pixels, inputs = verify.detector_probe(height, width, source.cut.value_range)
    reference = detector.run_original(source, pixels)
    outputs = {"saved": detector.run_saved(staging / FORMAT_DIRS["saved"], inputs)}
    names = {}
    runtime = {}
    if graph.FORMAT in request.formats:
        graph_dir = staging / FORMAT_DIRS[graph.FORMAT]
        names = detector.graph_output_names(graph_dir)
        tfjs, runtime = graph.run(staging, inputs, output_names=[names["boxes"], names["scores"]],
                                  execute=detector.graph_execution(graph_dir))
        outputs["graph"] = {key: tfjs["graph"][names[key]] for key in ("boxes", "scores")}
    quantize = {"saved": "none", "graph": request.quantize}
    reports = verify.check_detector(reference, outputs, quantize, source.labels, POSTPROCESSING)
    verification = {"reference": "original model", "probe": {"count": len(pixels), "seed": verify.PROBE_SEED},
                    "formats": reports, "runtime": runtime}
    for fmt, report in verification["formats"].items():
        progress.note(verify.describe_detector_report(fmt, report))
    return verification, {"names": names, "reference": reference}


def manifest_section(source: DetectorSource, request: Request, staging: Path, written: list[str],
                     verification: dict, facts: dict) -> dict:
    height, width = source.size
    names, reference = facts["names"], facts["reference"]
    anchors, columns = int(reference["boxes"].shape[1]), int(reference["scores"].shape[2])
    return {
        "input": {"shape": [1, height, width, 3], "dtype": "float32"},
        "output": {
            "boxes": {"node": names.get("boxes"), "shape": [1, anchors, 4],
                      "layout": "ymin, xmin, ymax, xmax as fractions of the image, decoded, before NMS"},
            "scores": {"node": names.get("scores"), "shape": [1, anchors, columns], "activation": "sigmoid",
                       "background_column": 0},
        },
        "signature": {"input": "images", "outputs": ["boxes", "scores"]},
        "graph_execution": detector.graph_execution(staging / "graph") if graph.FORMAT in written else None,
        "class_ids": source.class_ids,
        "postprocessing": POSTPROCESSING,
    }
