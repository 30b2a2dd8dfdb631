"""Should the page download float16 weights by default? Agreement, size and load time.

What it measures
----------------
MobileNetV2 (default 1.0/224) is converted twice with the real CLI, float32 and
``--quantize float16`` (``--formats graph``: the page downloads only the graph model),
``--weights none`` by default (seeded, untrained: this machine cannot download the ImageNet
weights; pass ``--weights imagenet`` or a weights file where you can, the agreement figures
then mean more). Then:

1. agreement on photos: every scikit-image photo that loads (astronaut, coffee, chelsea,
   rocket, cat...; ``--photos`` to choose), decoded and preprocessed by the server's
   own code (app/inference/preprocess.py, the twin of the page's), run through both graph
   models in TF.js itself (Node, the wasm backend the page uses, via
   app/convert/verify.run_tfjs): top-1 agreement, top-5 overlap, the largest probability
   difference, and the largest output difference relative to the spread of the float32
   outputs (the gate ``belka convert`` applies: 5% for float16);
2. size: the graph model's bytes in each (the manifest's file list), and gzipped (what the
   wire carries now that the server compresses);
3. load time: the classify page in headless Chromium on wasm (``/?backend=wasm``, a fresh
   context per load, ``--loads`` times each), the page's own model load time
   (``window.belka.timings().loadMs``: fetch and upload of the weights).

Untrained weights make top-1 agreement pessimistic: their logits sit close together, so the
tiny float16 rounding reorders near-ties that a trained network separates by whole units.

How to run (after ``make test`` or ``make run`` set things up)::

    .venv/bin/python bench/float16_bench.py [--weights none|imagenet|FILE] [--loads 5]

Writes bench/results/float16.json and prints a table. About 3 minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from harness import chromium
from harness.server import serve as harness_serve

REPO = Path(__file__).resolve().parent.parent
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "cat", "camera", "horse",
          "immunohistochemistry", "hubble_deep_field", "retina", "colorwheel")


def convert(out: Path, weights: str, quantize: str) -> dict:
    cmd = [sys.executable, "-m", "app.cli", "convert", "mobilenet-v2", "--weights", weights,
           "--formats", "graph", "--quantize", quantize, "--out", str(out), "--json", "--quiet"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        sys.exit(f"belka convert failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    summary = json.loads(proc.stdout)
    summary["wall_seconds"] = round(time.perf_counter() - started, 1)
    return summary


def photos(names) -> dict[str, np.ndarray]:
    import skimage.data

    found = {}
    for name in names:
        try:
            image = getattr(skimage.data, name)()
        except Exception as exc:  # noqa: BLE001 - missing in this version, or needs a download
            print(f"skipping photo {name}: {type(exc).__name__}", file=sys.stderr)
            continue
        image = np.asarray(image)
        if image.dtype == bool:
            image = image.astype(np.uint8) * 255
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        if image.dtype != np.uint8:
            image = image.astype(np.float64)
            image = (255 * (image - image.min()) / max(1e-9, float(np.ptp(image)))).astype(np.uint8)
        found[name] = image[..., :3]
    return found


def model_inputs(images: dict[str, np.ndarray], spec: dict) -> np.ndarray:
    from PIL import Image

    from app.inference.preprocess import preprocess_bytes

    rows = []
    for image in images.values():
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        rows.append(preprocess_bytes(buffer.getvalue(), spec, 40_000_000)[0])
    return np.stack(rows).astype(np.float32)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def agreement(reference: np.ndarray, other: np.ndarray, kind: str) -> dict:
    p_ref = softmax(reference) if kind == "logits" else reference
    p_other = softmax(other) if kind == "logits" else other
    top5_ref = np.argsort(-p_ref, axis=1)[:, :5]
    top5_other = np.argsort(-p_other, axis=1)[:, :5]
    overlap = [len(set(a) & set(b)) / 5 for a, b in zip(top5_ref, top5_other)]
    spread = float(reference.max() - reference.min())
    return {
        "images": int(len(reference)),
        "top1_agreement": float(np.mean(top5_ref[:, 0] == top5_other[:, 0])),
        "top5_overlap": float(np.mean(overlap)),
        "max_probability_diff": float(np.abs(p_ref - p_other).max()),
        "max_output_diff": float(np.abs(reference - other).max()),
        "max_relative_to_spread": float(np.abs(reference - other).max() / spread) if spread else None,
        "disagreements": [int(i) for i in np.nonzero(top5_ref[:, 0] != top5_other[:, 0])[0]],
    }


def graph_bytes(model_dir: Path) -> dict:
    manifest = json.loads((model_dir / "manifest.json").read_text())
    files = [f for f in manifest["files"] if f["path"].startswith("graph/")]
    raw = sum(f["bytes"] for f in files)
    zipped = sum(len(gzip.compress((model_dir / f["path"]).read_bytes(), 6)) for f in files)
    return {"bytes": raw, "gzip_bytes": zipped}


def serve(models_dir: Path, model: str):
    """`belka serve` for ``models_dir`` with the page's default model ``model`` (harness.server)."""
    return harness_serve(models_dir, seconds=120, BELKA_MODEL=model)


def page_load_ms(models_dir: Path, names: list[str], loads: int) -> dict[str, list[float]]:
    """The page's model load time per model: ``loads`` fresh browser contexts each (the page
    opens the server's default model, so each model gets a server of its own)."""
    from playwright.sync_api import sync_playwright

    samples: dict[str, list[float]] = {name: [] for name in names}
    with sync_playwright() as p:
        browser = chromium.launch(p)
        try:
            for name in names:
                with serve(models_dir, name) as url:
                    for _ in range(loads):
                        context = browser.new_context()
                        page = context.new_page()
                        page.goto(f"{url}/?backend=wasm")
                        ready = page.evaluate("window.belka.ready")
                        if not ready.get("ok"):
                            raise RuntimeError(f"the page did not start: {ready}")
                        samples[name].append(page.evaluate("window.belka.timings().loadMs"))
                        context.close()
        finally:
            browser.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default="none")
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--photos", default=",".join(PHOTOS))
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "float16.json")
    args = parser.parse_args()

    from app.convert import verify

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="belka-f16-") as tmp:
        tmp = Path(tmp)
        summaries = {q: convert(tmp, args.weights, q) for q in ("none", "float16")}
        names = {q: s["name"] for q, s in summaries.items()}
        dirs = {q: tmp / names[q] for q in names}
        manifest = json.loads((dirs["none"] / "manifest.json").read_text())
        images = photos(args.photos.split(","))
        batch = model_inputs(images, manifest["preprocessing"])
        key = manifest["signature"]["output"]
        outputs = {q: verify.run_tfjs(dirs[q], ["graph"], batch, output_key=key)[0]["graph"] for q in dirs}
        agree = agreement(outputs["none"], outputs["float16"], manifest["output"]["kind"])
        agree["disagreements"] = [list(images)[i] for i in agree["disagreements"]]
        sizes = {q: graph_bytes(dirs[q]) for q in dirs}
        loads = page_load_ms(tmp, [names["none"], names["float16"]], args.loads)

    result = {
        "benchmark": "float16 weights as the page's default",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "weights": args.weights,
        "photos": list(images),
        "agreement_float16_vs_float32": agree,
        "graph_size": {"float32": sizes["none"], "float16": sizes["float16"]},
        "page_load_ms": {"float32": loads[names["none"]], "float16": loads[names["float16"]],
                         "median_float32": statistics.median(loads[names["none"]]),
                         "median_float16": statistics.median(loads[names["float16"]])},
        "conversion_seconds": {q: s["wall_seconds"] for q, s in summaries.items()},
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    mb = 1 / 1e6
    print(f"photos: {len(images)} ({', '.join(images)}); weights: {args.weights}")
    print(f"top-1 agreement {agree['top1_agreement']:.0%}, top-5 overlap {agree['top5_overlap']:.0%}, "
          f"max prob diff {agree['max_probability_diff']:.2e}, max diff / spread {agree['max_relative_to_spread']:.2%}")
    for q, label in (("none", "float32"), ("float16", "float16")):
        print(f"{label:8s} graph {sizes[q]['bytes'] * mb:6.2f} MB, gzip {sizes[q]['gzip_bytes'] * mb:6.2f} MB, "
              f"page load median {statistics.median(loads[names[q]]):7.1f} ms")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
