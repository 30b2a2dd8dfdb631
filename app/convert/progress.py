"""Step-by-step progress on the terminal, with the time each step took; and the interruption
that a step boundary must not let pass.

Ctrl-C and SIGTERM raise in the main thread wherever it is, and a few places there swallow any
exception (a callback from TensorFlow's C++, a ``__del__``): a conversion interrupted there would
carry on and publish. So the CLI's signal handlers also record the interruption (``interrupt``),
and every step raises it again on its way in and out (``raise_if_interrupted``).
"""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager

_pending: BaseException | None = None  # the interruption the CLI's handlers raised, if any


def interrupt(exc: BaseException):
    """Records ``exc`` (KeyboardInterrupt, or SystemExit for SIGTERM) and raises it."""
    global _pending
    _pending = exc
    raise exc


def raise_if_interrupted() -> None:
    if _pending is not None:
        raise _pending


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
            raise_if_interrupted()
            yield record
            raise_if_interrupted()
        finally:
            record["seconds"] = round(time.perf_counter() - start, 3)
            status = "done" if sys.exc_info()[0] is None else "FAILED"
            record["ok"] = status == "done"
            self._print(f"      {status} in {record['seconds']:.1f} s")
