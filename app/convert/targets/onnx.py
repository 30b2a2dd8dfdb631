"""The ONNX model (onnx/) of a TensorFlow classifier: its SavedModel's serving signature, frozen
and converted with tf2onnx, then run in ONNX Runtime Web (Node, as the page will) and in
onnxruntime (as the server will) to be checked.

With it, the same model runs in the page on TF.js or on ONNX Runtime Web ("auto" measures
both), and the server runs it in onnxruntime (app/inference/classifier.py: several times
TensorFlow's speed on CPU). TensorFlow stays the reference: the SavedModel is what it is
converted from and checked against, and what Grad-CAM differentiates.

Its float16 copy (onnx-float16/, onnx_float16.py) is what the page downloads when it passes the
float16 gate. It is optional, like the layers model: a model tf2onnx cannot convert, that either runtime
cannot run, or that computes other numbers than the original, has none, and the reason goes
into the manifest; the rest of the model is published.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from app import tf_runtime
from app.convert import onnx_float16, onnx_runtime, verify
from app.convert.errors import BelkaError
from app.convert.formats import FORMAT_DIRS

FORMAT = "onnx"
STEP = "Converting to ONNX (tf2onnx)"
SKIPPED = "Skipping the ONNX model (not in --formats)"
MODEL_FILE = "model.onnx"
OPSET = 17  # onnxruntime and ONNX Runtime Web run it all; 13 is the oldest Belka reads


def write(source, staging: Path, request, task: str) -> str | None:
    """onnx/model.onnx from the SavedModel's serving signature; else why there is none."""
    out = staging / FORMAT_DIRS[FORMAT]
    shutil.rmtree(out, ignore_errors=True)
    try:
        import tf2onnx
    except ImportError:
        return "tf2onnx is not installed (pip install tf2onnx)"
    from app.convert.frozen import freeze_signature

    tf = tf_runtime.tensorflow()
    with tf_runtime.quiet_native():
        loaded = tf.saved_model.load(str(staging / FORMAT_DIRS["saved"]))
    graph_def, input_name, outputs = freeze_signature(loaded.signatures["serving_default"])
    output_name = outputs[source.signature["output"]]
    try:
        with tf_runtime.quiet_native(), tf_runtime.quiet_stdout():
            model, _ = tf2onnx.convert.from_graph_def(graph_def, input_names=[input_name],
                                                      output_names=[output_name], opset=OPSET)
    except Exception as exc:  # tf2onnx raises many kinds; the model simply has no ONNX form then
        return f"tf2onnx cannot convert it ({_first_line(exc)})"
    import onnx

    out.mkdir(parents=True)
    onnx.save_model(model, str(out / MODEL_FILE))
    return None


def check(staging: Path, batch, reference) -> tuple[str | None, dict, dict, dict | None]:
    """(why there is no ONNX model or None, {"onnx": report, "onnx-server": report}, runtime, the
    float16 copy's report or None): the ONNX model in ONNX Runtime Web (Node) and onnxruntime
    against ``reference``, and its float16 copy for the page (onnx_float16.py) in ONNX Runtime
    Web. The folder is removed when either runtime cannot run it or computes other numbers; the
    copy, when it fails the float16 gate."""
    model = staging / FORMAT_DIRS[FORMAT] / MODEL_FILE
    half = staging / onnx_float16.PAGE_FOLDER / MODEL_FILE
    models = {FORMAT: model}
    if onnx_float16.write(model, half):
        models[onnx_float16.PAGE_FOLDER] = half
    try:
        web, runtime = onnx_runtime.run_web(models, batch)
        outputs = {FORMAT: web[FORMAT], f"{FORMAT}-server": onnx_runtime.run_python(model, batch)}
    except BelkaError as exc:
        _remove(model, half)
        return f"it does not run ({_first_line(exc)})", {}, {}, None
    reports = {fmt: verify.compare(reference, out, "none") for fmt, out in outputs.items()}
    failed = [f"{fmt}: {verify.describe(r)}" for fmt, r in reports.items() if not r["ok"]]
    if failed:
        _remove(model, half)
        return f"it computes other numbers than the original ({'; '.join(failed)})", {}, runtime, None
    return None, reports, runtime, onnx_float16.gate(reference, web, half)


def _remove(*models: Path) -> None:
    for model in models:
        shutil.rmtree(model.parent, ignore_errors=True)


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__
