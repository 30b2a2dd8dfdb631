"""Benchmark `belka convert mobilenet-v2`: conversion time, model sizes, and how much
weight quantization changes the predictions of the TF.js models.

What it measures
----------------
1. For each ``--quantize`` in none, float16, uint8 it runs the real CLI in a
   subprocess::

       belka convert mobilenet-v2 --weights none --alpha A --size S --quantize Q \
           --out TMPDIR --json --quiet

   and records the wall-clock time of the whole command (Python start-up and
   TensorFlow import included), the bytes of each format (graph, layers,
   saved_model), the pipeline's own step timings and its verification report.
2. It runs the converted TF.js models (Node, ``@tensorflow/tfjs`` CPU backend,
   through ``app.convert.verify.run_tfjs``) on a probe set of real colour photos
   shipped with scikit-image, preprocessed exactly as the model's manifest says
   (centre crop, bilinear resize with Pillow, RGB, pixel p -> lo + p*(hi-lo)/255).
   Every model is compared with the float32 TF.js *graph* model on the same
   photos: top-1 agreement (fraction of photos), mean top-5 overlap (|A ∩ B| / 5)
   and the maximum absolute logit difference.

The ImageNet weights cannot be downloaded on an offline machine, so the model
is built with ``--weights none`` (seeded, untrained but non-degenerate). The
logits of an untrained network are close together, so top-1 agreement here is
a pessimistic figure: small quantization errors reorder near-ties that a trained
model would separate by a wide margin. The median top-1 margin of the float32
model is reported next to the differences so the two can be compared.

How to run
----------
From the repository root (needs Node and ``npm ci`` done, as for ``belka convert``)::

    .venv/bin/python bench/convert_bench.py [--out bench/results/convert.json] [--size 224] [--alpha 1.0]

It prints a table and writes the JSON to ``--out``. About 2-3 minutes on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from app.convert.verify import run_tfjs  # noqa: E402

QUANTIZATIONS = ("none", "float16", "uint8")
TFJS_FORMATS = ("graph", "layers")
# Colour photos that ship inside the scikit-image wheel (no download needed).
# "cat" is the same picture as "chelsea"; the stereo motorcycle pair gives two.
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle_left", "motorcycle_right",
          "immunohistochemistry", "hubble_deep_field", "retina", "colorwheel")
WEIGHTS_NOTE = ("Pretrained ImageNet weights could not be downloaded on this machine (no internet), "
                "so the model uses --weights none: seeded, untrained but non-degenerate weights. "
                "Agreement is measured on those weights; with near-tied untrained logits it is a "
                "pessimistic figure for a trained model.")


def load_photos() -> dict[str, np.ndarray]:
    """The probe photos as uint8 RGB arrays, by name (skipping any this skimage lacks)."""
    import skimage.data

    photos = {}
    for name in PHOTOS:
        try:
            if name.startswith("motorcycle_"):
                left, right, _ = skimage.data.stereo_motorcycle()
                image = left if name.endswith("left") else right
            else:
                image = getattr(skimage.data, name)()
        except Exception as exc:  # noqa: BLE001 - missing in this version or needs a download
            print(f"skipping photo {name}: {type(exc).__name__}", file=sys.stderr)
            continue
        if image.ndim == 3 and image.shape[2] >= 3:
            photos[name] = np.asarray(image[..., :3], dtype=np.uint8)
    return photos


def preprocess(image: np.ndarray, spec: dict) -> np.ndarray:
    """One photo -> float32 (H, W, 3) as the manifest's "preprocessing" says."""
    pil = Image.fromarray(image).convert("RGB")
    if spec["crop"] == "center":
        w, h = pil.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        pil = pil.crop((left, top, left + side, top + side))
    height, width = spec["size"]
    pil = pil.resize((width, height), Image.BILINEAR)
    lo, hi = spec["value_range"]
    pixels = np.asarray(pil, dtype=np.float32)
    return (lo + pixels * (hi - lo) / 255.0).astype(np.float32)


def convert(quantize: str, alpha: float, size: int, weights: str, out: Path) -> tuple[dict, float]:
    """Run the real CLI; return (its JSON summary, wall-clock seconds)."""
    cmd = [sys.executable, "-m", "app.cli", "convert", "mobilenet-v2", "--weights", weights,
           "--alpha", str(alpha), "--size", str(size), "--quantize", quantize,
           "--out", str(out), "--json", "--quiet"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"belka convert --quantize {quantize} failed (exit {proc.returncode}):\n"
                 f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout), seconds


def agreement(reference: np.ndarray, candidate: np.ndarray) -> dict:
    """How close candidate logits are to reference logits, photo by photo."""
    top5_ref = np.argsort(-reference, axis=1)[:, :5]
    top5_cand = np.argsort(-candidate, axis=1)[:, :5]
    overlap = [len(set(a) & set(b)) / 5 for a, b in zip(top5_ref, top5_cand)]
    return {
        "top1_agreement": float(np.mean(reference.argmax(1) == candidate.argmax(1))),
        "top5_overlap_mean": float(np.mean(overlap)),
        "max_abs_logit_diff": float(np.abs(candidate.astype(np.float64) - reference).max()),
    }


def logit_stats(logits: np.ndarray) -> dict:
    """Is the reference model non-degenerate, and how far apart are its top two logits?"""
    top2 = np.sort(logits, axis=1)[:, -2:]
    return {
        "distinct_top1_classes": int(len(set(logits.argmax(1).tolist()))),
        "median_top1_margin": float(np.median(top2[:, 1] - top2[:, 0])),
        "min_top1_margin": float(np.min(top2[:, 1] - top2[:, 0])),
        "logit_spread": float(logits.max() - logits.min()),
    }


def machine_info() -> dict:
    return {"platform": platform.platform(), "machine": platform.machine(),
            "processor": platform.processor() or None, "cpu_count": os.cpu_count(),
            "python": platform.python_version()}


def print_table(results: dict, reference_stats: dict) -> None:
    mb = 1e6
    print(f"\n{'quantize':<9} {'convert s':>9} {'graph MB':>9} {'layers MB':>9} {'saved MB':>9}"
          f"  {'fmt':<6} {'top-1':>6} {'top-5 ov':>8} {'max |dlogit|':>12}")
    for q, r in results.items():
        sizes = r["bytes"]
        for i, fmt in enumerate(TFJS_FORMATS):
            a = r["agreement_vs_float32_graph"][fmt]
            head = (f"{q:<9} {r['convert_seconds']:>9.1f} {sizes.get('graph', 0) / mb:>9.2f} "
                    f"{sizes.get('layers', 0) / mb:>9.2f} {sizes.get('saved_model', 0) / mb:>9.2f}"
                    if i == 0 else " " * 49)
            print(f"{head}  {fmt:<6} {a['top1_agreement']:>6.0%} {a['top5_overlap_mean']:>8.2f} "
                  f"{a['max_abs_logit_diff']:>12.3g}")
    print(f"\nfloat32 graph reference on the photos: {reference_stats['distinct_top1_classes']} distinct "
          f"top-1 classes, median top-1 margin {reference_stats['median_top1_margin']:.3g}, "
          f"logit spread {reference_stats['logit_spread']:.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "convert.json")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--weights", default="none",
                        help="none (default, works offline), imagenet (needs the internet once) or a file")
    args = parser.parse_args()

    photos = load_photos()
    tmp = Path(tempfile.mkdtemp(prefix="belka-bench-"))
    try:
        summaries, seconds = {}, {}
        for q in QUANTIZATIONS:
            print(f"converting --quantize {q} ...", file=sys.stderr)
            summaries[q], seconds[q] = convert(q, args.alpha, args.size, args.weights, tmp)

        manifest = json.loads((Path(summaries["none"]["path"]) / "manifest.json").read_text())
        batch = np.stack([preprocess(img, manifest["preprocessing"]) for img in photos.values()])

        outputs, runtime = {}, {}
        for q in QUANTIZATIONS:
            print(f"running TF.js on {len(photos)} photos, --quantize {q} ...", file=sys.stderr)
            started = time.perf_counter()
            outputs[q], runtime = run_tfjs(Path(summaries[q]["path"]), list(TFJS_FORMATS), batch)
            runtime = {**runtime, "run_seconds": round(time.perf_counter() - started, 2)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    reference = outputs["none"]["graph"]
    results = {}
    for q in QUANTIZATIONS:
        s = summaries[q]
        results[q] = {
            "convert_seconds": round(seconds[q], 2),
            "pipeline_seconds": s["seconds"],
            "bytes": s["bytes"],
            "tfjs_graph_bytes": s["bytes"].get("graph", 0),
            "steps": s["steps"],
            "verification": s["verification"],
            "agreement_vs_float32_graph": {f: agreement(reference, outputs[q][f]) for f in TFJS_FORMATS},
        }
    reference_stats = logit_stats(reference)
    report = {
        "benchmark": "belka convert mobilenet-v2: time, sizes, quantization agreement",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(),
        "versions": manifest["versions"],
        "tfjs_runtime": runtime,
        "model": {"source": "mobilenet-v2", "alpha": args.alpha, "size": args.size, "weights": args.weights,
                  "note": WEIGHTS_NOTE if args.weights == "none" else None},
        "preprocessing": manifest["preprocessing"],
        "photos": {"source": "skimage.data", "names": list(photos)},
        "reference": "float32 (--quantize none) TF.js graph model, same photos",
        "reference_logit_stats": reference_stats,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(results, reference_stats)
    print(f"photos ({len(photos)}): {', '.join(photos)}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
