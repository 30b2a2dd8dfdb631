"""Explanations on the classify page ("Where did it look?"), in Chromium, checked against the
server's /explain on the same input tensor.

- Parity: the page's Grad-CAM (TF.js layers model, tf.valueAndGrad) and the server's
  (tf.GradientTape) agree for three layers on every backend that has the gradient kernels
  (Pearson r >= 0.99, same argmax cell); on wasm the page says clearly which kernel is missing.
- Sanity: on a model trained here to answer "is the square in the top-left corner?", both
  methods, in the page and on the server, point at the square.
- The card's controls, occlusion's progress and Cancel, and no tensor leaks.
"""
from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

from app import tf_runtime
from tests.browser.conftest import classify_file, open_classify, serve
from tests.conftest import convert_in_process

BACKENDS = ["webgpu", "webgl", "wasm", "cpu"]
LAYERS = ["block_12_expand", "block_16_project", "out_relu"]
# TF.js 4.22's wasm backend has no Conv2DBackpropFilter: only layers after the last convolution work.
WASM_LAYERS = {"out_relu"}


def server_explain(url: str, model: str, image: np.ndarray, **options) -> dict:
    response = httpx.post(f"{url}/api/models/{model}/explain", json={"instances": [image.tolist()], **options},
                          timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def page_input(result: dict, size: int) -> np.ndarray:
    return np.array(result["input"], np.float32).reshape(size, size, 3)


def explain(page, **request) -> dict:
    return page.evaluate("(r) => belka.explain(r)", request)


def pearson(a, b) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


# -- parity with the server ----------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcam_in_the_page_matches_the_server(browser, server, small_mobilenet, chelsea_png, backend):
    page, ready = open_classify(browser, f"{server}/?backend={backend}&weights=float32")
    try:
        assert ready == {"ok": True, "backend": backend}, ready
        result = classify_file(page, chelsea_png)
        image = page_input(result, 96)
        top1 = result["top5"][0]["index"]
        for layer in LAYERS:
            for class_index in (top1, 335):  # the top-1, and the squirrel
                mine = explain(page, method="gradcam", layer=layer, classIndex=class_index)
                if backend == "wasm" and layer not in WASM_LAYERS:
                    assert mine["unsupported"] is True and mine["kernel"] == "Conv2DBackpropFilter", mine
                    assert "switch the backend to webgl, webgpu or cpu" in mine["error"]
                    banner = page.locator('[data-topic="explain"]')
                    assert "Conv2DBackpropFilter" in banner.inner_text()
                    continue
                assert "error" not in mine, mine
                theirs = server_explain(server, small_mobilenet["dir"].name, image, layer=layer,
                                        class_index=class_index)
                heat = np.array(mine["heatmap"]).reshape(mine["shape"])
                expected = np.array(theirs["heatmap"])
                assert heat.shape == expected.shape == {"block_12_expand": (6, 6)}.get(layer, (3, 3))
                assert expected.std() > 0.05 and len(np.unique(expected.round(3))) > 3  # a real map
                assert pearson(heat, expected) >= 0.99, (layer, class_index, heat, expected)
                assert heat.argmax() == expected.argmax(), (layer, class_index)
                assert mine["score"] == pytest.approx(theirs["gradcam"]["score"], abs=1e-3)
                assert mine["scoreKind"] == theirs["gradcam"]["score_kind"] == "logit"
        assert page.errors == []
    finally:
        page.context.close()


def test_occlusion_in_the_page_matches_the_server(browser, server, small_mobilenet, chelsea_png):
    page, ready = open_classify(browser, f"{server}/?backend=wasm&weights=float32")
    try:
        result = classify_file(page, chelsea_png)
        mine = explain(page, method="occlusion", patch=16, stride=8, classIndex=335)
        theirs = server_explain(server, small_mobilenet["dir"].name, page_input(result, 96), method="occlusion",
                                patch=16, stride=8, class_index=335)
        facts = theirs["occlusion"]
        assert mine["rows"] == facts["rows"] and mine["cols"] == facts["cols"]
        assert mine["images"] == len(facts["rows"]) * len(facts["cols"]) == 121
        np.testing.assert_allclose(mine["drops"], np.ravel(facts["drops"]), atol=1e-5)
        assert mine["baseline"] == pytest.approx(facts["baseline_probability"], abs=1e-6)
        assert pearson(mine["heatmap"], theirs["heatmap"]) >= 0.99
        assert page.errors == []
    finally:
        page.context.close()


# -- the card ------------------------------------------------------------------------------------

def test_the_explain_card(browser, server, small_mobilenet, chelsea_png, tmp_path):
    page, ready = open_classify(browser, f"{server}/?backend=cpu&weights=float32")
    try:
        assert page.locator("#explain").is_hidden()  # nothing to explain yet
        result = classify_file(page, chelsea_png)
        top5 = [entry["index"] for entry in result["top5"]]
        card = page.locator("#explain")
        assert card.is_visible()
        chips = card.locator("#explain-classes .chip")
        assert chips.count() == 5
        assert chips.first.get_attribute("aria-pressed") == "true"

        # "Explain" with the defaults: Grad-CAM, the top-1, the last conv block
        card.locator("#explain-run").click()
        page.evaluate("belka.idle()")
        assert page.evaluate("belka.explanations()") == 1
        assert card.locator("#explain-figure").is_visible()
        caption = card.locator("#explain-caption").inner_text()
        assert f"(class {top5[0]}) at out_relu (3×3)" in caption and "logit" in caption
        layer_select = card.locator("#explain-layer")
        assert layer_select.input_value() == "out_relu"
        options = layer_select.locator("option").all_inner_texts()
        assert len(options) == 153
        assert "block_12_expand · Conv2D 6×6×192" in options

        # one click on another top-5 class
        chips.nth(2).click()
        page.evaluate("belka.idle()")
        assert f"(class {top5[2]})" in card.locator("#explain-caption").inner_text()
        assert chips.nth(2).get_attribute("aria-pressed") == "true"
        assert chips.first.get_attribute("aria-pressed") == "false"

        # another layer re-explains at once
        layer_select.select_option("block_12_expand")
        page.evaluate("belka.idle()")
        assert "at block_12_expand (6×6)" in card.locator("#explain-caption").inner_text()

        # the squirrel shortcut, and any class by name
        card.locator("#explain-squirrel").click()
        page.evaluate("belka.idle()")
        assert "fox squirrel\" (class 335)" in card.locator("#explain-caption").inner_text()
        class_input = card.locator("#explain-class-input")
        class_input.fill("tabby")
        class_input.press("Enter")
        page.evaluate("belka.idle()")
        assert '"tabby" (class 281)' in card.locator("#explain-caption").inner_text()
        assert class_input.input_value() == ""
        # a name that matches nothing, then the Explain button (the box loses focus on the way):
        # said, and nothing explained, not the previous class again
        count = page.evaluate("belka.explanations()")
        class_input.fill("no such animal")
        card.locator("#explain-run").click()
        page.wait_for_timeout(300)
        page.evaluate("belka.idle()")
        assert 'No class matches "no such animal"' in card.locator("#explain-status").inner_text()
        assert page.evaluate("belka.explanations()") == count
        assert class_input.input_value() == "no such animal"  # left to correct
        # corrected, the button explains the class typed
        class_input.fill("281")
        card.locator("#explain-run").click()
        page.evaluate("belka.idle()")
        assert page.evaluate("belka.explanations()") == count + 1
        assert '"tabby" (class 281)' in card.locator("#explain-caption").inner_text()

        # opacity is the heat layer's CSS opacity
        card.locator("#explain-opacity").fill("20")
        assert page.evaluate("document.getElementById('explain-heat').style.opacity") == "0.2"

        # the raw heatmap as a PNG at its own resolution
        with page.expect_download() as download:
            card.locator("#explain-download").click()
        path = tmp_path / download.value.suggested_filename
        download.value.save_as(path)
        assert path.name == "gradcam-tabby-block_12_expand.png"
        from PIL import Image

        heat = np.asarray(Image.open(path).convert("L"), np.float32) / 255
        last = page.evaluate("belka.explain({method: 'gradcam', layer: 'block_12_expand', classIndex: 281})")
        np.testing.assert_allclose(heat, np.array(last["heatmap"]).reshape(6, 6), atol=1 / 255)

        # occlusion through the card: patch and stride fields, then the button
        card.locator('input[name="explain-method"][value="occlusion"]').check()
        assert card.locator("#occlusion-options").is_visible() and card.locator("#gradcam-options").is_hidden()
        assert card.locator("#occlusion-patch").input_value() == "14"  # 96 / 7
        card.locator("#occlusion-patch").fill("48")
        card.locator("#occlusion-stride").fill("24")
        card.locator("#explain-run").click()
        page.evaluate("belka.idle()")
        assert "9 images with a 48px grey patch every 24px" in card.locator("#explain-caption").inner_text()
        card.locator("#occlusion-stride").fill("60")
        card.locator("#explain-run").click()
        page.evaluate("belka.idle()")
        assert "stride must be from 1 to the patch size (48)" in card.locator("#explain-status").inner_text()

        # a file that is not an image: the card goes with the picture, and nothing explains it
        (tmp_path / "notes.txt").write_text("not a picture")
        page.set_input_files("#file-input", tmp_path / "notes.txt")
        page.evaluate("belka.idle()")
        assert "not an image we can read" in page.locator("#messages").inner_text()
        assert card.is_hidden()
        assert page.evaluate("belka.lastResult()") is None
        assert page.evaluate("belka.explain({method: 'gradcam'})") == {"error": "Classify an image first."}
        # and the next photo brings it back
        classify_file(page, chelsea_png)
        assert card.is_visible() and card.locator("#explain-figure").is_hidden()
        assert page.errors == []
    finally:
        page.context.close()


def test_occlusion_shows_progress_and_can_be_cancelled(browser, server, chelsea_png):
    """On the slow cpu backend with a fine grid (529 images): the progress bar moves and the
    Cancel button is handled while the map is being computed, so the page stays responsive."""
    page, ready = open_classify(browser, f"{server}/?backend=cpu&weights=float32")
    try:
        classify_file(page, chelsea_png)
        tensors = page.evaluate("belka.numTensors()")
        page.check('input[name="explain-method"][value="occlusion"]')
        page.fill("#occlusion-patch", "8")
        page.fill("#occlusion-stride", "4")
        page.click("#explain-run")
        progress = "document.getElementById('explain-progress').value"
        deadline = time.monotonic() + 120
        while page.evaluate(progress) < 8:  # (wait_for_function's eval is refused by the page's CSP)
            assert time.monotonic() < deadline, "the progress bar did not move"
            time.sleep(0.05)
        assert page.locator("#explain-cancel").is_visible()
        done = page.evaluate(progress)
        assert page.evaluate("document.getElementById('explain-progress').max") == 529
        page.click("#explain-cancel")
        page.evaluate("belka.idle()")
        assert page.locator("#explain-status").inner_text() == "Cancelled."
        assert page.locator("#explain-cancel").is_hidden() and page.locator("#explain-progress").is_hidden()
        assert done <= page.evaluate(progress) < 529
        assert page.evaluate("belka.explanations()") == 0
        assert page.evaluate("belka.numTensors()") == tensors
        assert page.errors == []
    finally:
        page.context.close()


def test_no_tensor_leaks_over_20_explanations(browser, server, chelsea_png):
    page, ready = open_classify(browser, f"{server}/?backend=webgl&weights=float32")
    try:
        classify_file(page, chelsea_png)
        explain(page, method="gradcam")  # loads the layers model (its weights stay: that is expected)
        before = page.evaluate("belka.numTensors()")
        for k in range(20):
            if k % 5 == 4:
                done = explain(page, method="occlusion", patch=32, stride=32, classIndex=k)
            else:
                done = explain(page, method="gradcam", layer=LAYERS[k % 3], classIndex=k * 37)
            assert "error" not in done, done
        assert page.evaluate("belka.explanations()") == 21
        assert page.evaluate("belka.numTensors()") == before
        assert page.errors == []
    finally:
        page.context.close()


# -- the method explains: a model whose class depends on one region only -------------------------
#
# Every picture has a dark decoy square on noise; class "bright" means a bright square is there
# too. On a test picture with both, only the bright square can drive the class, so both
# methods must peak on it (not on the decoy). (A rule on the square's *position* learned
# through Flatten + Dense is a poor test: Grad-CAM averages each channel's gradients over
# space, which erases a position-dependent dense layer; its map then comes out all zeros.)

SIZE = 32
SQUARE = 6
# How far (input pixels) a peak may miss the square: a Grad-CAM cell at "features" is 2 px; an
# occlusion patch (as big as the square) half covering it already hides half of it.
MARGIN = {"gradcam": 2, "occlusion": SQUARE / 2}


def square_images(rng, count: int):
    """Noise with a dark decoy square; every second picture also has a bright square (label 1)."""
    images = rng.uniform(0.25, 0.6, (count, SIZE, SIZE, 3)).astype(np.float32)
    labels = np.arange(count) % 2
    for k in range(count):
        top, left = rng.integers(0, SIZE - SQUARE + 1, 2)
        images[k, top:top + SQUARE, left:left + SQUARE] = 0.0
        if labels[k]:
            top, left = rng.integers(0, SIZE - SQUARE + 1, 2)
            images[k, top:top + SQUARE, left:left + SQUARE] = 1.0
    return images, labels


@pytest.fixture(scope="module")
def square_model(tmp_path_factory) -> dict:
    """A small CNN trained here (Keras 3, as a user would) to tell whether a bright square is in
    the picture, converted with `belka convert keras`."""
    tf = tf_runtime.tensorflow()
    keras = tf.keras
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="features")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2, name="logits")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(2e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    rng = np.random.default_rng(0)
    images, labels = square_images(rng, 3000)
    model.fit(images, labels, epochs=10, batch_size=64, verbose=0)
    test_images, test_labels = square_images(rng, 400)
    accuracy = float((model.predict(test_images, verbose=0).argmax(1) == test_labels).mean())
    assert accuracy >= 0.95, accuracy

    folder = tmp_path_factory.mktemp("square")
    model.save(folder / "square.keras")
    (folder / "labels.txt").write_text("no bright square\nbright square\n")
    out = folder / "models"
    convert_in_process("keras", folder / "square.keras", "--labels", folder / "labels.txt", "--crop", "none",
                       "--value-range", "0,1", "--out", out, "--name", "square")
    image = np.random.default_rng(1).uniform(0.25, 0.6, (SIZE, SIZE, 3)).astype(np.float32)
    image[3:3 + SQUARE, 4:4 + SQUARE] = 1.0     # the bright square, top left
    image[22:22 + SQUARE, 20:20 + SQUARE] = 0.0  # the decoy, bottom right
    return {"models": out, "image": image, "square": (3, 4)}


def in_square(heat: np.ndarray, square: tuple[int, int], margin: float) -> bool:
    """Whether the heatmap's peak, in input pixels, lies on the square (grown by ``margin``)."""
    h, w = heat.shape
    row, col = np.unravel_index(heat.argmax(), heat.shape)
    y, x = (row + 0.5) * SIZE / h, (col + 0.5) * SIZE / w  # the peak cell's centre
    top, left = square
    return top - margin <= y <= top + SQUARE + margin and left - margin <= x <= left + SQUARE + margin


def test_both_methods_point_at_the_only_region_that_decides(browser, square_model, tmp_path):
    from PIL import Image

    png = tmp_path / "square.png"
    Image.fromarray((square_model["image"] * 255).round().astype(np.uint8)).save(png)
    with serve(square_model["models"]) as url:
        # the server
        server = {method: server_explain(url, "square", square_model["image"], method=method, class_index=1,
                                         patch=SQUARE, stride=2, layer="features")
                  for method in ("gradcam", "occlusion")}
        assert server["gradcam"]["probability"] > 0.5  # the model sees the bright square
        for method, body in server.items():
            assert in_square(np.array(body["heatmap"]), square_model["square"], MARGIN[method]), (method, body)

        # the page, on the picture of the same input
        page, ready = open_classify(browser, f"{url}/?backend=cpu&weights=float32")
        try:
            assert ready["ok"], ready
            result = classify_file(page, png)
            assert result["top5"][0]["label"] == "bright square"
            np.testing.assert_allclose(page_input(result, SIZE), square_model["image"], atol=1 / 255)
            layers = [layer["name"] for layer in httpx.get(f"{url}/api/models/square/layers").json()]
            assert layers[-1] == "features"
            gradcam = explain(page, method="gradcam", classIndex=1)
            assert gradcam["layer"] == "features" and gradcam["shape"] == [16, 16]
            occlusion = explain(page, method="occlusion", classIndex=1, patch=SQUARE, stride=2)
            for body in (gradcam, occlusion):
                heat = np.array(body["heatmap"]).reshape(body["shape"])
                assert in_square(heat, square_model["square"], MARGIN[body["method"]]), (body["method"], heat.round(2))
            assert pearson(gradcam["heatmap"], server["gradcam"]["heatmap"]) >= 0.99
            assert page.errors == []
        finally:
            page.context.close()
