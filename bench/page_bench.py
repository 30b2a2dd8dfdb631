"""Benchmark Belka's classify page against a bare TF.js page running the same model: cold open,
second visit, reload, photo -> top-5, first answer, longest main-thread task and bytes.

What it measures
----------------
One model, MobileNetV2 1.0/224 converted once with the real CLI into a temporary folder
(``belka convert mobilenet-v2 --weights none --out TMPDIR --json --quiet``: seeded untrained
weights, as this machine cannot download the ImageNet ones; speed does not depend on the weight
values), or an existing one with ``--models DIR --model NAME``. Two pages classify
scikit-image's ``chelsea`` photo (encoded as JPEG, handed to the page as a Blob):

- ``belka``: the real classify page, ``/?backend=B``, served by ``belka serve`` (a subprocess on
  127.0.0.1 with ``BELKA_MODELS_DIR`` and ``BELKA_MODEL``), driven through ``window.belka``;
- ``bare``: ``bench/bare_page/`` (index.html + bare.js), the least a page needs for the same job:
  TF.js core and, for wasm and webgpu, that backend's bundle as ``<script defer>`` tags (the same
  /vendor URLs Belka's app gives its own pages), ``tf.setBackend(B)``,
  ``tf.loadGraphModel('/models/NAME/graph/model.json')`` (manifest.json alongside, for labels, value
  range and output kind), then per photo createImageBitmap, centre crop, bilinear resize to 224,
  values to [-1, 1], predict, softmax, top-5 in a list; no warm-up, no preview, no panels. Driven
  through ``window.bare`` (same calls: ready, classifyBlob, timings). Its preprocessing is Belka's
  arithmetic, so both pages' top-5 must agree (checked: ``same_top5``).

How the bare page is served, and why the comparison is fair: by Belka's own app. This script's
``--serve-bare`` mode runs ``app.main.create_app`` under uvicorn exactly as ``belka serve`` does
(a subprocess on 127.0.0.1, another port), with two differences only: its static folder is
``bench/bare_page/`` and ``/`` returns the bare page (index.html with the app's own /vendor and
/static URL prefixes filled in); it runs without lifespan, so the server-side models are not
loaded (the page uses no API). Everything else is Belka's: the /vendor, /static and /models file
routes (ETags, caching: content-hashed URLs immutable, the rest revalidated), compression and the
security headers (COOP/COEP: cross-origin isolated; the CSP: no inline script, single-threaded
WASM). So both pages get the same TF.js and model bytes, with the same headers, from the same
files and code. Each (page, backend, round) runs in its own fresh browser profile, so being
another origin (port) changes nothing about caching.

Per backend (``--backends``, default ``wasm,cpu``; ``webgl`` and ``webgpu`` run on SwiftShader,
Chromium's CPU renderer, here: they are labelled ``webgl-swiftshader`` / ``webgpu-swiftshader``
and say nothing about a GPU; wasm and cpu run with Chromium's own GPU setup, software
compositing on this machine, as a user's browser without a GPU: SwiftShader's flags would also
send every frame of the page through SwiftShader's Vulkan, ~100 ms of CPU per frame of Belka's
page, which no user pays; ``--swiftshader-everywhere`` measures that setting), in ``--rounds``
interleaved rounds (default 3: per round and
backend one profile for each page, belka first in odd rounds, bare first in even ones, so a drift
of the shared machine's load hits both), each in a FRESH persistent profile
(``launch_persistent_context`` with a new temporary user_data_dir: the HTTP cache is on disk, as
for a user):

1. cold: ``performance.now()`` when the first answer for the photo arrives, in the page's time
   origin (navigation start), in a browser that has finished starting itself (``--settle``:
   Chromium's toolbar is a WebUI page whose renderer takes ~0.5 s of CPU in the first second
   after launch, headless too; a user's browser did that long before they open a page, so the
   page is opened once the machine is quiet again, at most 5 s after launch). The photo is given as early as the page's API allows: an init script
   calls ``classifyBlob`` from a DOMContentLoaded listener added before any page script (Belka
   queues it behind its start-up; the bare page awaits its ``ready``). Also recorded: ``ready_ms``
   (when the page's ``ready`` resolved) and ``first_answer_ms``, the time from handing the photo
   in (DOMContentLoaded) to its answer: what a user who drops a photo at once waits for. (The
   two pages' ``ready`` differ in kind: Belka's comes after its warm-up inference, the bare page
   has none, so ``ready_ms`` gets no ratio.)
2. second visit: the page closed, a new page (same profile: warm disk cache, V8 and WASM code
   caches) opens the same address; same measurement. A new tab: Belka's model worker (the tab's
   SharedWorker, static/js/engine-client.js) starts afresh, as on any later visit.
3. reload: ``page.reload()`` of that page; same measurement. Belka's page finds its tab's
   model worker still running (kept a moment after the page goes: ``extendedLifetime``), its
   backend started and its model loaded, where the bare page starts TF.js and loads its model
   again (from the caches of the renderer, which a reload keeps).
4. photo -> top-5: on the cold page after its first answer, ``--runs`` classifications of the same
   photo (``--slow-runs`` on cpu and SwiftShader, default 3: a MobileNetV2 inference takes one
   to several seconds there); the wall time from the call to its answer, as the caller sees it (median over
   rounds' runs), and the page's own ``inferenceMs`` (predict to probabilities).
5. longest main-thread task: a ``PerformanceObserver`` for ``longtask`` entries, installed by the
   init script before any page script, records every task of 50 ms or more (the API reports
   nothing shorter: "0, none" means every task was under 50 ms); the longest and the count are
   given per phase by time window: ``load`` (navigation to the cold first answer), ``classify``
   (the steady classifications), and for Belka only ``gradcam`` and ``occlusion``
   (``belka.explain({method})`` on the reloaded page: the page's default layer; occlusion with the
   page's default patch and stride on wasm, 32/16: 169 images; elsewhere a coarse 112/112 grid, 4
   images, as each takes a second or more there, ``--occlusion-grid``)
   and ``detect`` (the detect page, ``/detect?backend=B``, ``--runs`` ``detectBlob`` calls on the
   photo; only with ``--detector DIR NAME``, a converted detector model folder DIR/NAME).
6. bytes for each of the three loads, from the Chrome DevTools Protocol (``Network``
   events of the page): the sum of ``loadingFinished.encodedDataLength`` (bytes on the wire,
   headers included) of every request up to the first answer, the requests, how many came from
   the cache (``requestServedFromCache`` / ``fromDiskCache``) and how many were revalidated
   (304), by kind (html, app code, TF.js, wasm, model). CDP on the page's target does not see a
   worker's requests (Belka's model worker fetches TF.js, the WASM backend and the
   model): those come from the worker's Resource Timing (``transferSize``: headers and encoded
   body, 0 when served from the cache), read through the page's ``belka.worker('resources')``
   (a SharedWorker: Playwright's ``page.workers`` lists dedicated workers only).

Results: per page and backend the median over rounds of each metric (every raw sample kept),
the ratio belka / bare, and the targets (issue 12), checked on wasm with both pages in the same
run: photo -> top-5 within 1.2x of bare, second visit and reload within 1.2x, cold open within
1.1x; the longest main-thread task while classifying, explaining (Grad-CAM, occlusion) and
detecting under 50 ms on every backend measured. The table prints them with "ok" / "MISSED".

How to run
----------
From the repository root, after ``make test`` or ``make run`` set things up (venv, ``npm ci``,
Debian's chromium)::

    .venv/bin/python bench/page_bench.py [--rounds 3] [--runs 10] [--slow-runs 3]
        [--backends wasm,cpu,webgl,webgpu] [--models DIR --model NAME] [--detector DIR NAME]
        [--occlusion-grid 112/112] [--no-explain] [--quick]

On 2 cores the default (wasm and cpu, 3 rounds, conversion included) took 5 minutes; ``--quick``
(1 round, wasm only, 3 runs), a smoke test, 1 minute; ``--backends webgl,webgpu --rounds 1`` 5
minutes (WebGPU on SwiftShader compiles its shaders for about 20 s per page). It prints a table
and writes ``bench/results/page.json`` (``--out``), with the commit and the files changed on top
of it (``git``). Run it on an idle machine: both pages share the cores with the servers; every
sample records the load average before and after it.
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

from fastapi import Request  # (the bare page's route; a module global for FastAPI's annotations)

from harness.chromium import BASE_ARGS as CHROMIUM_BASE_ARGS, CHROMIUM, SWIFTSHADER_ARGS
from harness.server import belka_command, free_port, run_server

REPO = Path(__file__).resolve().parent.parent

BARE_DIR = Path(__file__).resolve().parent / "bare_page"
PAGES = ("belka", "bare")
BACKENDS = ("wasm", "cpu", "webgl", "webgpu")
SWIFTSHADER = ("webgl", "webgpu")  # no GPU here: Chromium renders these on the CPU
SLOW = ("cpu", "webgl", "webgpu")  # about a second per MobileNetV2 inference: --slow-runs
LONGTASK_MS = 50  # the Long Tasks API reports tasks of 50 ms or more only
PAGE_DEFAULT_GRID = None  # occlusion: let the page choose (patch = size / 7, stride = patch / 2)
TARGETS = {  # issue 12, on wasm: belka / bare at most
    "steady_wall_ms": 1.2, "second_visit_ms": 1.2, "reload_ms": 1.2, "cold_ms": 1.1,
}
WEIGHTS_NOTE = ("--weights none: seeded untrained weights (this machine is offline); speed and bytes do not "
                "depend on the weight values.")

# ---------------------------------------------------------------- in the page

# Installed before any page script of every document: long tasks, the photo, and the first answer of
# a photo handed in at DOMContentLoaded (the earliest moment window.belka / window.bare exist: both
# pages set them while their module runs, which is before DOMContentLoaded).
INIT_SCRIPT = """
(() => {
  const bench = {longtasks: [], readyAt: null};
  window.__bench = bench;
  try {
    const observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) bench.longtasks.push([e.startTime, e.duration]);
    });
    observer.observe({type: 'longtask', buffered: true});
    bench.longtaskSupported = PerformanceObserver.supportedEntryTypes.includes('longtask');
    bench.flush = () => {
      for (const e of observer.takeRecords()) bench.longtasks.push([e.startTime, e.duration]);
      return bench.longtasks;
    };
  } catch (error) {
    bench.longtaskSupported = false;
    bench.longtaskError = String(error);
    bench.flush = () => bench.longtasks;
  }
  // A long task's entry is queued once that task has ended (a caller resuming at the end of the
  // task it measures is still inside it): wait a moment before reading them.
  bench.settled = () => new Promise((resolve) => { setTimeout(() => resolve(bench.flush()), 100); });
  // the photo, decoded once here (about a millisecond) and handed to both pages as the same Blob
  const binary = atob('__PHOTO__');
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  const photo = new Blob([bytes], {type: 'image/jpeg'});
  bench.photo = () => photo;
  let settle;
  bench.first = new Promise((resolve) => { settle = resolve; });
  document.addEventListener('DOMContentLoaded', () => {
    const api = window.belka ?? window.bare;
    if (!api || typeof api.classifyBlob !== 'function') {
      settle({skipped: 'this page has no classifyBlob'});
      return;
    }
    api.ready.then(() => { bench.readyAt = performance.now(); });
    const givenAt = performance.now();
    api.classifyBlob(photo).then(
      (r) => settle({at: performance.now(), givenAt, result: r && {
        top5: r.top5.map((c) => c.index), inferenceMs: r.inferenceMs, totalMs: r.totalMs}}),
      (error) => settle({givenAt, error: String(error?.message ?? error)}));
  }, {once: true});
})();
"""

# The first answer of this document (see INIT_SCRIPT), with the page's facts.
FIRST_ANSWER = """
async (timeoutMs) => {
  const bench = window.__bench;
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => resolve({error: `no answer within ${timeoutMs / 1000} s`}), timeoutMs);
  });
  const first = await Promise.race([bench.first, timeout]);
  clearTimeout(timer);
  const api = window.belka ?? window.bare;
  // (Belka's ready settles right after the first answer when the photo was the warm-up)
  const notReady = new Promise((resolve) => { setTimeout(() => resolve({ok: false, error: 'not ready'}), 5000); });
  const ready = api ? await Promise.race([api.ready, notReady]) : null;
  const nav = performance.getEntriesByType('navigation')[0];
  return {
    ...first, ready, readyAt: bench.readyAt, backend: api?.backend() ?? null,
    timings: api?.timings() ?? null, longtasks: await bench.settled(), longtaskSupported: bench.longtaskSupported,
    tfjs: window.tf?.version?.tfjs ?? (await api?.worker?.('start'))?.tfjs ?? null, crossOriginIsolated: self.crossOriginIsolated,
    domContentLoaded: nav?.domContentLoadedEventStart ?? null, responseEnd: nav?.responseEnd ?? null,
    numTensors: (await api?.numTensors?.()) ?? null,
  };
}
"""

# `runs` classifications of the photo, one after the other: wall time of each call and its inferenceMs.
STEADY = """
async ({runs, timeoutMs}) => {
  const api = window.belka ?? window.bare;
  const blob = window.__bench.photo();
  const wall = [], inference = [];
  const deadline = performance.now() + timeoutMs;
  const start = performance.now();
  let top5 = null;
  for (let i = 0; i < runs && performance.now() < deadline; i++) {
    const t = performance.now();
    const r = await api.classifyBlob(blob);
    wall.push(performance.now() - t);
    inference.push(r.inferenceMs);
    top5 = r.top5.map((c) => c.index);
  }
  const end = performance.now();
  return {wall, inference, top5, window: [start, end], longtasks: await window.__bench.settled(),
          numTensors: await api.numTensors()};
}
"""

# One explanation on Belka's page (cancelled after timeoutMs).
EXPLAIN = """
async ({request, timeoutMs}) => {
  const start = performance.now();
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => { window.belka.cancelExplain(); resolve({timedOut: true}); }, timeoutMs);
  });
  const r = await Promise.race([window.belka.explain(request), timeout]);
  clearTimeout(timer);
  if (r?.timedOut) await window.belka.idle();  // the cancelled map ends after its batch
  const end = performance.now();
  return {window: [start, end], longtasks: await window.__bench.settled(), timedOut: Boolean(r?.timedOut),
          cancelled: r === null, error: r?.error ?? null, ms: r?.ms ?? null, source: r?.source ?? null,
          layer: r?.layer ?? null, patch: r?.patch ?? null, stride: r?.stride ?? null,
          images: r?.images ?? null, numTensors: await window.belka.numTensors()};
}
"""

# The detect page: ready, then `runs` detectBlob calls on the photo.
DETECT = """
async ({runs, timeoutMs}) => {
  const ready = await window.belka.ready;
  if (!ready.ok) return {ready};
  const blob = window.__bench.photo();
  const inference = [], wall = [];
  const deadline = performance.now() + timeoutMs;
  const start = performance.now();
  for (let i = 0; i < runs && performance.now() < deadline; i++) {
    const t = performance.now();
    const r = await window.belka.detectBlob(blob);
    wall.push(performance.now() - t);
    inference.push(r.inferenceMs);
  }
  const end = performance.now();
  return {ready, backend: window.belka.backend(), wall, inference, window: [start, end],
          longtasks: await window.__bench.settled(), numTensors: await window.belka.numTensors()};
}
"""


# ---------------------------------------------------------------- set-up

def chelsea_jpeg() -> str:
    """scikit-image's chelsea (451x300, a cat) as a JPEG, base64."""
    import skimage.data
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(skimage.data.chelsea()).save(buffer, format="JPEG", quality=90)
    return base64.b64encode(buffer.getvalue()).decode()


def convert(out: Path, timeout: float) -> str:
    """MobileNetV2 1.0/224 with the real CLI; returns the model's name (its folder in ``out``)."""
    cmd = [*belka_command(), "convert", "mobilenet-v2", "--weights", "none", "--out", str(out), "--json", "--quiet"]
    print("$ belka convert mobilenet-v2 --weights none --out TMPDIR --json --quiet", file=sys.stderr, flush=True)
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        sys.exit(f"conversion failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    name = json.loads(proc.stdout)["name"]
    print(f"  {name} in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return name


@contextlib.contextmanager
def server(cmd: list[str], env: dict, port: int, what: str):
    """Runs ``cmd`` (a server on 127.0.0.1:port), waits for /healthz (at most 120 s), yields its
    base URL and always stops it (harness.server.run_server: its log goes to a temporary file)."""
    with run_server(cmd, port, env=env, what=what, seconds=120, cwd=REPO) as running:
        yield running.url


def serve_belka(models_dir: Path, model: str):
    """`belka serve` on a free port with the classify page's model set to ``model``."""
    port = free_port()
    cmd = [*belka_command(), "serve", "--host", "127.0.0.1", "--port", str(port)]
    return server(cmd, {"BELKA_MODELS_DIR": str(models_dir), "BELKA_MODEL": model}, port, "belka serve")


def serve_bare(models_dir: Path):
    """This script's --serve-bare mode (bare_app under uvicorn) on a free port."""
    port = free_port()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-bare", str(models_dir), "--port", str(port)]
    return server(cmd, {}, port, "the bare page's server")


BACKEND_BUNDLES = {"wasm": "tfjs-backend-wasm/dist/tf-backend-wasm.es2017.min.js",
                   "webgpu": "tfjs-backend-webgpu/dist/tf-backend-webgpu.es2017.min.js"}


def bare_app(models_dir: Path):
    """The bare page's server: Belka's own app (``create_app``: the same file routes, caching,
    compression and security headers) with bench/bare_page/ as its static folder and the bare
    page at ``/`` in front of Belka's. Run without lifespan (``lifespan="off"``): the server-side
    models are never loaded, as the page needs none of the API."""
    from fastapi.responses import HTMLResponse

    from app.main import create_app
    from app.settings import Settings

    app = create_app(Settings.from_env(models_dir=models_dir, static_dir=BARE_DIR))
    assets = getattr(app.state, "assets", None)  # content-hashed URLs, when the app has them

    def prefix(kind: str) -> str:
        url_of = getattr(assets, f"{kind}_url", None)
        return url_of("") if url_of else f"/{kind}/"

    def page(request: Request) -> HTMLResponse:
        vendor = prefix("vendor")
        bundle = BACKEND_BUNDLES.get(request.query_params.get("backend", "wasm"))
        script = f'<script defer src="{vendor}{bundle}"></script>' if bundle else ""
        html = ((BARE_DIR / "index.html").read_text().replace("__VENDOR__", vendor)
                .replace("__STATIC__", prefix("static")).replace("__BACKEND_SCRIPT__", script))
        return HTMLResponse(html)

    app.add_api_route("/", page, methods=["GET"], include_in_schema=False)
    app.router.routes.insert(0, app.router.routes.pop())  # before Belka's classify page
    return app


def run_bare_server(models_dir: Path, port: int) -> None:
    import uvicorn

    # as `belka serve` runs Belka's app (app/cli.py), without the lifespan that loads the models
    uvicorn.run(bare_app(models_dir), host="127.0.0.1", port=port, log_level="info", lifespan="off")


# ---------------------------------------------------------------- bytes on the wire

def kind_of(url: str) -> str:
    path = url.split("://", 1)[-1].partition("/")[2].split("?", 1)[0]
    if path.endswith(".wasm"):
        return "wasm"
    if path.startswith("vendor/"):
        return "tfjs"
    if path.startswith("models/"):
        return "model"
    if path in ("", "detect"):
        return "html"
    return "app"  # /static (Belka's modules, css, icon; bare.js), favicon


class Wire:
    """A page's network as Chromium reports it (CDP Network events): per request its URL, status,
    whether it came from the cache and its encodedDataLength (bytes on the wire, headers included)."""

    def __init__(self, page):
        self.requests: dict[str, dict] = {}
        self.session = page.context.new_cdp_session(page)
        self.session.on("Network.requestWillBeSent", self._sent)
        self.session.on("Network.requestServedFromCache", self._cached)
        self.session.on("Network.responseReceived", self._response)
        self.session.on("Network.responseReceivedExtraInfo", self._raw_response)
        self.session.on("Network.loadingFinished", self._finished)
        self.session.on("Network.loadingFailed", self._failed)
        self.session.send("Network.enable")

    def reset(self) -> None:
        self.requests = {}

    def _entry(self, request_id: str) -> dict:
        return self.requests.setdefault(request_id, {"url": None, "status": None, "raw_status": None,
                                                     "cache": False, "bytes": None, "failed": False})

    def _sent(self, event):
        if event["request"]["url"].startswith("http"):
            self._entry(event["requestId"])["url"] = event["request"]["url"]

    def _cached(self, event):
        if event["requestId"] in self.requests:
            self.requests[event["requestId"]]["cache"] = True

    def _response(self, event):
        if event["requestId"] in self.requests:
            entry = self.requests[event["requestId"]]
            entry["status"] = event["response"]["status"]
            entry["cache"] = entry["cache"] or bool(event["response"].get("fromDiskCache"))

    def _raw_response(self, event):
        # the status as it came off the network: a revalidation is a 304 here, while
        # responseReceived shows the cached 200 it revalidated
        self._entry(event["requestId"])["raw_status"] = event["statusCode"]

    def _finished(self, event):
        if event["requestId"] in self.requests:
            self.requests[event["requestId"]]["bytes"] = int(event["encodedDataLength"])

    def _failed(self, event):
        if event["requestId"] in self.requests:
            self.requests[event["requestId"]]["failed"] = True

    def summary(self, workers: list[dict] | None = None) -> dict:
        """Totals of the page's requests plus ``workers``' (entries from worker_requests: CDP on the
        page's target does not see a dedicated worker's network)."""
        entries = [e for e in self.requests.values() if e["url"]]  # (ExtraInfo may name other targets' ids)
        entries += workers or []
        by_kind: dict[str, dict] = {}
        for e in entries:
            k = by_kind.setdefault(kind_of(e["url"]), {"requests": 0, "bytes": 0, "cached": 0, "revalidated": 0})
            k["requests"] += 1
            k["bytes"] += e["bytes"] or 0
            k["cached"] += e["cache"]
            k["revalidated"] += 304 in (e["status"], e["raw_status"])
        return {
            "bytes": sum(e["bytes"] or 0 for e in entries), "requests": len(entries),
            "cached": sum(e["cache"] for e in entries),
            "revalidated": sum(304 in (e["status"], e["raw_status"]) for e in entries),
            "unfinished": sum(e["bytes"] is None and not e["failed"] for e in entries),
            "failed": sum(e["failed"] for e in entries), "by_kind": by_kind,
            "list": [{"path": "/" + e["url"].split("://", 1)[-1].partition("/")[2],
                      "status": e["raw_status"] or e["status"], "cache": e["cache"], "bytes": e["bytes"]}
                     for e in entries],
        }


# ---------------------------------------------------------------- one round of one page

def longest(longtasks: list, window: tuple[float, float] | list[float]) -> dict:
    """The long tasks that overlap ``window`` (page ms): the longest (0: none of 50 ms or more) and how many."""
    start, end = window
    inside = [d for s, d in longtasks if s < end and s + d > start]
    return {"max_ms": round(max(inside), 1) if inside else 0.0, "count": len(inside),
            "total_ms": round(sum(inside), 1)}


def r1(x):
    return None if x is None else round(x, 1)


def worker_requests(page) -> list[dict]:
    """What the page's workers fetched for this page (Belka's model worker: TF.js, WASM, the
    model), from their Resource Timing: bytes = transferSize (headers and encoded body; 0 when
    served from the cache), as Wire's entries. Belka's worker is the tab's SharedWorker, which
    Playwright does not list: the page's ``belka.worker('resources', {thisPage: true})`` reads it
    (nothing on a reload that found the model loaded); a dedicated worker is read directly."""
    rows = []
    for worker in page.workers:
        try:
            rows += worker.evaluate("performance.getEntriesByType('resource').map((e) => "
                                    "[e.name, e.transferSize, e.encodedBodySize, e.responseStatus ?? null])")
        except Exception:  # a worker that ended meanwhile
            continue
    if not page.workers:
        try:
            rows = page.evaluate("window.belka?.worker ? belka.worker('resources', {thisPage: true}).then((list) => "
                                 "list.map((e) => [e.url, e.transferSize, e.encodedBodySize, e.status])) : []")
        except Exception:
            rows = []
    return [{"url": url, "status": status, "raw_status": None, "bytes": transfer,
             "cache": transfer == 0 and body > 0, "failed": False, "worker": True}
            for url, transfer, body, status in rows]


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


# ---------------------------------------------------------------- summary

def med(values):
    values = [v for v in values if isinstance(v, (int, float))]
    return round(statistics.median(values), 1) if values else None


def summarise_page(samples: list[dict]) -> dict:
    """Medians over the rounds that worked (steady: over every run of every round); longest tasks:
    the worst round."""
    ok = [s for s in samples if s.get("ok")]
    if not ok:
        return {"rounds": 0, "error": samples[0].get("error") if samples else "no rounds"}
    out: dict = {"rounds": len(ok)}
    for load in ("cold", "second_visit", "reload"):
        out[f"{load}_ms"] = med([s[load]["ms"] for s in ok])
        out[f"{load}_ready_ms"] = med([s[load]["ready_ms"] for s in ok])
        out[f"{load}_first_answer_ms"] = med([s[load]["first_answer_ms"] for s in ok])
        out[f"{load}_bytes"] = med([s[load]["wire"]["bytes"] for s in ok])
        out[f"{load}_requests"] = med([s[load]["wire"]["requests"] for s in ok])
    out["steady_wall_ms"] = med([x for s in ok for x in s["steady"]["wall_ms"]])
    out["steady_inference_ms"] = med([x for s in ok for x in s["steady"]["inference_ms"]])
    tasks = {"load": [s["cold"]["longest_task"] for s in ok], "classify": [s["steady"]["longest_task"] for s in ok]}
    for method in ("gradcam", "occlusion"):
        found = [s["explain"][method] for s in ok if s.get("explain", {}).get(method, {}).get("ok")]
        if found:
            tasks[method] = [e["longest_task"] for e in found]
            out[f"{method}_ms"] = med([e["ms"] for e in found])
    detected = [s["detect"] for s in ok if s.get("detect", {}).get("ok")]
    if detected:
        tasks["detect"] = [d["longest_task"] for d in detected]
        out["detect_inference_ms"] = med([x for d in detected for x in d["inference_ms"]])
    out["longest_task_ms"] = {phase: max(t["max_ms"] for t in found) for phase, found in tasks.items()}
    out["long_tasks"] = {phase: max(t["count"] for t in found) for phase, found in tasks.items()}
    return out


def ratio(a, b):
    return round(a / b, 3) if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None


RATIO_METRICS = ("cold_ms", "cold_first_answer_ms", "second_visit_ms", "reload_ms", "steady_wall_ms",
                 "steady_inference_ms", "cold_bytes", "cold_requests", "second_visit_bytes", "reload_bytes")


def targets_for(label: str, backend: str, summary: dict) -> list[dict]:
    """Issue 12's targets for one backend: ratios on wasm, long tasks everywhere (Belka's page)."""
    found = []
    if backend == "wasm":
        for metric, limit in TARGETS.items():
            r = summary["ratios"].get(metric)
            found.append({"backend": label, "what": f"{metric} belka/bare", "value": r, "limit": limit,
                          "met": r is not None and r <= limit})
    belka = summary["pages"]["belka"]
    for phase in ("classify", "gradcam", "occlusion", "detect"):
        value = belka.get("longest_task_ms", {}).get(phase)
        if value is None:
            continue
        found.append({"backend": label, "what": f"longest task while {phase} (belka)", "value": value,
                      "limit": LONGTASK_MS, "met": value < LONGTASK_MS})
    return found


def fmt(value, spec=".0f", width=9) -> str:
    return format(format(value, spec) if isinstance(value, (int, float)) else "-", f">{width}")


def print_table(summaries: dict, targets: list[dict]) -> None:
    rows = [("cold open ms", "cold_ms"), ("  ready ms", "cold_ready_ms"),
            ("  first answer ms", "cold_first_answer_ms"), ("second visit ms", "second_visit_ms"),
            ("reload ms", "reload_ms"), ("photo->top-5 ms", "steady_wall_ms"),
            ("  inference ms", "steady_inference_ms"), ("cold KB", "cold_bytes"),
            ("cold requests", "cold_requests"), ("2nd visit KB", "second_visit_bytes"),
            ("reload KB", "reload_bytes"), ("grad-cam ms", "gradcam_ms"), ("occlusion ms", "occlusion_ms"),
            ("detect inference ms", "detect_inference_ms")]
    limits = {metric: limit for metric, limit in TARGETS.items()}
    print(f"\n{'backend':<19} {'metric':<22} {'belka':>9} {'bare':>9} {'ratio':>7} {'target':>7} {'':>6}")
    for label, summary in summaries.items():
        belka, bare = summary["pages"]["belka"], summary["pages"]["bare"]
        if not belka.get("rounds") or not bare.get("rounds"):
            print(f"{label:<19} unavailable: belka {belka.get('error', 'ok')}; bare {bare.get('error', 'ok')}")
        for name, key in rows:
            a, b = belka.get(key), bare.get(key)
            if a is None and b is None:
                continue
            scale = 1e3 if key.endswith("_bytes") else 1
            a = a / scale if isinstance(a, (int, float)) else a
            b = b / scale if isinstance(b, (int, float)) else b
            limit = limits.get(key) if summary["backend"] == "wasm" else None
            r = summary["ratios"].get(key)
            verdict = "" if limit is None or r is None else ("ok" if r <= limit else "MISSED")
            print(f"{label:<19} {name:<22} {fmt(a)} {fmt(b)} {fmt(r, '.2f', 7)} "
                  f"{fmt(limit, '.1f', 7) if limit else ' ' * 7} {verdict:>6}")
        for phase in ("load", "classify", "gradcam", "occlusion", "detect"):
            a = belka.get("longest_task_ms", {}).get(phase)
            b = bare.get("longest_task_ms", {}).get(phase)
            if a is None and b is None:
                continue
            target = phase != "load" and a is not None
            verdict = ("ok" if a < LONGTASK_MS else "MISSED") if target else ""
            print(f"{label:<19} {'longest task ' + phase:<22} {fmt(a)} {fmt(b)} {'':>7} "
                  f"{'<50' if target else '':>7} {verdict:>6}")
    met = sum(t["met"] for t in targets)
    print(f"\ntargets met: {met} of {len(targets)}")
    for t in targets:
        if not t["met"]:
            print(f"  MISSED {t['backend']}: {t['what']} = {t['value']} (limit {t['limit']})")


def machine_info() -> dict:
    info = {"platform": platform.platform(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "python": platform.python_version()}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    return info


def git_state() -> dict:
    """The commit measured and the files changed on top of it (read-only: no index refresh)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "--no-optional-locks", *args], cwd=REPO, capture_output=True, text=True,
                              timeout=20).stdout

    state = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        state["commit"] = git("rev-parse", "HEAD").strip()
        state["changed_files"] = [line[3:] for line in git("status", "--porcelain").splitlines()]
    return state


def js_versions() -> dict:
    versions = {}
    for pkg in ("tfjs", "tfjs-backend-wasm", "tfjs-backend-webgpu"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            path = REPO / "node_modules" / "@tensorflow" / pkg / "package.json"
            versions[f"@tensorflow/{pkg}"] = json.loads(path.read_text())["version"]
    with contextlib.suppress(Exception):
        import importlib.metadata as md

        versions["playwright"] = md.version("playwright")
    return versions


# ---------------------------------------------------------------- main

def parse_grid(text: str) -> dict:
    patch, _, stride = text.partition("/")
    return {"patch": int(patch), "stride": int(stride or patch)}


def browser_args(backend: str, args) -> list[str]:
    """Chromium's flags for a backend's rounds. webgl and webgpu need SwiftShader's flags (there is
    no GPU here). wasm and cpu run with Chromium's own GPU setup, as a user's browser does: with
    SwiftShader's flags Chromium also rasterises and composites every frame through SwiftShader's
    Vulkan (~100 ms of CPU per frame of Belka's page here), which no user gets, and which costs a
    richer page more than a bare one. --swiftshader-everywhere measures them that way too."""
    if backend in SWIFTSHADER or args.swiftshader_everywhere:
        return CHROMIUM_BASE_ARGS + SWIFTSHADER_ARGS
    return CHROMIUM_BASE_ARGS


def label_of(backend: str) -> str:
    return f"{backend}-swiftshader" if backend in SWIFTSHADER else backend


@contextlib.contextmanager
def served_models(args, tmp: Path):
    """The models folder both servers serve: the classifier (and the detector, when given) as links
    in one temporary folder, or the classifier's own folder when there is no detector."""
    models_dir, name = args.models, args.model
    if not args.detector:
        yield models_dir
        return
    folder = tmp / "served"
    folder.mkdir()
    (folder / name).symlink_to((models_dir / name).resolve(), target_is_directory=True)
    det_dir, det_name = args.detector
    (folder / det_name).symlink_to((Path(det_dir) / det_name).resolve(), target_is_directory=True)
    yield folder


def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per page and backend (default 3)")
    parser.add_argument("--runs", type=int, default=10, help="steady classifications per round on wasm (default 10)")
    parser.add_argument("--slow-runs", type=int, default=3,
                        help="steady classifications per round on cpu and SwiftShader (default 3)")
    parser.add_argument("--backends", default="wasm,cpu",
                        help="comma-separated: wasm, cpu, webgl, webgpu (the last two on SwiftShader; "
                             "default wasm,cpu)")
    parser.add_argument("--models", type=Path, default=None, help="an existing models folder (with --model)")
    parser.add_argument("--model", default=None, help="the classifier in --models (default: convert MobileNetV2)")
    parser.add_argument("--detector", nargs=2, metavar=("DIR", "NAME"), default=None,
                        help="a converted detector DIR/NAME: measure the detect page's long tasks too")
    parser.add_argument("--occlusion-grid", type=parse_grid, default=parse_grid("112/112"), metavar="PATCH/STRIDE",
                        help="occlusion grid off wasm (default 112/112: 4 images, each one task of a second or "
                             "more; wasm uses the page's default, 169 images)")
    parser.add_argument("--no-explain", action="store_true", help="skip Grad-CAM and occlusion")
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 round, wasm only, 3 runs")
    parser.add_argument("--swiftshader-everywhere", action="store_true",
                        help="run wasm and cpu with SwiftShader's GPU flags too (as the tests do), not "
                             "Chromium's own GPU setup: every frame then goes through SwiftShader")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="at most this many seconds for a just-launched browser to finish starting "
                             "before the cold open (default 5; 0: navigate at launch)")
    parser.add_argument("--timeout", type=float, default=180, help="seconds per page step (default 180)")
    parser.add_argument("--explain-timeout", type=float, default=120,
                        help="seconds per explanation before it is cancelled (default 120)")
    parser.add_argument("--convert-timeout", type=float, default=900)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "page.json")
    parser.add_argument("--serve-bare", type=Path, default=None, help=argparse.SUPPRESS)  # internal: the bare server
    parser.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare is not None:
        run_bare_server(args.serve_bare, args.port)
        return
    if (args.models is None) != (args.model is None):
        parser.error("--models and --model go together")
    if args.quick:
        args.rounds, args.runs, args.slow_runs, args.backends = 1, 3, 3, "wasm"
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        parser.error(f"--backends: unknown {', '.join(unknown)} (choose from {', '.join(BACKENDS)})")
    if args.detector and not (Path(args.detector[0]) / args.detector[1] / "manifest.json").is_file():
        parser.error(f"--detector: {args.detector[0]}/{args.detector[1]}/manifest.json does not exist")
    args.chromium_version = None

    from playwright.sync_api import sync_playwright

    started = time.perf_counter()
    machine = machine_info()
    photo = chelsea_jpeg()
    tmp = Path(tempfile.mkdtemp(prefix="belka-page-bench-"))
    samples: dict[str, dict[str, list]] = {label_of(b): {k: [] for k in PAGES} for b in backends}
    try:
        if args.models is None:
            args.models = tmp / "models"
            args.model = convert(args.models, args.convert_timeout)
        with served_models(args, tmp) as models_dir, serve_belka(models_dir, args.model) as belka_base, \
                serve_bare(models_dir) as bare_base, sync_playwright() as p:
            for round_index in range(args.rounds):
                order = PAGES if round_index % 2 == 0 else PAGES[::-1]
                for backend in backends:
                    for kind in order:
                        url = (f"{belka_base}/?backend={backend}" if kind == "belka"
                               else f"{bare_base}/?backend={backend}&model={args.model}")
                        detect_url = f"{belka_base}/detect?backend={backend}" if args.detector else None
                        print(f"round {round_index + 1}/{args.rounds}: {kind} on {label_of(backend)} ...",
                              file=sys.stderr, flush=True)
                        sample = run_page(p, kind, url, backend, args, photo, detect_url)
                        sample["round"] = round_index + 1
                        samples[label_of(backend)][kind].append(sample)
                        if sample["ok"]:
                            print(f"  cold {sample['cold']['ms']:.0f} ms, second {sample['second_visit']['ms']:.0f}"
                                  f" ms, reload {sample['reload']['ms']:.0f} ms, photo->top-5 "
                                  f"{med(sample['steady']['wall_ms'])} ms", file=sys.stderr, flush=True)
                        else:
                            print(f"  FAILED: {sample['error']}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    summaries: dict[str, dict] = {}
    targets: list[dict] = []
    for backend in backends:
        label = label_of(backend)
        pages = {kind: summarise_page(samples[label][kind]) for kind in PAGES}
        summary = {"backend": backend, "device": "swiftshader" if backend in SWIFTSHADER else "cpu",
                   "pages": pages,
                   "ratios": {m: ratio(pages["belka"].get(m), pages["bare"].get(m)) for m in RATIO_METRICS}}
        belka_top5 = [s["steady"]["top5"] for s in samples[label]["belka"] if s.get("ok")]
        bare_top5 = [s["steady"]["top5"] for s in samples[label]["bare"] if s.get("ok")]
        summary["same_top5"] = bool(belka_top5 and bare_top5) and belka_top5[0] == bare_top5[0]
        summaries[label] = summary
        targets += targets_for(label, backend, summary)
    tfjs_in_page = next((s.get("tfjs") for lab in samples.values() for kind in lab.values() for s in kind
                         if s.get("tfjs")), None)

    report = {
        "benchmark": "Belka's classify page against a bare TF.js page with the same model (issue 12)",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "total_seconds": round(time.perf_counter() - started, 1),
        "machine": machine,
        "versions": {**js_versions(), "tfjs_in_page": tfjs_in_page, "chromium": args.chromium_version},
        "git": git_state(),
        "settings": {"rounds": args.rounds, "settle_s": args.settle, "runs": args.runs,
                     "slow_runs": args.slow_runs, "backends": backends,
                     "model": args.model, "model_source": "converted now (--weights none)"
                     if args.models.is_relative_to(tmp) else str(args.models),
                     "detector": args.detector, "explain": not args.no_explain,
                     "occlusion_grid": {"wasm": "the page's default (patch 32, stride 16 at 224 px)",
                                        "others": args.occlusion_grid},
                     "photo": "skimage.data.chelsea() as JPEG (quality 90)", "quick": args.quick,
                     "chromium_flags": {b: browser_args(b, args) for b in backends},
                     "swiftshader_everywhere": args.swiftshader_everywhere},
        "weights": WEIGHTS_NOTE,
        "swiftshader": "webgl and webgpu run on SwiftShader (Chromium's CPU renderer) here: labelled "
                       "webgl-swiftshader / webgpu-swiftshader; they say nothing about a GPU. wasm and cpu run "
                       "with Chromium's own GPU setup (software compositing here) unless "
                       "--swiftshader-everywhere",
        "how": {
            "pages": "belka: `belka serve`, /?backend=B; bare: bench/bare_page served by Belka's file router and "
                     "security headers (this script's --serve-bare mode), /?backend=B&model=NAME",
            "rounds": "per round, backend and page a fresh persistent Chromium profile; belka first in odd rounds, "
                      "bare first in even ones",
            "cold_ms": "performance.now() (since navigation start) when the first answer of the photo arrived; "
                       "the photo is given to classifyBlob at DOMContentLoaded",
            "first_answer_ms": "from giving the photo (DOMContentLoaded) to its answer",
            "second_visit_ms": "the same, in a new page of the same profile after closing the first",
            "reload_ms": "the same after page.reload()",
            "steady_wall_ms": "median wall time of classifyBlob(photo) from the call to its answer, over the runs "
                              "of every round after the cold answer; steady_inference_ms: the page's inferenceMs",
            "bytes": "sum of CDP Network.loadingFinished encodedDataLength (headers included) of the page's "
                     "requests up to the first answer; cached: served from the HTTP cache; revalidated: 304",
            "longest_task_ms": "the longest PerformanceObserver 'longtask' entry (>= 50 ms; 0: none) overlapping "
                               "the phase: load (navigation to cold answer), classify (steady runs), gradcam, "
                               "occlusion (belka.explain), detect (detectBlob on /detect); worst round",
            "ratios": "belka median / bare median",
        },
        "targets": targets,
        "summary": summaries,
        "samples": samples,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(summaries, targets)
    for label, summary in summaries.items():
        if not summary["same_top5"]:
            print(f"note: {label}: the two pages' top-5 differ (or a page failed): see the JSON")
    loads = [x for lab in samples.values() for kind in lab.values() for sm in kind
             for x in (sm["load_average_before"][0], sm["load_average_after"][0])]
    print(f"\n1-minute load average around the samples: {min(loads):.1f} to {max(loads):.1f} "
          f"({os.cpu_count()} CPUs)" if loads else "")
    if args.rounds < 3:
        print(f"{args.rounds} round{'s' if args.rounds > 1 else ''}: a smoke test; judge the targets on 3 or more")
    print(f"rounds {args.rounds}, runs {args.runs} (slow {args.slow_runs}), total {report['total_seconds']:.0f} s, "
          f"{'weights untrained; ' if args.models.is_relative_to(tmp) else ''}chromium {args.chromium_version}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
