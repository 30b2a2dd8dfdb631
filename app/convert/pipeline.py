"""One conversion, start to finish, whatever the model: check the request, load the source,
write the SavedModel, write each target, check the numbers, write the manifest, publish.

The steps are the same for every model; what differs is asked of plug-ins:

- the TASK (app/convert/tasks/: classification, detection) writes the SavedModel, checks the
  numbers of every format against the original model, and adds its section to the manifest;
  SOURCE_TASKS says which task each source kind converts to (a head taught in the page,
  app/teach.py, is a classification source);
- each output format is a TARGET (app/convert/targets/: the TF.js graph model with its float16
  copy, the TF.js layers model), with a writer and a check in the runtime that will run it;
- app/convert/formats.py decides which formats a task and a source allow;
- app/convert/manifest.py writes the fields every manifest has, app/convert/publish.py makes
  the write atomic: everything is built in a hidden staging folder and renamed into place only
  after the numbers have been checked; a failure or an interruption leaves any previous
  ``models/<name>/`` untouched.

A new source of a known task (next issue: an ONNX file) is a loader plus its line in
SOURCE_TASKS; a new target (ONNX for onnxruntime and ONNX Runtime Web) is a module in
targets/ plus its format in formats.py; a new task is a module in tasks/. None is a new
pipeline.
"""
from __future__ import annotations

import shutil
import time
from typing import Callable

from app import tf_runtime
from app.convert import formats, manifest
from app.convert.formats import FORMAT_DIRS
from app.convert.progress import Progress
from app.convert.publish import publish, remove_stale_staging, staging_folder
from app.convert.request import Request, check_request
from app.convert.targets import TARGETS
from app.convert.tasks import classification, detection, onnx_classification

SOURCE_TASKS = {"mobilenet-v2": classification, "keras-app": classification, "keras": classification,
                "saved-model": classification, "taught": classification, "coco-ssd": detection,
                "onnx": onnx_classification}
UNTRAINED = ("UNTRAINED WEIGHTS: this model's predictions are meaningless (random but deterministic). "
             "Fine for trying the app; the manifest and the page say so.")
VERIFY_STEP = "Checking the numbers in TF.js (Node) and TensorFlow"


def targets(task, source_kind: str) -> list:
    """The target modules a conversion of ``source_kind`` can write, in the order they are written
    (not the task's reference format: an ONNX source's onnx/ is its own file, not tf2onnx's)."""
    allowed = formats.allowed(task.TASK, source_kind)
    return [target for target in TARGETS if target.FORMAT in allowed and target.FORMAT != task.REFERENCE]


def step_count(source_kind: str) -> int:
    """How many progress steps a conversion of ``source_kind`` prints: load, the reference format
    (SavedModel, ONNX), each target, check, manifest."""
    return 4 + len(targets(SOURCE_TASKS[source_kind], source_kind))


def convert(load_source: Callable, request: Request, source_kind: str, progress: Progress | None = None) -> dict:
    """Run the conversion of what ``load_source()`` loads; return the summary (manifest.summary)."""
    task = SOURCE_TASKS[source_kind]
    progress = progress or Progress(step_count(source_kind), enabled=False)
    check_request(request, task.TASK, source_kind)
    started = time.perf_counter()
    if request.out.is_dir():
        remove_stale_staging(request.out)
    with progress.step(task.LOAD_STEP), tf_runtime.quiet_stdout():
        source = load_source()  # Keras prints download progress: keep stdout for --json
    if not source.weights.get("trained", True):
        progress.warn(UNTRAINED)
    for note in source.notes:
        progress.note(note)

    target_dir = request.out / request.name
    with staging_folder(request.out, request.name) as staging:
        with progress.step(task.SAVED_STEP):
            task.write_saved_model(source, staging / FORMAT_DIRS[task.REFERENCE], request)
        unwritten = {}
        for target in targets(task, source_kind):
            wanted = target.FORMAT in request.formats
            with progress.step(target.STEP if wanted else target.SKIPPED):
                reason = target.write(source, staging, request, task.TASK) if wanted else None
                if reason is not None:
                    unwritten[target.FORMAT] = reason
        with progress.step(getattr(task, "VERIFY_STEP", VERIFY_STEP)):
            verification, facts = task.check_numbers(source, staging, request, unwritten, progress)
        if task.REFERENCE not in request.formats:
            shutil.rmtree(staging / FORMAT_DIRS[task.REFERENCE])
        with progress.step(f"Writing the manifest and moving into {target_dir}"):
            written = manifest.written_formats(request.formats, staging)
            section = task.manifest_section(source, request, staging, written, verification, facts)
            built = manifest.build(task.TASK, request.name, source, request.quantize, staging, written,
                                   verification, section)
            built["conversion"]["steps"] = progress.steps
            built["conversion"]["seconds"] = round(time.perf_counter() - started, 3)
            publish(staging, built, target_dir)
    return manifest.summary(built, target_dir)
