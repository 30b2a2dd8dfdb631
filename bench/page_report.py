"""bench/page_bench.py's results: per page and backend the medians over rounds
(``summarise_page``), the ratios belka / bare, issue 12's targets (``targets_for``), the table
(``print_table``), and what the run ran on (``machine_info``, ``git_state``, ``js_versions``)."""
from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LONGTASK_MS = 50  # the Long Tasks API reports tasks of 50 ms or more only
TARGETS = {  # issue 12, on wasm: belka / bare at most
    "steady_wall_ms": 1.2, "second_visit_ms": 1.2, "reload_ms": 1.2, "cold_ms": 1.1,
}


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
