"""Step-by-step progress on the terminal, with the time each step took."""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager


class Progress:
    """Prints ``[2/6] Converting to a TF.js graph model ... 4.7 s`` lines to stderr."""

    def __init__(self, total: int, stream=None, enabled: bool = True):
        self.total = total
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.steps: list[dict] = []

    def _print(self, text: str, end: str = "\n") -> None:
        if self.enabled:
            print(text, end=end, file=self.stream, flush=True)

    def note(self, text: str) -> None:
        self._print(f"      {text}")

    def warn(self, text: str) -> None:
        self._print(f"WARNING: {text}")

    @contextmanager
    def step(self, title: str):
        index = len(self.steps) + 1
        self._print(f"[{index}/{self.total}] {title} ...")
        start = time.perf_counter()
        record = {"step": title, "seconds": None, "ok": False}
        self.steps.append(record)
        try:
            yield record
        finally:
            record["seconds"] = round(time.perf_counter() - start, 3)
            status = "done" if sys.exc_info()[0] is None else "FAILED"
            record["ok"] = status == "done"
            self._print(f"      {status} in {record['seconds']:.1f} s")
