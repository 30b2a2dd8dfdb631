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

How the bare page is served, and why the comparison is fair: by Belka's own app.
``bench/page_setup.py``, run as a script, runs ``app.main.create_app`` under uvicorn exactly as ``belka serve`` does
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

Where things are: this file holds the command line and the report; bench/page_setup.py the
model, the photo and the two servers; bench/page_round.py one round of one page (the steps
above); bench/page_wire.py the bytes (CDP and the worker's Resource Timing); bench/page_report.py
the medians, ratios, targets and table; bench/page/*.js what runs in the page.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from harness.chromium import SWIFTSHADER_BACKENDS as SWIFTSHADER
from page_report import (RATIO_METRICS, git_state, js_versions, machine_info, med, print_table, ratio,
                         summarise_page, targets_for)
from page_round import BACKENDS, browser_args, label_of, run_page
from page_setup import chelsea_jpeg, convert, serve_bare, serve_belka

REPO = Path(__file__).resolve().parent.parent
PAGES = ("belka", "bare")
WEIGHTS_NOTE = ("--weights none: seeded untrained weights (this machine is offline); speed and bytes do not "
                "depend on the weight values.")


def parse_grid(text: str) -> dict:
    patch, _, stride = text.partition("/")
    return {"patch": int(patch), "stride": int(stride or patch)}


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
    args = parser.parse_args()
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
                     "security headers (bench/page_setup.py run as a script), /?backend=B&model=NAME",
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
