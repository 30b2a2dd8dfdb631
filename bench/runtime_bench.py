"""TF.js against ONNX Runtime Web in the page, and TensorFlow against onnxruntime on the server,
on the same models: what the second runtime buys.

What it measures
----------------
Models (each converted once with the real CLI into a temporary folder, ``--weights none``:
seeded untrained weights, as this machine cannot download ImageNet's; speed does not depend on
the weight values; ``--formats graph,saved,onnx``: the TF.js graph model and tf2onnx's ONNX model
are made from the same SavedModel), or ``--models DIR`` with ``--model NAME`` (repeatable):

- ``mobilenet-v2``: MobileNetV2 1.0/224 (``belka convert mobilenet-v2``);
- ``mobilenetv3small``: Keras's MobileNetV3-Small 224 (``belka convert keras-app MobileNetV3Small``).

Page, per model and backend (``--backends``, default ``wasm,ort-wasm,webgpu,ort-webgpu``; the
WebGPU ones run on SwiftShader, Chromium's CPU renderer, here: labelled ``-swiftshader``, they say
nothing about a GPU): the real classify page ``/?model=M&backend=B&weights=float32`` (the float32
model on both runtimes: the same arithmetic) served by ``belka serve``, in a fresh browser
context; once it is ready (model loaded, warmed up):

1. ``model_ms``: ``--runs`` model calls on a zero picture (the worker's ``warmUp``: the model
   alone, from its input tensor to its outputs in JavaScript);
2. ``photo_ms``: ``--runs`` classifications of scikit-image's ``chelsea`` as a JPEG Blob
   (``belka.classifyBlob``: decode, preprocessing, model, softmax, top-5: what a user waits for).

Medians, and each ORT backend's ratio to its TF.js counterpart on the same device (> 1: ONNX
Runtime Web is faster); the top-5 of both runtimes must agree (``same_top5``).

Server, per model, in this process: the server's own classifiers (app/inference/classifier.py),
``Classifier`` (TensorFlow, the SavedModel) and ``OnnxClassifier`` (onnxruntime), at batch 1 and
32: wall ms per image, the median of ``--server-runs`` calls after two warm-up calls.

Bounded and local: servers on 127.0.0.1, every page step under ``--timeout``.

    .venv/bin/python bench/runtime_bench.py [--runs 10] [--backends wasm,ort-wasm] [--out FILE]
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.chromium import args_for, label, launch  # noqa: E402
from harness.models import convert_uncached  # noqa: E402
from harness.server import serve  # noqa: E402

MODELS = {
    "mobilenet-v2": ("mobilenet-v2", "--weights", "none"),
    "mobilenetv3small": ("keras-app", "MobileNetV3Small", "--weights", "none"),
}
COUNTERPART = {"ort-wasm": "wasm", "ort-webgpu": "webgpu"}

CLASSIFY = """async (b64) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const t = performance.now();
  const r = await belka.classifyBlob(new Blob([bytes], {type: 'image/jpeg'}));
  return {ms: performance.now() - t, top5: r.top5.map((c) => c.index)};
}"""


def photo_jpeg() -> str:
    from PIL import Image
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buffer, format="JPEG", quality=90)
    return base64.b64encode(buffer.getvalue()).decode()


def page_runs(playwright, url: str, model: str, backend: str, runs: int, timeout_s: float, photo: str) -> dict:
    browser = launch(playwright, args_for(backend))
    try:
        page = browser.new_context().new_page()
        page.set_default_timeout(timeout_s * 1000)
        started = time.perf_counter()
        page.goto(f"{url}/?model={model}&backend={backend}&weights=float32")
        ready = page.evaluate("window.belka.ready")
        if not ready.get("ok") or ready.get("backend") != backend:
            return {"error": f"not ready on {backend}: {ready}"}
        ready_s = time.perf_counter() - started
        model_ms = [page.evaluate("belka.worker('warmUp')") for _ in range(runs)]
        photos = [page.evaluate(CLASSIFY, photo) for _ in range(runs)]
        return {"ready_s": round(ready_s, 2), "model_ms": round(statistics.median(model_ms), 2),
                "photo_ms": round(statistics.median(p["ms"] for p in photos), 2), "top5": photos[-1]["top5"],
                "runs": runs}
    finally:
        browser.close()


def server_runs(models_dir: Path, model: str, runs: int) -> dict:
    import numpy as np

    from app.inference.classifier import Classifier, OnnxClassifier
    from app.registry import Registry

    info = Registry(models_dir).get(model)
    out = {}
    for name, make in (("tensorflow", Classifier), ("onnxruntime", OnnxClassifier)):
        classifier = make(info)
        rng = np.random.default_rng(0)
        for batch in (1, 32):
            images = rng.uniform(-1, 1, (batch, *classifier.input_shape)).astype(np.float32)
            for _ in range(2):
                classifier.predict(images)
            times = []
            for _ in range(runs if batch == 1 else max(3, runs // 4)):
                t = time.perf_counter()
                classifier.predict(images)
                times.append((time.perf_counter() - t) * 1000 / batch)
            out[f"{name}_batch{batch}_ms_per_image"] = round(statistics.median(times), 2)
    for batch in (1, 32):
        out[f"speedup_batch{batch}"] = round(out[f"tensorflow_batch{batch}_ms_per_image"]
                                             / out[f"onnxruntime_batch{batch}_ms_per_image"], 2)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=None, help="an existing models folder (with --model)")
    parser.add_argument("--model", action="append", default=None, help="a model in --models (repeatable)")
    parser.add_argument("--backends", default="wasm,ort-wasm,webgpu,ort-webgpu")
    parser.add_argument("--runs", type=int, default=10, help="page calls per measure (default 10)")
    parser.add_argument("--server-runs", type=int, default=20, help="server calls at batch 1 (default 20)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per page step (default 300)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "runtime.json")
    args = parser.parse_args(argv)
    if (args.models is None) != (args.model is None):
        parser.error("--models and --model go together")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="belka-runtime-bench-") as tmp:
        models_dir, names = args.models, args.model
        if models_dir is None:
            models_dir, names = Path(tmp) / "models", list(MODELS)
            for name, source in MODELS.items():
                print(f"converting {name} ...", flush=True)
                convert_uncached(*source, "--formats", "graph,saved,onnx", "--name", name, "--out", models_dir)
        results = {}
        for name in names:
            print(f"{name}: server ...", flush=True)
            results[name] = {"server": server_runs(models_dir, name, args.server_runs), "page": {}}
        photo = photo_jpeg()
        from playwright.sync_api import sync_playwright

        with serve(models_dir) as url, sync_playwright() as playwright:
            for name in names:
                for backend in backends:
                    print(f"{name}: page on {backend} ...", flush=True)
                    results[name]["page"][label(backend)] = page_runs(playwright, url, name, backend, args.runs,
                                                                      args.timeout, photo)
        for name in names:
            page = results[name]["page"]
            for ort, tfjs in COUNTERPART.items():
                a, b = page.get(label(ort), {}), page.get(label(tfjs), {})
                if "model_ms" in a and "model_ms" in b:
                    page[f"{label(ort)}_vs_{label(tfjs)}"] = {
                        "model_speedup": round(b["model_ms"] / a["model_ms"], 2),
                        "photo_speedup": round(b["photo_ms"] / a["photo_ms"], 2),
                        "same_top5": a["top5"] == b["top5"]}
    report = {"benchmark": "TF.js vs ONNX Runtime Web in the page, TensorFlow vs onnxruntime on the server",
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "backends": backends, "runs": args.runs,
              "results": results, "bench_wall_seconds": round(time.perf_counter() - started, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
