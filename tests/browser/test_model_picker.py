"""Every converted model in the pages (issue 13): one server, one models folder holding two
classifiers of different kinds and sizes (the session's MobileNetV2 0.35/96 with its layers model,
a tiny Keras classifier of our own at 32 px without one) and a detector. Each is picked from the
page's picker and through ?model=, then classifies (or detects) and explains in the page with the
numbers the server's REST API gives for the same input tensor. The pick is remembered; a model
added to the folder while the server runs is in the picker after a reload.
"""
from __future__ import annotations

import base64
import json
import shutil

import httpx
import numpy as np
import pytest

from tests.browser.conftest import classify_file, new_page, serve
from tests.conftest import TINY_LABELS

MOBILENET = "mobilenet-v2-0.35-96"
TINY = "tiny"
LABELS = TINY_LABELS
LOGITS_ATOL = 1e-4


@pytest.fixture(scope="module")
def folder(tmp_path_factory, small_mobilenet, small_detector, tiny_graph_only):
    models = tmp_path_factory.mktemp("picker") / "models"
    shutil.copytree(small_mobilenet["dir"], models / MOBILENET)
    shutil.copytree(small_detector["dir"], models / "squares")
    shutil.copytree(tiny_graph_only["dir"], models / TINY)
    return models


@pytest.fixture(scope="module")
def server(folder):
    with serve(folder, BELKA_MODEL=MOBILENET) as url:
        yield url


@pytest.fixture()
def page(browser):
    page = new_page(browser)
    page.set_default_timeout(120_000)
    yield page
    page.context.close()


def picker_options(page) -> list[str]:
    return page.eval_on_selector_all("#model-select option", "(options) => options.map((o) => o.value)")


def ready(page) -> dict:
    return page.evaluate("window.belka.ready")


def server_logits(url: str, model: str, result: dict, size: int) -> np.ndarray:
    image = np.array(result["input"], np.float32).reshape(size, size, 3)
    response = httpx.post(f"{url}/api/models/{model}/predict", timeout=120,
                          json={"instances": [image.tolist()], "top_k": 3, "include_logits": True})
    assert response.status_code == 200, response.text
    return np.array(response.json()["predictions"][0]["logits"])


def check_classifier(page, url: str, model: str, size: int, photo) -> None:
    """The page runs ``model``: it classifies like the server and explains like it (Grad-CAM)."""
    assert ready(page)["ok"], ready(page)
    assert page.evaluate("belka.model()") == model
    assert page.locator("#model-select").input_value() == model
    assert page.locator('[data-field="name"]').inner_text() == model
    result = classify_file(page, photo)
    assert len(result["input"]) == size * size * 3
    theirs = server_logits(url, model, result, size)
    assert np.abs(np.array(result["logits"]) - theirs).max() <= LOGITS_ATOL, model
    assert result["top5"][0]["index"] == int(theirs.argmax())
    mine = page.evaluate("belka.explain({method: 'gradcam'})")
    assert "error" not in mine, mine
    image = np.array(result["input"], np.float32).reshape(size, size, 3)
    served = httpx.post(f"{url}/api/models/{model}/explain", timeout=120, json={
        "instances": [image.tolist()], "method": "gradcam", "layer": mine["layer"],
        "class_index": mine["classIndex"]})
    assert served.status_code == 200, served.text
    heat = np.array(mine["heatmap"]).ravel()
    expected = np.array(served.json()["heatmap"]).ravel()
    assert np.corrcoef(heat, expected)[0, 1] >= 0.99, model


def test_each_classifier_picked_from_the_page_and_by_address(page, server, chelsea_png):
    page.goto(f"{server}/?backend=wasm&weights=float32")
    assert picker_options(page) == [MOBILENET, TINY]  # classifiers only, the detector is on /detect
    check_classifier(page, server, MOBILENET, 96, chelsea_png)

    # picked in the page: the page for that model opens, the other parameters kept
    with page.expect_navigation():
        page.select_option("#model-select", TINY)
    assert "model=tiny" in page.url and "backend=wasm" in page.url and "weights=float32" in page.url
    check_classifier(page, server, TINY, 32, chelsea_png)
    before = page.evaluate("belka.numTensors()")
    classify_file(page, chelsea_png)
    assert page.evaluate("belka.numTensors()") == before  # nothing left behind in the worker

    # remembered: the plain address opens the last pick
    page.goto(f"{server}/?backend=wasm&weights=float32")
    check_classifier(page, server, TINY, 32, chelsea_png)

    # by address
    page.goto(f"{server}/?model={MOBILENET}&backend=wasm&weights=float32")
    check_classifier(page, server, MOBILENET, 96, chelsea_png)


def test_an_unknown_model_in_the_address_is_said(page, server):
    page.goto(f"{server}/?model=squares&backend=wasm")
    note = page.locator("#model-note").inner_text()
    assert '"squares" is an object detector' in note and "/detect?model=squares" in note
    assert ready(page)["ok"] and page.evaluate("belka.model()") in (MOBILENET, TINY)


def test_the_detect_page_picks_its_detector(page, server, folder, small_detector):
    page.goto(f"{server}/detect?model=squares&backend=tpu")  # (and says what it made of a bad backend)
    assert ready(page)["ok"] and page.evaluate("belka.backend()") == "wasm"
    banner = page.locator('[data-topic="address"]').inner_text()
    assert 'Unknown backend "tpu" in the address.' in banner and "Using auto meanwhile." in banner
    page.goto(f"{server}/detect?model=squares&backend=wasm")
    assert picker_options(page) == ["squares"]
    assert ready(page)["ok"] and page.evaluate("belka.model()") == "squares"
    size = small_detector["manifest"]["preprocessing"]["size"][0]
    picture = np.zeros((size, size, 3), np.uint8)
    picture[16:40, 20:44] = 255
    from io import BytesIO

    from PIL import Image
    buffer = BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    result = page.evaluate(
        "async (b64) => belka.detectBlob(new Blob([Uint8Array.from(atob(b64), c => c.charCodeAt(0))], "
        "{type: 'image/png'}))", base64.b64encode(buffer.getvalue()).decode())
    served = httpx.post(f"{server}/api/models/squares/detect", timeout=60, json={
        "instances": [np.array(result["input"]).reshape(size, size, 3).tolist()],
        "score_threshold": 0.001, "max_boxes": 5}).json()["detections"]
    page.evaluate("belka.setOptions({scoreThreshold: 0.001, maxBoxes: 5})")
    mine = page.evaluate(
        "async (b64) => belka.detectBlob(new Blob([Uint8Array.from(atob(b64), c => c.charCodeAt(0))], "
        "{type: 'image/png'}))", base64.b64encode(buffer.getvalue()).decode())["detections"]
    assert len(mine) == len(served) > 0
    for a, b in zip(mine, served):
        assert abs(a["score"] - b["score"]) <= 1e-3 and a["classId"] == b["class_id"]


def test_a_model_converted_while_the_server_runs_appears_after_a_reload(page, server, folder, chelsea_png):
    page.goto(f"{server}/?backend=wasm&weights=float32")
    assert "tiny-copy" not in picker_options(page)
    # as the converter does: written aside, then renamed into place
    shutil.copytree(folder / TINY, folder / ".tiny-copy.staging")
    (folder / ".tiny-copy.staging").rename(folder / "tiny-copy")
    try:
        page.reload()
        assert picker_options(page) == [MOBILENET, TINY, "tiny-copy"]
        with page.expect_navigation():
            page.select_option("#model-select", "tiny-copy")
        check_classifier(page, server, "tiny-copy", 32, chelsea_png)
        assert json.loads(httpx.get(f"{server}/api/models").text)  # the REST API lists it too
        assert "tiny-copy" in httpx.get(f"{server}/healthz").json()["models"]
    finally:
        shutil.rmtree(folder / "tiny-copy")
