"""The detect page (/detect) in Chromium with a detector trained here.

No pretrained detector can be downloaded here, so the tests train a small SSD-style one to
find a white square on grey noise (tests/detectors.py), export it like the Object Detection
API and convert it with `belka convert coco-ssd --source DIR`. Chromium's fake camera plays a
clip the test writes (Y4M) in which the square moves; the page's boxes must follow it.
"""
from __future__ import annotations

import base64
import io
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from harness.camera import CLIP, SIZE, clip_frame, write_y4m
from harness.chromium import FAKE_CAMERA_ARGS as FAKE_CAMERA
from harness.detectors import export_detector, iou, train_square_detector
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, READY_TIMEOUT_MS, new_page, serve
from tests.conftest import convert_in_process

BACKENDS = ["webgpu", "webgl", "wasm", "cpu"]
# The next n frames the loop processes; an error naming the page's status instead of waiting for
# ever when they do not come (Playwright's evaluate has no timeout of its own).
TRACE = """(n) => Promise.race([belka.traceFrames(n), new Promise((_, reject) => setTimeout(
  () => reject(new Error(`no ${n} frames within 120 s: ${document.getElementById('status').textContent}`)), 120000))])"""


@pytest.fixture(scope="module")
def detector_models(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("square-detector")
    export_detector(train_square_detector(SIZE, 8, 16), folder / "squares", SIZE, 8, anchor_scale=16 / SIZE)
    (folder / "labels.txt").write_text("square\n")
    out = folder / "models"
    convert_in_process("coco-ssd", "--source", folder / "squares", "--size", f"{SIZE}x{SIZE}",
                       "--labels", folder / "labels.txt", "--out", out, "--name", "squares")
    return out


@pytest.fixture(scope="module")
def detect_server(detector_models):
    with serve(detector_models) as url:
        yield url


@pytest.fixture(scope="module")
def playwright():
    """One Playwright for this module's two browsers (two sync instances cannot run at once)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright):
    """Chromium without a camera (this module's own: see the `playwright` fixture)."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def camera_browser(playwright, tmp_path_factory):
    """Chromium whose fake camera plays a clip of the moving square."""
    rng = np.random.default_rng(7)
    clip = tmp_path_factory.mktemp("clip") / "square.y4m"
    write_y4m(clip, [clip_frame(k, rng)[0] for k in range(40)])
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
        *CHROMIUM_ARGS, *FAKE_CAMERA, f"--use-file-for-fake-video-capture={clip}"])
    yield browser
    browser.close()


def open_detect(browser, url: str, **context_options):
    page = new_page(browser, **context_options)
    page.set_default_timeout(READY_TIMEOUT_MS)
    page.goto(url)
    return page, page.evaluate("window.belka.ready")


def wait_for(page, expression: str, timeout_s: float = 120):
    """Polls ``expression`` in the page until truthy (wait_for_function's eval is refused by the CSP)."""
    deadline = time.monotonic() + timeout_s
    while not (value := page.evaluate(expression)):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.05)
    return value


def square_in(model_input: list[float]) -> list[float]:
    """Where the white square is in a model input (pixels scaled to -1..1, the exported detector's
    own preprocessing: fractions ymin, xmin, ymax, xmax)."""
    bright = np.array(model_input, np.float32).reshape(SIZE, SIZE, 3).mean(axis=2) > 180 / 127.5 - 1
    rows, cols = np.nonzero(bright)
    return [rows.min() / SIZE, cols.min() / SIZE, (rows.max() + 1) / SIZE, (cols.max() + 1) / SIZE]


def as_box(detection: dict) -> list[float]:
    return [detection["box"][k] for k in ("ymin", "xmin", "ymax", "xmax")]


# -- the webcam ----------------------------------------------------------------------------------

def test_boxes_follow_the_square_on_the_camera(camera_browser, detect_server):
    page, ready = open_detect(camera_browser, f"{detect_server}/detect?backend=wasm", permissions=["camera"])
    try:
        assert ready == {"ok": True, "backend": "wasm"}, ready
        assert page.locator("[data-field=input]").inner_text() == f"{SIZE}×{SIZE} px, 1 class"
        assert page.evaluate("belka.startCamera()") == {"ok": True}
        assert page.evaluate("belka.cameraActive()") is True
        frames = page.evaluate(TRACE, 40)
        # the status says what the live camera sees, not just "Detecting..."
        status = page.locator("#status").inner_text()
        assert status.startswith("Live: ") and ("1 object: square" in status or "nothing found above 50%" in status \
                                                or "objects: square" in status), status
        hits, centres = 0, set()
        for frame in frames:
            truth = square_in(frame["input"])
            centres.add((round((truth[0] + truth[2]) * 8), round((truth[1] + truth[3]) * 8)))
            squares = [d for d in frame["detections"] if d["label"] == "square"]
            hits += bool(squares) and iou(as_box(squares[0]), truth) >= 0.5
        assert hits >= 0.8 * len(frames), f"{hits} of {len(frames)} frames"
        assert len(centres) >= 8  # the square really moved while we watched
        assert page.evaluate("belka.maxInFlight()") == 1  # never more than one frame in flight
        assert page.locator("[data-field=fps]").inner_text() != "—"
        assert page.locator("#detections li").count() >= 1

        page.click("#camera-stop")
        assert page.evaluate("belka.cameraActive()") is False  # the camera is released
        assert page.evaluate("document.getElementById('video').srcObject") is None
        stopped = page.evaluate("belka.frames()")
        time.sleep(0.5)
        assert page.evaluate("belka.frames()") <= stopped + 1
        assert page.errors == []
    finally:
        page.context.close()


def test_no_tensor_leaks_over_200_frames_and_a_hidden_tab_pauses(camera_browser, detect_server):
    page, ready = open_detect(camera_browser, f"{detect_server}/detect?backend=wasm", permissions=["camera"])
    try:
        assert page.evaluate("belka.startCamera()") == {"ok": True}
        wait_for(page, "belka.frames() >= 10")
        tensors = page.evaluate("belka.numTensors()")
        start = page.evaluate("belka.frames()")
        wait_for(page, f"belka.frames() >= {start + 200}", timeout_s=300)
        assert page.evaluate("belka.numTensors()") == tensors

        # hide the tab: the loop waits
        page.evaluate("""() => {
            Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
            document.dispatchEvent(new Event('visibilitychange'));
        }""")
        time.sleep(0.3)
        paused_at = page.evaluate("belka.frames()")
        time.sleep(1.0)
        assert page.evaluate("belka.frames()") <= paused_at + 1
        assert "Paused" in page.locator("#status").inner_text()
        page.evaluate("""() => {
            Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});
            document.dispatchEvent(new Event('visibilitychange'));
        }""")
        wait_for(page, f"belka.frames() >= {paused_at + 5}")
        page.evaluate("belka.stopCamera()")
        assert page.errors == []
    finally:
        page.context.close()


@pytest.mark.parametrize("backend", ["webgpu", "webgl"])
def test_the_camera_runs_on_the_gpu_backends(camera_browser, detect_server, backend):
    """WebGPU and WebGL read video frames their own way (textures): frames flow, no error, and
    no tensor is left once the camera stops."""
    page, ready = open_detect(camera_browser, f"{detect_server}/detect?backend={backend}",
                              permissions=["camera"])
    try:
        assert ready == {"ok": True, "backend": backend}, ready
        tensors = page.evaluate("belka.numTensors()")
        assert page.evaluate("belka.startCamera()") == {"ok": True}
        wait_for(page, "belka.frames() >= 10")
        page.evaluate("belka.stopCamera()")
        # the frame in flight finishes (a GPU readback can take seconds on a loaded machine)
        wait_for(page, "belka.inFlight() === 0", timeout_s=60)
        assert page.evaluate("belka.numTensors()") == tensors
        assert page.locator('[data-topic="detect"]').count() == 0
        assert page.errors == []
    finally:
        page.context.close()


# -- parity with the server ----------------------------------------------------------------------

def still_png() -> bytes:
    frame, _ = clip_frame(5, np.random.default_rng(11))
    frame = frame.copy()
    frame[90:114, 10:34] = 255  # a second, smaller square
    buffer = io.BytesIO()
    Image.fromarray(np.stack([frame] * 3, axis=2)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("backend", BACKENDS)
def test_page_and_server_detections_match(browser, detect_server, tmp_path, backend):
    png = tmp_path / "still.png"
    png.write_bytes(still_png())
    page, ready = open_detect(browser, f"{detect_server}/detect?backend={backend}")
    try:
        assert ready == {"ok": True, "backend": backend}, ready
        for threshold in (0.5, 0.001):
            page.evaluate(f"belka.setOptions({{scoreThreshold: {threshold}, maxBoxes: 20}})")
            page.set_input_files("#file-input", png)
            page.evaluate("belka.idle()")
            mine = page.evaluate("belka.lastResult()")
            result = page.evaluate(
                "async (b64) => belka.detectBlob(new Blob([Uint8Array.from(atob(b64), c => c.charCodeAt(0))], "
                "{type: 'image/png'}))", base64.b64encode(png.read_bytes()).decode())
            assert result["detections"] == mine["detections"]
            found = len(mine["detections"])
            status = page.locator("#status").inner_text()
            assert status.startswith(f"{found} object{'' if found == 1 else 's'}: square"), status
            served = httpx.post(f"{detect_server}/api/models/squares/detect", timeout=60, json={
                "instances": [np.array(result["input"]).reshape(SIZE, SIZE, 3).tolist()],
                "score_threshold": threshold, "max_boxes": 20}).json()["detections"]
            assert len(result["detections"]) == len(served) >= 2
            for a, b in zip(result["detections"], served):
                assert iou(as_box(a), as_box(b)) >= 0.99
                assert abs(a["score"] - b["score"]) <= 1e-3
                assert a["label"] == b["label"] and a["classId"] == b["class_id"]
                # page boxes are in the picture's pixels (128 x 128), the server's for a tensor in 64 x 64
                assert a["bbox"] == pytest.approx([v * CLIP / SIZE for v in b["bbox"]], abs=0.05)
        assert page.locator("#detections li").count() >= 2
        assert page.errors == []
    finally:
        page.context.close()


def test_an_early_picture_is_the_warm_up(browser, detect_server):
    """A picture given while the page starts is the detector's first run (no warm-up on a black
    picture ahead of it); without one, the page warms up once on its own."""
    page = new_page(browser)
    try:
        page.set_default_timeout(READY_TIMEOUT_MS)
        page.add_init_script(f"window.__still = {base64.b64encode(still_png()).decode()!r};")
        page.add_init_script("""document.addEventListener('DOMContentLoaded', () => {
          const bytes = Uint8Array.from(atob(window.__still), (c) => c.charCodeAt(0));
          window.__first = window.belka.detectBlob(new Blob([bytes], {type: 'image/png'}));
        });""")
        page.goto(f"{detect_server}/detect?backend=wasm")
        assert page.evaluate("window.belka.ready") == {"ok": True, "backend": "wasm"}
        assert len(page.evaluate("window.__first")["detections"]) >= 2
        assert page.evaluate("belka.worker('stats')")["modelCalls"] == 1
        plain, ready = open_detect(browser, f"{detect_server}/detect?backend=wasm")
        try:
            assert ready["ok"] and plain.evaluate("belka.worker('stats')")["modelCalls"] == 1
        finally:
            plain.context.close()
        assert page.errors == []
    finally:
        page.context.close()


# -- clear messages ------------------------------------------------------------------------------

def test_no_detector_says_which_command_to_run(browser, tmp_path):
    with serve(tmp_path) as url:
        page = new_page(browser)
        try:
            page.goto(url + "/detect")
            text = page.locator("main").inner_text()
            assert "no detector yet" in text.lower() and "belka convert coco-ssd" in text
            assert page.errors == []
        finally:
            page.context.close()


def test_camera_permission_denied(browser, detect_server):
    """Without the camera permission (and no fake UI to grant it), getUserMedia is refused."""
    page, ready = open_detect(browser, f"{detect_server}/detect?backend=cpu")
    try:
        started = page.evaluate("belka.startCamera()")
        assert started["ok"] is False
        assert "permission was denied" in started["error"] or "No camera was found" in started["error"]
        banner = page.locator('[data-topic="camera"]')
        assert banner.is_visible() and started["error"] in banner.inner_text()
        assert page.evaluate("belka.cameraActive()") is False
    finally:
        page.context.close()


@pytest.mark.parametrize("error, title, message", [
    ("NotAllowedError", "Camera permission denied.", "Camera permission was denied"),
    ("NotFoundError", "No camera found.", "No camera was found"),
    ("NotReadableError", "The camera is busy.", "(another application is using it)"),
])
def test_camera_errors_are_explained(browser, detect_server, error, title, message):
    page = new_page(browser)
    page.add_init_script(
        "navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('x', '" + error + "'));")
    try:
        page.set_default_timeout(READY_TIMEOUT_MS)
        page.goto(f"{detect_server}/detect?backend=cpu")
        assert page.evaluate("window.belka.ready")["ok"]
        page.click("#camera-start")
        page.evaluate("belka.idle()")
        banner = page.locator('[data-topic="camera"]').inner_text()
        assert banner.startswith(title) and message in banner, banner
        assert page.locator("#camera-start").is_visible()
    finally:
        page.context.close()


RECORD_CLIP = """
async () => {
  // A WebM clip of the moving square, recorded in the page itself (MediaRecorder, VP8).
  const canvas = document.createElement('canvas');
  canvas.width = 128;
  canvas.height = 128;
  const ctx = canvas.getContext('2d');
  const stream = canvas.captureStream(15);
  const recorder = new MediaRecorder(stream, {mimeType: 'video/webm;codecs=vp8'});
  const chunks = [];
  recorder.ondataavailable = (event) => chunks.push(event.data);
  const stopped = new Promise((resolve) => { recorder.onstop = resolve; });
  recorder.start();
  for (let k = 0; k < 30; k += 1) {
    ctx.fillStyle = '#303030';
    ctx.fillRect(0, 0, 128, 128);
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(8 + k * 2.5, 20 + k * 2, 32, 32);
    await new Promise((resolve) => setTimeout(resolve, 66));
  }
  recorder.stop();
  await stopped;
  const bytes = new Uint8Array(await new Blob(chunks).arrayBuffer());
  let text = '';
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text);
}
"""


def test_a_video_file_is_detected_frame_by_frame(browser, detect_server, tmp_path):
    page, ready = open_detect(browser, f"{detect_server}/detect?backend=wasm")
    try:
        assert ready["ok"], ready
        clip = tmp_path / "square.webm"
        clip.write_bytes(base64.b64decode(page.evaluate(RECORD_CLIP)))
        page.set_input_files("#file-input", clip)
        frames = page.evaluate(TRACE, 10)
        hits = 0
        for frame in frames:
            squares = [d for d in frame["detections"] if d["label"] == "square"]
            hits += bool(squares) and iou(as_box(squares[0]), square_in(frame["input"])) >= 0.5
        assert hits >= 8, f"{hits} of {len(frames)} frames"
        assert page.locator("#video").is_visible()
        page.evaluate("belka.stopCamera()")  # stops the file's loop too
        assert page.errors == []
    finally:
        page.context.close()


def test_auto_picks_wasm_on_a_software_gpu(browser, detect_server):
    """The detect page's "auto" is measured too (static/js/auto-backend.js): SwiftShader's WebGL
    and WebGPU are left out, and the page says why."""
    page, ready = open_detect(browser, f"{detect_server}/detect")
    try:
        assert ready == {"ok": True, "backend": "wasm"}, ready
        assert page.evaluate("window.belka.choice()") == "auto"
        reason = page.evaluate("window.belka.autoReason()")
        assert reason.startswith("auto chose wasm:") and "software GPU" in reason, reason
        assert reason in page.locator("#backend-note").inner_text()
        assert not page.errors, page.errors
    finally:
        page.context.close()
