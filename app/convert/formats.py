"""What a conversion can write, and which of it each task and source allows: the one place that
decides formats.

A format is a folder of the model (FORMAT_DIRS) that one target writes and checks
(app/convert/targets/). A task allows the formats its models can have (a detector is a
TensorFlow graph, with no Keras layers to write a TF.js layers model from); a source may allow
fewer (a SavedModel holds no Keras layers either). A new format (as ONNX: ``"onnx": "onnx"``)
is one entry in FORMATS and FORMAT_DIRS, one in TASK_FORMATS for each task that can have it,
and its target module. graph-float16/ is the graph target's (a copy of graph/ for the tasks of
FLOAT16_COPY), not a format of its own.
"""
from __future__ import annotations

from app.convert.errors import BadInput

FORMATS = ("graph", "layers", "saved", "onnx")
FORMAT_DIRS = {"graph": "graph", "layers": "layers", "saved": "saved_model", "onnx": "onnx"}
FLOAT16_GRAPH_DIR = "graph-float16"  # the graph model with float16 weights (targets/graph.py)
QUANTIZATIONS = ("none", "float16", "uint8")  # of the TF.js models' weights (--quantize)

# task -> (the formats it allows, the refusal of any other: None when it allows them all)
TASK_FORMATS = {
    "classification": (("graph", "layers", "saved", "onnx"), None),
    "detection": (("graph", "saved"), "a detector converts to graph,saved only (no TF.js layers model: it is "
                                      "a TensorFlow graph, not Keras layers; no ONNX model yet)"),
}
# task -> whether its float32 graph model gets a float16 copy (the classify page's default download)
FLOAT16_COPY = {"classification": True, "detection": False}
# source kind -> the formats it gives, when not its task's (an ONNX model stays ONNX: TF.js cannot run it)
SOURCE_FORMATS = {
    "onnx": ("onnx",),
}
# source kind -> (formats it cannot give, what to do instead)
SOURCE_REFUSALS = {
    "saved-model": (("layers",), "a SavedModel holds a TensorFlow graph, not Keras layers, so no TF.js layers "
                                 "model can be made from it; use --formats graph,saved, or convert the Keras "
                                 "model file with `belka convert keras`"),
}


def check_task(formats: tuple[str, ...], task: str) -> None:
    """BadInput when ``task`` cannot have every one of ``formats``."""
    allowed, refusal = TASK_FORMATS[task]
    if refusal is not None and any(f not in allowed for f in formats):
        raise BadInput(f"--formats: {refusal}; got {','.join(formats)}")


def check_known(formats: tuple[str, ...]) -> None:
    """BadInput for an empty list or a format Belka does not write."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise BadInput(f"--formats: unknown {','.join(unknown) or '(empty)'}; choose from {','.join(FORMATS)}")


def allowed(task: str, source_kind: str) -> tuple[str, ...]:
    """The formats a conversion of ``source_kind`` (a model of ``task``) can write."""
    return SOURCE_FORMATS.get(source_kind) or TASK_FORMATS[task][0]


def check_source(formats: tuple[str, ...], source_kind: str, task: str = "classification") -> None:
    """BadInput when the source cannot give one of ``formats``."""
    refused, message = SOURCE_REFUSALS.get(source_kind, ((), ""))
    if any(f in refused for f in formats):
        raise BadInput(message)
    others = [f for f in formats if f not in allowed(task, source_kind)]
    if others:
        if source_kind == "onnx":
            raise BadInput(f"--formats {','.join(others)}: an ONNX model converts to onnx only (the page runs it "
                           "in ONNX Runtime Web, the server in onnxruntime; TF.js cannot run ONNX)")
        raise BadInput(f"--formats {','.join(others)}: this model converts to {','.join(allowed(task, source_kind))}")
