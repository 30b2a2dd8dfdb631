"""The server bench/load_bench.py loads: `belka serve` (uvicorn or Ray, batching on or off) on a free
port (``server``, through harness.server), and the CPU it uses, read from Linux's /proc
(``CpuMeter``: the server's processes, the load generator, the whole machine)."""
from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.request
from pathlib import Path

from harness.server import ServerDidNotStart, serve_process


@contextlib.contextmanager
def server(models_dir: Path, model: str, batching: bool, batch_max: int, batch_wait_ms: float, log: Path,
           engine: str = "uvicorn", replicas: int = 1):
    """`belka serve` on 127.0.0.1 and a free port (harness.server); yields (base URL, process);
    always stops it. On Ray (``engine="ray"``) batching off is Ray's batch of one (BELKA_BATCH_MAX=1).
    The log goes to a file, never a pipe: uvicorn logs every request, and a pipe nobody reads
    fills up and then blocks the server."""
    env = {"BELKA_HOST": "127.0.0.1", "BELKA_MODEL": model, "BELKA_BATCHING": "1" if batching else "0",
           "BELKA_BATCH_MAX": str(batch_max if batching or engine == "uvicorn" else 1),
           "BELKA_BATCH_WAIT_MS": str(batch_wait_ms)}
    args = ("--engine", "ray", "--replicas", str(replicas)) if engine == "ray" else ()
    with contextlib.ExitStack() as stack:
        try:
            url, proc = stack.enter_context(serve_process(
                models_dir, args=args, seconds=120 if engine == "uvicorn" else 300, log=log,
                stop_seconds=20 if engine == "uvicorn" else 90, **env))
        except ServerDidNotStart as exc:
            raise SystemExit(str(exc)) from None
        with urllib.request.urlopen(url + "/healthz", timeout=2) as answer:
            if model not in json.loads(answer.read())["models"]:
                raise SystemExit(f"the server does not see model {model!r} in {models_dir}")
        yield url, proc


# ---------------------------------------------------------------- CPU accounting (Linux /proc)

def _ticks() -> float:
    return float(os.sysconf("SC_CLK_TCK"))


def process_cpu_seconds(pid: int) -> float | None:
    """CPU seconds of the process and of the processes it started (a Ray driver's raylet, workers
    and replicas; uvicorn has none), reaped children included."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        own = (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / _ticks()
    except (OSError, IndexError, ValueError):
        return None
    children = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children.update(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return own + sum(process_cpu_seconds(child) or 0.0 for child in children)


def machine_busy_seconds() -> float | None:
    """CPU seconds all cores spent busy (not idle or iowait) since boot."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return (sum(values[:8]) - values[3] - values[4]) / _ticks()
    except (OSError, IndexError, ValueError):
        return None


class CpuMeter:
    """CPU seconds of the server, of this process and of the rest of the machine over one level."""

    def __init__(self, server_pid: int):
        self.pid = server_pid

    def start(self) -> "CpuMeter":
        self.begin = (process_cpu_seconds(self.pid), time.process_time(), machine_busy_seconds())
        return self

    def stop(self) -> dict:
        end = (process_cpu_seconds(self.pid), time.process_time(), machine_busy_seconds())
        server, client, machine = (None if a is None or b is None else b - a for a, b in zip(self.begin, end))
        self.result = {"server_s": round_or_none(server, 2), "load_generator_s": round_or_none(client, 2), "machine_busy_s": round_or_none(machine, 2),
                       "others_s": round_or_none(machine - server - client, 2) if None not in (server, client, machine)
                       else None}
        return self.result


def round_or_none(value, digits: int = 1):
    return None if value is None else round(float(value), digits)
