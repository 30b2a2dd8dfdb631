"""What a converted model is for, one module each: classification (classification.py: the
Keras / SavedModel classifiers and the heads taught in the page) and detection (detection.py:
SSD detectors). The pipeline (app/convert/pipeline.py) runs the same steps for every task and
asks the task, at each step, for what only it knows. A task module has:

- ``TASK``: the manifest's ``task``, and the key of its allowed formats in formats.py;
- ``LOAD_STEP``, ``SAVED_STEP``: its progress lines for loading and for the SavedModel;
- ``write_saved_model(source, out, request)``: the SavedModel the server runs and the graph
  model is converted from;
- ``check_numbers(source, staging, request, unwritten, progress) -> (verification, facts)``:
  runs every written format in its runtime (through the targets) on probe inputs and compares
  them with the original model (VerificationFailed when they differ); ``unwritten`` holds the
  targets that could not be written and why; ``facts`` is what its manifest section needs;
- ``manifest_section(source, request, staging, written, verification, facts) -> dict``: its
  keys of the manifest (``input``, ``output``, ``signature`` and its own), and a ``conversion``
  dict of notes added to the common one (app/convert/manifest.py writes the rest).

A task's sources load into an object with ``source``, ``weights``, ``preprocessing``,
``labels`` and ``notes`` (what every manifest records), plus what the task reads. A new source
of an existing task (an ONNX classifier, next issue) is one module that loads into the task's
source object and one entry in pipeline.SOURCE_TASKS; a new task is one module here and its
line in formats.TASK_FORMATS.
"""
