"""`belka serve --engine ray` (issue 16): the REST API on Ray Serve answers exactly as the uvicorn
engine does, sheds load with 503 + Retry-After, survives a killed replica, and follows the models
folder.

One local Ray instance for the module: `belka serve --engine ray --replicas 2` as a subprocess on
127.0.0.1, serving a small classifier ("tiny", MobileNetV2 0.35/96) and a small detector
("squares"), with BELKA_BATCH_MAX 4 and BELKA_QUEUE_MAX 8 so overload is easy to reach. Every
answer is compared with the same request to the uvicorn engine's app in this process (the same
settings): status, error shape and message, labels, and numbers (to 1e-5: Ray batches requests
differently, and a batch's float sums may differ in the last bits).
The last test stops the server with SIGTERM: exit 0, no Ray process left.
"""
from __future__ import annotations

import collections
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from skimage import data as samples

from app.main import create_app
from app.settings import Settings
from harness.server import free_port
from tests.conftest import ROOT

import ray.serve  # noqa: F401 - part of the test install (`make test` installs .[test,ray]): no skip

ENV = {"BELKA_BATCH_MAX": "4", "BELKA_QUEUE_MAX": "8", "BELKA_BATCH_WAIT_MS": "5"}
TIMINGS = ("timings",)


def replica_pids(model: str) -> list[int]:
    """The processes of a model's Ray Serve replicas (Ray names them in their command line, which
    can read empty while Ray rewrites it: three looks, the most found)."""
    looks = []
    for _ in range(3):
        found = []
        for proc in Path("/proc").iterdir():
            try:
                cmdline = (proc / "cmdline").read_bytes() if proc.name.isdigit() else b""
            except OSError:
                continue
            if cmdline.startswith(f"ray::ServeReplica:belka-model-{model}:".encode()):
                found.append(int(proc.name))
        looks.append(sorted(found))
        time.sleep(0.05)
    return max(looks, key=len)


def descendants(pid: int) -> set[int]:
    """Every process started by ``pid``, and by those (a Ray driver's raylet, workers, replicas)."""
    found, todo = set(), [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            try:
                children = {int(c) for c in (task / "children").read_text().split()}
            except (OSError, ValueError):
                continue
            todo.extend(children - found)
            found |= children
    return found


def alive(pids: set[int]) -> list[int]:
    return sorted(pid for pid in pids if Path(f"/proc/{pid}").exists()
                  and "zombie" not in Path(f"/proc/{pid}/status").read_text(errors="replace").lower())


@pytest.fixture(scope="module")
def folder(small_mobilenet, small_detector, tmp_path_factory) -> Path:
    models = tmp_path_factory.mktemp("ray-models")
    (models / "tiny").symlink_to(small_mobilenet["dir"], target_is_directory=True)
    (models / "squares").symlink_to(small_detector["dir"], target_is_directory=True)
    return models


@pytest.fixture(scope="module")
def ray_server(folder, tmp_path_factory):
    """(base URL, process, log path) of `belka serve --engine ray --replicas 2`."""
    port = free_port()
    log = tmp_path_factory.mktemp("ray-log") / "serve.log"
    env = {**os.environ, **ENV, "BELKA_MODELS_DIR": str(folder)}
    env.pop("RAY_ADDRESS", None)
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--engine", "ray", "--replicas", "2",
                                 "--host", "127.0.0.1", "--port", str(port)],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 400
    while "ready" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("belka serve --engine ray did not start:\n" + log.read_text(errors="replace")[-3000:])
        time.sleep(0.5)
    yield url, proc, log
    if proc.poll() is None:  # the last test failed to stop it: take everything it started down
        started = descendants(proc.pid)
        proc.kill()
        proc.wait()
        for pid in alive(started):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def http(ray_server):
    with httpx.Client(base_url=ray_server[0], timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def local(folder):
    """The uvicorn engine's app with the same settings, in this process."""
    settings = Settings(models_dir=folder, batch_max=4, queue_max=8, batch_wait_ms=5)
    with TestClient(create_app(settings)) as client:
        yield client


def jpeg(name: str = "chelsea", size: int = 160) -> bytes:
    picture = Image.fromarray(getattr(samples, name)()).convert("RGB")
    picture.thumbnail((size, size))
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=90)
    return out.getvalue()


def tensor(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (count, 96, 96, 3)).astype(np.float32)


def same(ray_answer: httpx.Response, local_answer, tolerance: float = 1e-5) -> None:
    """Status, headers that matter and body equal; numbers within ``tolerance``; timings left out."""
    assert ray_answer.status_code == local_answer.status_code, (ray_answer.text[:400], local_answer.text[:400])
    assert ray_answer.headers["content-type"] == local_answer.headers["content-type"]
    assert ray_answer.headers.get("retry-after") == local_answer.headers.get("retry-after")
    if not ray_answer.headers["content-type"].startswith("application/json"):
        return
    _close(ray_answer.json(), local_answer.json(), tolerance, "body")


def _close(a, b, tolerance, where):
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (where, sorted(a), sorted(b))
        for key in a:
            if key not in TIMINGS and key != "overlay_png":  # the PNG of a heatmap equal to 1e-5
                _close(a[key], b[key], tolerance, f"{where}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), (where, len(a), len(b) if isinstance(b, list) else b)
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, tolerance, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert abs(a - b) <= tolerance, (where, a, b)
    else:
        assert a == b, (where, a, b)


def both(http, local, method: str, url: str, **kwargs):
    return getattr(http, method)(url, **kwargs), getattr(local, method)(url, **kwargs)


# -- the same answers -----------------------------------------------------------------------------

def test_it_says_what_it_started(ray_server):
    said = ray_server[2].read_text(errors="replace")
    assert "Deployed tiny (classification) on Ray Serve" in said and "Deployed squares (detection)" in said, said
    assert "a local Ray instance (" in said and "MB object store" in said and "2 replicas per model, ready" in said
    assert "Traceback" not in said
    assert len(replica_pids("tiny")) == 2 and len(replica_pids("squares")) == 2


def test_models_and_health_are_the_same(http, local):
    for url in ("/api/models", "/healthz", "/api/models/tiny/layers"):
        same(*both(http, local, "get", url))


@pytest.mark.parametrize("kind", ["multipart", "json", "float32", "npy"])
def test_predict_is_the_same(http, local, kind):
    if kind == "multipart":
        kwargs = {"files": {"file": ("cat.jpg", jpeg(), "image/jpeg")}}
    elif kind == "json":
        kwargs = {"json": {"instances": tensor(3, 1).tolist(), "top_k": 7, "include_logits": True}}
    elif kind == "float32":
        kwargs = {"content": tensor(2, 2).tobytes(), "headers": {"content-type": "application/octet-stream",
                                                                  "x-shape": "2,96,96,3"}}
    else:
        out = io.BytesIO()
        np.save(out, tensor(2, 3))
        kwargs = {"content": out.getvalue(), "headers": {"content-type": "application/x-npy"}}
    answer, expected = both(http, local, "post", "/api/models/tiny/predict?include_logits=true", **kwargs)
    same(answer, expected)
    assert answer.status_code == 200
    batch = answer.json()["predictions"][0]["timings"]["batch_size"]
    assert 1 <= batch <= 4  # Ray's batch, within BELKA_BATCH_MAX


@pytest.mark.parametrize("options", [
    {"method": "gradcam"},
    {"method": "gradcam", "layer": "block_13_expand_relu", "class_index": 3},
    {"method": "occlusion", "patch": 32, "stride": 32},
])
def test_explain_is_the_same(http, local, options):
    files = {"file": ("rocket.jpg", jpeg("rocket"), "image/jpeg")}
    answer, expected = both(http, local, "post", "/api/models/tiny/explain", params=options, files=files)
    same(answer, expected, tolerance=1e-4)
    assert answer.status_code == 200 and answer.json()["method"] == options["method"]


def test_explain_png_is_a_picture(http):
    answer = http.post("/api/models/tiny/explain", params={"format": "png"},
                       files={"file": ("cat.jpg", jpeg(), "image/jpeg")})
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(answer.content)).size == (96, 96)


def test_detect_is_the_same(http, local):
    files = {"file": ("coffee.jpg", jpeg("coffee", 200), "image/jpeg")}
    answer, expected = both(http, local, "post", "/api/models/squares/detect",
                            params={"score_threshold": 0.05}, files=files)
    same(answer, expected, tolerance=1e-4)
    assert answer.status_code == 200 and answer.json()["detections"], answer.text[:300]


@pytest.mark.parametrize(("method", "url", "kwargs"), [
    ("post", "/api/models/nope/predict", {"json": {"instances": []}}),
    ("post", "/api/models/squares/predict", {"files": {"file": ("a.jpg", b"x", "image/jpeg")}}),
    ("post", "/api/models/tiny/detect", {"files": {"file": ("a.jpg", b"x", "image/jpeg")}}),
    ("get", "/api/models/nope/layers", {}),
    ("post", "/api/models/tiny/predict", {"content": b"hello", "headers": {"content-type": "text/plain"}}),
    ("post", "/api/models/tiny/predict", {"files": {"file": ("a.jpg", b"not a jpeg", "image/jpeg")}}),
    ("post", "/api/models/tiny/predict?top_k=0", {"files": {"file": ("a.jpg", jpeg(), "image/jpeg")}}),
    ("post", "/api/models/tiny/predict", {"json": {"instances": [[[0.0, 0.0]]]}}),
    ("post", "/api/models/tiny/predict", {"content": tensor(9).tobytes(),
                                          "headers": {"content-type": "application/octet-stream",
                                                      "x-shape": "9,96,96,3"}}),
    ("post", "/api/models/tiny/explain?class_index=1000", {"files": {"file": ("a.jpg", jpeg(), "image/jpeg")}}),
    ("post", "/api/models/tiny/explain?layer=nope", {"files": {"file": ("a.jpg", jpeg(), "image/jpeg")}}),
    ("post", "/api/models/tiny/explain?method=magic", {"files": {"file": ("a.jpg", jpeg(), "image/jpeg")}}),
    ("post", "/api/models/squares/detect", {"content": tensor(2).tobytes(),
                                            "headers": {"content-type": "application/octet-stream",
                                                        "x-shape": "2,64,64,3"}}),
], ids=["unknown-model", "detector-as-classifier", "classifier-as-detector", "unknown-layers", "text-body",
        "broken-jpeg", "top-k-0", "wrong-shape", "more-than-the-queue", "class-out-of-range", "unknown-layer",
        "unknown-method", "detect-two"])
def test_bad_input_gets_the_same_answer(http, local, method, url, kwargs):
    answer, expected = both(http, local, method, url, **kwargs)
    assert 400 <= expected.status_code < 500, expected.text[:300]
    same(answer, expected)


# -- load, failures, the models folder ------------------------------------------------------------

def test_overload_is_503_with_retry_after_then_room_again(ray_server, http):
    """32 concurrent requests of 8 images each against 2 replicas x (4 running + 8 queued per caller):
    the ones that do not fit get 503 + Retry-After (never another 5xx); then a request is served."""
    body = tensor(8, 5).tobytes()
    headers = {"content-type": "application/octet-stream", "x-shape": "8,96,96,3"}

    def send(client):
        return client.post("/api/models/tiny/predict", content=body, headers=headers)

    with httpx.Client(base_url=ray_server[0], timeout=120,
                      limits=httpx.Limits(max_connections=32)) as client:
        pool = [threading.Thread(target=lambda: answers.append(send(client))) for _ in range(32)]
        answers: list[httpx.Response] = []
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    statuses = collections.Counter(a.status_code for a in answers)
    assert set(statuses) <= {200, 503} and statuses[503] > 0 and statuses[200] > 0, statuses
    for answer in answers:
        if answer.status_code == 503:
            assert answer.headers["retry-after"] == "1"
            error = answer.json()["error"]
            assert error["code"] == "service_unavailable" and "busy" in error["message"], error
    assert http.post("/api/models/tiny/predict", files={"file": ("c.jpg", jpeg(), "image/jpeg")}).status_code == 200


def test_a_model_converted_while_it_runs_is_deployed_and_removed(ray_server, http, folder, small_mobilenet):
    (folder / "tiny-too").symlink_to(small_mobilenet["dir"], target_is_directory=True)
    try:
        deadline = time.monotonic() + 240
        while True:  # 503 "being deployed" (Retry-After) until its replicas are up
            answer = http.post("/api/models/tiny-too/predict", files={"file": ("c.jpg", jpeg(), "image/jpeg")})
            if answer.status_code == 200:
                break
            assert answer.status_code == 503 and answer.headers["retry-after"] == "1", answer.text[:300]
            assert time.monotonic() < deadline, "tiny-too was not deployed in 240 s"
            time.sleep(1)
        assert len(replica_pids("tiny-too")) == 2
    finally:
        (folder / "tiny-too").unlink()
    assert http.post("/api/models/tiny-too/predict", json={"instances": []}).status_code == 404
    deadline = time.monotonic() + 60
    while replica_pids("tiny-too") or "Removed tiny-too from Ray Serve" not in ray_server[2].read_text(errors="replace"):
        assert time.monotonic() < deadline, "the removed model's deployment is still there"
        time.sleep(1)


def test_a_killed_replica_is_replaced_and_the_api_keeps_answering(ray_server):
    """Six clients keep asking while one of the two replicas is killed (SIGKILL): every answer is
    200, or 503 with Retry-After while capacity is short; Ray starts a new replica."""
    before = replica_pids("tiny")
    assert len(before) == 2, before
    photo = jpeg()
    answers: list[httpx.Response] = []
    failures: list[str] = []
    stop = threading.Event()

    def client():
        with httpx.Client(base_url=ray_server[0], timeout=60) as http:
            while not stop.is_set():
                try:
                    answers.append(http.post("/api/models/tiny/predict",
                                             files={"file": ("c.jpg", photo, "image/jpeg")}))
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))

    pool = [threading.Thread(target=client) for _ in range(6)]
    for thread in pool:
        thread.start()
    try:
        time.sleep(2)
        served_before_kill = len(answers)
        os.kill(before[0], signal.SIGKILL)
        deadline = time.monotonic() + 180  # (a new replica loads TensorFlow on 2 busy cores)
        while True:
            now = replica_pids("tiny")
            if len(now) == 2 and before[0] not in now:
                break
            assert time.monotonic() < deadline, f"no new replica in 180 s: {now}"
            time.sleep(0.5)
        after_replaced = len(answers)
        time.sleep(3)  # and the new one answers
    finally:
        stop.set()
        for thread in pool:
            thread.join()
    statuses = collections.Counter(a.status_code for a in answers)
    assert not failures, failures[:3]
    assert set(statuses) <= {200, 503}, statuses
    assert all(a.headers.get("retry-after") == "1" for a in answers if a.status_code == 503)
    assert served_before_kill > 0 and len(answers) > after_replaced and statuses[200] > served_before_kill


def test_sigterm_stops_it_and_ray(ray_server):
    url, proc, log = ray_server
    started = descendants(proc.pid)
    assert len(started) >= 8, started  # GCS, raylet, controller, proxy, 2 ingress and 4 model replicas...
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0, log.read_text(errors="replace")[-2000:]
    assert "Stopped: the Ray Serve deployments are deleted." in log.read_text(errors="replace")
    deadline = time.monotonic() + 30
    while alive(started):
        assert time.monotonic() < deadline, f"still running after the server stopped: {alive(started)}"
        time.sleep(0.5)
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/healthz", timeout=5)
