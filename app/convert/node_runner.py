"""Running a model in the browser's runtime, in Node: one runner script (tfjs_runner.mjs for TF.js,
ort_runner.mjs for ONNX Runtime Web) per call, given a request file and the probe batch, answering
one JSON line. The plumbing both checks share: finding Node, the probe batch as raw float32, the
time limit, reading the answer.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from app.convert.errors import BelkaError, VerificationFailed


@contextlib.contextmanager
def workspace(what: str, batch: np.ndarray) -> Iterator[tuple[Path, dict]]:
    """A temporary folder holding ``batch`` as input.bin, and the request's "input" entry; BelkaError
    when Node is missing (``what``: the runtime the check needs, e.g. "the TF.js models")."""
    if shutil.which("node") is None:
        raise BelkaError(f"Node.js is needed to check {what} (`node` is not on PATH); "
                         "install Node 18+ and run `npm ci` in the Belka folder.")
    with tempfile.TemporaryDirectory(prefix="belka-node-") as tmp:
        tmp = Path(tmp)
        (tmp / "input.bin").write_bytes(np.ascontiguousarray(batch, dtype=np.float32).tobytes())
        yield tmp, {"path": str(tmp / "input.bin"), "shape": list(batch.shape), "dtype": "float32"}


def run(runner: Path, request: dict, tmp: Path, runtime: str, timeout_s: float) -> tuple[int, dict]:
    """(exit code, the runner's last JSON line, or {"error": its stderr}) for ``request``;
    VerificationFailed when it takes more than ``timeout_s`` (``runtime``: "TF.js"...)."""
    (tmp / "request.json").write_text(json.dumps(request))
    try:
        proc = subprocess.run([shutil.which("node"), str(runner), str(tmp / "request.json")],
                              capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise VerificationFailed(f"{runtime} took more than {timeout_s:.0f} s to run the model") from exc
    last = (proc.stdout.strip().splitlines() or [""])[-1]
    try:
        reply = json.loads(last)
    except json.JSONDecodeError:
        reply = {"error": (proc.stderr.strip() or last or "no output")[-800:]}
    return proc.returncode, reply
