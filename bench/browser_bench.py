"""Benchmark the classify page in headless Chromium: per-backend warm-up and inference latency,
and model load time with a cold vs a warm HTTP cache.

What it measures
----------------
For MobileNetV2 (default 1.0/224) converted twice, float32 and float16 weights
(``--weights none``: seeded untrained weights, as this machine cannot download the
ImageNet ones; speed does not depend on the weight values):

1. For each TF.js backend (webgpu, webgl, wasm, cpu) in a fresh browser context,
   the real page at ``/?backend=NAME``: the model load time, the warm-up time
   (first inference after load) and the median inference time over ``--runs``
   classifications of scikit-image's chelsea photo, all as the page measures them
   (``window.belka.timings()`` / each result's ``inferenceMs``). A backend the
   browser cannot start is reported as unavailable.
2. Model load time cold (fresh context: every shard downloaded) and cached
   (the same page reloaded: model.json revalidated with its ETag, shards served
   from the HTTP cache because they are content-addressed and immutable), on wasm.

Chromium runs WebGPU and WebGL on the CPU here (SwiftShader), so those two
numbers say nothing about a real GPU; wasm and cpu are real CPU figures.

How to run (after `make test` or `make run` has set things up)::

    .venv/bin/python bench/browser_bench.py [--runs 10] [--size 224] [--alpha 1.0]

Writes bench/results/browser.json and prints a table. About 3-5 minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.chromium import ARGS as CHROMIUM_ARGS, CHROMIUM
from harness.server import serve

REPO = Path(__file__).resolve().parent.parent

BACKENDS = ("webgpu", "webgl", "wasm", "cpu")
QUANTIZATIONS = ("none", "float16")

CLASSIFY_N = """
async ({png, runs}) => {
  const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
  const blob = new Blob([bytes], {type: 'image/png'});
  const times = [];
  for (let i = 0; i < runs; i++) {
    const result = await window.belka.classifyBlob(blob);
    times.push(result.inferenceMs);
  }
  return times;
}
"""


def chelsea_png() -> str:
    import skimage.data
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(skimage.data.chelsea()).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def convert(out: Path, alpha: float, size: int, quantize: str) -> dict:
    cmd = [sys.executable, "-m", "app.cli", "convert", "mobilenet-v2", "--weights", "none", "--alpha", str(alpha),
           "--size", str(size), "--quantize", quantize, "--formats", "graph,saved", "--out", str(out),
           "--json", "--quiet"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        sys.exit(f"conversion failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def open_page(browser, url: str, timeout_ms: float | None = None):
    """A fresh context with the page at ``url``: (context, page, its belka.ready value)."""
    context = browser.new_context()
    page = context.new_page()
    if timeout_ms is not None:
        page.set_default_timeout(timeout_ms)
    page.goto(url)
    status = page.evaluate("window.belka.ready")
    return context, page, status


def measure_backend(browser, base: str, backend: str, png: str, runs: int) -> dict:
    context, page, status = open_page(browser, f"{base}/?backend={backend}")
    try:
        if not status.get("ok"):
            return {"available": False, "error": status.get("error")}
        active = page.evaluate("window.belka.backend()")
        if active != backend:
            return {"available": False, "error": f"fell back to {active}"}
        times = page.evaluate(CLASSIFY_N, {"png": png, "runs": runs})
        timings = page.evaluate("window.belka.timings()")
        return {"available": True, "load_ms": round(timings["loadMs"], 1),
                "warmup_ms": round(timings["warmupMs"], 1),
                "median_inference_ms": round(statistics.median(times), 1),
                "min_inference_ms": round(min(times), 1), "runs": len(times)}
    finally:
        context.close()


def measure_cache(browser, base: str) -> dict:
    context, page, status = open_page(browser, f"{base}/?backend=wasm")
    try:
        cold = page.evaluate("window.belka.timings()")["loadMs"]
        page.reload()
        page.evaluate("window.belka.ready")
        warm = page.evaluate("window.belka.timings()")["loadMs"]
        return {"cold_load_ms": round(cold, 1), "cached_load_ms": round(warm, 1),
                "speedup": round(cold / warm, 2) if warm else None}
    finally:
        context.close()


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "browser.json")
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]

    png = chelsea_png()
    tmp = Path(tempfile.mkdtemp(prefix="belka-browser-bench-"))
    results = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for quantize in QUANTIZATIONS:
                print(f"converting MobileNetV2 {args.alpha}/{args.size} --quantize {quantize} ...", file=sys.stderr)
                summary = convert(tmp, args.alpha, args.size, quantize)
                entry = {"model": summary["name"], "graph_bytes": summary["bytes"]["graph"], "backends": {}}
                with serve(tmp, BELKA_MODEL=summary["name"]) as base:
                    for backend in backends:
                        print(f"  {summary['name']} on {backend} ...", file=sys.stderr)
                        entry["backends"][backend] = measure_backend(browser, base, backend, png, args.runs)
                    entry["load_cache"] = measure_cache(browser, base)
                results[quantize] = entry
            chromium_version = browser.version
            browser.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    report = {
        "benchmark": "classify page in headless Chromium: per-backend latency, cold vs cached load",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
        "chromium": chromium_version,
        "note": "webgpu and webgl run on SwiftShader (CPU) here; weights are untrained (--weights none)",
        "model": {"alpha": args.alpha, "size": args.size}, "runs": args.runs,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{'model':<26} {'backend':<7} {'load ms':>8} {'warm-up ms':>10} {'median ms':>9}")
    for entry in results.values():
        for backend, r in entry["backends"].items():
            if r["available"]:
                print(f"{entry['model']:<26} {backend:<7} {r['load_ms']:>8.0f} {r['warmup_ms']:>10.0f} "
                      f"{r['median_inference_ms']:>9.1f}")
            else:
                print(f"{entry['model']:<26} {backend:<7} unavailable: {r['error']}")
        c = entry["load_cache"]
        print(f"{entry['model']:<26} load cold {c['cold_load_ms']:.0f} ms, cached {c['cached_load_ms']:.0f} ms")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
