"""`belka convert keras FILE` (Keras 2 and Keras 3 files) and `belka convert saved-model DIR`."""
from __future__ import annotations

import json

import numpy as np
import pytest

from app import tf_runtime
from tests.conftest import convert_ok, run_belka

LABELS = ["acorn", "cat", "cup", "rocket", "squirrel"]


def _randomise_batchnorm(model) -> None:
    """Give BatchNorm non-trivial statistics so a mix-up of its four weights would show."""
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if "BatchNormalization" in type(layer).__name__:
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.2, beta.shape),
                               rng.normal(0, 0.5, mean.shape), rng.uniform(0.5, 2.0, var.shape)])


def _functional(k):
    """A small classifier using the layer kinds MobileNet-style models need, incl. a merge."""
    inputs = k.Input((32, 32, 3))
    x = k.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = k.layers.Conv2D(8, 3, padding="same", use_bias=False)(x)
    x = k.layers.BatchNormalization()(x)
    x = k.layers.ReLU(6.0)(x)
    y = k.layers.DepthwiseConv2D(3, padding="same")(x)
    x = k.layers.Add()([x, y])
    x = k.layers.Concatenate()([x, k.layers.MaxPooling2D(1)(x)])
    x = k.layers.GlobalAveragePooling2D()(x)
    x = k.layers.Dropout(0.2)(x)
    outputs = k.layers.Dense(len(LABELS), activation="softmax")(x)
    model = k.Model(inputs, outputs)
    _randomise_batchnorm(model)
    return model


def _sequential(k):
    return k.Sequential([k.Input((16, 16, 3)), k.layers.Conv2D(4, 3, activation="relu"),
                         k.layers.Flatten(), k.layers.Dense(len(LABELS))])


@pytest.fixture(scope="session")
def user_models(tmp_path_factory):
    tf_runtime.tensorflow()
    import keras  # Keras 3, TF 2.19's default

    keras2 = tf_runtime.tf_keras()
    folder = tmp_path_factory.mktemp("user_models")
    keras.utils.set_random_seed(1)
    _functional(keras).save(folder / "k3_functional.keras")
    _functional(keras).save(folder / "k3_functional.h5")
    _sequential(keras).save(folder / "k3_sequential.keras")
    keras2.utils.set_random_seed(2)
    _functional(keras2).save(folder / "k2_functional.h5")
    _functional(keras2).save(folder / "k2_functional.keras")
    (folder / "labels.txt").write_text("\n".join(LABELS) + "\n")
    (folder / "labels.json").write_text(json.dumps({str(i): n for i, n in enumerate(LABELS)}))
    return folder


@pytest.mark.parametrize("filename", ["k3_functional.keras", "k3_functional.h5", "k3_sequential.keras",
                                      "k2_functional.h5", "k2_functional.keras"])
def test_keras_files_convert_to_every_format(user_models, tmp_path, filename):
    summary = convert_ok("keras", user_models / filename, "--labels", user_models / "labels.txt",
                         "--value-range", "0,255", "--out", tmp_path)
    folder = tmp_path / filename.split(".")[0]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["labels"] == LABELS
    assert manifest["preprocessing"]["value_range"] == [0.0, 255.0]
    assert manifest["source"]["keras_version"].startswith(filename[1])
    assert manifest["output"]["kind"] == ("logits" if "sequential" in filename else "probabilities")
    reports = summary["verification"]["formats"]
    assert set(reports) == {"saved", "graph", "layers"}
    for fmt, report in reports.items():
        assert report["max_abs_diff"] <= 1e-4, (fmt, report)
    topology = (folder / "layers" / "model.json").read_text()
    assert '"batch_input_shape"' in topology and '"batch_shape"' not in topology


def test_json_labels_and_size_in_manifest(user_models, tmp_path):
    summary = convert_ok("keras", user_models / "k3_functional.keras", "--labels",
                         user_models / "labels.json", "--crop", "none", "--out", tmp_path, "--name", "mine")
    manifest = json.loads((tmp_path / "mine" / "manifest.json").read_text())
    assert summary["name"] == "mine"
    assert manifest["labels"] == LABELS
    assert manifest["input"]["shape"] == [None, 32, 32, 3]
    assert manifest["preprocessing"]["crop"] == "none"
    assert manifest["weights"]["provenance"] == "file" and len(manifest["weights"]["sha256"]) == 64


def test_saved_model_source(user_models, tmp_path):
    tf = tf_runtime.tensorflow()
    keras2 = tf_runtime.tf_keras()
    model = keras2.models.load_model(str(user_models / "k2_functional.h5"), compile=False)
    export_dir = tmp_path / "exported"

    @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32, name="pixels")])
    def serve(pixels):
        return {"scores": model(pixels, training=False)}

    module = tf.Module()
    module.model = model
    tf.saved_model.save(module, str(export_dir), signatures={"serving_default": serve})

    summary = convert_ok("saved-model", export_dir, "--labels", user_models / "labels.txt",
                         "--value-range", "0,255", "--out", tmp_path / "out")
    assert summary["formats"] == ["graph", "saved"]
    manifest = json.loads((tmp_path / "out" / "exported" / "manifest.json").read_text())
    assert manifest["signature"] == {"input": "pixels", "output": "scores"}
    for fmt, report in summary["verification"]["formats"].items():
        assert report["max_abs_diff"] <= 1e-4, fmt

    layers = run_belka("convert", "saved-model", export_dir, "--labels", user_models / "labels.txt",
                       "--formats", "graph,layers", "--out", tmp_path / "out2")
    assert layers.returncode == 2
    assert "no TF.js layers model can be made" in layers.stderr
    assert not (tmp_path / "out2").exists()
