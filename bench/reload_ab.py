"""One change to the page's code, measured side by side: Belka's classify page served from
static/ at a git ref (A, ``--base``, default HEAD) and from the working tree's static/ (B),
reloaded (or opened again in a new tab: ``--mode second``; or in a fresh profile: ``--mode cold``)
in turns, N times each; or, with
``--mode photo``, both pages kept open and given the photo in turns, N classifications each.

Why: a page load here moves by 10-30% from one run to the next (2 shared cores), more than most
changes to the page gain or lose. Two pages measured in alternation share the drift; two runs
one after the other do not. bench/page_bench.py compares Belka with a bare TF.js page; this
compares Belka with itself.

How it runs: two servers (Belka's own app; only static/ differs, both run the working tree's
Python), two fresh Chromium profiles with Chromium's own GPU setup (as page_bench.py runs wasm
and cpu), one first visit each; then N rounds, A first in even rounds and B first in odd ones.
Each load gives the photo at DOMContentLoaded (page_bench's init script) and records:

- ``answer_ms``: the first answer for the photo, since navigation start (page_bench's
  "reload" and "second visit" figures);
- ``dom_content_loaded_ms``.

With ``--mode photo`` each round is 5 classifications of the photo on each warm page, and a
sample is one classification's ``answer_ms``: the wall time of ``belka.classifyBlob`` (page_bench's
"photo -> top-5"), with the worker's ``inference_ms``.

Results: the medians, B/A and every sample, printed and written to
``bench/results/reload-ab.json`` (``--out``), with the commit, the changed files and the
machine's load. Run it on an idle machine::

    .venv/bin/python bench/reload_ab.py [--base REF] [--reloads 20] [--mode reload|second|cold|photo]
        [--backend wasm] [--models DIR --model NAME]

Without ``--models`` it converts MobileNetV2 1.0/224 (untrained, ``--weights none``) first.
20 reloads of each take about 3 minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from harness.chromium import CHROMIUM
from harness.server import free_port
from page_report import fmt, git_state, machine_info, ratio  # this folder's page benchmark: its pages' helpers
from page_round import BACKENDS, FIRST_ANSWER, INIT_SCRIPT, STEADY, browser_args, r1
from page_setup import REPO, chelsea_jpeg, convert, server

SIDES = ("A", "B")
PHOTOS_PER_TURN = 5
KEYS = ("answer_ms", "dom_content_loaded_ms", "inference_ms")  # the medians summarised, where samples have them


def static_at(ref: str, folder: Path) -> Path:
    """static/ as committed at ``ref``, extracted into ``folder``; returns its path."""
    archive = subprocess.run(["git", "archive", "--format=tar", ref, "static"], cwd=REPO,
                             capture_output=True, check=False)
    if archive.returncode != 0:
        sys.exit(f"git archive {ref} static failed: {archive.stderr.decode(errors='replace').strip()}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    return folder / "static"


def serve_static(models_dir: Path, model: str, static_dir: Path):
    """Belka's app with ``static_dir`` as its static folder, on a free port (page_setup.server)."""
    port = free_port()
    code = ("import sys, uvicorn; from pathlib import Path; from app.main import create_app; "
            "from app.settings import Settings; "
            "uvicorn.run(create_app(Settings.from_env(models_dir=Path(sys.argv[1]), "
            "static_dir=Path(sys.argv[2]), default_model=sys.argv[3])), "
            "host='127.0.0.1', port=int(sys.argv[4]), log_level='warning')")
    cmd = [sys.executable, "-c", code, str(models_dir), str(static_dir), model, str(port)]
    return server(cmd, {}, port, f"the server of {static_dir}")


def open_profile(playwright, folder: Path, args, photo: str):
    """Chromium with a fresh profile in ``folder`` and page_bench's init script."""
    context = playwright.chromium.launch_persistent_context(
        str(folder), executable_path=CHROMIUM, args=browser_args(args.backend, args), headless=True)
    context.add_init_script(INIT_SCRIPT.replace("__PHOTO__", photo))
    return context


def load(context, page, url: str, mode: str, timeout_ms: float):
    """One reload (or a new tab at ``url``); returns (page, sample)."""
    if mode == "second":
        fresh = context.new_page()
        page.close()
        page = fresh
        page.goto(url, wait_until="domcontentloaded")
    else:
        page.reload(wait_until="domcontentloaded")
    return page, first_answer(page, timeout_ms)


def first_answer(page, timeout_ms: float) -> dict:
    """The sample of a load: the photo's first answer (page_bench's FIRST_ANSWER)."""
    first = page.evaluate(FIRST_ANSWER, timeout_ms)
    if first.get("error") or not (first.get("ready") or {}).get("ok"):
        return {"ok": False, "error": first.get("error") or first.get("ready")}
    return {"ok": True, "answer_ms": r1(first["at"]), "dom_content_loaded_ms": r1(first["domContentLoaded"]),
            "top5": first["result"]["top5"]}


def classify_photo(page, timeout_ms: float) -> list[dict]:
    """PHOTOS_PER_TURN classifications of the photo on a warm page (page_bench's STEADY)."""
    steady = page.evaluate(STEADY, {"runs": PHOTOS_PER_TURN, "timeoutMs": timeout_ms})
    return [{"ok": True, "answer_ms": r1(wall), "inference_ms": r1(inference), "top5": steady["top5"]}
            for wall, inference in zip(steady["wall"], steady["inference"])]


def summarise(samples: dict) -> dict:
    summary = {}
    for side in SIDES:
        good = [s for s in samples[side] if s["ok"]]
        summary[side] = {"loads": len(samples[side]), "ok": len(good)}
        for key in KEYS:
            values = [s[key] for s in good if s.get(key) is not None]
            summary[side][key] = r1(statistics.median(values)) if values else None
    summary["ratio_b_over_a"] = {key: ratio(summary["B"][key], summary["A"][key]) for key in KEYS}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="HEAD", help="the git ref whose static/ is A (default HEAD)")
    parser.add_argument("--reloads", type=int, default=20, help="loads of each side (default 20)")
    parser.add_argument("--mode", choices=("reload", "second", "cold", "photo"), default="reload",
                        help="reload the page, open it in a new tab of the same profile, open it in a fresh "
                             "profile (cold), or classify the photo again on the open page (default reload)")
    parser.add_argument("--backend", choices=BACKENDS, default="wasm", help="the page's ?backend= (default wasm)")
    parser.add_argument("--models", type=Path, help="an existing models folder (with --model)")
    parser.add_argument("--model", help="the classifier in --models")
    parser.add_argument("--timeout", type=float, default=120, help="seconds per load (default 120)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "reload-ab.json")
    args = parser.parse_args()
    if bool(args.models) != bool(args.model):
        parser.error("--models and --model go together")
    if args.reloads < 1:
        parser.error("--reloads must be at least 1")
    args.swiftshader_everywhere = False  # page_round.browser_args: SwiftShader only for webgl/webgpu

    from playwright.sync_api import sync_playwright

    started = time.perf_counter()
    photo = chelsea_jpeg()
    samples = {side: [] for side in SIDES}
    with tempfile.TemporaryDirectory(prefix="belka-ab-") as tmp_name, contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        models_dir, model = (args.models, args.model) if args.models else (tmp / "models", None)
        if model is None:
            model = convert(models_dir, timeout=1800)
        statics = {"A": static_at(args.base, tmp / "a"),
                   "B": Path(shutil.copytree(REPO / "static", tmp / "b" / "static"))}
        urls = {side: stack.enter_context(serve_static(models_dir, model, statics[side])) + f"/?backend={args.backend}"
                for side in SIDES}
        playwright = stack.enter_context(sync_playwright())
        contexts, pages = {}, {}
        stack.callback(lambda: [context.close() for context in contexts.values()])
        for side in SIDES:
            context = open_profile(playwright, tmp / f"profile-{side}", args, photo)
            contexts[side], pages[side] = context, context.pages[0]
            pages[side].goto(urls[side], wait_until="domcontentloaded")
            first = pages[side].evaluate(FIRST_ANSWER, args.timeout * 1000)
            if first.get("error"):
                sys.exit(f"{side}'s first visit failed: {first['error']}")
            time.sleep(1)
        for round_ in range(args.reloads):
            for side in (SIDES if round_ % 2 == 0 else SIDES[::-1]):
                if args.mode == "photo":
                    turn = classify_photo(pages[side], args.timeout * 1000)
                elif args.mode == "cold":
                    contexts[side].close()
                    contexts[side] = open_profile(playwright, tmp / f"profile-{side}-{round_}", args, photo)
                    pages[side] = contexts[side].pages[0]
                    pages[side].goto(urls[side], wait_until="domcontentloaded")
                    turn = [first_answer(pages[side], args.timeout * 1000)]
                else:
                    pages[side], sample = load(contexts[side], pages[side], urls[side], args.mode,
                                               args.timeout * 1000)
                    turn = [sample]
                for sample in turn:
                    sample["load_average"] = r1(os.getloadavg()[0])
                samples[side].extend(turn)
                time.sleep(0.3)
            a, b = samples["A"][-1], samples["B"][-1]
            print(f"  round {round_ + 1}: A {a.get('answer_ms', a.get('error'))} ms, "
                  f"B {b.get('answer_ms', b.get('error'))} ms", file=sys.stderr, flush=True)

    summary = summarise(samples)
    result = {
        "benchmark": "reload_ab", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "total_seconds": round(time.perf_counter() - started),
        "machine": machine_info(), "git": git_state(),
        "settings": {"base": args.base, "reloads": args.reloads, "mode": args.mode, "backend": args.backend,
                     "model": model, "chromium_flags": browser_args(args.backend, args)},
        "how": {"A": f"static/ at {args.base}", "B": "static/ in the working tree",
                "answer_ms": ("the wall time of one classifyBlob on the open page (median)" if args.mode == "photo"
                              else "the photo's first answer since navigation start (median)")},
        "summary": summary, "samples": samples,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\n{args.mode}, {args.backend}, {args.reloads} each, interleaved ({summary['A']['ok']} and "
          f"{summary['B']['ok']} answered)")
    print(f"{'':24}{'A: ' + args.base:>14}{'B: working tree':>18}{'B/A':>7}")
    rows = ((("answer_ms", "photo -> top-5 ms"), ("inference_ms", "inference ms")) if args.mode == "photo" else
            (("dom_content_loaded_ms", "DOMContentLoaded ms"), ("answer_ms", "first answer ms")))
    for key, label in rows:
        print(f"{label:24}{fmt(summary['A'][key], width=14)}{fmt(summary['B'][key], width=18)}"
              f"{fmt(summary['ratio_b_over_a'][key], '.2f', 7)}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
