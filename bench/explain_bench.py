"""Benchmark the classify page's Grad-CAM and occlusion maps per TF.js backend, and the server's.

The page runs in headless Chromium; the server's are POST /api/models/{name}/explain.

What it measures
----------------
For MobileNetV2 (default 1.0/224, ``--weights none``: seeded untrained weights, as this
machine cannot download the ImageNet ones; speed does not depend on the weight values),
converted to graph, layers (Grad-CAM's) and SavedModel (the server's) formats:

1. For each TF.js backend (webgpu, webgl, wasm, cpu) in a fresh browser context, the
   real page at ``/?backend=NAME``, after classifying scikit-image's chelsea photo once
   (every explanation is of that photo's top-1 class on the first backend that ran):

   - Grad-CAM at ``block_12_expand`` (mid-network, 14x14 at 224 px) and ``out_relu``
     (the page's default, 7x7): the first call on its own (``first_ms``, the page's
     ``ms``: kernels compiled on first use; ``first_wall_ms`` as seen from the caller also
     includes loading the layers model, on the first layer only, and drawing the
     heatmap), then the median of ``--runs`` further calls (``median_ms``). TF.js wasm
     lacks Conv2DBackpropFilter, so there only ``out_relu`` runs; the other layer is
     reported as unsupported, with the missing kernel.
   - Occlusion with the page's defaults (patch = round(min(H, W) / 7), stride =
     patch // 2: 32 / 16 and 169 occluded images at 224 px), one run: ``ms`` and
     ``ms_per_image``, and ``max_stall_ms``, the longest gap between the ticks of a 10 ms
     setInterval in the page during the run (how long the page stops responding: the
     occlusion hands the main thread back between batches of ~80 ms). A run longer than
     ``--occlusion-timeout`` is cancelled with ``belka.cancelExplain()`` and reported as
     timed out with how many images it got through. ``--occlusion-backends`` picks where
     it runs at all (WebGPU on SwiftShader needs ~1.7 s per 224 px image).

2. The server, with the page's own model input (``result.input``) as JSON ``instances``:
   Grad-CAM at the same two layers (first call, which loads the layers model, then the
   median of ``--runs``: the response's ``timings.explain_ms`` and the request's wall
   time) and occlusion with the same patch and stride (one run).

3. Parity for free: Pearson r between the page's and the server's Grad-CAM heatmaps for
   each backend and layer that ran (and between the occlusion maps).

Chromium runs WebGPU and WebGL on the CPU here (SwiftShader), so those two numbers say
nothing about a real GPU; wasm, cpu and the server are real CPU figures.

How to run (after `make test` or `make run` has set things up)::

    .venv/bin/python bench/explain_bench.py [--runs 5] [--size 224] [--alpha 1.0]
        [--backends webgpu,webgl,wasm,cpu] [--occlusion-backends webgl,wasm,cpu]
        [--occlusion-timeout 300]

Writes bench/results/explain.json and prints two tables (Grad-CAM, occlusion). The
occlusion maps dominate the time: ``--alpha 0.35 --size 96 --runs 2`` takes about 3.5
minutes on 2 cores (80 s of it webgpu's occlusion map); the default 1.0/224 run is
estimated at 15-20 minutes (each page occlusion map is capped by ``--occlusion-timeout``).
"""
from __future__ import annotations

import argparse
import base64
import hashlib
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

import numpy as np

from app.inference.occlusion import default_params, positions
from browser_bench import open_page  # this folder's browser benchmark
from harness.chromium import ARGS as CHROMIUM_ARGS, CHROMIUM
from harness.server import serve

REPO = Path(__file__).resolve().parent.parent

BACKENDS = ("webgpu", "webgl", "wasm", "cpu")
LAYERS = ("block_12_expand", "out_relu")
READY_TIMEOUT_MS = 180_000
# After a cancel the occlusion stops at the end of the running batch; give up on it after this.
CANCEL_GRACE_S = 120

CLASSIFY = """
async ({png}) => {
  const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
  const result = await window.belka.classifyBlob(new Blob([bytes], {type: 'image/png'}));
  return {input: result.input, top1: result.top5[0].index, inferenceMs: result.inferenceMs};
}
"""

# One explanation, timed from the caller too (a first Grad-CAM also loads the layers model).
EXPLAIN = """
async (request) => {
  const started = performance.now();
  const result = await window.belka.explain(request);
  return {result, wallMs: performance.now() - started};
}
"""

# An occlusion map under a watchdog: cancelled after timeoutMs, abandoned after graceMs more.
# A 10 ms setInterval records the longest gap between its ticks (the longest main-thread stall).
OCCLUDE = """
async ({request, timeoutMs, graceMs}) => {
  let last = performance.now();
  let maxGap = 0;
  const tick = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
  }, 10);
  let timedOut = false;
  const cancel = setTimeout(() => { timedOut = true; window.belka.cancelExplain(); }, timeoutMs);
  let abandon;
  const hung = new Promise((resolve) => { abandon = setTimeout(() => resolve({hung: true}), timeoutMs + graceMs); });
  const started = performance.now();
  try {
    const result = await Promise.race([window.belka.explain(request), hung]);
    const wallMs = performance.now() - started;
    maxGap = Math.max(maxGap, performance.now() - last);
    const progress = document.getElementById('explain-progress');
    return {result, timedOut, wallMs, maxStallMs: maxGap,
            done: progress ? Number(progress.value) : null, total: progress ? Number(progress.max) : null};
  } finally {
    clearInterval(tick);
    clearTimeout(cancel);
    clearTimeout(abandon);
  }
}
"""


def chelsea_png() -> bytes:
    import skimage.data
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(skimage.data.chelsea()).save(buffer, format="PNG")
    return buffer.getvalue()


def convert(out: Path, alpha: float, size: int) -> dict:
    cmd = [sys.executable, "-m", "app.cli", "convert", "mobilenet-v2", "--weights", "none", "--alpha", str(alpha),
           "--size", str(size), "--formats", "graph,layers,saved", "--out", str(out), "--json", "--quiet"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        sys.exit(f"conversion failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def pearson(a, b) -> float | None:
    """Pearson r of two heatmaps (None when their sizes differ or one is constant)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape or a.std() == 0 or b.std() == 0:
        return None
    return round(float(np.corrcoef(a, b)[0, 1]), 8)


def ms(value: float) -> float:
    return round(value, 1)


def gradcam_in_page(page, layer: str, class_index: int, runs: int) -> tuple[dict, list | None]:
    """One layer on the open page: the first call, then `runs` more. Returns (entry, heatmap)."""
    request = {"method": "gradcam", "layer": layer, "classIndex": class_index}
    first = page.evaluate(EXPLAIN, request)
    result = first["result"]
    if result is None or result.get("error"):
        result = result or {"error": "cancelled"}
        if result.get("unsupported"):
            return {"supported": False, "kernel": result.get("kernel"), "error": result["error"]}, None
        return {"supported": True, "error": result["error"]}, None
    times = [page.evaluate(EXPLAIN, request)["result"]["ms"] for _ in range(runs)]
    entry = {"supported": True, "shape": result["shape"], "score": result["score"],
             "first_ms": ms(result["ms"]), "first_wall_ms": ms(first["wallMs"]),
             "median_ms": ms(statistics.median(times)) if times else None,
             "min_ms": ms(min(times)) if times else None, "runs": len(times)}
    return entry, result["heatmap"]


def occlusion_in_page(page, class_index: int, patch: int, stride: int, timeout_s: float) -> tuple[dict, list | None]:
    request = {"method": "occlusion", "patch": patch, "stride": stride, "classIndex": class_index}
    out = page.evaluate(OCCLUDE, {"request": request, "timeoutMs": timeout_s * 1000, "graceMs": CANCEL_GRACE_S * 1000})
    result = out["result"]
    progress = {"done": out["done"], "total": out["total"]}
    common = {"max_stall_ms": ms(out["maxStallMs"]), "wall_ms": ms(out["wallMs"])}
    if isinstance(result, dict) and result.get("hung"):
        return {"completed": False, "timed_out": True, "hung": True, **progress, **common,
                "error": f"still running {CANCEL_GRACE_S} s after the cancel"}, None
    if result is None:  # cancelled: our watchdog (or nothing else cancels here)
        return {"completed": False, "timed_out": out["timedOut"], "timeout_s": timeout_s, **progress, **common}, None
    if result.get("error"):
        return {"completed": False, "timed_out": False, "error": result["error"], **common}, None
    return {"completed": True, "images": result["images"], "ms": ms(result["ms"]),
            "ms_per_image": round(result["ms"] / result["images"], 2), "baseline": result["baseline"],
            **common}, result["heatmap"]


def measure_backend(browser, base: str, backend: str, png: str, args, class_index: int | None,
                    patch: int, stride: int) -> dict:
    context, page, status = open_page(browser, f"{base}/?backend={backend}", READY_TIMEOUT_MS)
    try:
        if not status.get("ok"):
            return {"available": False, "error": status.get("error")}
        active = page.evaluate("window.belka.backend()")
        if active != backend:
            return {"available": False, "error": f"fell back to {active}"}
        classified = page.evaluate(CLASSIFY, {"png": png})
        if class_index is None:
            class_index = classified["top1"]
        entry = {"available": True, "top1": classified["top1"], "class_index": class_index,
                 "input": classified["input"], "gradcam": {}, "heatmaps": {}}
        for layer in LAYERS:
            print(f"    Grad-CAM at {layer} ...", file=sys.stderr)
            entry["gradcam"][layer], entry["heatmaps"][layer] = gradcam_in_page(page, layer, class_index, args.runs)
        if backend in args.occlusion_backends:
            print(f"    occlusion, patch {patch} stride {stride} (timeout {args.occlusion_timeout:g} s) ...",
                  file=sys.stderr)
            entry["occlusion"], entry["heatmaps"]["occlusion"] = occlusion_in_page(
                page, class_index, patch, stride, args.occlusion_timeout)
        else:
            entry["occlusion"] = {"skipped": True}
        return entry
    finally:
        context.close()


class Server:
    """POSTs to /api/models/{name}/explain; keeps Grad-CAM heatmaps per (input, layer, class)."""

    def __init__(self, base: str, name: str):
        import httpx

        self.client = httpx.Client(base_url=base, timeout=600)
        self.url = f"/api/models/{name}/explain"
        self.heatmaps: dict[tuple, list] = {}

    def explain(self, instance: np.ndarray | None, png: bytes, **options) -> tuple[dict, float]:
        started = time.perf_counter()
        if instance is None:  # no page ran: the server preprocesses the PNG itself
            response = self.client.post(self.url, files={"file": ("chelsea.png", png, "image/png")},
                                        data={k: str(v) for k, v in options.items()})
        else:
            response = self.client.post(self.url, json={"instances": [instance.tolist()], **options})
        wall = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {response.text[:500]}")
        return response.json(), wall

    def gradcam_heatmap(self, instance: np.ndarray, png: bytes, layer: str, class_index: int) -> list:
        key = (hashlib.sha1(instance.tobytes()).hexdigest(), layer, class_index)
        if key not in self.heatmaps:
            body, _ = self.explain(instance, png, method="gradcam", layer=layer, class_index=class_index)
            self.heatmaps[key] = body["heatmap"]
        return self.heatmaps[key]


def measure_server(server: Server, instance: np.ndarray | None, png: bytes, class_index: int | None,
                   runs: int, patch: int, stride: int) -> dict:
    out = {"input": "page tensor (JSON instances)" if instance is not None else "chelsea PNG (multipart)",
           "gradcam": {}, "heatmaps": {}}
    for layer in LAYERS:
        print(f"  server Grad-CAM at {layer} ...", file=sys.stderr)
        options = {"method": "gradcam", "layer": layer}
        if class_index is not None:
            options["class_index"] = class_index
        try:
            first, first_wall = server.explain(instance, png, **options)
            timed = [server.explain(instance, png, **options) for _ in range(runs)]
        except RuntimeError as exc:
            out["gradcam"][layer] = {"error": str(exc)}
            continue
        explain_ms = [body["timings"]["explain_ms"] for body, _ in timed]
        walls = [wall for _, wall in timed]
        out["gradcam"][layer] = {
            "shape": first["heatmap_shape"], "score": first["gradcam"]["score"],
            "first_ms": ms(first["timings"]["explain_ms"]), "first_wall_ms": ms(first_wall),
            "median_ms": ms(statistics.median(explain_ms)) if explain_ms else None,
            "median_wall_ms": ms(statistics.median(walls)) if walls else None, "runs": len(timed)}
        out["heatmaps"][layer] = first["heatmap"]
        if instance is not None and class_index is not None:
            server.heatmaps[(hashlib.sha1(instance.tobytes()).hexdigest(), layer, class_index)] = first["heatmap"]
    print(f"  server occlusion, patch {patch} stride {stride} ...", file=sys.stderr)
    options = {"method": "occlusion", "patch": patch, "stride": stride}
    if class_index is not None:
        options["class_index"] = class_index
    try:
        body, wall = server.explain(instance, png, **options)
        images = len(body["occlusion"]["rows"]) * len(body["occlusion"]["cols"])
        out["occlusion"] = {"completed": True, "images": images, "ms": ms(body["timings"]["explain_ms"]),
                            "ms_per_image": round(body["timings"]["explain_ms"] / images, 2),
                            "wall_ms": ms(wall), "baseline": body["occlusion"]["baseline_probability"]}
        out["heatmaps"]["occlusion"] = body["heatmap"]
    except RuntimeError as exc:
        out["occlusion"] = {"completed": False, "error": str(exc)}
    return out


def parity(server: Server, backends: dict, served: dict, png: bytes) -> dict:
    """Pearson r of each backend's heatmaps against the server's for the same input and class."""
    found = {}
    for backend, entry in backends.items():
        if not entry.get("available"):
            continue
        instance = entry["instance"]
        rs = {}
        for layer in LAYERS:
            if entry["heatmaps"].get(layer) is None:
                continue
            try:
                theirs = server.gradcam_heatmap(instance, png, layer, entry["class_index"])
            except RuntimeError as exc:
                rs[layer] = {"error": str(exc)}
                continue
            rs[layer] = pearson(entry["heatmaps"][layer], theirs)
        if entry["heatmaps"].get("occlusion") is not None and served["heatmaps"].get("occlusion") is not None \
                and entry["same_input_as_server"]:
            rs["occlusion"] = pearson(entry["heatmaps"]["occlusion"], served["heatmaps"]["occlusion"])
        found[backend] = rs
    return found


def fmt(value, spec: str = ">9.1f", width: int = 9) -> str:
    return f"{value:{spec}}" if isinstance(value, (int, float)) else f"{'-':>{width}}"


def print_tables(report: dict) -> None:
    results = report["results"]
    browsers, server, rs = results["browser"], results["server"], results["parity_r"]
    print(f"\n{report['model']['name']}: Grad-CAM (ms; first = first call, wall includes loading the layers model)")
    print(f"{'where':<8} {'layer':<16} {'first':>9} {'wall':>9} {'median':>9} {'r vs server':>11}")
    for backend, entry in browsers.items():
        if not entry["available"]:
            print(f"{backend:<8} unavailable: {entry['error']}")
            continue
        for layer, g in entry["gradcam"].items():
            if not g["supported"]:
                print(f"{backend:<8} {layer:<16} unsupported: no {g['kernel']} kernel")
            elif g.get("error"):
                print(f"{backend:<8} {layer:<16} error: {g['error']}")
            else:
                r = rs.get(backend, {}).get(layer)
                print(f"{backend:<8} {layer:<16} {fmt(g['first_ms'])} {fmt(g['first_wall_ms'])} "
                      f"{fmt(g['median_ms'])} {fmt(r, '>11.6f', 11)}")
    for layer, g in server["gradcam"].items():
        if g.get("error"):
            print(f"{'server':<8} {layer:<16} error: {g['error']}")
        else:
            print(f"{'server':<8} {layer:<16} {fmt(g['first_ms'])} {fmt(g['first_wall_ms'])} "
                  f"{fmt(g['median_ms'])} {'(wall ' + format(g['median_wall_ms'], '.1f') + ')':>11}")

    o = report["occlusion_params"]
    print(f"\nOcclusion, patch {o['patch']} stride {o['stride']} ({o['images']} images)")
    print(f"{'where':<8} {'images':>7} {'ms':>9} {'ms/image':>9} {'max stall':>9} {'r vs server':>11}")
    for backend, entry in browsers.items():
        if not entry["available"]:
            continue
        occ = entry["occlusion"]
        if occ.get("skipped"):
            print(f"{backend:<8} skipped (not in --occlusion-backends)")
        elif occ["completed"]:
            r = rs.get(backend, {}).get("occlusion")
            print(f"{backend:<8} {occ['images']:>7} {fmt(occ['ms'])} {fmt(occ['ms_per_image'], '>9.2f')} "
                  f"{fmt(occ['max_stall_ms'])} {fmt(r, '>11.6f', 11)}")
        elif occ.get("timed_out"):
            print(f"{backend:<8} timed out after {occ['wall_ms'] / 1000:.0f} s at {occ.get('done')}/{occ.get('total')} "
                  f"images (max stall {occ['max_stall_ms']:.0f} ms)")
        else:
            print(f"{backend:<8} error: {occ.get('error')}")
    occ = server["occlusion"]
    if occ["completed"]:
        print(f"{'server':<8} {occ['images']:>7} {fmt(occ['ms'])} {fmt(occ['ms_per_image'], '>9.2f')}")
    else:
        print(f"{'server':<8} error: {occ.get('error')}")


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "explain.json")
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--runs", type=int, default=5, help="timed Grad-CAM calls after the first (per layer)")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--occlusion-backends", default=",".join(BACKENDS),
                        help="backends that run an occlusion map (an empty string: none)")
    parser.add_argument("--occlusion-timeout", type=float, default=300.0,
                        help="seconds before a page's occlusion map is cancelled")
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    args.occlusion_backends = [b for b in args.occlusion_backends.split(",") if b]
    for name in backends + args.occlusion_backends:
        if name not in BACKENDS:
            parser.error(f"unknown backend {name!r} (use {', '.join(BACKENDS)})")

    png = chelsea_png()
    png_b64 = base64.b64encode(png).decode()
    patch, stride = default_params(args.size, args.size)
    images = len(positions(args.size, patch, stride)) ** 2
    tmp = Path(tempfile.mkdtemp(prefix="belka-explain-bench-"))
    browser_results: dict = {}
    started = time.monotonic()
    try:
        print(f"converting MobileNetV2 {args.alpha}/{args.size} (graph, layers, saved) ...", file=sys.stderr)
        summary = convert(tmp, args.alpha, args.size)
        with serve(tmp, BELKA_MODEL=summary["name"]) as base, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            class_index = None
            for backend in backends:
                print(f"  {summary['name']} on {backend} ...", file=sys.stderr)
                entry = measure_backend(browser, base, backend, png_b64, args, class_index, patch, stride)
                if entry["available"]:
                    class_index = entry["class_index"]
                    entry["instance"] = np.asarray(entry.pop("input"), dtype=np.float32).reshape(
                        args.size, args.size, 3)
                browser_results[backend] = entry
            chromium_version = browser.version
            browser.close()

            server = Server(base, summary["name"])
            ran = [e for e in browser_results.values() if e["available"]]
            instance = ran[0]["instance"] if ran else None
            served = measure_server(server, instance, png, class_index, args.runs, patch, stride)
            for entry in ran:
                entry["same_input_as_server"] = bool(np.array_equal(entry["instance"], instance))
                entry["input_max_abs_diff"] = float(np.abs(entry["instance"] - instance).max())
            print("  parity (server Grad-CAM for each page's input) ...", file=sys.stderr)
            rs = parity(server, browser_results, served, png)
            server.client.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    for entry in browser_results.values():  # heatmaps and tensors stay out of the JSON
        entry.pop("heatmaps", None)
        entry.pop("instance", None)
    served.pop("heatmaps", None)
    report = {
        "benchmark": "classify page explanations (Grad-CAM, occlusion) in headless Chromium per backend, "
                     "and the server's explain endpoint",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
        "chromium": chromium_version,
        "note": "webgpu and webgl run on SwiftShader (CPU) here; weights are untrained (--weights none); "
                "times in ms; Grad-CAM first_ms is the page's own ms of the first call (kernels compiled), "
                "first_wall_ms also includes loading the layers model (first layer only) and drawing",
        "model": {"name": summary["name"], "alpha": args.alpha, "size": args.size,
                  "layers_bytes": summary["bytes"].get("layers")},
        "runs": args.runs, "class_index": class_index,
        "occlusion_params": {"patch": patch, "stride": stride, "images": images,
                             "timeout_s": args.occlusion_timeout, "backends": args.occlusion_backends},
        "results": {"browser": browser_results, "server": served, "parity_r": rs},
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_tables(report)
    print(f"wrote {args.out} ({report['elapsed_s']:.0f} s)")


if __name__ == "__main__":
    main()
