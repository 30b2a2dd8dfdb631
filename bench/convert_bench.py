"""Benchmark `belka convert keras-app` per model family: conversion time, download sizes,
quantization agreement, and inference time of the classify page on the wasm backend.

What it measures
----------------
For each family (default: MobileNetV2, MobileNetV3Small, MobileNetV3Large, EfficientNetB0,
ResNet50; choose with ``--families``), at ``--size`` (default 224):

1. Conversion, through the real CLI in a subprocess (the ``belka`` script of this
   virtual environment)::

       belka convert keras-app FAMILY --weights none --size 224 --out TMPDIR --json --quiet

   The wall-clock time of the whole command (Python start-up and TensorFlow import
   included) and the pipeline's own ``seconds`` and per-step timings; the bytes of
   graph/, layers/ and saved_model/ separately (summed from the manifest's "files" list,
   checked against the JSON summary's "bytes"); whether a TF.js layers model was written
   (manifest ``conversion.layers_model``: written, and the reason when not); and the
   verification report per format (max |diff| and top-1 agreement against the original
   Keras model, on the pipeline's probe batch of 4 images).
2. The same family with each ``--quantize`` in ``--quantize`` (default ``uint8,float16``),
   by default ``--formats graph`` only (``--quantized-formats``), as the page downloads only
   the graph model: the graph bytes and the verification report of the quantized graph model
   against the original (top-1 agreement, max |diff|). A conversion that fails (e.g. exit 3,
   verification failed) is recorded with its exit code and error message, and the benchmark
   goes on.
3. The classify page in headless Chromium (``/usr/bin/chromium`` through Playwright) on the
   wasm backend, for the float32 model of each family: ``belka serve --models TMPDIR --port P``
   on 127.0.0.1 with ``BELKA_MODEL=<name>`` (the page opens the server's default model), a
   fresh browser context, ``/?backend=wasm``. Recorded: the page's own figures
   (``window.belka.timings()``: model load ms and warm-up ms), the time from navigation start to
   the first prediction of the photo (``performance.now()`` when the first classification
   resolves: page, TF.js and wasm start-up, model download, warm-up and one inference), and
   the median (and min, max) of the page-reported ``inferenceMs`` over ``--runs``
   classifications of the same photo (scikit-image's ``chelsea``, encoded as PNG), after
   that first one.

Weights: the pretrained ImageNet weights cannot be downloaded on this machine (offline),
so every model is built with ``--weights none`` (seeded, untrained but non-degenerate).
Conversion time, sizes and inference speed do not depend on the weight values; the
quantization agreement does: untrained logits are close together, so small quantization
errors reorder near-ties and top-1 agreement is a pessimistic figure for a trained model.
The JSON says so (``weights``).

How to run
----------
From the repository root, after ``make test`` or ``make run`` set things up (venv, ``npm ci``,
Debian's chromium)::

    .venv/bin/python bench/convert_bench.py [--families MobileNetV2,ResNet50] [--runs 10] \\
        [--quantize uint8,float16] [--size 224] [--keep DIR] [--no-page]

It prints a table and writes ``bench/results/convert.json`` (``--out``). Run it on an idle
machine: on 2 CPU cores the default set took 11 minutes (652 s): the 15 conversions about
9 minutes (ResNet50 float32 alone 50 s), the browser part under 2. ``--quantize uint8``
alone saves about a third of the conversion time; ``--families MobileNetV2 --quantize
uint8`` takes about a minute.

A family whose conversion fails (exit code and message recorded) gets no page figures; a
model the page cannot run on wasm gets the page's own error (``page.error``) instead.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
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

from harness.chromium import BASE_ARGS as CHROMIUM_ARGS, CHROMIUM  # wasm only: no SwiftShader
from harness.server import belka_command, serve as harness_serve

REPO = Path(__file__).resolve().parent.parent

FAMILIES = ("MobileNetV2", "MobileNetV3Small", "MobileNetV3Large", "EfficientNetB0", "ResNet50")
QUANTIZATIONS = ("uint8", "float16")
SIZE_DIRS = ("graph", "layers", "saved_model")
WEIGHTS_NOTE = ("Pretrained ImageNet weights cannot be downloaded on this machine (offline), so every model "
                "is converted with --weights none: seeded, untrained but non-degenerate weights. Conversion "
                "time, sizes and inference speed do not depend on the weight values; quantization agreement "
                "does: untrained logits are near-ties, so top-1 agreement is pessimistic for a trained model.")

# After the page is ready: classify the photo once and note when (ms since navigation start).
FIRST_PREDICTION_JS = """
async ({png}) => {
  const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
  const blob = new Blob([bytes], {type: 'image/png'});
  const ready = await window.belka.ready;
  if (!ready.ok) return {ready};
  const result = await window.belka.classifyBlob(blob);
  const at = performance.now();
  return {
    ready, at, backend: window.belka.backend(), model: window.belka.config.model,
    timings: window.belka.timings(),
    first: result && {inferenceMs: result.inferenceMs, totalMs: result.totalMs, top1: result.top5[0]},
    crossOriginIsolated: self.crossOriginIsolated, hardwareConcurrency: navigator.hardwareConcurrency,
  };
}
"""

CLASSIFY_N_JS = """
async ({png, runs}) => {
  const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
  const blob = new Blob([bytes], {type: 'image/png'});
  const times = [];
  for (let i = 0; i < runs; i++) {
    const result = await window.belka.classifyBlob(blob);
    if (!result) throw new Error('the page did not classify the photo');
    times.push(result.inferenceMs);
  }
  return times;
}
"""


# ---------------------------------------------------------------- conversion

def convert(family: str, quantize: str, formats: str | None, args, out: Path) -> dict:
    """Run the real CLI once; return what it did (ok or not: the error is recorded, not raised)."""
    cmd = [*belka_command(), "convert", "keras-app", family, "--weights", args.weights, "--size", str(args.size)]
    if quantize != "none":
        cmd += ["--quantize", quantize]
    if formats:
        cmd += ["--formats", formats]
    cmd += ["--out", str(out), "--json", "--quiet"]
    shown = " ".join(["belka", *cmd[len(belka_command()):]]).replace(str(out), "TMPDIR")
    print(f"$ {shown}", file=sys.stderr, flush=True)
    load_before = [round(x, 2) for x in os.getloadavg()]
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=args.convert_timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "command": shown, "exit_code": None,
                "error": f"timed out after {args.convert_timeout} s"}
    seconds = time.perf_counter() - started
    record = {"command": shown, "exit_code": proc.returncode, "wall_seconds": round(seconds, 2),
              "load_average_before": load_before}
    try:
        reply = json.loads(proc.stdout) if proc.stdout.strip() else None
    except json.JSONDecodeError:
        reply = None
    if proc.returncode != 0 or not reply or "error" in reply:
        error = (reply or {}).get("error") or {}
        message = error.get("message") or proc.stderr.strip()[-2000:] or proc.stdout.strip()[-2000:]
        print(f"  FAILED (exit {proc.returncode}): {message}", file=sys.stderr, flush=True)
        return {**record, "ok": False, "error": {"code": error.get("code"), "message": message,
                                                 "stderr_tail": proc.stderr.strip()[-2000:]}}
    manifest = json.loads((Path(reply["path"]) / "manifest.json").read_text())
    sizes = {d: 0 for d in SIZE_DIRS}
    for entry in manifest["files"]:
        top = entry["path"].split("/", 1)[0]
        sizes[top] = sizes.get(top, 0) + entry["bytes"]
    formats_report = manifest["verification"]["formats"]
    verification = {fmt: {k: r.get(k) for k in ("max_abs_diff", "max_rel_diff", "top1_agreement",
                                                  "top5_identical", "ok")}
                    for fmt, r in formats_report.items()}
    record.update({
        "ok": True, "name": reply["name"], "path": reply["path"], "formats": reply["formats"],
        "quantization": manifest["quantization"], "pipeline_seconds": reply["seconds"],
        "steps": reply.get("steps"),
        "bytes": sizes, "summary_bytes": reply["bytes"],
        "bytes_agree_with_summary": all(reply["bytes"].get(d, 0) == sizes.get(d, 0) for d in SIZE_DIRS),
        "layers_model": manifest["conversion"].get("layers_model"),
        "explain": manifest.get("explain"),
        "verification": verification,
        "probe": manifest["verification"].get("probe"),
        "notes": reply.get("notes"),
        "weights": manifest.get("weights"),
        "versions": manifest.get("versions"),
    })
    graph = verification.get("graph", {})
    print(f"  ok in {seconds:.1f} s: graph {sizes['graph'] / 1e6:.2f} MB, layers "
          f"{'yes' if record['layers_model'] and record['layers_model'].get('written') else 'no'}, graph "
          f"top-1 {graph.get('top1_agreement')}, max |diff| {graph.get('max_abs_diff')}", file=sys.stderr, flush=True)
    return record


# ---------------------------------------------------------------- the page

def chelsea_png() -> str:
    import skimage.data
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(skimage.data.chelsea()).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def serve(models_dir: Path, model: str):
    """`belka serve` for ``models_dir`` on 127.0.0.1 and a free port with the page's default model
    set to ``model`` (harness.server.serve: raises ServerDidNotStart, a RuntimeError, when it
    does not start within 90 s); yields the base URL, stops the server afterwards."""
    return harness_serve(models_dir, seconds=90, BELKA_MODEL=model)


def measure_page(browser, base: str, model: str, png: str, runs: int, timeout_ms: float) -> dict:
    """The classify page on wasm with ``model``: load figures, first prediction, median inference."""
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.set_default_timeout(timeout_ms)
    load_before = [round(x, 2) for x in os.getloadavg()]
    try:
        page.goto(f"{base}/?backend=wasm")
        first = page.evaluate(FIRST_PREDICTION_JS, {"png": png})
        if not first["ready"].get("ok"):
            return {"ok": False, "error": f"page not ready: {first['ready']}", "console_errors": errors[:5]}
        if first["model"] != model:
            return {"ok": False, "error": f"the page opened {first['model']!r}, not {model!r}"}
        if first["backend"] != "wasm":
            return {"ok": False, "error": f"the page runs on {first['backend']}, not wasm"}
        times = page.evaluate(CLASSIFY_N_JS, {"png": png, "runs": runs})
        timings = first["timings"]
        return {
            "ok": True, "backend": first["backend"],
            "load_ms": round(timings["loadMs"], 1), "warmup_ms": round(timings["warmupMs"], 1),
            "first_prediction_after_navigation_ms": round(first["at"], 1),
            "first_inference_ms": round(first["first"]["inferenceMs"], 1),
            "first_total_ms": round(first["first"]["totalMs"], 1),
            "median_inference_ms": round(statistics.median(times), 1),
            "min_inference_ms": round(min(times), 1), "max_inference_ms": round(max(times), 1),
            "runs": len(times), "inference_ms": [round(t, 1) for t in times],
            "top1": first["first"]["top1"],
            "cross_origin_isolated": first["crossOriginIsolated"],
            "hardware_concurrency": first["hardwareConcurrency"],
            "console_errors": errors[:5], "load_average_before": load_before,
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        }
    except Exception as exc:  # noqa: BLE001 - recorded, the other families still run
        return {"ok": False, "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}",
                "console_errors": errors[:5]}
    finally:
        context.close()


# ---------------------------------------------------------------- report

def machine_info() -> dict:
    info = {"platform": platform.platform(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "python": platform.python_version()}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
    with contextlib.suppress(OSError):
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    return info


def js_versions() -> dict:
    versions = {}
    for pkg in ("tfjs", "tfjs-backend-wasm", "tfjs-converter"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            path = REPO / "node_modules" / "@tensorflow" / pkg / "package.json"
            versions[f"@tensorflow/{pkg}"] = json.loads(path.read_text())["version"]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        versions["node"] = subprocess.run(["node", "--version"], capture_output=True, text=True,
                                          timeout=10).stdout.strip()
    with contextlib.suppress(Exception):
        import importlib.metadata as md

        versions["playwright"] = md.version("playwright")
    return versions


def _mb(n) -> str:
    return f"{n / 1e6:.2f}" if isinstance(n, (int, float)) else "-"


def _fmt(value, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) else "-"


def _error(record: dict) -> str:
    error = record.get("error")
    return error.get("message") if isinstance(error, dict) else str(error)


def print_table(results: dict, quantizations: list[str]) -> None:
    head = (f"{'family':<17} {'conv s':>6} {'graph MB':>8} {'layers MB':>9} {'saved MB':>8} {'layers':>6} "
            f"{'graph |d|':>9} {'1st pred ms':>11} {'wasm med ms':>11}")
    for q in quantizations:
        head += f" {q + ' MB':>10} {q + ' top1':>12}"
    print("\n" + head)
    for family, r in results.items():
        f32 = r["float32"]
        if not f32["ok"]:
            print(f"{family:<17} conversion FAILED (exit {f32.get('exit_code')}): {_error(f32)}")
            continue
        page = r.get("page") or {}
        layers = "yes" if (f32.get("layers_model") or {}).get("written") else "no"
        line = (f"{family:<17} {f32['wall_seconds']:>6.1f} {_mb(f32['bytes']['graph']):>8} "
                f"{_mb(f32['bytes'].get('layers', 0)):>9} {_mb(f32['bytes'].get('saved_model', 0)):>8} {layers:>6} "
                f"{_fmt(f32['verification'].get('graph', {}).get('max_abs_diff'), '.1e'):>9} "
                f"{_fmt(page.get('first_prediction_after_navigation_ms'), '.0f'):>11} "
                f"{_fmt(page.get('median_inference_ms'), '.1f'):>11}")
        for q in quantizations:
            qr = r["quantized"].get(q, {})
            if qr.get("ok"):
                top1 = qr["verification"].get("graph", {}).get("top1_agreement")
                line += f" {_mb(qr['bytes']['graph']):>10} {_fmt(top1, '.0%'):>12}"
            else:
                line += f" {'FAILED':>10} {'exit ' + str(qr.get('exit_code')):>12}"
        print(line)
    for family, r in results.items():
        for label, c in [("float32", r["float32"]), *r["quantized"].items()]:
            if not c.get("ok"):
                print(f"{family} {label}: {c['command']}\n  -> exit {c.get('exit_code')}: {_error(c)}")
        f32 = r["float32"]
        if f32.get("ok") and not (f32.get("layers_model") or {}).get("written"):
            print(f"{family}: no layers model: {(f32.get('layers_model') or {}).get('reason')}")
        if r.get("page") and not r["page"].get("ok"):
            print(f"{family}: page: {r['page']['error']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--families", default=",".join(FAMILIES),
                        help=f"comma-separated keras.applications names (default {','.join(FAMILIES)})")
    parser.add_argument("--quantize", default=",".join(QUANTIZATIONS),
                        help="quantizations to convert besides float32 (default uint8,float16; '' for none)")
    parser.add_argument("--quantized-formats", default="graph",
                        help="--formats of the quantized conversions (default graph: what the page downloads)")
    parser.add_argument("--runs", type=int, default=10, help="page classifications for the median (default 10)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--weights", default="none",
                        help="none (default: works offline), imagenet (needs the internet) or a weights file")
    parser.add_argument("--no-page", action="store_true", help="skip the browser measurements")
    parser.add_argument("--keep", type=Path, default=None, help="convert into this folder and keep it")
    parser.add_argument("--convert-timeout", type=int, default=1800, help="seconds per conversion")
    parser.add_argument("--page-timeout", type=float, default=300, help="seconds per page step")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "convert.json")
    args = parser.parse_args()
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    quantizations = [q.strip() for q in args.quantize.split(",") if q.strip()]
    unknown = [q for q in quantizations if q not in QUANTIZATIONS]
    if unknown:
        parser.error(f"--quantize: unknown {', '.join(unknown)} (choose from {', '.join(QUANTIZATIONS)})")

    started = time.perf_counter()
    machine = machine_info()
    models_dir = args.keep or Path(tempfile.mkdtemp(prefix="belka-convert-bench-"))
    models_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    chromium_version = None
    try:
        for family in families:
            print(f"\n== {family}", file=sys.stderr, flush=True)
            entry = {"float32": convert(family, "none", None, args, models_dir), "quantized": {}}
            for q in quantizations:
                entry["quantized"][q] = convert(family, q, args.quantized_formats, args, models_dir)
            results[family] = entry

        if not args.no_page:
            from playwright.sync_api import sync_playwright

            png = chelsea_png()
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                chromium_version = browser.version
                for family, entry in results.items():
                    if not entry["float32"]["ok"]:
                        continue
                    name = entry["float32"]["name"]
                    print(f"page: {name} on wasm, {args.runs} runs ...", file=sys.stderr, flush=True)
                    try:
                        with serve(models_dir, name) as base:
                            entry["page"] = measure_page(browser, base, name, png, args.runs,
                                                         args.page_timeout * 1000)
                    except RuntimeError as exc:
                        entry["page"] = {"ok": False, "error": str(exc)}
                    page = entry["page"]
                    print(f"  {'median ' + str(page['median_inference_ms']) + ' ms' if page['ok'] else page['error']}",
                          file=sys.stderr, flush=True)
                browser.close()
    finally:
        if args.keep is None:
            shutil.rmtree(models_dir, ignore_errors=True)

    for entry in results.values():  # paths into a removed temporary folder say nothing
        for record in (entry["float32"], *entry["quantized"].values()):
            if args.keep is None:
                record.pop("path", None)
    versions = next((e["float32"].get("versions") for e in results.values() if e["float32"].get("versions")), None)
    for entry in results.values():
        for record in (entry["float32"], *entry["quantized"].values()):
            record.pop("versions", None)

    report = {
        "benchmark": "belka convert keras-app per family: conversion time, sizes, quantization agreement, "
                     "classify page inference on wasm",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "total_seconds": round(time.perf_counter() - started, 1),
        "machine": machine,
        "versions": {**(versions or {}), **js_versions(), "chromium": chromium_version},
        "settings": {"families": families, "size": args.size, "quantize": quantizations,
                     "quantized_formats": args.quantized_formats, "runs": args.runs, "backend": "wasm",
                     "photo": "skimage.data.chelsea() as PNG" if not args.no_page else None},
        "weights": {"option": args.weights, "note": WEIGHTS_NOTE if args.weights == "none" else None},
        "how": {
            "conversion_seconds": "wall clock of the belka CLI subprocess (start-up and imports included); "
                                  "pipeline_seconds is the pipeline's own figure",
            "bytes": "summed from the manifest's files list by top folder (graph/, layers/, saved_model/)",
            "verification": "the pipeline's report: each format against the original Keras model on its "
                            "probe batch of 4 images (top1_agreement is a fraction of those 4)",
            "page": "headless Chromium, /?backend=wasm, fresh context, served by `belka serve` with "
                    "BELKA_MODEL=<name>; load_ms and warmup_ms are window.belka.timings(); "
                    "first_prediction_after_navigation_ms is performance.now() when the first "
                    "classification of the photo resolved; median_inference_ms is the median of the "
                    "page-reported inferenceMs over the following `runs` classifications",
        },
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(results, quantizations)
    print(f"\nweights: {args.weights} (untrained; see the JSON)  size {args.size}  runs {args.runs}  "
          f"total {report['total_seconds']:.0f} s")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
