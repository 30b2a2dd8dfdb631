"""The features a classifier's head reads (issue 14's foundation: /teach trains a new head on
them). The conversion records in the manifest which graph node computes them (and the layers
model's layer of that name); the model's worker computes them for a picture ("features"
operation), and they equal what Keras computes for the same input tensor: the session's
MobileNetV2 (its layers model loaded back into Keras, cut at that layer) and a tiny Keras
classifier of our own (Dropout between its pooling and its head)."""
from __future__ import annotations

import base64
import json
import re
import shutil

import numpy as np
import pytest

from app import tf_runtime
from tests.browser.conftest import classify_file, new_page, serve
from tests.conftest import convert_in_process

MOBILENET = "mobilenet-v2-0.35-96"
FEATURES_ATOL = 1e-4

PAGE_FEATURES = """async (b64) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const image = await createImageBitmap(new Blob([bytes], {type: 'image/png'}),
    {imageOrientation: 'from-image', colorSpaceConversion: 'none', premultiplyAlpha: 'none'});
  const {features} = await window.belka.worker('features', {image});
  return features;
}"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory, small_mobilenet):
    tf_runtime.tensorflow()
    import keras

    keras.utils.set_random_seed(9)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="features")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(0.3)(x)
    outputs = keras.layers.Dense(3, name="head")(x)
    tiny = keras.Model(inputs, outputs)
    work = tmp_path_factory.mktemp("features")
    tiny.save(work / "tiny.keras")
    (work / "labels.txt").write_text("a\nb\nc\n")
    models = work / "models"
    shutil.copytree(small_mobilenet["dir"], models / MOBILENET)
    convert_in_process("keras", work / "tiny.keras", "--labels", work / "labels.txt", "--out", models,
                       "--name", "tiny")
    return {"models": models, "tiny": tiny}


def cut_at(model, layer: str):
    """``model`` up to ``layer``'s output (a Keras 3 model, or a tf_keras one from TF.js files)."""
    if type(model).__module__.startswith("tf_keras"):
        import tf_keras as keras
    else:
        import keras
    return keras.Model(model.inputs, model.get_layer(layer).output)


def manifest(folder, name: str) -> dict:
    return json.loads((folder["models"] / name / "manifest.json").read_text())


def test_the_manifest_names_the_features_node(folder):
    mobilenet = manifest(folder, MOBILENET)["features"]
    assert mobilenet == {"node": "StatefulPartitionedCall/mobilenetv2_0.35_96/global_average_pooling2d/Mean",
                         "size": 1280, "layer": "global_average_pooling2d"}
    tiny = manifest(folder, "tiny")["features"]
    assert tiny["size"] == 6 and re.search(r"/pool(_\d+)?/Mean$", tiny["node"]), tiny  # through the Dropout
    assert tiny["layer"] == ("pool" if "layers" in manifest(folder, "tiny")["formats"] else None)


def test_the_worker_computes_the_features_keras_computes(browser, folder, chelsea_png):
    from tensorflowjs.converters import keras_tfjs_loader

    tf_runtime.tensorflowjs()
    mobilenet = keras_tfjs_loader.load_keras_model(str(folder["models"] / MOBILENET / "layers" / "model.json"))
    cut = {MOBILENET: (mobilenet, "global_average_pooling2d"), "tiny": (folder["tiny"], "pool")}
    photo = base64.b64encode(chelsea_png.read_bytes()).decode()
    with serve(folder["models"]) as url:
        page = new_page(browser)
        page.set_default_timeout(120_000)
        try:
            for name, (model, layer) in cut.items():
                page.goto(f"{url}/?model={name}&backend=wasm&weights=float32")
                assert page.evaluate("window.belka.ready")["ok"]
                result = classify_file(page, chelsea_png)
                size = manifest(folder, name)["preprocessing"]["size"][0]
                image = np.array(result["input"], np.float32).reshape(1, size, size, 3)
                expected = np.asarray(cut_at(model, layer)(image, training=False))[0]
                mine = np.array(page.evaluate(PAGE_FEATURES, photo), np.float32)
                assert mine.shape == expected.shape == (manifest(folder, name)["features"]["size"],)
                assert expected.std() > 0, name  # features that vary prove something
                assert np.abs(mine - expected).max() <= FEATURES_ATOL, (name, np.abs(mine - expected).max())
            before = page.evaluate("belka.numTensors()")
            page.evaluate(PAGE_FEATURES, photo)
            assert page.evaluate("belka.numTensors()") == before
        finally:
            page.context.close()
