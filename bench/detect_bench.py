"""Benchmark the detect page on a (fake) webcam per TF.js backend, and the server's detect endpoint.

What it measures
----------------
Two detectors, each converted with ``belka convert coco-ssd`` and served on its own:

- ``squares``: the small SSD-style detector the tests train here (tests/detectors.py, 64x64
  input, ~11 s of training), exported like an Object Detection API SavedModel and converted
  with ``--source DIR``;
- ``coco-ssd``: the real zoo model (ssd_mobilenet_v2_320x320_coco17, 320x320 input), converted
  with ``--source zoo`` (downloaded once into ~/.keras/models), or from a local copy of the
  zoo's SavedModel with ``--zoo-dir DIR`` (``--size 320x320``). Offline without a copy the
  conversion exits with code 4; the report then says ``{"available": false, "reason": ...}``
  (the first line of its error) and the table says so. ``--no-zoo`` skips it.

1. For each TF.js backend (webgpu, webgl, wasm, cpu; ``--backends``) in a fresh browser
   context, the real page at ``/detect?backend=NAME`` with Chromium's fake camera playing a
   clip of a white square moving on grey noise (128x128, the tests' clip): start the camera
   (``belka.startCamera()``), warm up (``--warmup`` seconds and ``--warmup-frames`` frames,
   whichever comes last; at most 60 s), then for ``--seconds`` count the frames the page's
   loop processes (``belka.frames()``: ``fps`` = frames / elapsed) and read every frame's
   ``inferenceMs`` from ``belka.lastResult()`` (a requestAnimationFrame loop in the page: the
   page's own loop takes at most one frame per animation frame, so none is missed, and
   nothing is copied, unlike ``traceFrames``). Also recorded: the FPS the page shows
   (``[data-field=fps]``, its last 2 s) and ``belka.numTensors()`` at the start and end of the
   timed run, its range over it, and after the camera stops (``tensors_flat``: back at the
   run's minimum, the between-frames count; a frame in flight holds about six tensors).
   The page processes frames back to back (the next one when the last one's boxes are
   drawn), not only new camera frames, so fps is the detector's throughput, not the clip's
   frame rate. A backend the browser cannot start is reported as unavailable.
2. The server: POST /api/models/<name>/detect, once untimed (loads the SavedModel), then the
   median of ``--server-runs`` (20) requests: the response's ``timings.inference_ms`` and the
   request's wall time, for a PNG of a clip frame (multipart ``file``: the server decodes and
   resizes it) and for the page's own model input for that PNG (JSON ``instances``, from
   ``belka.detectBlob`` on the first backend that ran).

Chromium runs WebGPU and WebGL on the CPU here (SwiftShader), so those two numbers say
nothing about a real GPU; wasm, cpu and the server are real CPU figures. The squares
detector is tiny: its fps says more about the page's per-frame overhead (grabbing the video
frame, drawing the boxes) than about inference.

How to run (after `make test` or `make run` has set things up)::

    .venv/bin/python bench/detect_bench.py [--backends webgpu,webgl,wasm,cpu] [--seconds 10]
        [--zoo-dir DIR | --no-zoo]

Writes bench/results/detect.json and prints two tables (page, server). About 2-3 minutes on
2 cores offline (training ~15 s, conversion ~30 s, ~20 s per backend incl. page load and
warm-up); the zoo model adds its conversion and, on cpu/webgpu, slow frames.
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

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.browser_bench import open_page  # noqa: E402
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, serve  # noqa: E402
from tests.browser.test_detect import FAKE_CAMERA, SIZE, clip_frame, write_y4m  # noqa: E402

BACKENDS = ("webgpu", "webgl", "wasm", "cpu")
READY_TIMEOUT_MS = 180_000
ZOO_SIZE = "320x320"

# Warm-up, then the timed run, all in the page: every frame's inferenceMs (polled once per
# animation frame, which is as often as the page's loop can take a frame) and numTensors.
MEASURE = """
async ({warmupMs, warmupFrames, seconds}) => {
  const b = window.belka;
  const animationFrame = () => new Promise((resolve) => requestAnimationFrame(() => resolve()));
  const began = performance.now();
  while (true) {
    const waited = performance.now() - began;
    const frames = b.frames();
    if (waited >= warmupMs && frames >= warmupFrames) break;
    if (waited >= Math.max(warmupMs, 60000) && frames >= 2) break;
    if (waited >= 180000) break;
    await animationFrame();
  }
  const warmup = {ms: performance.now() - began, frames: b.frames()};
  const tensorsStart = b.numTensors();
  let tensorsMin = tensorsStart, tensorsMax = tensorsStart;
  const framesStart = b.frames();
  let seen = b.lastResult()?.frame;
  const inference = [];
  const start = performance.now();
  while (performance.now() - start < seconds * 1000) {
    await animationFrame();
    const last = b.lastResult();
    if (last && last.frame !== seen && last.frame > framesStart) {
      seen = last.frame;
      inference.push(last.inferenceMs);
    }
    const n = b.numTensors();
    tensorsMin = Math.min(tensorsMin, n);
    tensorsMax = Math.max(tensorsMax, n);
  }
  const elapsedMs = performance.now() - start;
  const frames = b.frames() - framesStart;
  const field = document.querySelector('[data-field=fps]');
  return {warmup, frames, elapsedMs, inference, tensorsStart, tensorsEnd: b.numTensors(), tensorsMin, tensorsMax,
          fpsShown: field ? field.textContent.trim() : null, maxInFlight: b.maxInFlight()};
}
"""

DETECT_BLOB = """
async (png) => {
  const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
  const result = await window.belka.detectBlob(new Blob([bytes], {type: 'image/png'}));
  return {input: result.input, detections: result.detections.length, inferenceMs: result.inferenceMs};
}
"""


def ms(value: float) -> float:
    return round(value, 1)


def first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("belka: error:")]
    line = (errors or lines or ["(no output)"])[0]
    return line.removeprefix("belka: error:").strip()


def convert(args: list, out: Path, name: str) -> tuple[dict | None, str | None, int]:
    """`belka convert coco-ssd ARGS` into ``out``: (its JSON summary, None, 0) or (None, the first
    line of its error, its exit code)."""
    cmd = [sys.executable, "-m", "app.cli", "convert", "coco-ssd", *map(str, args), "--out", str(out),
           "--name", name, "--json", "--quiet"]
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
    except subprocess.TimeoutExpired:
        return None, "conversion timed out after 1800 s", -1
    if proc.returncode != 0:
        reason = first_line(proc.stderr)
        try:
            reason = json.loads(proc.stdout)["error"]["message"].splitlines()[0]
        except (ValueError, KeyError, TypeError):
            pass
        return None, reason, proc.returncode
    return json.loads(proc.stdout), None, 0


def square_detector(folder: Path) -> tuple[dict, float, float]:
    """Trains, exports and converts the tests' square detector into folder/models: (summary,
    training s, conversion s)."""
    from tests.detectors import export_detector, train_square_detector

    started = time.perf_counter()
    export_detector(train_square_detector(SIZE, 8, 16), folder / "squares", SIZE, 8, anchor_scale=16 / SIZE)
    trained = time.perf_counter() - started
    (folder / "labels.txt").write_text("square\n")
    started = time.perf_counter()
    summary, reason, code = convert(["--source", folder / "squares", "--size", f"{SIZE}x{SIZE}",
                                     "--labels", folder / "labels.txt"], folder / "models", "squares")
    if summary is None:
        sys.exit(f"converting the square detector failed (exit {code}): {reason}")
    return summary, trained, time.perf_counter() - started


def clip_png() -> bytes:
    from PIL import Image

    frame, _ = clip_frame(5, np.random.default_rng(11))
    buffer = io.BytesIO()
    Image.fromarray(np.stack([frame] * 3, axis=2)).save(buffer, "PNG")
    return buffer.getvalue()


def measure_backend(browser, base: str, backend: str, args, png_b64: str, want_input: bool) -> dict:
    context, page, status = open_page(browser, f"{base}/detect?backend={backend}", READY_TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        if not status.get("ok"):
            return {"available": False, "error": status.get("error")}
        active = page.evaluate("window.belka.backend()")
        if active != backend:
            return {"available": False, "error": f"fell back to {active}"}
        context.grant_permissions(["camera"], origin=base)
        started = page.evaluate("window.belka.startCamera()")
        if not started.get("ok"):
            return {"available": False, "error": f"camera: {started.get('error')}"}
        out = page.evaluate(MEASURE, {"warmupMs": args.warmup * 1000, "warmupFrames": args.warmup_frames,
                                      "seconds": args.seconds})
        page.evaluate("window.belka.stopCamera()")
        time.sleep(0.3)  # the frame in flight at stop finishes (a mid-frame count includes its ~6 tensors)
        after_stop = page.evaluate("window.belka.numTensors()")
        banner = page.locator('[data-topic="detect"]')
        page_error = banner.inner_text() if banner.count() else None
        times = out["inference"]
        entry = {
            "available": True,
            "fps": round(out["frames"] / (out["elapsedMs"] / 1000), 2),
            "frames": out["frames"], "elapsed_s": round(out["elapsedMs"] / 1000, 2),
            "median_inference_ms": ms(statistics.median(times)) if times else None,
            "min_inference_ms": ms(min(times)) if times else None,
            "inference_samples": len(times),
            "fps_shown": out["fpsShown"],
            "warmup": {"s": round(out["warmup"]["ms"] / 1000, 2), "frames": out["warmup"]["frames"]},
            "tensors": {"start": out["tensorsStart"], "end": out["tensorsEnd"],
                        "min": out["tensorsMin"], "max": out["tensorsMax"], "after_stop": after_stop},
            # between frames the count is its minimum; after the loop stops it must be back there
            "tensors_flat": after_stop == out["tensorsMin"],
            "page_error": page_error,
            "max_in_flight": out["maxInFlight"],
        }
        if want_input:
            try:
                entry["input"] = page.evaluate(DETECT_BLOB, png_b64)["input"]
            except Exception as exc:  # noqa: BLE001 - e.g. SwiftShader's WebGPU running out of buffers
                entry["input_error"] = str(exc).splitlines()[0][:300]
        entry["page_errors"] = errors[:5]
        return entry
    finally:
        context.close()


def time_server(base: str, name: str, png: bytes, instance: np.ndarray | None, runs: int) -> dict:
    import httpx

    url = f"/api/models/{name}/detect"
    out = {}
    kinds = {"png": {"files": {"file": ("frame.png", png, "image/png")}}}
    if instance is not None:
        kinds["page_tensor"] = {"json": {"instances": [instance.tolist()]}}
    with httpx.Client(base_url=base, timeout=600) as client:
        for kind, body in kinds.items():
            def post():
                started = time.perf_counter()
                response = client.post(url, **body)
                wall = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
                return response.json(), wall
            try:
                first, first_wall = post()
                timed = [post() for _ in range(runs)]
            except RuntimeError as exc:
                out[kind] = {"error": str(exc)}
                continue
            inference = [b["timings"]["inference_ms"] for b, _ in timed]
            walls = [w for _, w in timed]
            out[kind] = {"first_inference_ms": ms(first["timings"]["inference_ms"]), "first_wall_ms": ms(first_wall),
                         "median_inference_ms": ms(statistics.median(inference)),
                         "median_wall_ms": ms(statistics.median(walls)), "runs": runs,
                         "detections": len(first["detections"])}
    return out


def bench_model(browser, models_dir: Path, name: str, backends: list, args, png: bytes) -> dict:
    png_b64 = base64.b64encode(png).decode()
    entry: dict = {"available": True, "backends": {}}
    instance = None
    with serve(models_dir) as base:
        for backend in backends:
            print(f"  {name} on {backend} ...", file=sys.stderr)
            result = measure_backend(browser, base, backend, args, png_b64, want_input=instance is None)
            if "input" in result:
                raw = np.asarray(result.pop("input"), dtype=np.float32)
                side = int(round((raw.size / 3) ** 0.5))
                instance = raw.reshape(side, side, 3)  # the detectors here are square
            entry["backends"][backend] = result
        print(f"  {name} on the server ...", file=sys.stderr)
        entry["server"] = time_server(base, name, png, instance, args.server_runs)
    return entry


def fmt(value, spec: str = ">9.1f", width: int = 9) -> str:
    return f"{value:{spec}}" if isinstance(value, (int, float)) else f"{'-':>{width}}"


def print_tables(report: dict) -> None:
    results = report["results"]
    print(f"\nDetect page, fake camera ({report['seconds']:g} s per backend after warm-up)")
    print(f"{'model':<9} {'backend':<7} {'fps':>7} {'shown':>6} {'median ms':>9} {'frames':>6} {'tensors':>13}")
    for model, entry in results.items():
        if not entry["available"]:
            code = f" (exit {entry['exit_code']})" if "exit_code" in entry else ""
            print(f"{model:<9} unavailable{code}: {entry['reason'].split(' (')[0][:100]}")
            continue
        for backend, r in entry["backends"].items():
            if not r["available"]:
                print(f"{model:<9} {backend:<7} unavailable: {r['error']}")
                continue
            t = r["tensors"]
            tensors = f"flat ({t['after_stop']})" if r["tensors_flat"] else f"{t['min']}->{t['after_stop']}"
            print(f"{model:<9} {backend:<7} {fmt(r['fps'], '>7.1f', 7)} {r['fps_shown'] or '-':>6} "
                  f"{fmt(r['median_inference_ms'])} {r['frames']:>6} {tensors:>13}")
    print(f"\nServer: POST /api/models/NAME/detect (ms, median of {report['server_runs']})")
    print(f"{'model':<9} {'input':<12} {'inference':>9} {'wall':>9} {'first wall':>10}")
    for model, entry in results.items():
        if not entry["available"]:
            print(f"{model:<9} unavailable")
            continue
        for kind, s in entry["server"].items():
            if s.get("error"):
                print(f"{model:<9} {kind:<12} error: {s['error']}")
            else:
                print(f"{model:<9} {kind:<12} {fmt(s['median_inference_ms'])} {fmt(s['median_wall_ms'])} "
                      f"{fmt(s['first_wall_ms'], '>10.1f', 10)}")


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "detect.json")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--seconds", type=float, default=10.0, help="timed run per backend, after the warm-up")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds (with --warmup-frames)")
    parser.add_argument("--warmup-frames", type=int, default=10)
    parser.add_argument("--server-runs", type=int, default=20)
    zoo = parser.add_mutually_exclusive_group()
    zoo.add_argument("--zoo-dir", type=Path, default=None,
                     help="a local copy of the zoo's ssd_mobilenet_v2_320x320_coco17 SavedModel (its unpacked "
                          "folder or saved_model/ inside) instead of downloading it")
    zoo.add_argument("--no-zoo", action="store_true", help="skip the zoo model")
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    for name in backends:
        if name not in BACKENDS:
            parser.error(f"unknown backend {name!r} (use {', '.join(BACKENDS)})")

    png = clip_png()
    tmp = Path(tempfile.mkdtemp(prefix="belka-detect-bench-"))
    results: dict = {}
    began = time.monotonic()
    try:
        print("training and converting the square detector ...", file=sys.stderr)
        summary, train_s, convert_s = square_detector(tmp / "squares")
        models = {"squares": (tmp / "squares" / "models", summary)}
        results["squares"] = {"available": True, "input": f"{SIZE}x{SIZE}", "train_s": round(train_s, 1),
                              "convert_s": round(convert_s, 1), "graph_bytes": summary["bytes"].get("graph")}

        if args.no_zoo:
            results["coco-ssd"] = {"available": False, "reason": "skipped (--no-zoo)"}
        else:
            source = ["--source", args.zoo_dir, "--size", ZOO_SIZE] if args.zoo_dir else ["--source", "zoo"]
            print(f"converting the zoo's COCO SSD ({'--zoo-dir ' + str(args.zoo_dir) if args.zoo_dir else 'zoo'}) "
                  "...", file=sys.stderr)
            started = time.perf_counter()
            summary, reason, code = convert(source, tmp / "zoo", "coco-ssd")
            if summary is None:
                results["coco-ssd"] = {"available": False, "reason": reason, "exit_code": code}
                print(f"  not available (exit {code}): {reason}", file=sys.stderr)
            else:
                models["coco-ssd"] = (tmp / "zoo", summary)
                results["coco-ssd"] = {"available": True, "input": ZOO_SIZE,
                                       "source": str(args.zoo_dir) if args.zoo_dir else "zoo",
                                       "convert_s": round(time.perf_counter() - started, 1),
                                       "graph_bytes": summary["bytes"].get("graph")}

        clip = tmp / "square.y4m"
        rng = np.random.default_rng(7)
        write_y4m(clip, [clip_frame(k, rng)[0] for k in range(40)], fps=30)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                *CHROMIUM_ARGS, *FAKE_CAMERA, f"--use-file-for-fake-video-capture={clip}"])
            for name, (models_dir, _) in models.items():
                results[name].update(bench_model(browser, models_dir, name, backends, args, png))
            chromium_version = browser.version
            browser.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    report = {
        "benchmark": "detect page on a fake camera per TF.js backend (fps, inference), and the server's detect",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "loadavg_at_end": [round(v, 2) for v in os.getloadavg()]},
        "chromium": chromium_version,
        "note": "webgpu and webgl run on SwiftShader (CPU) here; the clip is 128x128 grey noise with a moving "
                "white square",
        "seconds": args.seconds, "warmup": {"s": args.warmup, "frames": args.warmup_frames},
        "server_runs": args.server_runs, "total_s": round(time.monotonic() - began, 1),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_tables(report)
    print(f"wrote {args.out} ({report['total_s']:.0f} s)")


if __name__ == "__main__":
    main()
