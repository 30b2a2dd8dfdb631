"""A user's own Keras 3 models (converted with `belka convert keras`) in the real classify page,
checked against the server on the same input tensor and against the original Keras model.

- An EfficientNet-like stem: Rescaling(1/255), Normalization with set (adapted-like) mean and
  variance, conv, BatchNorm with randomised moving statistics, swish, conv, pooling,
  Dense(4), converted with ``--preprocessing raw``. Its layers model keeps the
  ``Normalization`` (TF.js has none: static/js/custom-layers.js registers ours). In the page
  (wasm and cpu): the prediction equals the server's /predict and the Keras model's; Grad-CAM
  through the *layers* model at layers after the Normalization matches the server's /explain
  (Pearson r >= 0.99, same argmax cell) and its class score is the model's logit, so the
  custom layer loads and computes the right numbers in the browser.
- A binary classifier as in TensorFlow's transfer-learning tutorial, tiny: RandomFlip,
  ``x / 127.5 - 1`` on the Keras tensor, a nested base model called with ``training=False``,
  a one-unit head; labels cat, dog; ``--value-range 0,255``. With a logit head and with a
  sigmoid head: the page shows exactly two classes whose probabilities add up to 1, equal to
  the server's and to the Keras model's sigmoid; the manifest says which head it was.
- No tensor leaks across classifications and explanations (custom layer included).

Numbers are printed at the end of the module (run with -s).
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from app import tf_runtime
from tests.browser.conftest import classify_file, open_classify, serve
from tests.conftest import convert_in_process

SIZE = 32
STEM_LABELS = ["alpha", "beta", "gamma", "delta"]
BINARY_LABELS = ["cat", "dog"]
# Normalization's statistics, on 0..1 inputs: far from (0, 1), so a layer that ignored them,
# or used the variance where the standard deviation belongs, would compute other numbers.
NORM_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
NORM_VARIANCE = np.array([0.229, 0.224, 0.225], np.float32) ** 2
# backend -> the Grad-CAM layers checked (wasm lacks Conv2DBackpropFilter: only after the
# last convolution there; see static/js/gradcam.js)
STEM_LAYERS = {"wasm": ["features"], "cpu": ["stem_conv", "stem_act", "features"]}
NUMBERS: dict[str, list[float]] = {}


def record(name: str, value: float):
    NUMBERS.setdefault(name, []).append(float(value))


@pytest.fixture(scope="module", autouse=True)
def _print_numbers():
    yield
    for name, values in NUMBERS.items():
        worst = min(values) if name.startswith("r ") else max(values)
        print(f"\n[user models in the page] {name}: {'min' if name.startswith('r ') else 'max'} "
              f"{worst:.3g} over {len(values)}")


# -- the models ---------------------------------------------------------------------------------

def _randomise_batchnorm(layer, rng):
    gamma, beta, mean, variance = layer.get_weights()
    layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.2, beta.shape),
                       rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 2.0, variance.shape)])


def stem_model(keras):
    """EfficientNet's stem, tiny: its Normalization has set mean and variance weights."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255, name="rescale")(inputs)
    x = keras.layers.Normalization(axis=-1, name="norm")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.Activation("swish", name="stem_act")(x)
    x = keras.layers.Conv2D(12, 3, padding="same", activation="relu", name="features")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(len(STEM_LABELS), name="logits")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(1)
    norm = model.get_layer("norm")
    norm.set_weights([NORM_MEAN, NORM_VARIANCE, np.array(1000, dtype=norm.get_weights()[2].dtype)])
    if hasattr(norm, "finalize_state"):
        norm.finalize_state()
    _randomise_batchnorm(model.get_layer("stem_bn"), rng)
    dense = model.get_layer("logits")
    kernel, bias = dense.get_weights()
    dense.set_weights([rng.normal(0, 1.0, kernel.shape), bias])
    return model


def binary_model(keras, head_activation, picture: np.ndarray):
    """The transfer-learning tutorial's cats vs dogs, tiny: augmentation, ``x / 127.5 - 1``,
    a base model called with training=False, pooling, one unit. The head's bias puts the
    photo's logit near 0.8, so its probabilities are far from 0 and 1."""
    keras.utils.set_random_seed(2)
    rng = np.random.default_rng(2)
    base_in = keras.Input((SIZE, SIZE, 3))
    y = keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="base_conv1")(base_in)
    y = keras.layers.BatchNormalization(name="base_bn1")(y)
    y = keras.layers.ReLU(name="base_relu1")(y)
    y = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="base_conv2")(y)
    y = keras.layers.BatchNormalization(name="base_bn2")(y)
    y = keras.layers.ReLU(name="base_relu2")(y)
    base = keras.Model(base_in, y, name="base")
    for name in ("base_bn1", "base_bn2"):
        _randomise_batchnorm(base.get_layer(name), rng)
    base.trainable = False
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.RandomFlip("horizontal", name="flip")(inputs)
    x = x / 127.5 - 1
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(0.2, name="dropout")(x)
    outputs = keras.layers.Dense(1, activation=head_activation, name="head")(x)
    model = keras.Model(inputs, outputs)
    head = model.get_layer("head")
    kernel, _ = head.get_weights()
    kernel = rng.normal(0, 1.0, kernel.shape).astype(np.float32)
    features = keras.Model(inputs, model.get_layer("pool").output)(picture[None], training=False)
    z0 = float((np.asarray(features) @ kernel).item())
    head.set_weights([kernel, np.array([0.8 - z0], np.float32)])
    return model


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """skimage's chelsea (a cat, 300x451) as a PNG."""
    from PIL import Image
    from skimage import data

    path = tmp_path_factory.mktemp("user-models-photo") / "chelsea.png"
    Image.fromarray(data.chelsea()).save(path)
    return path


@pytest.fixture(scope="module")
def converted(tmp_path_factory, photo) -> dict:
    """The three models, saved as .keras and converted by the CLI."""
    from PIL import Image

    tf_runtime.tensorflow()
    import keras

    folder = tmp_path_factory.mktemp("user-models")
    # roughly what the page feeds the models (centre crop, resize, 0..255): only to set a bias
    image = Image.open(photo)
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    picture = np.asarray(image.crop((left, top, left + side, top + side)).resize((SIZE, SIZE), Image.BILINEAR),
                         np.float32)
    models = {"stem": stem_model(keras), "binary-logit": binary_model(keras, None, picture),
              "binary-sigmoid": binary_model(keras, "sigmoid", picture)}
    (folder / "stem.txt").write_text("\n".join(STEM_LABELS) + "\n")
    (folder / "binary.txt").write_text("\n".join(BINARY_LABELS) + "\n")
    flags = {"stem": ["--labels", folder / "stem.txt", "--preprocessing", "raw"],
             "binary-logit": ["--labels", folder / "binary.txt", "--value-range", "0,255"],
             "binary-sigmoid": ["--labels", folder / "binary.txt", "--value-range", "0,255"]}
    for name, model in models.items():
        model.save(folder / f"{name}.keras")
    # one models folder each (a server loads every model of its folder at start-up); converted in
    # this process: the models are what the tests need, the command has its own tests
    dirs = {name: folder / f"models-{name}" for name in models}
    for name in models:
        convert_in_process("keras", folder / f"{name}.keras", *flags[name], "--out", dirs[name], "--name", name)
    manifests = {name: json.loads((dirs[name] / name / "manifest.json").read_text()) for name in models}
    return {"dirs": dirs, "keras": models, "manifests": manifests}


@pytest.fixture(scope="module")
def servers(converted):
    """name -> the URL of a server whose classify page opens that model: one server per model,
    started and stopped all at once (each loads only its own model at start-up; picking among
    several models in one page is tests/browser/test_model_picker.py's)."""
    contexts = {name: serve(folder) for name, folder in converted["dirs"].items()}
    with ThreadPoolExecutor(len(contexts)) as pool:
        futures = {name: pool.submit(context.__enter__) for name, context in contexts.items()}
    urls = {name: future.result() for name, future in futures.items() if future.exception() is None}
    try:
        for future in futures.values():
            if future.exception() is not None:
                raise future.exception()
        yield urls
    finally:  # stop every server that started, whatever failed
        with ThreadPoolExecutor(len(contexts)) as pool:
            list(pool.map(lambda name: contexts[name].__exit__(None, None, None), urls))


# -- helpers ------------------------------------------------------------------------------------

def page_input(result: dict) -> np.ndarray:
    return np.array(result["input"], np.float32).reshape(SIZE, SIZE, 3)


def server_predict(url: str, model: str, image: np.ndarray) -> dict:
    response = httpx.post(f"{url}/api/models/{model}/predict",
                          json={"instances": [image.tolist()], "top_k": 1000, "include_logits": True}, timeout=120)
    assert response.status_code == 200, response.text
    prediction = response.json()["predictions"][0]
    probabilities = np.zeros(len(prediction["top_k"]))
    for entry in prediction["top_k"]:
        probabilities[entry["index"]] = entry["probability"]
    return {"probabilities": probabilities, "logits": prediction["logits"],
            "output_kind": response.json()["output_kind"]}


def server_explain(url: str, model: str, image: np.ndarray, **options) -> dict:
    response = httpx.post(f"{url}/api/models/{model}/explain", json={"instances": [image.tolist()], **options},
                          timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def explain(page, **request) -> dict:
    return page.evaluate("(r) => belka.explain(r)", request)


def keras_outputs(model, image: np.ndarray) -> np.ndarray:
    """The original Keras model's output for one input, in inference mode."""
    return np.asarray(model(image[None], training=False))[0].astype(np.float64)


def compare_gradcam(mine: dict, theirs: dict, label: str) -> float:
    """Asserts the page's heatmap matches the server's (r >= 0.99, same argmax cell); returns r."""
    assert "error" not in mine, mine
    heat = np.array(mine["heatmap"], np.float64).reshape(mine["shape"])
    expected = np.array(theirs["heatmap"], np.float64)
    assert heat.shape == expected.shape, label
    assert expected.max() > 0 and expected.std() > 0.05, (label, "a flat map proves nothing")
    r = float(np.corrcoef(heat.ravel(), expected.ravel())[0, 1])
    diff = float(np.abs(heat - expected).max())
    record(f"r Grad-CAM {label}", r)
    record(f"max |heatmap diff| {label}", diff)
    assert r >= 0.99, (label, r)
    assert heat.argmax() == expected.argmax(), label
    assert mine["score"] == pytest.approx(theirs["gradcam"]["score"], abs=1e-4), label
    return r


# -- the EfficientNet-like stem with its Normalization ------------------------------------------

def test_the_stem_keeps_its_normalization_in_the_layers_model(converted):
    manifest = converted["manifests"]["stem"]
    assert "layers" in manifest["formats"], manifest["conversion"]
    assert manifest["conversion"]["layers_model"] == {"written": True, "reason": None}
    assert manifest["explain"]["gradcam"] == "layers"
    assert manifest["preprocessing"]["value_range"] == [0, 255]
    assert manifest["output"]["kind"] == "logits" and "binary" not in manifest["output"]
    model_json = json.loads((converted["dirs"]["stem"] / "stem" / "layers" / "model.json").read_text())
    layers = model_json["modelTopology"]["model_config"]["config"]["layers"]
    classes = {layer["config"]["name"]: layer["class_name"] for layer in layers}
    assert classes["norm"] == "Normalization", classes
    weights = {w["name"]: w["shape"] for group in model_json["weightsManifest"] for w in group["weights"]}
    assert weights.get("norm/mean") == [3] and weights.get("norm/variance") == [3], weights


@pytest.mark.parametrize("backend", ["wasm", "cpu"])
def test_the_stem_predicts_and_explains_in_the_page_like_the_server(browser, servers, converted, photo, backend):
    url = servers["stem"]
    model = converted["keras"]["stem"]
    page, ready = open_classify(browser, f"{url}/?backend={backend}&weights=float32")
    try:
        assert ready == {"ok": True, "backend": backend}, ready
        result = classify_file(page, photo)
        image = page_input(result)
        mine = np.array(result["probabilities"], np.float64)
        theirs = server_predict(url, "stem", image)
        assert theirs["output_kind"] == "logits"
        diff = np.abs(mine - theirs["probabilities"]).max()
        record(f"max |probability diff| stem page vs server ({backend})", diff)
        assert diff <= 1e-4, diff
        logits = np.array(result["logits"], np.float64)
        expected = keras_outputs(model, image)
        logit_diff = max(np.abs(logits - np.array(theirs["logits"])).max(), np.abs(logits - expected).max())
        record(f"max |logit diff| stem page vs server and Keras ({backend})", logit_diff)
        assert logit_diff <= 1e-4, (logits, theirs["logits"], expected)
        assert mine.max() < 0.99, mine  # not saturated: the comparison means something
        assert [e["index"] for e in result["top5"]] == list(np.argsort(-mine, kind="stable"))

        # Grad-CAM through the layers model (and so through our Normalization in the page)
        for layer in STEM_LAYERS[backend]:
            for class_index in range(len(STEM_LABELS)):
                mine_cam = explain(page, method="gradcam", layer=layer, classIndex=class_index)
                assert "error" not in mine_cam, (layer, mine_cam)
                assert (mine_cam["model"], mine_cam["source"], mine_cam["layer"]) == ("layers", "page", layer)
                assert mine_cam["scoreKind"] == "logit"
                # the layers model's logit in the page is the Keras model's
                assert mine_cam["score"] == pytest.approx(expected[class_index], abs=1e-4), (layer, class_index)
                theirs_cam = server_explain(url, "stem", image, method="gradcam", layer=layer,
                                            class_index=class_index)
                if np.array(theirs_cam["heatmap"]).max() == 0:  # nothing pushes this class up here
                    assert np.array(mine_cam["heatmap"]).max() == 0
                    continue
                compare_gradcam(mine_cam, theirs_cam, f"stem {layer} ({backend})")
        assert page.errors == [], page.errors
    finally:
        page.context.close()


# -- binary classifiers ---------------------------------------------------------------------------

@pytest.mark.parametrize("name, head, kind", [("binary-logit", "logit", "logits"),
                                              ("binary-sigmoid", "sigmoid", "probabilities")])
def test_a_binary_classifier_shows_two_classes_in_the_page(browser, servers, converted, photo, name, head, kind):
    manifest = converted["manifests"][name]
    assert manifest["output"]["binary"] == {"head": head, "negative": "cat", "positive": "dog"}
    assert manifest["output"]["kind"] == kind and manifest["output"]["shape"] == [None, 2]
    assert manifest["labels"] == BINARY_LABELS
    assert manifest["preprocessing"]["value_range"] == [0, 255]
    assert "layers" in manifest["formats"], manifest["conversion"]
    layers_text = (converted["dirs"][name] / name / "layers" / "model.json").read_text()
    assert "RandomFlip" not in layers_text and "Dropout" not in layers_text

    url = servers[name]
    page, ready = open_classify(browser, f"{url}/?backend=wasm&weights=float32")
    try:
        assert ready == {"ok": True, "backend": "wasm"}, ready
        result = classify_file(page, photo)
        image = page_input(result)
        top = result["top5"]
        assert sorted(e["label"] for e in top) == BINARY_LABELS, top
        total = sum(e["probability"] for e in top)
        record(f"|1 - p(cat) - p(dog)| {name} page", abs(1 - total))
        assert total == pytest.approx(1, abs=1e-6), top
        mine = np.array(result["probabilities"], np.float64)
        assert mine.shape == (2,)
        theirs = server_predict(url, name, image)
        assert theirs["output_kind"] == kind
        diff = np.abs(mine - theirs["probabilities"]).max()
        record(f"max |probability diff| {name} page vs server", diff)
        assert diff <= 1e-5, (mine, theirs["probabilities"])
        # the Keras model's one unit, made two classes: p(dog) = sigmoid(z), or the unit itself
        unit = keras_outputs(converted["keras"][name], image)[0]
        p_dog = 1 / (1 + np.exp(-unit)) if head == "logit" else unit
        record(f"max |p(dog) diff| {name} page vs Keras", abs(mine[1] - p_dog))
        assert mine[1] == pytest.approx(p_dog, abs=1e-5) and mine[0] == pytest.approx(1 - p_dog, abs=1e-5)
        assert 0.05 < p_dog < 0.95, p_dog  # not saturated
        if head == "logit":
            np.testing.assert_allclose(result["logits"], [-unit / 2, unit / 2], atol=1e-5)
        else:
            assert result["logits"] is None
        # Grad-CAM on the flattened base model, in the page and on the server
        for class_index in (0, 1):
            mine_cam = explain(page, method="gradcam", layer="base_relu2", classIndex=class_index)
            assert (mine_cam.get("model"), mine_cam.get("source")) == ("layers", "page"), mine_cam
            theirs_cam = server_explain(url, name, image, method="gradcam", layer="base_relu2",
                                        class_index=class_index)
            if np.array(theirs_cam["heatmap"]).max() == 0:
                assert np.array(mine_cam["heatmap"]).max() == 0
                continue
            compare_gradcam(mine_cam, theirs_cam, f"{name} base_relu2 (wasm)")
        # the layers model is loaded now: classifying and explaining again leaves no tensor behind
        tensors = page.evaluate("belka.numTensors()")
        assert classify_file(page, photo)["probabilities"] == result["probabilities"]
        assert "error" not in explain(page, method="gradcam", classIndex=1)
        assert "error" not in explain(page, method="occlusion", patch=16, stride=8)
        assert page.evaluate("belka.numTensors()") == tensors
        assert page.errors == [], page.errors
    finally:
        page.context.close()


# -- no leaks -------------------------------------------------------------------------------------

def test_no_tensor_leaks(browser, servers, photo):
    """Classifications, Grad-CAM and occlusion, again and again, on the stem (its custom layer)."""
    page, ready = open_classify(browser, f"{servers['stem']}/?backend=wasm&weights=float32")
    try:
        assert ready["ok"], ready
        first = classify_file(page, photo)
        # the first explanation loads the layers model (its weights stay): count after it
        assert "error" not in explain(page, method="gradcam")
        tensors = page.evaluate("belka.numTensors()")
        for round_ in range(3):
            again = classify_file(page, photo)
            assert again["top5"] == first["top5"]
            for class_index in range(2):
                assert "error" not in explain(page, method="gradcam", classIndex=class_index)
            assert "error" not in explain(page, method="occlusion", patch=16, stride=8)
            assert page.evaluate("belka.numTensors()") == tensors, round_
        assert page.errors == [], page.errors
    finally:
        page.context.close()
