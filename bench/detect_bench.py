"""Benchmark the detect page on a (fake) webcam per TF.js backend, and the server's detect endpoint.

What it measures
----------------
Two detectors, each converted with ``belka convert coco-ssd`` and served on its own:

- ``squares``: the small SSD-style detector the tests train here (harness/detectors.py, 64x64
  input, ~11 s of training), exported like an Object Detection API SavedModel and converted
  with ``--source DIR``;
- ``coco-ssd``: the zoo-architecture model, ssd_mobilenet_v2_320x320_coco17_tpu-8 (MobileNetV2
  SSD, 1917 anchors, 91 score columns), converted without ``--size``: the converter reads its
  input size from the graph (300x300: the zoo's pipeline resizes to 300x300 despite the
  name). Its source, in this order: ``--zoo-dir DIR`` (a local copy of the zoo's SavedModel,
  its unpacked folder or saved_model/ inside; the developers pass their random-weights copy
  of the zoo's graph, whose timings are the real model's and whose detections are noise);
  else ``--source zoo``
  (downloaded once into ~/.keras/models). Offline without a copy the conversion exits with
  code 4; the report then says ``{"available": false, "reason": ...}`` (the first line of
  its error) and the table says so. ``--no-zoo`` skips it.

1. For each TF.js backend (webgpu, webgl, wasm, cpu; ``--backends``) in a fresh browser
   context, the real page at ``/detect?backend=NAME`` with Chromium's fake camera playing a
   clip of a white square moving on grey noise (128x128, the tests' clip): start the camera
   (``belka.startCamera()``), warm up in the page's own graph execution (``--warmup``
   seconds and ``--warmup-frames`` frames, whichever comes last; at most 30 s once 2 frames
   are done), then the timed run: ``--seconds`` with ``model.execute()`` and ``--seconds``
   with ``model.executeAsync()`` (``belka.execution(mode)``), interleaved in ``--rounds``
   (2) segments each (execute, executeAsync, execute, executeAsync), every segment at least
   ``--min-frames`` (2) frames. Segments start and end when a frame's result appears (the
   page's loop waits for an animation frame between frames, and the measuring loop, one
   requestAnimationFrame poll per animation frame, sees the result first), so the mode is
   switched between frames and every timed frame ran in its segment's mode. Per mode:
   ``frame_ms`` = elapsed / frames (the page's time per frame, end to end: grabbing the video
   frame, the model, NMS, drawing the boxes), ``fps``, and the median of every frame's
   ``inferenceMs`` (``belka.lastResult()``: the model and its non-max suppression, until the
   boxes are read back, which on webgl and webgpu is when the GPU's work is done; before
   2026-11-29 it stopped at ``execute()``'s return, which there only queues that work);
   ``ratio`` = execute / executeAsync. The backend's ``fps`` and
   ``median_inference_ms`` are those of the mode the page uses (the manifest's
   ``graph_execution``). Also recorded: the FPS the page shows (``[data-field=fps]``, its last
   2 s, at the end of the run), ``belka.numTensors()`` at the start and end of the timed run,
   its range over it, its range at frame ends per mode (the between-frames count: it must
   not grow), and after the camera stops at the end of the last frame (``tensors_flat``: back
   at the run's minimum; a frame in flight holds about six tensors), and the page's console
   warnings and errors. The page processes frames back to back (the next one when the last
   one's boxes are drawn), not only new camera frames, so fps is the detector's throughput,
   not the clip's frame rate. A backend the browser cannot start is reported as
   unavailable, and one where a frame after the first takes over ``--max-frame-s`` (15 s) is
   skipped (``"skipped"``: webgpu on SwiftShader with the zoo-architecture model, 20-30 s a
   frame; cpu takes 5-9 s).
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
        [--rounds 2] [--min-frames 2] [--max-frame-s 15] [--zoo-dir DIR | --no-zoo]

Writes bench/results/detect.json and prints three tables (page, execute vs executeAsync,
server). On 2 cores, ``--backends wasm,webgl,cpu,webgpu --seconds 8``: about 8 minutes
(training ~15 s, conversions ~10 s and 70-100 s, the squares ~20-40 s per backend, the
zoo-architecture model ~25 s on wasm, ~1 min on webgl (2-4 s a frame) and ~2 min on cpu (6-8 s
a frame); on webgpu ~1 min to load it, see one frame and skip it); without webgpu about 6.

The JavaScript run in the page is in bench/detect/*.js (measure.js: the warm-up and the timed
run; detect_blob.js: the page's model input for the PNG); the clip is harness/camera.py's.
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

from browser_bench import open_page  # this folder's browser benchmark
from harness import chromium
from harness.camera import SIZE, clip_frame, write_clip
from harness.server import serve
from page_round import read_js

REPO = Path(__file__).resolve().parent.parent

BACKENDS = ("webgpu", "webgl", "wasm", "cpu")
MODES = ("execute", "executeAsync")
READY_TIMEOUT_MS = 180_000

DETECT_JS = Path(__file__).resolve().parent / "detect"
MEASURE = read_js(DETECT_JS / "measure.js")  # the warm-up and the timed run, in the page
DETECT_BLOB = read_js(DETECT_JS / "detect_blob.js")  # the page's model input for a PNG


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
    from harness.detectors import export_detector, train_square_detector

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


def mode_summary(segments: list) -> dict:
    """One execution mode's segments: fps, time per frame, inference ms, tensors at frame ends."""
    frames = sum(seg["frames"] for seg in segments)
    elapsed = sum(seg["elapsedMs"] for seg in segments)
    times = [t for seg in segments for t in seg["inference"]]
    return {
        "fps": round(frames / (elapsed / 1000), 2) if frames and elapsed else None,
        "frame_ms": ms(elapsed / frames) if frames else None,
        "frames": frames, "elapsed_s": round(elapsed / 1000, 2), "segments": len(segments),
        "median_inference_ms": ms(statistics.median(times)) if times else None,
        "min_inference_ms": ms(min(times)) if times else None,
        "inference_samples": len(times),
        "tensors_at_frame_ends": [min(seg["tensorsAtEnds"][0] for seg in segments),
                                  max(seg["tensorsAtEnds"][1] for seg in segments)],
    }


def ratio(a, b) -> float | None:
    return round(a / b, 2) if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None


def measure_backend(browser, base: str, backend: str, args, png_b64: str, want_input: bool) -> dict:
    context, page, status = open_page(browser, f"{base}/detect?backend={backend}", READY_TIMEOUT_MS)
    errors: list[str] = []
    console: dict[str, int] = {}
    page.on("pageerror", lambda e: errors.append(str(e)))

    def on_console(message) -> None:
        if message.type in ("warning", "error"):
            text = f"{message.type}: {message.text[:200]}"
            console[text] = console.get(text, 0) + 1
    page.on("console", on_console)
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
        modes = [mode for _ in range(args.rounds) for mode in MODES]
        out = page.evaluate(MEASURE, {"warmupMs": args.warmup * 1000, "warmupFrames": args.warmup_frames,
                                      "segmentMs": args.seconds / args.rounds * 1000, "minFrames": args.min_frames,
                                      "maxFrameMs": args.max_frame_s * 1000, "modes": modes})
        warmup = {"s": round(out["warmup"]["ms"] / 1000, 2), "frames": out["warmup"]["frames"],
                  "frame_ms": ms(out["warmup"]["frameMs"]) if out["warmup"]["frameMs"] is not None else None}
        if "skipped" in out:
            return {"available": True, "skipped": out["skipped"], "graph_execution": out["pageMode"],
                    "warmup": warmup, "page_errors": errors[:5], "console": console}
        # the camera stopped at a frame's end; a frame still in flight (a stuck segment) gets time to finish
        slowest = max((seg["elapsedMs"] / max(seg["frames"], 1) for seg in out["segments"]), default=0)
        deadline = time.monotonic() + max(0.3, 2 * slowest / 1000)
        time.sleep(0.3)
        after_stop = page.evaluate("window.belka.numTensors()")
        while after_stop != out["tensorsMin"] and time.monotonic() < deadline:
            time.sleep(0.1)
            after_stop = page.evaluate("window.belka.numTensors()")
        banner = page.locator('[data-topic="detect"]')
        page_error = banner.inner_text() if banner.count() else None
        per_mode = {mode: mode_summary([seg for seg in out["segments"] if seg["mode"] == mode]) for mode in MODES}
        own = per_mode[out["pageMode"]] if out["pageMode"] in per_mode else per_mode["executeAsync"]
        entry = {
            "available": True,
            "graph_execution": out["pageMode"],
            # fps and inference in the page's own mode (graph_execution); both modes under "execution"
            "fps": own["fps"], "frames": own["frames"], "elapsed_s": own["elapsed_s"],
            "median_inference_ms": own["median_inference_ms"], "min_inference_ms": own["min_inference_ms"],
            "inference_samples": own["inference_samples"],
            "execution": {**per_mode,
                          "ratio": {"frame_ms": ratio(per_mode["execute"]["frame_ms"],
                                                      per_mode["executeAsync"]["frame_ms"]),
                                    "median_inference_ms": ratio(per_mode["execute"]["median_inference_ms"],
                                                                 per_mode["executeAsync"]["median_inference_ms"])},
                          "order": modes},
            "fps_shown": out["fpsShown"],
            "warmup": warmup,
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
        entry["console"] = console
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
    print(f"\nDetect page, fake camera ({report['seconds']:g} s per execution mode and backend after warm-up; "
          f"fps and median ms in the page's own mode)")
    print(f"{'model':<9} {'backend':<7} {'mode':<12} {'fps':>7} {'shown':>6} {'median ms':>9} {'frames':>6} "
          f"{'tensors':>13}")
    for model, entry in results.items():
        if not entry["available"]:
            code = f" (exit {entry['exit_code']})" if "exit_code" in entry else ""
            print(f"{model:<9} unavailable{code}: {entry['reason'].split(' (')[0][:100]}")
            continue
        for backend, r in entry["backends"].items():
            if not r["available"]:
                print(f"{model:<9} {backend:<7} unavailable: {r['error']}")
                continue
            if r.get("skipped"):
                print(f"{model:<9} {backend:<7} skipped: {r['skipped']}")
                continue
            t = r["tensors"]
            tensors = f"flat ({t['after_stop']})" if r["tensors_flat"] else f"{t['min']}->{t['after_stop']}"
            print(f"{model:<9} {backend:<7} {r['graph_execution']:<12} {fmt(r['fps'], '>7.1f', 7)} "
                  f"{r['fps_shown'] or '-':>6} {fmt(r['median_inference_ms'])} {r['frames']:>6} {tensors:>13}")
    print("\nexecute() vs executeAsync(), same page, interleaved (ms per frame end to end, fps, median "
          "inferenceMs; ratio = execute / executeAsync)")
    print(f"{'model':<9} {'backend':<7} {'exec ms':>9} {'fps':>6} {'inf ms':>8} {'async ms':>9} {'fps':>6} "
          f"{'inf ms':>8} {'ratio':>6} {'inf ratio':>9}")
    for model, entry in results.items():
        if not entry["available"]:
            continue
        for backend, r in entry["backends"].items():
            if not r["available"] or r.get("skipped"):
                continue
            e, a_, q = r["execution"]["execute"], r["execution"]["executeAsync"], r["execution"]["ratio"]
            print(f"{model:<9} {backend:<7} {fmt(e['frame_ms'])} {fmt(e['fps'], '>6.1f', 6)} "
                  f"{fmt(e['median_inference_ms'], '>8.1f', 8)} {fmt(a_['frame_ms'])} {fmt(a_['fps'], '>6.1f', 6)} "
                  f"{fmt(a_['median_inference_ms'], '>8.1f', 8)} {fmt(q['frame_ms'], '>6.2f', 6)} "
                  f"{fmt(q['median_inference_ms'], '>9.2f', 9)}")
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
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="timed run per execution mode and backend, after the warm-up")
    parser.add_argument("--rounds", type=int, default=2,
                        help="segments per execution mode, interleaved (execute, executeAsync, ...)")
    parser.add_argument("--min-frames", type=int, default=2, help="frames per segment at least (slow backends)")
    parser.add_argument("--max-frame-s", type=float, default=15.0,
                        help="skip a backend whose frames take longer than this, after the first one")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds (with --warmup-frames)")
    parser.add_argument("--warmup-frames", type=int, default=10)
    parser.add_argument("--server-runs", type=int, default=20)
    zoo = parser.add_mutually_exclusive_group()
    zoo.add_argument("--zoo-dir", type=Path, default=None,
                     help="a local copy of the zoo's ssd_mobilenet_v2_320x320_coco17 SavedModel (its unpacked "
                          "folder or saved_model/ inside); default: --source zoo (downloads it)")
    zoo.add_argument("--no-zoo", action="store_true", help="skip the zoo-architecture model")
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    for name in backends:
        if name not in BACKENDS:
            parser.error(f"unknown backend {name!r} (use {', '.join(BACKENDS)})")
    if args.rounds < 1 or args.min_frames < 1:
        parser.error("--rounds and --min-frames must be at least 1")

    png = clip_png()
    tmp = Path(tempfile.mkdtemp(prefix="belka-detect-bench-"))
    results: dict = {}
    began = time.monotonic()
    try:
        print("training and converting the square detector ...", file=sys.stderr)
        summary, train_s, convert_s = square_detector(tmp / "squares")
        models = {"squares": (tmp / "squares" / "models", summary)}
        squares_manifest = json.loads((Path(summary["path"]) / "manifest.json").read_text())
        results["squares"] = {"available": True, "input": f"{SIZE}x{SIZE}",
                              "graph_execution": squares_manifest.get("graph_execution"), "train_s": round(train_s, 1),
                              "convert_s": round(convert_s, 1), "graph_bytes": summary["bytes"].get("graph")}

        if args.no_zoo:
            results["coco-ssd"] = {"available": False, "reason": "skipped (--no-zoo)"}
        else:
            if args.zoo_dir:
                source, described = args.zoo_dir, str(args.zoo_dir)
            else:
                source, described = "zoo", "zoo"
            print(f"converting the zoo-architecture SSD ({source}) ...", file=sys.stderr)
            started = time.perf_counter()
            summary, reason, code = convert(["--source", source], tmp / "zoo", "coco-ssd")
            if summary is None:
                results["coco-ssd"] = {"available": False, "source": described, "reason": reason, "exit_code": code}
                print(f"  not available (exit {code}): {reason}", file=sys.stderr)
            else:
                models["coco-ssd"] = (tmp / "zoo", summary)
                manifest = json.loads((Path(summary["path"]) / "manifest.json").read_text())
                _, height, width, _ = manifest["input"]["shape"]
                results["coco-ssd"] = {"available": True, "input": f"{height}x{width}",
                                       "input_size_from": manifest["source"].get("input_size_from"),
                                       "graph_execution": manifest.get("graph_execution"),
                                       "source": described,
                                       "source_path": None if source == "zoo" else str(source),
                                       "convert_s": round(time.perf_counter() - started, 1),
                                       "graph_bytes": summary["bytes"].get("graph")}

        clip = write_clip(tmp / "square.y4m", fps=30)  # the tests' clip (harness/camera.py), at 30 fps
        with sync_playwright() as p:
            browser = chromium.launch(p, [*chromium.ARGS, *chromium.fake_camera_args(clip)])
            for name, (models_dir, _) in models.items():
                results[name].update(bench_model(browser, models_dir, name, backends, args, png))
            chromium_version = browser.version
            browser.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    report = {
        "benchmark": "detect page on a fake camera per TF.js backend (fps, inference, execute() vs executeAsync()), "
                     "and the server's detect",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "loadavg_at_end": [round(v, 2) for v in os.getloadavg()]},
        "chromium": chromium_version,
        "note": "webgpu and webgl run on SwiftShader (CPU) here; the clip is 128x128 grey noise with a moving "
                "white square",
        "seconds": args.seconds, "rounds": args.rounds, "min_frames": args.min_frames,
        "max_frame_s": args.max_frame_s, "warmup": {"s": args.warmup, "frames": args.warmup_frames},
        "server_runs": args.server_runs, "total_s": round(time.monotonic() - began, 1),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_tables(report)
    print(f"wrote {args.out} ({report['total_s']:.0f} s)")


if __name__ == "__main__":
    main()
