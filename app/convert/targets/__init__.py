"""The formats a conversion writes, one module each: a writer and its check in the runtime that
will run it.

The SavedModel comes first: the task writes it (tasks/), the server runs it in TensorFlow, and
every other format is made from it or checked against the same reference. Then each target of
TARGETS that the task allows (app/convert/formats.py) and the request asks for, in this
order. A target module has:

- ``FORMAT``: its key in ``--formats`` and in the manifest's ``formats``;
- ``STEP`` and ``SKIPPED``: the progress line when it is written, and when it is not asked for;
- ``write(source, staging, request, task) -> str | None`` (``task``: the task's name): write ``staging/<FORMAT_DIRS[FORMAT]>``
  from the SavedModel in ``staging/saved_model`` or from ``source``; None when written, else
  the one-sentence reason it cannot be (a target may be optional for a source);
- a ``run`` / ``check`` that loads what it wrote in the matching runtime (TF.js in Node for
  graph and layers) on a probe batch and returns the outputs, which the task compares with its
  reference (app/convert/verify.py holds the comparisons).

An ONNX target (next issue) is one more module here: ``write`` converts the SavedModel
(tf2onnx), its check runs the file in ONNX Runtime (Node, as ONNX Runtime Web will); plus its
entry in formats.py and in TARGETS.
"""
from app.convert.targets import graph, layers

TARGETS = (graph, layers)
