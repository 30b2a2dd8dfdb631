"""Grad-CAM in the page on the TF.js *graph* model, for classifiers converted without a layers
model (manifest.explain.gradcam == "graph"), and the extended preprocessing spec (bgr, mean, std)
in the page, both checked against the server on the same input tensor.

- A tiny Keras 3 classifier (conv, BatchNorm with randomised moving statistics, conv "features",
  global pooling, dense) built here and converted with ``--formats graph,saved``: no layers
  model, so the page differentiates its graph model fed at the "features" node. Its heatmaps
  match the server's (the SavedModel's belka_gradcam signature): Pearson r >= 0.99, same argmax
  cell, max difference <= 0.01, on wasm, cpu, webgl and webgpu (numbers printed with -s).
- When the backend lacks a kernel the gradient needs (simulated by unregistering it), the page
  asks the server, says so, and leaks nothing; when the server fails too, the card says both.
- No layers model and no Grad-CAM layer: the card says why.
- The same network converted for Caffe-style inputs (``--preprocessing caffe``: BGR, 0..255
  minus the ImageNet mean; a manifest edit while the CLI lacks the flag): the page's
  preprocessed input, its "model input" picture and its occlusion grey equal the server's.
- preprocess.js and model-input.js on their own (toModelInput, pixelToModel, inputToImageData) equal
  app/inference/preprocess.py for rgb/bgr, mean and std specs.
- No tensor leaks; the status names the graph model.
"""
from __future__ import annotations

import json
import subprocess
import sys

import httpx
import numpy as np
import pytest

from app import tf_runtime
from tests.browser.conftest import classify_file, load_tfjs, new_page, open_classify, serve
from tests.conftest import ROOT, convert_in_process

SIZE = 32
FEATURES = "features"
FEATURES_SHAPE = [16, 16, 12]
CAFFE_MEAN = [103.939, 116.779, 123.68]  # keras.applications "caffe": BGR order
IMAGENET_STD_BGR = [57.375, 57.12, 58.395]  # only for the manifest-edit fallback (no --preprocessing)
BACKENDS = ["wasm", "cpu", "webgl", "webgpu"]
# Printed at the end of the module (run with -s to see them): backend -> (min r, max |diff|).
NUMBERS: dict[str, list[tuple[float, float]]] = {}


# -- the models ---------------------------------------------------------------------------------

def _has_preprocessing_flag() -> bool:
    """Whether `belka convert keras` has --preprocessing (tf|torch|caffe) yet."""
    proc = subprocess.run([sys.executable, "-m", "app.cli", "convert", "keras", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    return "--preprocessing" in proc.stdout


def tiny_classifier(scale: float | None = None):
    """Conv, BatchNorm (randomised moving statistics), ReLU, conv "features", global pooling,
    dense: seeded, so every call gives the same weights. ``scale``: a Rescaling layer in front
    (for inputs in 0..255 minus a mean, so the logits stay moderate)."""
    keras = tf_runtime.tensorflow().keras
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = inputs if scale is None else keras.layers.Rescaling(scale, name="scale")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(12, 3, strides=2, padding="same", activation="relu", name=FEATURES)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, name="logits")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    bn = model.get_layer("bn")
    gamma, beta, mean, variance = bn.get_weights()
    bn.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.2, beta.shape),
                    rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 2.0, variance.shape)])
    dense = model.get_layer("logits")
    kernel, bias = dense.get_weights()
    dense.set_weights([rng.normal(0, 1.0, kernel.shape), bias])  # classes that differ clearly
    return model


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict:
    """Two Keras files converted into one models folder: "tiny-rgb" (the CLI's defaults: 0..1,
    RGB) and "tiny-caffe" (0..255, BGR, minus the ImageNet mean; the same network behind a
    Rescaling(1/64)). Neither has a layers model."""
    folder = tmp_path_factory.mktemp("tiny")
    tiny_classifier().save(folder / "tiny.keras")
    tiny_classifier(1 / 64).save(folder / "tiny-caffe.keras")
    labels = folder / "labels.txt"
    labels.write_text("alpha\nbeta\ngamma\n")
    out = folder / "models"
    convert_in_process("keras", folder / "tiny.keras", "--labels", labels, "--formats", "graph,saved", "--out", out,
                       "--name", "tiny-rgb")
    flag = _has_preprocessing_flag()
    if flag:
        convert_in_process("keras", folder / "tiny-caffe.keras", "--labels", labels, "--formats", "graph,saved",
                           "--out", out, "--name", "tiny-caffe", "--preprocessing", "caffe")
    else:  # the CLI cannot say it yet: the same conversion at 0..255, then the spec edited
        convert_in_process("keras", folder / "tiny-caffe.keras", "--labels", labels, "--formats", "graph,saved",
                           "--out", out, "--name", "tiny-caffe", "--value-range", "0,255")
        path = out / "tiny-caffe" / "manifest.json"
        manifest = json.loads(path.read_text())
        manifest["preprocessing"].update(color="bgr", mean=CAFFE_MEAN, std=IMAGENET_STD_BGR)
        path.write_text(json.dumps(manifest, indent=2))
    manifests = {name: json.loads((out / name / "manifest.json").read_text()) for name in ("tiny-rgb", "tiny-caffe")}
    return {"models": out, "manifests": manifests, "flag": flag}


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> dict:
    """A 45x60 colour picture (not square: the centre crop matters; R != B: the channel order
    matters), as PNG bytes."""
    from PIL import Image

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:45, 0:60].astype(np.float32)
    pixels = np.stack([120 + 100 * np.sin(xx / 7), 90 + 80 * np.cos(yy / 5), 60 + 2 * xx], -1)
    pixels += rng.normal(0, 12, pixels.shape)
    pixels[8:20, 14:26] = [250, 40, 30]    # a red square
    pixels[26:38, 34:46] = [20, 60, 240]   # a blue one
    pixels = np.clip(pixels, 0, 255).round().astype(np.uint8)
    path = tmp_path_factory.mktemp("graph-gradcam") / "picture.png"
    Image.fromarray(pixels).save(path)
    return {"path": path, "bytes": path.read_bytes()}


@pytest.fixture(scope="module")
def rgb_server(tiny_models):
    with serve(tiny_models["models"], BELKA_MODEL="tiny-rgb") as url:
        yield url


@pytest.fixture(scope="module", autouse=True)
def _print_numbers():
    yield
    for backend, pairs in NUMBERS.items():
        rs, diffs = zip(*pairs)
        print(f"\n[graph Grad-CAM vs server] {backend}: min r = {min(rs):.9f} (1 - r = {1 - min(rs):.1e}), "
              f"max |diff| = {max(diffs):.2e} over {len(pairs)} heatmaps")


# -- helpers ------------------------------------------------------------------------------------

def server_input(png: bytes, spec: dict) -> np.ndarray:
    """What the server feeds the model for this picture: [H, W, 3]."""
    from app.inference import preprocess

    return preprocess.to_model_input(preprocess.decode(png, 10**7), spec)[0]


def server_explain(url: str, model: str, image: np.ndarray, **options) -> dict:
    response = httpx.post(f"{url}/api/models/{model}/explain", json={"instances": [image.tolist()], **options},
                          timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def page_input(result: dict) -> np.ndarray:
    return np.array(result["input"], np.float32).reshape(SIZE, SIZE, 3)


def explain(page, **request) -> dict:
    return page.evaluate("(r) => belka.explain(r)", request)


def status(page) -> str:
    return page.locator("#explain-status").inner_text()


def compare(mine: dict, theirs: dict, backend: str) -> bool:
    """Asserts the page's heatmap matches the server's; True when it is a real (non-flat) map."""
    heat = np.array(mine["heatmap"], np.float64).reshape(mine["shape"])
    expected = np.array(theirs["heatmap"], np.float64)
    assert heat.shape == expected.shape == tuple(FEATURES_SHAPE[:2])
    assert theirs["gradcam"]["layer"] == FEATURES
    assert mine["score"] == pytest.approx(theirs["gradcam"]["score"], abs=1e-4)
    assert mine["scoreKind"] == theirs["gradcam"]["score_kind"] == "logit"
    diff = float(np.abs(heat - expected).max())
    if expected.max() == 0:
        assert heat.max() == 0
        return False
    r = float(np.corrcoef(heat.ravel(), expected.ravel())[0, 1])
    NUMBERS.setdefault(backend, []).append((r, diff))
    assert r >= 0.99, (backend, r)
    assert heat.argmax() == expected.argmax(), backend
    assert diff <= 0.01, (backend, diff)
    return expected.std() > 0.05 and len(np.unique(expected.round(3))) > 10


def check_input(result: dict, png: bytes, spec: dict, levels: float = 0.02):
    """The page's model input equals the server's for the picture, to ``levels`` pixel levels."""
    from app.inference import preprocess

    mine, theirs = page_input(result), server_input(png, spec)
    diff = np.abs(preprocess.denormalise(mine, spec) - preprocess.denormalise(theirs, spec)).max()
    assert diff <= levels, diff


# -- Grad-CAM on the graph model ------------------------------------------------------------------

def test_the_manifest_says_graph_gradcam(tiny_models):
    for name, manifest in tiny_models["manifests"].items():
        assert "layers" not in manifest["formats"], name
        assert manifest["conversion"]["layers_model"]["written"] is False
        explain_info = manifest["explain"]
        assert explain_info["gradcam"] == "graph" and explain_info["server"] == "saved_model"
        assert explain_info["layer"] == FEATURES and explain_info["shape"] == FEATURES_SHAPE
    spec = tiny_models["manifests"]["tiny-caffe"]["preprocessing"]
    assert spec["color"] == "bgr" and spec["value_range"] == [0, 255] and spec["mean"] == pytest.approx(CAFFE_MEAN)


@pytest.mark.parametrize("backend", BACKENDS)
def test_graph_gradcam_in_the_page_matches_the_server(browser, rgb_server, tiny_models, picture, backend):
    page, ready = open_classify(browser, f"{rgb_server}/?backend={backend}&weights=float32")
    try:
        assert ready == {"ok": True, "backend": backend}, ready
        result = classify_file(page, picture["path"])
        check_input(result, picture["bytes"], tiny_models["manifests"]["tiny-rgb"]["preprocessing"])
        image = page_input(result)
        tensors = page.evaluate("belka.numTensors()")
        real = 0
        for class_index in range(3):
            mine = explain(page, method="gradcam", classIndex=class_index)
            assert "error" not in mine, mine
            assert (mine["source"], mine["model"], mine["layer"]) == ("page", "graph", FEATURES)
            theirs = server_explain(rgb_server, "tiny-rgb", image, method="gradcam", class_index=class_index)
            real += compare(mine, theirs, backend)
        assert real >= 2  # the comparison is not between flat maps
        # three explanations leave no tensor behind (the graph model is the classifier's)
        assert page.evaluate("belka.numTensors()") == tensors
        text = status(page)
        assert f"Grad-CAM on {backend}, on the graph model at {FEATURES}" in text, text
        assert "the only layer available without a layers model" in text
        layer_select = page.locator("#explain-layer")
        assert layer_select.locator("option").all_inner_texts() == [f"{FEATURES} · graph features 16×16×12"]
        assert layer_select.input_value() == FEATURES
        caption = page.locator("#explain-caption").inner_text()
        assert f"at {FEATURES} (16×16)" in caption and "computed by the server" not in caption
        # there is no other layer without a layers model
        other = explain(page, method="gradcam", layer="conv")
        assert "one layer only" in other["error"] and f'"{FEATURES}"' in other["error"]
        # the classifier still works after all that (its graph model was not disposed)
        assert classify_file(page, picture["path"])["top5"] == result["top5"]
        assert page.errors == [], page.errors
    finally:
        page.context.close()


def test_without_the_kernel_the_server_computes_it(browser, rgb_server, picture):
    """A backend without a kernel the gradient needs (simulated: PadV2, the gradient of the
    class-score slice, unregistered): the page asks the server and says so."""
    page, ready = open_classify(browser, f"{rgb_server}/?backend=wasm&weights=float32")
    try:
        result = classify_file(page, picture["path"])
        image = page_input(result)
        tensors = page.evaluate("belka.numTensors()")
        assert page.evaluate("belka.worker('kernel', {name: 'PadV2', present: false})") is False
        try:
            mine = explain(page, method="gradcam", classIndex=1)
            assert "error" not in mine, mine
            assert (mine["source"], mine["model"], mine["layer"], mine["kernel"]) == \
                ("server", "graph", FEATURES, "PadV2")
            text = status(page)
            assert "computed by the server" in text and FEATURES in text, text
            assert "no PadV2 kernel" in text, text
            assert "computed by the server" in page.locator("#explain-caption").inner_text()
            theirs = server_explain(rgb_server, "tiny-rgb", image, method="gradcam", class_index=1)
            np.testing.assert_array_equal(np.array(mine["heatmap"]).reshape(16, 16),
                                          np.array(theirs["heatmap"], np.float32))
            assert mine["score"] == pytest.approx(theirs["gradcam"]["score"], abs=1e-6)
            assert page.evaluate("belka.numTensors()") == tensors
            # and when the server cannot either, the card says both
            page.route("**/api/models/tiny-rgb/explain?*", lambda route: route.fulfill(
                status=422, json={"error": {"code": "unprocessable", "message": "no Grad-CAM signature"}}))
            failed = explain(page, method="gradcam", classIndex=2)
            assert "no PadV2 kernel" in failed["error"] and "no Grad-CAM signature" in failed["error"], failed
            assert status(page) == failed["error"]
            page.unroute("**/api/models/tiny-rgb/explain")
            assert page.evaluate("belka.numTensors()") == tensors
        finally:
            assert page.evaluate("belka.worker('kernel', {name: 'PadV2', present: true})") is True
        # the kernel back: the page computes it again
        back = explain(page, method="gradcam", classIndex=1)
        assert back["source"] == "page", back
        assert page.evaluate("belka.numTensors()") == tensors
        # (Chromium logs the refused request itself)
        assert [e for e in page.errors if "status of 422" not in e] == [], page.errors
    finally:
        page.context.close()


def test_no_gradcam_layer_says_why(browser, rgb_server, picture):
    """A model with neither a layers model nor a Grad-CAM layer in its graph (the manifest
    served with explain.gradcam null): the card says why; occlusion still works."""
    def without_gradcam(route):
        manifest = route.fetch().json()
        manifest["explain"] = {"gradcam": None, "reason": "no layer with a spatial output found"}
        manifest["conversion"]["layers_model"]["reason"] = "a Lambda layer"
        route.fulfill(json=manifest)

    page = new_page(browser, dedicated_worker=True)  # its worker's requests are routed
    try:
        page.route("**/models/tiny-rgb/manifest.json*", without_gradcam)  # * : with its ?v= too
        page, ready = open_classify(browser, f"{rgb_server}/?backend=wasm&weights=float32", page=page)
        assert ready["ok"], ready
        classify_file(page, picture["path"])
        failed = explain(page, method="gradcam")
        assert "no TF.js layers model" in failed["error"], failed
        assert "a Lambda layer; no layer with a spatial output found" in failed["error"], failed
        assert "Occlusion works on any model" in status(page)
        assert "error" not in explain(page, method="occlusion", patch=16, stride=16)
        assert page.errors == [], page.errors
    finally:
        page.context.close()


# -- the Caffe-style model: bgr, mean (and std) ---------------------------------------------------

def test_caffe_preprocessing_gradcam_and_occlusion(browser, tiny_models, picture):
    spec = tiny_models["manifests"]["tiny-caffe"]["preprocessing"]
    with serve(tiny_models["models"], BELKA_MODEL="tiny-caffe") as url:
        page, ready = open_classify(browser, f"{url}/?backend=wasm&weights=float32")
        try:
            assert ready["ok"], ready
            result = classify_file(page, picture["path"])
            check_input(result, picture["bytes"], spec)
            image = page_input(result)
            assert image.min() < -50  # the mean was subtracted
            # what the model sees, drawn back as RGB: the server's pixels (BGR and mean undone)
            drawn = np.array(page.evaluate(
                "() => { const c = document.getElementById('model-view-canvas'); "
                "return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); }"),
                np.float64).reshape(SIZE, SIZE, 4)[..., :3]
            from app.inference import preprocess

            assert np.abs(drawn - preprocess.denormalise(image, spec)).max() <= 1.0

            mine = explain(page, method="gradcam", classIndex=2)
            theirs = server_explain(url, "tiny-caffe", image, method="gradcam", class_index=2)
            compare(mine, theirs, "wasm (caffe)")
            # occlusion: the page's grey patch is the server's (127.5 grey, BGR minus the mean)
            probabilities = np.array(result["probabilities"])
            assert probabilities.max() < 0.999, probabilities  # not saturated: occluding can change it
            top1 = int(probabilities.argmax())
            mine = explain(page, method="occlusion", patch=8, stride=8, classIndex=top1)
            theirs = server_explain(url, "tiny-caffe", image, method="occlusion", patch=8, stride=8,
                                    class_index=top1)
            np.testing.assert_allclose(mine["drops"], np.ravel(theirs["occlusion"]["drops"]), atol=1e-5)
            assert np.abs(mine["drops"]).max() > 1e-3  # the patch changes something
            assert page.errors == [], page.errors
        finally:
            page.context.close()


SPECS = {
    "rgb 0..1": {"size": [32, 32], "crop": "center", "resize": "bilinear", "color": "rgb", "value_range": [0, 1]},
    "caffe": {"size": [24, 40], "crop": "none", "resize": "bilinear", "color": "bgr", "value_range": [0, 255],
              "mean": CAFFE_MEAN},
    "torch": {"size": [32, 32], "crop": "center", "resize": "bilinear", "color": "rgb", "value_range": [0, 1],
              "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    "bgr mean std -1..1": {"size": [20, 28], "crop": "center", "resize": "bilinear", "color": "bgr",
                           "value_range": [-1, 1], "mean": [0.1, -0.2, 0.3], "std": [0.5, 0.75, 1.25]},
}


def test_preprocess_js_is_the_servers_normalise(browser, rgb_server, picture):
    """preprocess.js and model-input.js on their own, for specs the CLI may not write yet:
    toModelInput, pixelToModel and inputToImageData against app/inference/preprocess.py."""
    from app.inference import preprocess

    page = new_page(browser)
    try:
        page.goto(f"{rgb_server}/?backend=wasm&weights=float32")
        assert page.evaluate("window.belka.ready")["ok"]
        load_tfjs(page)  # model-input.js runs where TF.js is: in the page's worker, here on the page
        found = page.evaluate("""async ([bytes, specs]) => {
            const p = await import('/static/js/preprocess.js');
            const m = await import('/static/js/model-input.js');
            const blob = new Blob([new Uint8Array(bytes)], {type: 'image/png'});
            const out = {};
            for (const [name, spec] of Object.entries(specs)) {
              const x = await m.preprocessBlob(blob, spec);
              const data = await x.data();
              x.dispose();
              out[name] = {input: Array.from(data), grey: p.pixelToModel(127.5, spec),
                           colour: p.pixelToModel([10, 100, 200], spec),
                           drawn: Array.from(p.inputToImageData(data, spec).data)};
            }
            return out;
        }""", [list(picture["bytes"]), SPECS])
        for name, spec in SPECS.items():
            got = found[name]
            height, width = spec["size"]
            mine = np.array(got["input"], np.float32).reshape(height, width, 3)
            theirs = server_input(picture["bytes"], spec)
            levels = np.abs(preprocess.denormalise(mine, spec) - preprocess.denormalise(theirs, spec)).max()
            assert levels <= 0.02, (name, levels)
            # the same float32 numbers for one pixel, bit for bit
            assert got["grey"] == preprocess.normalise(np.full(3, 127.5), spec).tolist(), name
            assert got["colour"] == preprocess.normalise(np.array([10.0, 100.0, 200.0]), spec).tolist(), name
            drawn = np.array(got["drawn"], np.float64).reshape(height, width, 4)
            assert (drawn[..., 3] == 255).all()
            assert np.abs(drawn[..., :3] - np.clip(preprocess.denormalise(mine, spec), 0, 255)).max() <= 0.5 + 1e-6
        assert page.errors == [], page.errors
    finally:
        page.context.close()
