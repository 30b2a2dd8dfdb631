"""app.inference.batching.Batcher with a fake model: pure asyncio, no TensorFlow.

Every image is a row [value]; the fake model answers outputs = 2 * value and
probabilities = value, so each request can check that it got its own rows, in order.
"""
from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from app.inference.batching import Batcher, BatchResult, QueueFull
from app.inference.classifier import Prediction


class FakeModel:
    """Records the batch sizes it was called with; optionally blocks, sleeps or fails."""

    def __init__(self, sleep_s: float = 0.0, fail: Exception | None = None):
        self.calls: list[int] = []
        self.sleep_s = sleep_s
        self.fail = fail
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()
        self.concurrent = 0
        self.max_concurrent = 0
        self._lock = threading.Lock()

    def __call__(self, batch: np.ndarray) -> Prediction:
        with self._lock:
            self.calls.append(len(batch))
            self.concurrent += 1
            self.max_concurrent = max(self.max_concurrent, self.concurrent)
        self.started.set()
        try:
            assert self.release.wait(10), "the test never released the fake model"
            if self.sleep_s:
                time.sleep(self.sleep_s)
            if self.fail is not None:
                raise self.fail
            rows = batch.reshape(len(batch), -1).astype(np.float32)
            return Prediction(outputs=rows * 2, probabilities=rows, inference_ms=1.5)
        finally:
            with self._lock:
                self.concurrent -= 1


def images(first: int, count: int) -> np.ndarray:
    """``count`` one-value images numbered first, first+1, ..."""
    return np.arange(first, first + count, dtype=np.float32).reshape(count, 1)


def assert_own_rows(result: BatchResult, sent: np.ndarray) -> None:
    np.testing.assert_array_equal(result.prediction.probabilities, sent)
    np.testing.assert_array_equal(result.prediction.outputs, sent * 2)
    assert result.prediction.inference_ms == 1.5


def run(coro, timeout: float = 20):
    """Run ``coro`` on a fresh loop; a hang fails the test instead of blocking the suite."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_concurrent_submits_are_merged_into_one_call():
    model = FakeModel()
    batcher = Batcher(model, max_batch=32, max_wait_ms=200)

    async def scenario():
        sent = [images(10 * i, 1) for i in range(5)]
        results = await asyncio.gather(*(batcher.submit(x) for x in sent))
        await batcher.close()
        return sent, results

    sent, results = run(scenario())
    assert model.calls == [5]
    for x, result in zip(sent, results):
        assert_own_rows(result, x)
        assert result.batch_size == 5
        assert result.queue_ms >= 0


def test_batches_never_exceed_max_batch():
    model = FakeModel()
    batcher = Batcher(model, max_batch=4, max_wait_ms=200)

    async def scenario():
        sent = [images(100 * i, 1) for i in range(10)]
        results = await asyncio.gather(*(batcher.submit(x) for x in sent))
        await batcher.close()
        return sent, results

    sent, results = run(scenario())
    assert model.calls == [4, 4, 2]
    for x, result in zip(sent, results):
        assert_own_rows(result, x)
    assert sorted(r.batch_size for r in results) == [2, 2, 4, 4, 4, 4, 4, 4, 4, 4]


def test_multi_image_requests_never_overflow_max_batch():
    """A request that does not fit in the batch being built starts the next one."""
    model = FakeModel()
    batcher = Batcher(model, max_batch=4, max_wait_ms=200)

    async def scenario():
        sent = [images(0, 3), images(10, 3), images(20, 1), images(30, 2)]
        results = await asyncio.gather(*(batcher.submit(x) for x in sent))
        await batcher.close()
        return sent, results

    sent, results = run(scenario())
    assert sum(model.calls) == 9
    assert all(size <= 4 for size in model.calls), model.calls
    for x, result in zip(sent, results):
        assert_own_rows(result, x)
        assert len(result.prediction.outputs) == len(x)


def test_a_request_larger_than_max_batch_still_runs_in_one_call():
    model = FakeModel()
    batcher = Batcher(model, max_batch=4, max_wait_ms=50)

    async def scenario():
        result = await batcher.submit(images(0, 6))
        await batcher.close()
        return result

    result = run(scenario())
    assert model.calls == [6]
    assert_own_rows(result, images(0, 6))
    assert result.batch_size == 6


def test_each_request_gets_its_own_rows_in_order():
    model = FakeModel()
    batcher = Batcher(model, max_batch=32, max_wait_ms=200)

    async def scenario():
        sent = [images(0, 1), images(100, 3), images(200, 2), images(300, 4)]
        results = await asyncio.gather(*(batcher.submit(x) for x in sent))
        await batcher.close()
        return sent, results

    sent, results = run(scenario())
    assert model.calls == [10]
    for x, result in zip(sent, results):
        assert_own_rows(result, x)
        assert result.batch_size == 10


def test_max_wait_merges_early_arrivals_and_not_late_ones():
    model = FakeModel()
    batcher = Batcher(model, max_batch=32, max_wait_ms=300)

    async def later(delay_s: float, x: np.ndarray) -> BatchResult:
        with batcher.incoming():  # being received: the worker waits for it
            await asyncio.sleep(delay_s)
        return await batcher.submit(x)

    async def scenario():
        # B comes 20 ms after A, well inside A's 300 ms window: one call.
        merged = await asyncio.gather(batcher.submit(images(0, 1)), later(0.02, images(1, 1)))
        # D comes 900 ms after C, long after C's window closed: two calls.
        separate = await asyncio.gather(batcher.submit(images(2, 1)), later(0.9, images(3, 1)))
        await batcher.close()
        return merged, separate

    merged, separate = run(scenario())
    assert model.calls == [2, 1, 1]
    assert [r.batch_size for r in merged] == [2, 2]
    assert [r.batch_size for r in separate] == [1, 1]
    # A request waits out the window for one still arriving, and not much longer.
    assert 290 <= separate[0].queue_ms < 2000, separate[0].queue_ms


def test_a_lone_request_does_not_wait():
    model = FakeModel()
    batcher = Batcher(model, max_batch=32, max_wait_ms=30_000)

    async def scenario():
        result = await batcher.submit(images(0, 1))
        await batcher.close()
        return result

    result = run(scenario())
    assert model.calls == [1]
    assert result.queue_ms < 5000  # nobody was arriving: no 30 s wait


def test_a_full_batch_does_not_wait_for_max_wait():
    model = FakeModel()
    batcher = Batcher(model, max_batch=2, max_wait_ms=30_000)

    async def scenario():
        start = time.perf_counter()
        results = await asyncio.gather(batcher.submit(images(0, 1)), batcher.submit(images(1, 1)))
        elapsed = time.perf_counter() - start
        await batcher.close()
        return results, elapsed

    results, elapsed = run(scenario())
    assert model.calls == [2]
    assert elapsed < 5, f"a full batch waited {elapsed:.1f} s"
    assert all(r.queue_ms < 5000 for r in results)


def test_an_exception_in_run_reaches_every_waiting_request_and_the_worker_survives():
    model = FakeModel(fail=RuntimeError("boom"))
    batcher = Batcher(model, max_batch=32, max_wait_ms=100)

    async def scenario():
        outcomes = await asyncio.gather(*(batcher.submit(images(i, 1)) for i in range(3)),
                                        return_exceptions=True)
        in_flight_after_failure = batcher.in_flight
        model.fail = None
        after = await batcher.submit(images(7, 2))
        await batcher.close()
        return outcomes, in_flight_after_failure, after

    outcomes, in_flight_after_failure, after = run(scenario())
    assert model.calls == [3, 2]
    assert all(isinstance(o, RuntimeError) and str(o) == "boom" for o in outcomes), outcomes
    assert in_flight_after_failure == 0
    assert_own_rows(after, images(7, 2))


def test_a_batch_that_cannot_be_assembled_fails_its_requests_instead_of_hanging():
    model = FakeModel()
    batcher = Batcher(model, max_batch=32, max_wait_ms=100)

    async def scenario():
        odd = np.zeros((1, 2), np.float32)  # a different image shape: np.concatenate fails
        outcomes = await asyncio.gather(batcher.submit(images(0, 1)), batcher.submit(odd),
                                        return_exceptions=True)
        after = await batcher.submit(images(5, 1))
        await batcher.close()
        return outcomes, after

    outcomes, after = run(scenario(), timeout=10)
    assert all(isinstance(o, ValueError) for o in outcomes), outcomes
    assert_own_rows(after, images(5, 1))


@pytest.mark.parametrize("max_batch", [32, 1], ids=["batching", "no-batching"])
def test_queue_full_when_in_flight_would_exceed_max_queue(max_batch):
    model = FakeModel()
    model.release.clear()
    batcher = Batcher(model, max_batch=max_batch, max_wait_ms=1, max_queue=3)

    async def scenario():
        first = asyncio.create_task(batcher.submit(images(0, 2)))
        while not model.started.is_set():  # the model is now running (and blocked) on 2 images
            await asyncio.sleep(0.005)
        assert batcher.in_flight == 2
        with pytest.raises(QueueFull, match="limit 3"):
            await batcher.submit(images(10, 2))  # 2 + 2 > 3: refused at once
        assert batcher.in_flight == 2  # the refused request left no trace
        second = asyncio.create_task(batcher.submit(images(20, 1)))  # 2 + 1 = 3: accepted
        await asyncio.sleep(0.05)
        assert batcher.in_flight == 3
        with pytest.raises(QueueFull):
            await batcher.submit(images(30, 1))
        model.release.set()
        results = await asyncio.gather(first, second)
        in_flight = batcher.in_flight
        again = await batcher.submit(images(40, 3))  # room again once they are done
        await batcher.close()
        return results, in_flight, again

    (first, second), in_flight, again = run(scenario())
    assert in_flight == 0
    assert_own_rows(first, images(0, 2))
    assert_own_rows(second, images(20, 1))
    assert_own_rows(again, images(40, 3))


def test_batching_off_calls_run_once_per_request_one_at_a_time():
    model = FakeModel(sleep_s=0.2)
    batcher = Batcher(model, max_batch=1, max_wait_ms=1000)

    async def scenario():
        sent = [images(0, 1), images(10, 2), images(20, 1), images(30, 3)]
        results = await asyncio.gather(*(batcher.submit(x) for x in sent))
        return sent, results

    sent, results = run(scenario())
    assert sorted(model.calls) == [1, 1, 2, 3]
    assert model.max_concurrent == 1  # one model call per request, through the one worker
    for x, result in zip(sent, results):
        assert_own_rows(result, x)
        assert result.batch_size == len(x)
        assert result.queue_ms >= 0.0
    assert batcher.in_flight == 0


def test_close_stops_the_worker():
    model = FakeModel()
    batcher = Batcher(model, max_batch=8, max_wait_ms=1)

    async def scenario():
        await batcher.submit(images(0, 1))
        worker = batcher._worker
        await batcher.close()
        return worker

    worker = run(scenario())
    assert worker is not None and worker.done()
