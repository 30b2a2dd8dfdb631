"""tensorflowjs's SavedModel -> TF.js graph model conversion, in this process or in a child.

The conversion must run where TensorFlow has oneDNN off (export.write_graph_model says why).
`belka convert` turns it off for its whole process (tf_runtime.conversion_process), so there
it runs here: ``convert_graph``. A server keeps oneDNN, so a conversion inside it (a taught
model's save) runs in ``CHILD``: one Python process with ``TF_ENABLE_ONEDNN_OPTS=0``, started
at the first conversion and kept for the next ones (importing TensorFlow and tensorflowjs
again took about 4 s a conversion). It takes one request at a time as a JSON line on its
stdin and answers with one JSON line; it leaves when its stdin closes (the parent is gone) or
after ``IDLE_EXIT_SECONDS`` without a request, and the parent starts a new one after
``IDLE_RESTART_SECONDS``, before the child would leave on its own.
"""
from __future__ import annotations

import atexit
import json
import os
import re
import select
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

from app import tf_runtime
from app.convert.errors import BadInput

SHARD_BYTES = 4 * 1024 * 1024
IDLE_RESTART_SECONDS = 300
IDLE_EXIT_SECONDS = 2 * IDLE_RESTART_SECONDS


def convert_graph(saved_model_dir: Path, out: Path, signature: str) -> None:
    """The conversion in this process: BadInput naming the ops when TF.js has no kernel for some."""
    tf_runtime.tensorflowjs()
    from tensorflowjs.converters import tf_saved_model_conversion_v2 as saved_model_conversion

    try:
        with tf_runtime.quiet_stdout(), tf_runtime.quiet_native():
            saved_model_conversion.convert_tf_saved_model(
                str(saved_model_dir), str(out), signature_def=signature, saved_model_tags="serve",
                quantization_dtype_map=None, weight_shard_size_bytes=SHARD_BYTES)
    except ValueError as exc:
        match = re.search(r"Unsupported Ops in the model(?: before optimization)?\s*(.*)", str(exc))
        if not match:
            raise
        ops = ", ".join(sorted({op.strip() for op in match.group(1).split(",") if op.strip()}))
        raise BadInput(f"TF.js has no kernel for these ops of the model: {ops}; the browser cannot run it. "
                       "Rebuild the model without them (or cut it before them), then convert again") from exc


class ConverterChild:
    """The kept child process (see the module's docstring). Thread-safe: one conversion at a time."""

    def __init__(self):
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._stderr = None  # the child's stderr, a temporary file: read when it fails
        self._last_used = 0.0

    @property
    def pid(self) -> int | None:
        """The running child's process id, or None when there is none."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def convert(self, saved_model_dir: Path, out: Path, signature: str) -> None:
        """``convert_graph`` in the child: BadInput as there, RuntimeError when the child fails."""
        request = json.dumps({"saved_model": str(saved_model_dir), "out": str(out), "signature": signature})
        with self._lock:
            proc = self._running()
            try:
                proc.stdin.write(request + "\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
            except BrokenPipeError:
                line = ""
            except BaseException:  # interrupted mid-conversion: the child must not write on
                self._stop()
                raise
            if not line:
                status = proc.wait()
                detail = self._stderr_tail()
                self._stop()
                raise RuntimeError(f"The TF.js graph conversion (a child process with oneDNN off) failed with exit "
                                   f"status {status}:\n{detail}")
            self._last_used = time.monotonic()
        reply = json.loads(line)
        if "bad_input" in reply:
            raise BadInput(reply["bad_input"])
        if "error" in reply:
            raise RuntimeError(f"The TF.js graph conversion (a child process with oneDNN off) failed:\n{reply['error']}")

    def stop(self) -> None:
        """Ends the child (the next conversion starts another)."""
        with self._lock:
            self._stop()

    def _running(self) -> subprocess.Popen:
        idle = time.monotonic() - self._last_used
        if self._proc is not None and (self._proc.poll() is not None or idle > IDLE_RESTART_SECONDS):
            self._stop()
        if self._proc is None:
            self._stderr = tempfile.TemporaryFile()
            env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0"}  # the child quiets TF itself (tf_runtime)
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "app.convert.tfjs_graph"], env=env, text=True, bufsize=1,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                cwd=Path(__file__).resolve().parents[2])
            self._last_used = time.monotonic()
        return self._proc

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdin.close()
            proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()[-3000:].decode(errors="replace")


CHILD = ConverterChild()
atexit.register(CHILD.stop)


def _child_main() -> int:
    """``python -m app.convert.tfjs_graph``: ConverterChild's child. Answers on what was its stdout;
    anything else printed there goes to stderr instead."""
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], IDLE_EXIT_SECONDS)
        line = sys.stdin.readline() if ready else ""
        if not line:  # idle too long, or the parent is gone
            return 0
        request = json.loads(line)
        try:
            convert_graph(Path(request["saved_model"]), Path(request["out"]), request["signature"])
            reply = {"ok": True}
        except BadInput as exc:
            reply = {"bad_input": str(exc)}
        except Exception:  # noqa: BLE001 - said to the parent, which raises it
            reply = {"error": traceback.format_exc()[-3000:]}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    sys.exit(_child_main())
