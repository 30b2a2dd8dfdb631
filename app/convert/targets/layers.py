"""The TF.js layers model (layers/): written from the source's legacy Keras rebuild
(layers_model.py), loaded and run in TF.js (Node) to be checked.

It is the one optional target: a source without a rebuild (a SavedModel, a Keras model TF.js
layers cannot hold) has none, and one that TF.js cannot load or that computes other numbers is
removed; either way the reason goes into the manifest and the rest of the model is published.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from app.convert import export, verify
from app.convert.errors import VerificationFailed
from app.convert.formats import FORMAT_DIRS

FORMAT = "layers"
STEP = "Writing the TF.js layers model"
SKIPPED = "Skipping the layers model (not in --formats)"


def write(source, staging: Path, request, task: str) -> str | None:
    """Write the layers model when the source has a rebuild; else return why there is none."""
    if source.keras_model is None:
        return source.layers_unavailable or "the source has no Keras layers"
    export.write_layers_model(source, staging / FORMAT_DIRS[FORMAT], request.quantize)
    return None


def run(staging: Path, batch) -> tuple[dict, dict]:
    """({"layers": outputs}, runtime): the layers model run in TF.js (Node)."""
    return verify.run_tfjs(staging, [FORMAT_DIRS[FORMAT]], batch)


def check(staging: Path, batch, reference, quantize: str):
    """(reason or None, report or None, runtime) for the layers model in TF.js; the folder is
    removed when TF.js cannot load it or it computes other numbers than ``reference``."""
    try:
        outputs, runtime = run(staging, batch)
    except VerificationFailed as exc:
        message = str(exc).removeprefix("TF.js could not run the converted model: ")
        shutil.rmtree(staging / FORMAT_DIRS[FORMAT], ignore_errors=True)
        return f"TF.js cannot load it ({_first_sentence(message)})", None, {}
    report = verify.compare(reference, outputs[FORMAT], quantize)
    if not report["ok"]:
        shutil.rmtree(staging / FORMAT_DIRS[FORMAT], ignore_errors=True)
        return (f"in TF.js it computes other numbers than the original ({verify.describe(report)})",
                None, runtime)
    return None, report, runtime


def _first_sentence(text: str) -> str:
    return " ".join(text.split()).split(". ")[0][:200]
