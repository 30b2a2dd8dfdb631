"""Benchmark the /teach page (issue 14): feature extraction per picture and training time per
epoch for 50, 200 and 1000 pictures, per backend, in headless Chromium.

What it measures
----------------
One base model, MobileNetV2 1.0/224 converted with the real CLI into a temporary folder
(``--weights none``: speed does not depend on the weight values), or ``--models DIR --model
NAME``; served by ``belka serve``. Per backend (``--backends``, default ``wasm``; ``cpu`` and
the SwiftShader ``webgl``/``webgpu`` are much slower, use ``--sizes 50`` there) one fresh
page, ``/teach?backend=B``, gets synthetic pictures (two classes of coloured noise, 120x100
PNGs made here) through ``belka.addSamples`` in batches of 25: the time per picture is
decode + thumbnail + the base's features in the model's worker, as the page does it. When the
page holds 50, 200 and 1000 pictures (``--sizes``), it trains (``belka.train``: ``--epochs``
epochs, batch 16, no hidden layer, validation 0.2, seed 0) and the time per epoch is the
training's wall time divided by the epochs (each epoch: every batch, then the loss and
accuracy on the training and validation pictures).

    .venv/bin/python bench/teach_bench.py [--backends wasm,cpu] [--sizes 50,200,1000] [--epochs 10]
        [--models DIR --model NAME]

Writes bench/results/teach.json (``--out``) and prints a table.
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness import chromium
from page_setup import convert, serve_belka  # this folder's page benchmark's set-up

REPO = Path(__file__).resolve().parent.parent

ADD = """async ([index, pictures]) => {
  const blobs = pictures.map((b64) => new Blob([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))],
    {type: 'image/png'}));
  const started = performance.now();
  const added = await belka.addSamples(index, blobs);
  return {added, ms: performance.now() - started};
}"""
TRAIN = """async (settings) => {
  const started = performance.now();
  const result = await belka.train(settings);
  return {ms: performance.now() - started, last: result.history[result.history.length - 1]};
}"""


def pictures(count: int, seed: int) -> list[list[str]]:
    """Two classes of ``count`` PNGs each half: reddish and bluish noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    classes = []
    for colour in ((200, 40, 40), (40, 60, 210)):
        encoded = []
        for _ in range(count // 2):
            image = np.clip(rng.normal(0, 15, (100, 120, 3)) + np.array(colour), 0, 255).astype(np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, "PNG")
            encoded.append(base64.b64encode(buffer.getvalue()).decode())
        classes.append(encoded)
    return classes


def run_backend(browser, url: str, backend: str, sizes: list[int], epochs: int, timeout: float) -> dict:
    page = browser.new_page()  # a fresh context: its own IndexedDB, nothing kept from another run
    page.set_default_timeout(timeout * 1000)
    try:
        page.goto(f"{url}/teach?backend={backend}")
        ready = page.evaluate("belka.ready")
        if not ready.get("ok"):
            return {"error": ready}
        per_picture, trainings = [], {}
        made = pictures(max(sizes), seed=1)
        have = 0
        for size in sorted(sizes):
            while have < size:
                step = min(25, (size - have))
                half = step // 2 or 1
                for index in (0, 1):
                    batch = made[index][have // 2: have // 2 + half]
                    result = page.evaluate(ADD, [index, batch])
                    per_picture.append(result["ms"] / max(1, result["added"]))
                have += 2 * half
            trained = page.evaluate(TRAIN, {"epochs": epochs, "learningRate": 0.003, "batchSize": 16, "hidden": 0,
                                            "validationSplit": 0.2, "seed": 0})
            trainings[str(size)] = {"pictures": have, "epoch_ms": trained["ms"] / epochs, "last_epoch": trained["last"]}
            print(f"  {backend}: {have} pictures, {trained['ms'] / epochs:.1f} ms per epoch", file=sys.stderr)
        return {"features_ms_per_picture": {"median": statistics.median(per_picture), "samples": per_picture},
                "training": trainings, "numTensors": page.evaluate("belka.numTensors()")}
    finally:
        page.context.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="wasm")
    parser.add_argument("--sizes", default="50,200,1000")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--models", type=Path, default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "teach.json")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        if args.models is None:
            args.models = Path(tmp) / "models"
            args.model = convert(args.models, 900)
        results = {}
        with serve_belka(args.models, args.model) as url, sync_playwright() as playwright:
            browser = chromium.launch(playwright, chromium.ARGS)
            try:
                for backend in args.backends.split(","):
                    label = chromium.label(backend)
                    print(f"{label} ...", file=sys.stderr)
                    results[label] = run_backend(browser, url, backend, sizes, args.epochs, args.timeout)
            finally:
                browser.close()
    out = {"benchmark": "teach", "model": args.model, "epochs": args.epochs, "sizes": sizes,
           "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
           "when": time.strftime("%Y-%m-%dT%H:%M:%S"), "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"\n{'backend':20} {'features ms/picture':>20} " + " ".join(f"{f'epoch ms @{s}':>14}" for s in sizes))
    for label, result in results.items():
        if "error" in result:
            print(f"{label:20} {result['error']}")
            continue
        epochs = " ".join(f"{result['training'][str(s)]['epoch_ms']:>14.1f}" for s in sizes)
        print(f"{label:20} {result['features_ms_per_picture']['median']:>20.1f} {epochs}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
