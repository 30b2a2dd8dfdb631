"""`belka export-site` (issue 16): the exported folder served by a plain static file server
(Python's http.server: no Belka code) under a sub-path, /demo/. On it the pages classify, explain
(Grad-CAM in the browser) and detect with the numbers `belka serve`'s API gives for the same
input tensors, on wasm and webgl; the model picker goes to each model's own page; what needs the
server says so; and a second visit works with the static server gone."""
from __future__ import annotations

import base64
import contextlib
import io
import shutil
import subprocess
import sys

import httpx
import numpy as np
import pytest

from harness.server import free_port
from tests.browser.conftest import another_page, classify_file, new_page, serve, wait_until_serving
from tests.conftest import run_belka

MOBILENET, TINY, DETECTOR = "mobilenet", "tiny", "squares"
LOGITS_ATOL = 1e-4


@pytest.fixture(scope="module")
def models(tmp_path_factory, small_mobilenet, tiny_graph_only, small_detector):
    folder = tmp_path_factory.mktemp("static-site") / "models"
    shutil.copytree(small_mobilenet["dir"], folder / MOBILENET)
    shutil.copytree(tiny_graph_only["dir"], folder / TINY)
    shutil.copytree(small_detector["dir"], folder / DETECTOR)
    return folder


@pytest.fixture(scope="module")
def site(models):
    """The export, in <root>/demo for the base path /demo/."""
    root = models.parent / "www"
    proc = run_belka("export-site", root / "demo", "--models-dir", models, "--base-path", "/demo",
                     "--models", f"{MOBILENET},{TINY},{DETECTOR}", env={"BELKA_MODEL": MOBILENET})
    assert proc.returncode == 0, proc.stderr
    return root


@contextlib.contextmanager
def static_server(root, port=None):
    """Python's own static file server on ``root``: yields the site's URL (…/demo/)."""
    port = port or free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                             "--directory", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/demo/"
    wait_until_serving(proc, url, "the static file server", 30)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def static_url(site):
    with static_server(site) as url:
        yield url


@pytest.fixture(scope="module")
def api(models):
    """`belka serve` on the same models: the numbers the static pages must match."""
    with serve(models) as url:
        yield url


def check_classifier(page, api, model, size, photo) -> None:
    assert page.evaluate("belka.ready")["ok"], page.evaluate("belka.ready")
    assert page.evaluate("belka.model()") == model
    result = classify_file(page, photo)
    image = np.array(result["input"], np.float32).reshape(size, size, 3)
    served = httpx.post(f"{api}/api/models/{model}/predict", timeout=120,
                        json={"instances": [image.tolist()], "include_logits": True}).json()
    theirs = np.array(served["predictions"][0]["logits"])
    assert np.abs(np.array(result["logits"]) - theirs).max() <= LOGITS_ATOL, model
    mine = page.evaluate("belka.explain({method: 'gradcam'})")
    assert "error" not in mine and mine["source"] == "page", mine
    explained = httpx.post(f"{api}/api/models/{model}/explain", timeout=120, json={
        "instances": [image.tolist()], "method": "gradcam", "layer": mine["layer"],
        "class_index": mine["classIndex"]}).json()
    heat, expected = np.array(mine["heatmap"]).ravel(), np.array(explained["heatmap"]).ravel()
    assert np.corrcoef(heat, expected)[0, 1] >= 0.99, model


def square_png(size) -> str:
    picture = np.zeros((size, size, 3), np.uint8)
    picture[16:40, 20:44] = 255
    buffer = io.BytesIO()
    from PIL import Image

    Image.fromarray(picture).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize("backend", ["wasm", "webgl"])
def test_the_static_site_classifies_explains_and_detects_as_the_server(browser, static_url, api, backend,
                                                                        chelsea_png, small_detector):
    page = new_page(browser)
    page.set_default_timeout(180_000)
    try:
        page.goto(f"{static_url}?backend={backend}&weights=float32")
        check_classifier(page, api, MOBILENET, 96, chelsea_png)
        if backend == "wasm":  # (once: the model's own page is the same files on every backend)
            # the picker opens the other model's own page (a static host has no ?model=), options kept
            with page.expect_navigation():
                page.select_option("#model-select", TINY)
            assert page.url == f"{static_url}m/{TINY}/?backend={backend}&weights=float32"
            check_classifier(page, api, TINY, 32, chelsea_png)

        page.goto(f"{static_url}detect/?backend={backend}")
        assert page.evaluate("belka.ready")["ok"] and page.evaluate("belka.model()") == DETECTOR
        page.evaluate("belka.setOptions({scoreThreshold: 0.001, maxBoxes: 5})")
        mine = page.evaluate("async (b64) => belka.detectBlob(new Blob([Uint8Array.from(atob(b64), "
                             "c => c.charCodeAt(0))], {type: 'image/png'}))", square_png(64))
        size = small_detector["manifest"]["preprocessing"]["size"][0]
        served = httpx.post(f"{api}/api/models/{DETECTOR}/detect", timeout=60, json={
            "instances": [np.array(mine["input"]).reshape(size, size, 3).tolist()],
            "score_threshold": 0.001, "max_boxes": 5}).json()["detections"]
        assert len(mine["detections"]) == len(served) > 0
        for a, b in zip(mine["detections"], served):
            assert abs(a["score"] - b["score"]) <= 1e-3 and a["classId"] == b["class_id"]
        assert not page.errors, page.errors
    finally:
        page.context.close()


def test_what_needs_the_server_says_so(browser, static_url):
    page = new_page(browser)
    page.set_default_timeout(120_000)
    try:
        page.goto(f"{static_url}teach/?backend=wasm")
        assert page.evaluate("belka.ready")["ok"]
        assert "Saving needs Belka's server" in page.locator("body").inner_text()
        assert page.locator(".site-nav a", has_text="API").count() == 0  # no /docs on a static host
        page.goto(f"{static_url}learn/line/?backend=wasm")
        assert page.evaluate("belka.ready")["ok"]
        answer = page.evaluate("belka.exact().then((a) => a, (e) => ({error: e.message}))")
        assert "static site" in str(answer), answer
        assert not page.errors, page.errors
    finally:
        page.context.close()


def test_a_second_visit_works_with_the_static_server_gone(browser, site, chelsea_png):
    port = free_port()
    page = new_page(browser)
    page.set_default_timeout(120_000)
    try:
        with static_server(site, port) as url:
            page.goto(f"{url}?backend=wasm")
            assert page.evaluate("belka.ready")["ok"]
            kept = page.evaluate("belka.offline")
            assert kept["ok"] and kept["kept"] > 10, kept
            online = classify_file(page, chelsea_png)
        # a second visit (a new tab: a model worker of its own, where a reload would find the
        # tab's running): the page, its code and the model from the service worker
        first_page, page = page, another_page(page.context)
        first_page.close()
        page.set_default_timeout(120_000)
        page.goto(f"{url}?backend=wasm")
        assert page.evaluate("belka.ready") == {"ok": True, "backend": "wasm"}
        assert classify_file(page, chelsea_png)["top5"] == online["top5"]
    finally:
        page.context.close()
