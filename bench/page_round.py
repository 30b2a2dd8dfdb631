"""One round of one page on one backend for bench/page_bench.py (``run_page``): in a fresh
Chromium profile the cold open and the steady classifications, a second visit, a reload, then
for Belka's page Grad-CAM, occlusion and the detect page; per load the figures of its first
answer (``load_figures``), the long tasks of each phase (``longest``) and the bytes
(page_wire.py). Also the Chromium flags per backend (``browser_args``) and its label.

The JavaScript these steps run in the page is in bench/page/*.js, read when this module loads.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from harness import chromium
from harness.chromium import CHROMIUM
from page_wire import Wire, worker_requests

PAGE_JS = Path(__file__).resolve().parent / "page"


def read_js(path: Path) -> str:
    """A .js file without its opening // comment lines: the code the page runs."""
    lines = path.read_text().splitlines(keepends=True)
    while lines and lines[0].startswith("//"):
        lines.pop(0)
    return "".join(lines)


INIT_SCRIPT = read_js(PAGE_JS / "init.js")  # add_init_script, with __PHOTO__ replaced by the photo
FIRST_ANSWER = read_js(PAGE_JS / "first_answer.js")  # evaluate(FIRST_ANSWER, timeout_ms)
STEADY = read_js(PAGE_JS / "steady.js")  # evaluate(STEADY, {runs, timeoutMs})
EXPLAIN = read_js(PAGE_JS / "explain.js")  # evaluate(EXPLAIN, {request, timeoutMs})
DETECT = read_js(PAGE_JS / "detect.js")  # evaluate(DETECT, {runs, timeoutMs})

BACKENDS = ("wasm", "cpu", "webgl", "webgpu")
SLOW = ("cpu", "webgl", "webgpu")  # about a second per MobileNetV2 inference: --slow-runs
PAGE_DEFAULT_GRID = None  # occlusion: let the page choose (patch = size / 7, stride = patch / 2)


def browser_args(backend: str, args) -> list[str]:
    """Chromium's flags for a backend's rounds. webgl and webgpu need SwiftShader's flags (there is
    no GPU here). wasm and cpu run with Chromium's own GPU setup, as a user's browser does: with
    SwiftShader's flags Chromium also rasterises and composites every frame through SwiftShader's
    Vulkan (~100 ms of CPU per frame of Belka's page here), which no user gets, and which costs a
    richer page more than a bare one. --swiftshader-everywhere measures them that way too."""
    return chromium.args_for(backend, args.swiftshader_everywhere)


def label_of(backend: str) -> str:
    """The backend's name in the report: webgl and webgpu say they ran on SwiftShader."""
    return chromium.label(backend)


def longest(longtasks: list, window: tuple[float, float] | list[float]) -> dict:
    """The long tasks that overlap ``window`` (page ms): the longest (0: none of 50 ms or more) and how many."""
    start, end = window
    inside = [d for s, d in longtasks if s < end and s + d > start]
    return {"max_ms": round(max(inside), 1) if inside else 0.0, "count": len(inside),
            "total_ms": round(sum(inside), 1)}


def r1(x):
    return None if x is None else round(x, 1)


def load_figures(first: dict, wire: Wire | None, workers: list[dict] | None = None) -> dict:
    """What one navigation (cold, second visit, reload) gave: times in page ms since navigation start."""
    if first.get("error") or first.get("skipped") or not (first.get("ready") or {}).get("ok"):
        return {"ok": False, "error": first.get("error") or first.get("skipped") or first.get("ready")}
    timings = first.get("timings") or {}
    return {
        "ok": True, "ms": r1(first["at"]), "ready_ms": r1(first["readyAt"]),
        "first_answer_ms": r1(first["at"] - first["givenAt"]), "given_at_ms": r1(first["givenAt"]),
        "dom_content_loaded_ms": r1(first["domContentLoaded"]), "html_response_end_ms": r1(first["responseEnd"]),
        "first_inference_ms": r1(first["result"]["inferenceMs"]), "first_total_ms": r1(first["result"]["totalMs"]),
        "page_timings": {k: r1(v) if isinstance(v, (int, float)) else v for k, v in timings.items()},
        "top5": first["result"]["top5"], "backend": first["backend"],
        "longest_task": longest(first["longtasks"], (0.0, first["at"])),
        "wire": wire.summary(workers) if wire else None,
    }


def navigate(page, wire: Wire, url: str | None, timeout_ms: float) -> dict:
    """Goes to ``url`` (None: reload) and waits for the first answer of the photo given at DOMContentLoaded."""
    wire.reset()
    if url is None:
        page.reload(wait_until="domcontentloaded")
    else:
        page.goto(url, wait_until="domcontentloaded")
    first = page.evaluate(FIRST_ANSWER, timeout_ms)
    page.wait_for_timeout(100)  # let the CDP events of the last responses arrive
    return {"first": first, "figures": load_figures(first, wire, worker_requests(page))}


def cpu_busy_fraction(seconds: float) -> float | None:
    """The machine's busy share of all its cores over ``seconds`` (/proc/stat), or None without it."""
    def sample():
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return sum(values) - values[3] - values[4], sum(values)  # busy (not idle, not iowait), all
    try:
        busy0, all0 = sample()
        time.sleep(seconds)
        busy1, all1 = sample()
    except OSError:
        return None
    return (busy1 - busy0) / max(all1 - all0, 1)


def settle_browser(limit_s: float) -> float:
    """Waits until a just-launched browser is at rest, at most ``limit_s``; returns the seconds waited.

    Chromium starts its own UI after launch: its toolbar is a WebUI page, whose renderer takes
    ~0.5 s of CPU in the first second (measured on Chromium 156 here, headless too). A user's
    browser has done that long before they open a page, so a cold open waits for it: until the
    machine's cores are less than 15% busy over 200 ms (at least 0.5 s after launch), or
    ``limit_s``. Without /proc/stat, it waits ``limit_s``."""
    started = time.perf_counter()
    if limit_s <= 0:
        return 0.0
    time.sleep(min(0.5, limit_s))
    while time.perf_counter() - started < limit_s:
        busy = cpu_busy_fraction(0.2)
        if busy is None:
            time.sleep(max(0.0, limit_s - (time.perf_counter() - started)))
            break
        if busy < 0.15:
            break
    return round(time.perf_counter() - started, 2)


def run_page(p, kind: str, url: str, backend: str, args, photo: str, detect_url: str | None) -> dict:
    """One round of one page on one backend, in a fresh profile: cold (+ steady classifications),
    second visit, reload (+ explanations and detection for Belka)."""
    profile = Path(tempfile.mkdtemp(prefix=f"belka-page-bench-{kind}-"))
    timeout_ms = args.timeout * 1000
    runs = args.slow_runs if backend in SLOW else args.runs
    sample: dict = {"load_average_before": [round(x, 2) for x in os.getloadavg()]}
    errors: list[str] = []
    context = None
    try:
        context = p.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM,
                                                       args=browser_args(backend, args), headless=True)
        context.set_default_timeout(timeout_ms)
        context.add_init_script(INIT_SCRIPT.replace("__PHOTO__", photo))

        def watch(page):
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))

        # 1. cold, then the steady classifications on the same page; navigated once the browser
        # has finished starting itself (a user's browser is running before they open the page)
        sample["browser_settle_s"] = settle_browser(args.settle)
        page = context.pages[0] if context.pages else context.new_page()
        watch(page)
        wire = Wire(page)
        if args.chromium_version is None:
            args.chromium_version = wire.session.send("Browser.getVersion").get("product")
        cold = navigate(page, wire, url, timeout_ms)
        sample["cold"] = cold["figures"]
        sample["tfjs"] = cold["first"].get("tfjs")
        sample["cross_origin_isolated"] = cold["first"].get("crossOriginIsolated")
        sample["longtask_supported"] = cold["first"].get("longtaskSupported")
        if not sample["cold"]["ok"]:
            sample["ok"] = False
            sample["error"] = f"cold load: {sample['cold']['error']}"
            return sample
        if sample["cold"]["backend"] != backend:
            sample["ok"] = False
            sample["error"] = f"the page runs on {sample['cold']['backend']}, not {backend}"
            return sample
        steady = page.evaluate(STEADY, {"runs": runs, "timeoutMs": timeout_ms})
        sample["steady"] = {
            "runs": len(steady["wall"]), "wall_ms": [r1(x) for x in steady["wall"]],
            "inference_ms": [r1(x) for x in steady["inference"]], "top5": steady["top5"],
            "longest_task": longest(steady["longtasks"], steady["window"]),
            "tensors_after": steady["numTensors"],
        }

        # 2. second visit: a new page of the same profile, the first one closed
        second_page = context.new_page()
        watch(second_page)
        page.close()
        page = second_page
        wire = Wire(page)
        sample["second_visit"] = navigate(page, wire, url, timeout_ms)["figures"]

        # 3. reload
        sample["reload"] = navigate(page, wire, None, timeout_ms)["figures"]

        # 5. Belka only: explanations on the reloaded page, then the detect page
        if kind == "belka" and not args.no_explain and sample["reload"]["ok"]:
            grid = args.occlusion_grid if backend != "wasm" else PAGE_DEFAULT_GRID
            sample["explain"] = {}
            for method, request in (("gradcam", {"method": "gradcam"}),
                                    ("occlusion", {"method": "occlusion", **(grid or {})})):
                print(f"    {kind} {backend}: {method} ...", file=sys.stderr, flush=True)
                out = page.evaluate(EXPLAIN, {"request": request, "timeoutMs": args.explain_timeout * 1000})
                sample["explain"][method] = {
                    "ok": not (out["error"] or out["timedOut"] or out["cancelled"]), "error": out["error"],
                    "timed_out": out["timedOut"], "ms": r1(out["ms"]),
                    "wall_ms": r1(out["window"][1] - out["window"][0]), "source": out["source"],
                    "layer": out["layer"], "patch": out["patch"], "stride": out["stride"], "images": out["images"],
                    "longest_task": longest(out["longtasks"], out["window"]), "tensors_after": out["numTensors"],
                }
        if kind == "belka" and detect_url:
            print(f"    {kind} {backend}: detect ...", file=sys.stderr, flush=True)
            detect_page = context.new_page()
            watch(detect_page)
            detect_page.goto(detect_url, wait_until="domcontentloaded")
            out = detect_page.evaluate(DETECT, {"runs": runs, "timeoutMs": timeout_ms})
            if not out["ready"].get("ok"):
                sample["detect"] = {"ok": False, "error": out["ready"].get("error")}
            else:
                sample["detect"] = {
                    "ok": out["backend"] == backend, "backend": out["backend"], "runs": len(out["wall"]),
                    "wall_ms": [r1(x) for x in out["wall"]], "inference_ms": [r1(x) for x in out["inference"]],
                    "longest_task": longest(out["longtasks"], out["window"]), "tensors_after": out["numTensors"],
                }
        sample["ok"] = sample["second_visit"]["ok"] and sample["reload"]["ok"]
        if not sample["ok"]:
            sample["error"] = next(sample[k]["error"] for k in ("second_visit", "reload") if not sample[k]["ok"])
        return sample
    except Exception as exc:  # noqa: BLE001 - recorded; the other rounds still run
        sample["ok"] = False
        sample["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}"
        return sample
    finally:
        sample["console_errors"] = errors[:5]
        sample["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        if context is not None:
            with contextlib.suppress(Exception):
                context.close()
        shutil.rmtree(profile, ignore_errors=True)
