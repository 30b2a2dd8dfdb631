"""models/NAME/manifest.json: the one description of a converted model that the server, the
pages and `belka verify` read; and the conversion's summary (``--json``) drawn from it.

The fields every model has are written here, once; the task adds its own section (a
classifier's output kind and Grad-CAM, a detector's boxes, scores and post-processing), see
app/convert/tasks/.
"""
from __future__ import annotations

import platform
from datetime import datetime, timezone
from pathlib import Path

from app import __version__
from app.convert.files import list_files
from app.convert.formats import FORMAT_DIRS, FORMATS

MANIFEST_VERSION = 1


def written_formats(formats: tuple[str, ...], staging: Path) -> list[str]:
    """The asked-for formats whose folder was written (a layers model that failed its check is not)."""
    return [f for f in FORMATS if f in formats and (staging / FORMAT_DIRS[f]).is_dir()]


def build(task: str, name: str, source, quantize: str, staging: Path, written: list[str],
          verification: dict, section: dict) -> dict:
    """The manifest of the model in ``staging``. ``source``: what was loaded (its ``source``,
    ``weights``, ``preprocessing``, ``labels`` and ``notes``); ``written``: its formats
    (written_formats); ``section``: the task's own keys, ``input`` among them, and a
    ``conversion`` dict of its own notes on the conversion."""
    section = dict(section)
    conversion = section.pop("conversion", {})
    return {
        "manifest_version": MANIFEST_VERSION,
        "name": name,
        "task": task,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": source.source,
        "weights": source.weights,
        "input": section.pop("input"),
        **section,
        "preprocessing": source.preprocessing,
        "labels": source.labels,
        "formats": {f: FORMAT_DIRS[f] + "/" for f in written},
        "quantization": quantize,
        "files": list_files(staging),
        "verification": verification,
        "conversion": {"notes": source.notes, **conversion},
        "versions": versions(),
    }


def versions() -> dict:
    """The versions of what made the model (a SavedModel or a TF.js model may not load in others)."""
    import importlib.metadata as md

    def version(pkg: str) -> str | None:
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return None

    return {"belka": __version__, "python": platform.python_version(), "tensorflow": version("tensorflow"),
            "tensorflowjs": version("tensorflowjs"), "tf_keras": version("tf_keras"),
            "keras": version("keras"), "numpy": version("numpy"), "onnx": version("onnx"),
            "onnxruntime": version("onnxruntime")}


def summary(manifest: dict, path: Path) -> dict:
    """What `belka convert --json` prints (and app/teach.py returns): the manifest's headline."""
    sizes: dict[str, int] = {}
    for entry in manifest["files"]:
        top = entry["path"].split("/", 1)[0]
        sizes[top] = sizes.get(top, 0) + entry["bytes"]
    return {
        "name": manifest["name"], "path": str(path), "task": manifest["task"],
        "formats": list(manifest["formats"]), "quantization": manifest["quantization"],
        "page_weights": manifest.get("page_weights"), "weights": manifest["weights"], "bytes": sizes,
        "verification": manifest["verification"], "steps": manifest["conversion"]["steps"],
        "seconds": manifest["conversion"]["seconds"], "notes": manifest["conversion"]["notes"],
    }
