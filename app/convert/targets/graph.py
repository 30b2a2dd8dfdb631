"""The TF.js graph model (graph/), and its float16 copy (graph-float16/) the classify page
downloads by default: converted from the SavedModel, run in TF.js (Node) to be checked.

The float16 copy is written for a float32 conversion when the task has one (formats.FLOAT16_COPY; a classifier:
half the download, same top-5 on the test photos, bench/float16_bench.py) and kept only when
its numbers stay within the float16 gate (check_float16).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from app.convert import export, verify
from app.convert.formats import FLOAT16_COPY, FLOAT16_GRAPH_DIR, FORMAT_DIRS

FORMAT = "graph"
STEP = "Converting to a TF.js graph model"
SKIPPED = "Skipping the graph model (not in --formats)"


def write(source, staging: Path, request, task: str) -> None:
    """graph/ from the SavedModel and, for a float32 conversion of a task of FLOAT16_COPY,
    graph-float16/."""
    export.write_graph_model(staging / FORMAT_DIRS["saved"], staging / FORMAT_DIRS[FORMAT], request.quantize)
    shutil.rmtree(staging / FLOAT16_GRAPH_DIR, ignore_errors=True)
    if FLOAT16_COPY[task] and request.quantize == "none":
        export.write_float16_graph(staging / FORMAT_DIRS[FORMAT], staging / FLOAT16_GRAPH_DIR)


def run(staging: Path, batch, **options) -> tuple[dict, dict]:
    """({"graph": outputs, "graph-float16": outputs when there is that copy}, runtime): the graph
    models run in TF.js (Node); ``options`` as verify.run_tfjs takes them."""
    folders = [FORMAT_DIRS[FORMAT]] + ([FLOAT16_GRAPH_DIR] if (staging / FLOAT16_GRAPH_DIR).is_dir() else [])
    return verify.run_tfjs(staging, folders, batch, **options)


def check_float16(reference, outputs, staging: Path) -> dict:
    """The float16 copy's numbers against the original, with the gate of --quantize float16;
    the folder is removed (the page then loads float32) when they fail it."""
    report = verify.compare(reference, outputs, "float16")
    if not report["ok"]:
        shutil.rmtree(staging / FLOAT16_GRAPH_DIR)
    return report


def page_weights(quantize: str, verification: dict) -> dict:
    """Which graph model the classify page downloads: {"graph": folder, "dtype", "reason"}.
    float16 (graph-float16/) when it passed its check, else the graph model as converted.
    (bench/float16_bench.py: MobileNetV2 with float16 weights agrees with float32 on the
    top-5 of every test photo, and is half the download.)"""
    float16 = verification.get("float16")
    if float16 and float16["ok"]:
        return {"graph": FLOAT16_GRAPH_DIR + "/", "dtype": "float16", "reason": None}
    dtype = "float32" if quantize == "none" else quantize
    reason = (f"converted with --quantize {quantize}" if quantize != "none" else
              f"float16 weights change its numbers too much ({verify.describe(float16)})" if float16 else
              "no float16 copy")
    return {"graph": "graph/", "dtype": dtype, "reason": reason}
