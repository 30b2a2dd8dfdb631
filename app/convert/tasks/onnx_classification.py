"""The classification task for an ONNX source (app/convert/onnx_source.py): the same task as
tasks/classification.py for the server, the pages and the manifest ("task": "classification"),
with ONNX as its reference format instead of a SavedModel.

Its model is ``onnx/model.onnx``, one file (weights a PyTorch export kept in ``model.onnx.data``
are put back inside it when they fit ONNX's 2 GB limit, so the page downloads one file); the
server runs it in onnxruntime, the page in ONNX Runtime Web, by default from its float16 copy
``onnx-float16/model.onnx`` (onnx_float16.py) when that passes its check. Its check runs that file in ONNX
Runtime Web (Node) and in onnxruntime against the original file in onnxruntime, on the probe
batch in the model's layout. Grad-CAM needs gradients, which neither runtime gives: a model
whose head is pooling and one linear layer gets the exact equivalent, its class activation map
(onnx_cam.py, checked to add up to its outputs); any other says so in its manifest. Occlusion
works on any model.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from app.convert import onnx_cam, onnx_float16, onnx_runtime, verify
from app.convert.formats import FORMAT_DIRS
from app.convert.onnx_source import to_layout
from app.convert.progress import Progress
from app.convert.request import Request
from app.convert.sources import SourceModel
from app.convert.tasks.classification import output_kind

TASK = "classification"
REFERENCE = "onnx"
LOAD_STEP = "Reading the ONNX model"
SAVED_STEP = "Writing the ONNX model (run by the server and the page)"
VERIFY_STEP = "Checking the numbers in ONNX Runtime Web (Node) and onnxruntime"
MODEL_FILE = "model.onnx"
ONE_FILE_LIMIT = 2_000_000_000  # protobuf's limit on one file, with room to spare
NO_GRADCAM = ("Grad-CAM needs the gradient of the output, which ONNX Runtime does not compute, and the model's "
              "head is not pooling and one linear layer (whose class activation map is its exact Grad-CAM)")


def write_saved_model(source: SourceModel, out: Path, request: Request) -> None:
    """onnx/model.onnx from the source file, with its external data inside when it fits."""
    out.mkdir(parents=True)
    found = source.onnx
    data_bytes = sum((found.path.parent / name).stat().st_size for name in found.external_data)
    if not found.external_data or data_bytes < ONE_FILE_LIMIT:
        import onnx

        model = onnx.load(str(found.path), load_external_data=True)
        head = onnx_cam.find_head(model)
        if head is not None:
            model = onnx_cam.add_cam_output(model, head)
        onnx.save_model(model, str(out / MODEL_FILE))
    else:
        shutil.copy2(found.path, out / MODEL_FILE)
        for name in found.external_data:
            shutil.copy2(found.path.parent / name, out / name)


def check_numbers(source: SourceModel, staging: Path, request: Request, unwritten: dict[str, str],
                  progress: Progress) -> tuple[dict, dict]:
    """(verification, {"reference": the original's outputs}): the written model in ONNX Runtime
    Web and onnxruntime against the original in onnxruntime; VerificationFailed when either differs."""
    height, width, _ = source.input_shape
    batch = verify.probe_batch(height, width, source.preprocessing)
    reference = source.reference(batch)
    folder = staging / FORMAT_DIRS[REFERENCE]
    model = folder / MODEL_FILE
    external = [p.name for p in folder.iterdir() if p.name != MODEL_FILE]
    inputs = to_layout(batch, source.onnx.layout)
    half = staging / onnx_float16.PAGE_FOLDER / MODEL_FILE
    models = {"onnx": model}
    if not external and onnx_float16.write(model, half):
        models[onnx_float16.PAGE_FOLDER] = half
    web, runtime = onnx_runtime.run_web(models, inputs, external, one_at_a_time=source.onnx.batch == 1)
    float16 = onnx_float16.gate(reference, web, half)
    if float16 is not None and not float16["ok"]:
        progress.note(f"the page downloads float32 weights: float16 ones change the numbers "
                          f"too much ({verify.describe(float16)})")
    outputs = {"onnx": web["onnx"], "onnx-server": onnx_runtime.run_python(model, inputs)}
    reports = verify.check(reference, outputs, {"onnx": "none", "onnx-server": "none"})
    for fmt, report in reports.items():
        progress.note(f"{fmt}: max |diff| {report['max_abs_diff']:.2e}, top-1 agreement "
                      f"{report['top1_agreement']:.0%}")
    verification = {"reference": "original model in onnxruntime",
                    "probe": {"count": int(batch.shape[0]), "seed": verify.PROBE_SEED},
                    "formats": reports, "runtime": runtime}
    if float16 is not None:
        verification["float16"] = float16
    cam, no_cam = class_activation_map(model, inputs, output_kind(reference), source.onnx.batch == 1)
    if cam is None and no_cam != NO_GRADCAM:
        progress.note(f"no class activation map: {no_cam}")
    return verification, {"reference": reference, "cam": cam, "no_cam": no_cam}


def class_activation_map(model: Path, inputs, kind: str, one_at_a_time: bool) -> tuple[dict | None, str]:
    """(the manifest's explain entry for the model's class activation map (onnx_cam.py), or None;
    why there is none). Checked on the probe batch: the map must add up to the model's outputs."""
    import onnx
    import onnxruntime

    graph = onnx.load(str(model), load_external_data=False)
    head = onnx_cam.find_head(graph)
    if head is None or onnx_cam.CAM_OUTPUT not in {o.name for o in graph.graph.output}:
        return None, NO_GRADCAM
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    fetch = [session.get_outputs()[0].name, onnx_cam.CAM_OUTPUT]
    step = 1 if one_at_a_time else len(inputs)
    runs = [session.run(fetch, {name: inputs[i:i + step]}) for i in range(0, len(inputs), step)]
    outputs, cam = (np.concatenate([run[k] for run in runs]) for k in (0, 1))
    from onnx import numpy_helper

    initializers = {init.name: init for init in graph.graph.initializer}
    bias = numpy_helper.to_array(initializers[head.bias]) if head.bias else 0.0
    problem = onnx_cam.check(cam, outputs, kind, bias)
    if problem:
        return None, f"{NO_GRADCAM} ({problem})"
    weight = initializers[head.weight]
    channels = int(weight.dims[1] if head.transposed else weight.dims[0])
    return {"gradcam": "cam", "server": "cam", "layer": head.features,
            "shape": [int(cam.shape[1]), int(cam.shape[2]), channels], "output": onnx_cam.CAM_OUTPUT,
            "method": "class activation map (the exact Grad-CAM of a pooling + linear head)"}, ""


def manifest_section(source: SourceModel, request: Request, staging: Path, written: list[str],
                     verification: dict, facts: dict) -> dict:
    found = source.onnx
    return {
        "input": {"shape": found.input_shape, "dtype": "float32", "layout": found.layout,
                  "name": found.input_name},
        "output": {"shape": [None, source.num_classes], "dtype": "float32",
                   "kind": output_kind(facts["reference"]), "name": found.output_name},
        "runtime": {"server": "onnxruntime", "page": "onnxruntime-web"},
        "page_weights": {"onnx": onnx_float16.page_weights(verification.get("float16"))},
        "explain": facts["cam"] or {"gradcam": None, "server": None, "reason": facts["no_cam"]},
        "features": None,
        "conversion": {"layers_model": {"written": False, "reason": source.layers_unavailable}},
    }
