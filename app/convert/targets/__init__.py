"""The formats a conversion writes, one module each: a writer and its check in the runtime that
will run it.

The SavedModel comes first and is the task's (tasks/): what it holds is the task's (a
classifier's serving and Grad-CAM signatures, a detector's cut network), the server runs it in
TensorFlow, every target is made from it or from the same source, and the task checks it
against the original model with the targets. Then each target of
TARGETS that the task allows (app/convert/formats.py) and the request asks for, in this
order. A target module has:

- ``FORMAT``: its key in ``--formats`` and in the manifest's ``formats``;
- ``STEP`` and ``SKIPPED``: the progress line when it is written, and when it is not asked for;
- ``write(source, staging, request, task) -> str | None`` (``task``: the task's name): write
  ``staging/<FORMAT_DIRS[FORMAT]>`` from the SavedModel in ``staging/saved_model`` or from
  ``source``; None when written, else the one-sentence reason it cannot be (a target may be
  optional for a source);
- ``run(staging, batch, ...) -> (outputs, runtime)``: loads what it wrote in the runtime that
  will run it (TF.js in Node for graph and layers) and runs it on a probe batch; the task
  compares the outputs with its reference (app/convert/verify.py holds the comparisons). A
  target may add its own gate: the graph's float16 copy (``check_float16``), the optional
  layers model (``check``: dropped, with the reason, when TF.js cannot load it or it computes
  other numbers).

- the optional ONNX model (``onnx``: tf2onnx from the SavedModel; ``check`` runs it in ONNX
  Runtime Web in Node and in onnxruntime, and drops it with the reason as for layers).

A task's reference format (its ``REFERENCE``: the SavedModel, or an ONNX source's own file) is
not a target of that task.
"""
from app.convert.targets import graph, layers, onnx

TARGETS = (graph, layers, onnx)
