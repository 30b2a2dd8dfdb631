"""Request batching: images that arrive together go through the model in one call.

Each model has one Batcher and one worker, so one model call runs at a time.
``submit(images)`` queues the images and waits. The worker takes the first waiting
request plus every request already queued behind it (up to ``max_batch`` images),
and while other requests are still ``arriving`` (being received and preprocessed)
it waits up to ``max_wait_ms`` for them; then it runs the model once, off the event
loop, and hands every request its rows. Under load, requests pile up while the
previous batch runs, so batches form without waiting; a lone request never waits.
A TF CPU call costs about 15 ms for one MobileNetV2 image but 7 ms per image at
batch 32.

The queue is bounded (``max_queue`` images waiting or running): beyond it,
``submit`` raises QueueFull at once (the API answers 503 with Retry-After) instead
of letting memory and latency grow without limit.

With ``max_batch == 1`` batching is off: the worker makes one model call per
request, one after another (the baseline the load benchmark compares against).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from app.inference.classifier import Prediction


class QueueFull(Exception):
    """Too many images are waiting; try again shortly."""


@dataclass
class BatchResult:
    prediction: Prediction       # this request's rows only
    batch_size: int              # images in the model call that served it
    queue_ms: float              # time spent waiting for that call to start


class Batcher:
    def __init__(self, run: Callable[[np.ndarray], Prediction], max_batch: int = 32,
                 max_wait_ms: float = 5.0, max_queue: int = 256):
        self.run = run
        self.max_batch = max(1, max_batch)
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self.in_flight = 0  # images queued or running
        self.arriving = 0   # requests being received/preprocessed: worth waiting for
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        # The model's own thread: decoding and preprocessing never queue behind a model call.
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="belka-model")

    async def submit(self, images: np.ndarray) -> BatchResult:
        count = len(images)
        if self.in_flight + count > self.max_queue:
            raise QueueFull(f"{self.in_flight} images are already waiting (limit {self.max_queue})")
        self.in_flight += count
        loop = asyncio.get_running_loop()
        try:
            future = loop.create_future()
            self._ensure_worker()
            self._queue.put_nowait((images, future, loop.time()))
            return await future
        finally:
            self.in_flight -= count

    @contextlib.contextmanager
    def incoming(self):
        """Marks a request as arriving while it is read and preprocessed, so the worker
        waits (up to max_wait_ms) for it to join the batch."""
        self.arriving += 1
        try:
            yield
        finally:
            self.arriving -= 1

    def _ensure_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._work())

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=False)

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        carry = None  # a request that did not fit in the previous batch: it starts the next one
        while True:
            items = [carry if carry is not None else await self._queue.get()]
            carry = None
            count = len(items[0][0])
            deadline = loop.time() + self.max_wait
            while count < self.max_batch:
                if not self._queue.empty():
                    item = self._queue.get_nowait()
                else:
                    remaining = deadline - loop.time()
                    if remaining <= 0 or self.arriving == 0:
                        break  # nobody else is on the way: run now
                    try:
                        item = await asyncio.wait_for(self._queue.get(), remaining)
                    except (asyncio.TimeoutError, TimeoutError):
                        break
                if count + len(item[0]) > self.max_batch:
                    carry = item
                    break
                items.append(item)
                count += len(item[0])
            started = loop.time()
            try:
                batch = items[0][0] if len(items) == 1 else np.concatenate([images for images, _, _ in items])
                prediction = await loop.run_in_executor(self._executor, self.run, batch)
            except Exception as exc:  # noqa: BLE001 - every waiting request gets the failure
                for _, future, _ in items:
                    if not future.done():
                        future.set_exception(exc)
                continue
            offset = 0
            for images, future, queued in items:
                rows = slice(offset, offset + len(images))
                offset += len(images)
                if not future.done():  # the client may have gone away
                    future.set_result(BatchResult(
                        Prediction(prediction.outputs[rows], prediction.probabilities[rows],
                                   prediction.inference_ms),
                        batch_size=count, queue_ms=(started - queued) * 1000))
