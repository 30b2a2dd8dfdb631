"""Benchmark the predict API under load: throughput and latency with request batching on and off.

What it measures
----------------
MobileNetV2 1.0/224 is converted with the real CLI (``belka convert mobilenet-v2
--weights none --formats graph,saved``: seeded untrained weights, as this machine
cannot download the ImageNet ones; speed does not depend on the weight values)
into a temporary folder, or an already converted model is reused with
``--models DIR --model NAME``.

For batching on and then off, the real server (``belka serve``) is started as a
subprocess on 127.0.0.1 and a free port, with ``BELKA_BATCHING=1/0``,
``BELKA_BATCH_MAX`` (``--batch-max``, default 32) and ``BELKA_BATCH_WAIT_MS``
(``--batch-wait-ms``, default 5). Once /healthz answers, for each concurrency C in
1, 8, 32 (``--concurrency``):

1. a warm-up: ``--warmup-rounds`` x C requests (at least 4) from C workers, so that
   TensorFlow has seen the batch shapes that level produces, not measured;
2. the load: an asyncio generator (one ``httpx.AsyncClient`` whose connection pool
   holds exactly C connections) with exactly C workers, each sending
   ``POST /api/models/NAME/predict`` as soon as its previous answer came back (a
   closed loop), until ``--requests`` requests have been sent OR ``--seconds`` have
   passed, whichever comes first; requests still in flight then finish (each has
   a ``--timeout``), and the level is cancelled outright after
   ``--seconds + --timeout``.

Per level it records the completed requests, the errors by status (503 "busy",
the bounded queue's answer, counted on its own) or exception, the wall time
(first request sent -> last answer), throughput (answered requests / wall time),
client-side latency p50/p90/p99/max, the means of the timings the server puts in
each answer (``predictions[0].timings``: preprocess_ms, queue_ms, inference_ms,
batch_size), the images per model call (n / sum(1 / batch_size)), and the CPU
seconds used by the server process, by this load generator and by everything
else on the machine (from /proc), since client and server share the same cores.
The batching speed-up is throughput(on) / throughput(off) at each concurrency.

Last (skip with ``--no-model-cost``), the model call alone, in this process through
the server's own Classifier: wall and CPU ms per image at batch 1, 16 and 32 called
one after another, and at batch 1 from as many concurrent threads as the server's
default executor has (what batching off does), to tell the model's batching gain
apart from the rest of the request's cost.

Payload
-------
``--payload multipart`` (default, the real client path): JPEG files, a few
scikit-image photos scaled to 256 px on the short side (about 15-30 kB), sent
in turn, so the server pays a realistic but small decode + resize cost.
``--payload json``: ``{"instances": [[224][224][3] floats]}``, the photos already
preprocessed (with the server's own code). Beware: JSON spells every float32 out
in decimal (about 19 characters each), so one 224x224x3 image is about 3 MB of
text that the server must parse into nested Python lists before numpy sees it;
that path measures JSON parsing at least as much as the model.
``--payload float32``: the same tensors as raw little-endian float32 bytes
(``application/octet-stream`` with ``X-Shape: 1,224,224,3``, 602 kB each), and
``--payload npy``: as .npy files (``application/x-npy``): what a client that already
holds a tensor should send.

Bounded and local
-----------------
Everything runs on the loopback interface (the server binds 127.0.0.1 only; the
client ignores proxy settings). Every level is bounded in count (``--requests``)
and in time (``--seconds``, plus one ``--timeout`` for the stragglers); the
server is always stopped afterwards, also on errors and Ctrl-C.

Client and server share the machine: on 2 cores the load generator's own CPU
(HTTP, multipart encoding) is taken from the server, and other jobs on the
machine add noise; both are recorded per level ("cpu").

How to run
----------
From the repository root::

    .venv/bin/python bench/load_bench.py [--requests 500] [--seconds 30] \\
        [--concurrency 1,8,32] [--batch-max 32] [--batch-wait-ms 5] \\
        [--payload multipart|json|float32|npy] [--models DIR --model NAME] [--modes on,off] [--no-model-cost]
    .venv/bin/python bench/load_bench.py --engine ray [--replicas 1]    # Ray Serve beside uvicorn

With ``--engine ray`` (needs ``pip install -e '.[ray]'``) the same levels run against
``belka serve`` (uvicorn, batching on), ``belka serve --engine ray`` (Ray's ``@serve.batch``)
and Ray with a batch of one, one after another in the same run; the speed-up is Ray's own
(batch on / off) and the comparison with uvicorn is ``engine.ray_on_vs_uvicorn_on``.

Writes bench/results/load.json (``--out``) and prints a table. About 2-4 minutes on
2 CPU cores (conversion included).

Where things are: this file holds the load generator, the summaries, the in-process model cost
and the report; bench/load_inputs.py the model and the request bodies; bench/load_server.py the
server and its CPU accounting.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np

from load_inputs import TENSOR_HEADERS, convert, jpeg_photos, tensor_bodies
from load_server import CpuMeter, machine_busy_seconds, round_or_none, server

REPO = Path(__file__).resolve().parent.parent

TARGET_SPEEDUP = 1.6
TARGET_CONCURRENCY = 32
PACKAGES = ("httpx", "fastapi", "starlette", "uvicorn", "pydantic", "numpy", "Pillow", "tensorflow")


# ---------------------------------------------------------------- load generator

async def run_level(url: str, server_pid: int, model: str, payloads: list, payload_kind: str, concurrency: int,
                    requests: int, seconds: float, timeout: float, warmup: int) -> dict:
    import httpx

    endpoint = f"{url}/api/models/{model}/predict"
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def send(client: httpx.AsyncClient, i: int) -> httpx.Response:
        body = payloads[i % len(payloads)]
        if payload_kind == "multipart":
            return await client.post(endpoint, files={"file": (f"photo{i % len(payloads)}.jpg", body, "image/jpeg")})
        return await client.post(endpoint, content=body, headers=TENSOR_HEADERS[payload_kind])

    async with httpx.AsyncClient(limits=limits, timeout=timeout, trust_env=False) as client:
        # Warm-up: same concurrency, not measured.
        counter = iter(range(warmup))
        warmup_failures: dict[str, int] = {}

        async def warm() -> None:
            for i in counter:
                try:
                    response = await send(client, i)
                    if response.status_code != 200:
                        warmup_failures[str(response.status_code)] = warmup_failures.get(str(response.status_code), 0) + 1
                except httpx.HTTPError as exc:
                    warmup_failures[type(exc).__name__] = warmup_failures.get(type(exc).__name__, 0) + 1

        await asyncio.gather(*(warm() for _ in range(concurrency)))

        latencies: list[float] = []
        timings: list[dict] = []
        errors: dict[str, int] = {}
        sent = 0
        last_done = 0.0
        meter = CpuMeter(server_pid).start()
        started = time.perf_counter()
        deadline = started + seconds

        async def worker() -> None:
            nonlocal sent, last_done
            while sent < requests and time.perf_counter() < deadline:
                i = sent
                sent += 1
                t0 = time.perf_counter()
                try:
                    response = await send(client, i)
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                else:
                    key = None if response.status_code == 200 else str(response.status_code)
                t1 = time.perf_counter()
                last_done = max(last_done, t1)
                if key is None:
                    latencies.append((t1 - t0) * 1000)
                    timings.append(response.json()["predictions"][0]["timings"])
                else:
                    errors[key] = errors.get(key, 0) + 1

        tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
        _, pending = await asyncio.wait(tasks, timeout=seconds + timeout)
        for task in pending:  # a hard stop: nothing outlives the level
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if pending:
            errors["cancelled_at_hard_stop"] = len(pending)
            last_done = time.perf_counter()
        cpu = meter.stop()

    wall = max(last_done - started, 1e-9)
    result = summarize(latencies, timings, errors, sent, wall, requests, seconds, warmup, warmup_failures)
    result["cpu"] = cpu
    return result


def summarize(latencies, timings, errors, sent, wall, requests, seconds, warmup, warmup_failures) -> dict:
    lat = np.asarray(latencies)
    completed = len(latencies)
    busy = errors.get("503", 0)
    result = {
        "sent": sent,
        "completed": completed,
        "stopped_by": "count" if sent >= requests else "time",
        "errors_503": busy,
        "errors_other": {k: v for k, v in errors.items() if k != "503"},
        "wall_s": round(wall, 3),
        "throughput_rps": round(completed / wall, 2),
        "latency_ms": ({q: round(float(np.percentile(lat, int(q[1:]))), 1) for q in ("p50", "p90", "p99")}
                       | {"mean": round(float(lat.mean()), 1), "max": round(float(lat.max()), 1)})
        if completed else None,
        "warmup_requests": warmup,
        "warmup_failures": warmup_failures,
    }
    if timings:
        sizes = np.asarray([t["batch_size"] for t in timings], dtype=float)
        result["server_timings_mean"] = {
            key: round(float(np.mean([t[key] for t in timings])), 2)
            for key in ("preprocess_ms", "queue_ms", "inference_ms", "batch_size")}
        result["batch_size"] = {
            "min": int(sizes.min()), "p50": float(np.median(sizes)), "max": int(sizes.max()),
            # Every request of a batch of b answers with batch_size b, so sum(1/b) counts model calls.
            "images_per_model_call": round(len(sizes) / float(np.sum(1 / sizes)), 2),
            "model_calls": round(float(np.sum(1 / sizes)), 1),
        }
    return result


# ---------------------------------------------------------------- the model alone

def model_cost(models_dir: Path, model: str, threads: int = 6) -> dict:
    """The model call alone, in this process, through the server's own Classifier: wall and CPU
    milliseconds per image for serial calls at batch 1, 16 and 32, and for ``threads`` concurrent
    batch-1 calls (what batching off does: asyncio.to_thread on the default executor, which has
    min(32, cores + 4) threads). Run after the load, so TensorFlow never shares this process
    with the load generator."""
    import threading

    from app.inference.classifier import Classifier
    from app.registry import Registry

    classifier = Classifier(Registry(models_dir).get(model))
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (32, *classifier.input_shape)).astype(np.float32)

    def measure(label: str, calls: int, batch: int, workers: int = 1) -> tuple[str, dict]:
        def loop() -> None:
            for _ in range(calls):
                classifier.predict(images[:batch])
        loop_threads = [threading.Thread(target=loop) for _ in range(workers)]
        for _ in range(2):  # warm-up at this shape
            classifier.predict(images[:batch])
        busy, cpu, wall = machine_busy_seconds(), time.process_time(), time.perf_counter()
        for t in loop_threads:
            t.start()
        for t in loop_threads:
            t.join()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        n = calls * batch * workers
        others = None if busy is None else machine_busy_seconds() - busy - cpu
        return label, {"batch": batch, "concurrent_calls": workers, "images": n,
                       "wall_ms_per_image": round(wall * 1000 / n, 2), "cpu_ms_per_image": round(cpu * 1000 / n, 2),
                       "cores_used": round(cpu / wall, 2), "others_cpu_s": round_or_none(others, 2)}

    return dict([measure("batch1_serial", 40, 1), measure(f"batch1_{threads}_threads", 10, 1, threads),
                 measure("batch16_serial", 4, 16), measure("batch32_serial", 3, 32)])


# ---------------------------------------------------------------- report

def machine_info() -> dict:
    info = {"platform": platform.platform(), "machine": platform.machine(),
            "processor": platform.processor() or None, "cpu_count": os.cpu_count(),
            "python": platform.python_version()}
    with contextlib.suppress(AttributeError, OSError):
        info["cpu_affinity"] = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    return info


def versions() -> dict:
    found = {}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def print_table(results: dict, speedups: dict) -> None:
    print(f"\n{'batching':<10} {'conc':>4} {'done':>5} {'err':>4} {'503':>4} {'wall s':>6} {'req/s':>7} "
          f"{'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'prep ms':>7} {'queue ms':>8} {'infer ms':>8} "
          f"{'img/call':>8} {'srv cpu/req':>11} {'others cpu':>10}")
    for mode, levels in results.items():
        for c, r in levels.items():
            lat = r["latency_ms"] or {"p50": float("nan"), "p90": float("nan"), "p99": float("nan")}
            t = r.get("server_timings_mean", {})
            b = r.get("batch_size", {})
            cpu = r.get("cpu", {})
            per_req = (cpu["server_s"] * 1000 / r["completed"]) if cpu.get("server_s") and r["completed"] else None
            others = cpu.get("others_s")
            print(f"{mode:<10} {c:>4} {r['completed']:>5} {sum(r['errors_other'].values()):>4} {r['errors_503']:>4} "
                  f"{r['wall_s']:>6.1f} {r['throughput_rps']:>7.1f} {lat['p50']:>7.1f} {lat['p90']:>7.1f} "
                  f"{lat['p99']:>7.1f} {t.get('preprocess_ms', float('nan')):>7.1f} "
                  f"{t.get('queue_ms', float('nan')):>8.1f} {t.get('inference_ms', float('nan')):>8.1f} "
                  f"{b.get('images_per_model_call', float('nan')):>8.2f} "
                  f"{'' if per_req is None else f'{per_req:.1f} ms':>11} "
                  f"{'' if others is None else f'{others:.1f} s':>10}")
    print("\nbatching speed-up (throughput on / off): " +
          ", ".join(f"c={c}: {s:.2f}x" if s else f"c={c}: n/a" for c, s in speedups.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "load.json")
    parser.add_argument("--models", type=Path, default=None,
                        help="reuse this models folder instead of converting MobileNetV2 into a temp one")
    parser.add_argument("--model", default="mobilenet-v2", help="model name in --models (default mobilenet-v2)")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated levels (default 1,8,32)")
    parser.add_argument("--requests", type=int, default=500, help="requests per level at most (default 500)")
    parser.add_argument("--seconds", type=float, default=30, help="seconds per level at most (default 30)")
    parser.add_argument("--timeout", type=float, default=30, help="per-request timeout in seconds (default 30)")
    parser.add_argument("--warmup-rounds", type=int, default=2,
                        help="warm-up requests per level = rounds x concurrency, at least 4 (default 2)")
    parser.add_argument("--batch-max", type=int, default=32, help="BELKA_BATCH_MAX (default 32)")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0, help="BELKA_BATCH_WAIT_MS (default 5)")
    parser.add_argument("--engine", choices=("uvicorn", "ray"), default="uvicorn",
                        help="ray: Ray Serve (`belka serve --engine ray`) side by side with uvicorn: modes "
                             "uvicorn-on, ray-on, ray-off (Ray's batch of one); writes load-ray.json")
    parser.add_argument("--replicas", type=int, default=1, help="--engine ray: replicas per model (default 1)")
    parser.add_argument("--modes", default=None,
                        help="what to run, comma-separated: on,off (batching, uvicorn; the default) or, with "
                             "--engine ray, from uvicorn-on,uvicorn-off,ray-on,ray-off")
    parser.add_argument("--payload", choices=("multipart", "json", "float32", "npy"), default="multipart")
    parser.add_argument("--no-model-cost", action="store_true",
                        help="skip the final in-process measurement of the model call alone")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    ray = args.engine == "ray"
    modes = [m.strip() for m in (args.modes or ("uvicorn-on,ray-on,ray-off" if ray else "on,off")).split(",")
             if m.strip()]
    allowed = {"uvicorn-on", "uvicorn-off", "ray-on", "ray-off"} if ray else {"on", "off"}
    if not levels or min(levels) < 1 or args.requests < 1 or args.seconds <= 0 or set(modes) - allowed:
        parser.error(f"concurrency levels and --requests must be >= 1, --seconds > 0, --modes from "
                     f"{','.join(sorted(allowed))}")
    if ray and args.out == parser.get_default("out"):
        args.out = args.out.with_name("load-ray.json")

    began = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="belka-load-bench-"))
    results: dict[str, dict] = {}
    try:
        conversion = None
        if args.models is None:
            print("converting MobileNetV2 1.0/224 (--weights none --formats graph,saved) ...", file=sys.stderr)
            conversion = convert(tmp / "models")
            models_dir, model = tmp / "models", conversion["name"]
        else:
            models_dir, model = args.models.resolve(), args.model
        manifest = json.loads((models_dir / model / "manifest.json").read_text())

        photos = jpeg_photos()
        payloads = (list(photos.values()) if args.payload == "multipart"
                    else tensor_bodies(photos, manifest, args.payload))
        payload_bytes = [len(p) for p in payloads]

        for mode in modes:
            results[mode] = {}
            print(f"batching {mode}: starting the server ...", file=sys.stderr)
            engine, _, batching = mode.rpartition("-")
            with server(models_dir, model, batching == "on", args.batch_max, args.batch_wait_ms,
                        tmp / f"server-{mode}.log", engine or "uvicorn", args.replicas) as (url, proc):
                for c in levels:
                    print(f"  concurrency {c} ...", file=sys.stderr)
                    load_before = os.getloadavg()[0]
                    r = asyncio.run(run_level(url, proc.pid, model, payloads, args.payload, c, args.requests,
                                              args.seconds, args.timeout, max(4, args.warmup_rounds * c)))
                    r["loadavg_1min_before"] = round(load_before, 2)
                    results[mode][str(c)] = r
        cost = None
        if not args.no_model_cost:
            print("measuring the model call alone (in process) ...", file=sys.stderr)
            cost = model_cost(models_dir, model, threads=min(32, (os.cpu_count() or 1) + 4))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def ratios(a: str, b: str) -> dict:
        if a not in results or b not in results:
            return {}
        return {c: (round(results[a][c]["throughput_rps"] / results[b][c]["throughput_rps"], 2)
                    if results[b].get(c, {}).get("throughput_rps") else None) for c in results[a]}

    speedups = ratios("ray-on", "ray-off") if ray else ratios("on", "off")
    target = speedups.get(str(TARGET_CONCURRENCY))
    report = {
        "benchmark": "predict API under load: throughput and latency, request batching on vs off",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(),
        "versions": {"model": manifest.get("versions"), "packages": versions()},
        "model": {"name": model, "source": manifest.get("source"), "input": manifest.get("input"),
                  "weights": "none (seeded, untrained; speed does not depend on the values)"
                  if conversion else "as found in --models",
                  "converted_here": conversion is not None,
                  "convert_seconds": conversion["bench_wall_seconds"] if conversion else None},
        "settings": {"concurrency": levels, "requests_per_level": args.requests,
                     "seconds_per_level": args.seconds, "request_timeout_s": args.timeout,
                     "warmup_requests": {str(c): max(4, args.warmup_rounds * c) for c in levels},
                     "BELKA_BATCH_MAX": args.batch_max, "BELKA_BATCH_WAIT_MS": args.batch_wait_ms,
                     "payload": args.payload,
                     "payload_bytes": {"min": min(payload_bytes), "max": max(payload_bytes),
                                       "count": len(payload_bytes)},
                     "photos": list(photos), "host": "127.0.0.1 (loopback only)",
                     "client": "httpx.AsyncClient, closed loop, exactly C workers and C pooled connections"},
        "notes": ["throughput = answered requests / wall time (first request sent -> last answer)",
                  "latency is client-side, per request; server timings are means over answered requests",
                  "images_per_model_call = n / sum(1 / batch_size): every request of a batch reports its size",
                  "cpu: seconds used during the measured load (not the warm-up) by the server process, this "
                  "load generator, and the rest of the machine (other jobs: noise); client and server share "
                  "the same cores"],
        "results": results,
        "speedup_on_vs_off": speedups,
        **({"engine": {"ray_replicas_per_model": args.replicas,
                       "ray_on_vs_uvicorn_on": ratios("ray-on", "uvicorn-on"),
                       "note": "speedup_on_vs_off is Ray's: @serve.batch of BELKA_BATCH_MAX vs of one; cpu "
                               "server_s counts the Ray driver with every process it started"}} if ray else {}),
        "model_call_alone": cost,
        "target": {"concurrency": TARGET_CONCURRENCY, "speedup_at_least": TARGET_SPEEDUP,
                   "measured": target, "met": None if target is None else target >= TARGET_SPEEDUP},
        "bench_wall_seconds": round(time.perf_counter() - began, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(results, speedups)
    if ray:
        print("Ray on / uvicorn on (throughput): " + ", ".join(
            f"c={c}: {v:.2f}x" if v else f"c={c}: n/a" for c, v in report["engine"]["ray_on_vs_uvicorn_on"].items()))
    if cost:
        print("model call alone: " + ", ".join(
            f"{k} {v['wall_ms_per_image']:.1f} ms/img wall, {v['cpu_ms_per_image']:.1f} ms/img CPU"
            for k, v in cost.items()))
    print(f"wrote {args.out} ({report['bench_wall_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
