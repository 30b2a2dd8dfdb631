"""POST /api/models: a head taught in the page, saved as a Belka model (app/teach.py), and the
guards on that write. The head is made here as the page's TF.js would send it (weightSpecs and
float32 bytes) on the session's MobileNetV2 0.35/96; the saved model's server predictions equal
what the base's features times the head compute."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings

BASE = "mobilenet-v2-0.35-96"
LABELS = ["squirrel", "not squirrel"]


def head(features: int = 1280, classes: int = 2, hidden: int | None = None, seed: int = 0):
    """(weightSpecs, bytes, [(kernel, bias)]) as TF.js's model.save gives them."""
    rng = np.random.default_rng(seed)
    widths = [features, *([hidden] if hidden else []), classes]
    layers = [(rng.normal(0, 0.05, (a, b)).astype(np.float32), rng.normal(0, 0.1, b).astype(np.float32))
              for a, b in zip(widths, widths[1:])]
    specs, data = [], b""
    for index, (kernel, bias) in enumerate(layers):
        specs += [{"name": f"dense_{index}/kernel", "shape": list(kernel.shape), "dtype": "float32"},
                  {"name": f"dense_{index}/bias", "shape": list(bias.shape), "dtype": "float32"}]
        data += kernel.astype("<f4").tobytes() + bias.astype("<f4").tobytes()
    return specs, data, layers


def form(name="taught", base=BASE, labels=LABELS, specs=None, data=None, **extra):
    default_specs, default_data, _ = head()
    specs = default_specs if specs is None else specs
    data = default_data if data is None else data
    fields = {"name": name, "base": base, "labels": json.dumps(labels), "head": json.dumps({"weightSpecs": specs}),
              **{k: v for k, v in extra.items()}}
    return {"data": fields, "files": {"weights": ("weights.bin", data, "application/octet-stream")}}


@pytest.fixture
def models(small_mobilenet, tmp_path):
    folder = tmp_path / "models"
    shutil.copytree(small_mobilenet["dir"], folder / BASE)
    return folder


def client_for(models, **settings) -> TestClient:
    return TestClient(create_app(Settings(models_dir=models, **settings)))


def error(response) -> str:
    return response.json()["error"]["message"]


def test_a_taught_head_becomes_a_belka_model_the_server_runs(models, small_mobilenet):
    from tensorflowjs.converters import keras_tfjs_loader

    import tf_keras

    client = client_for(models)
    specs, data, layers = head(hidden=16, seed=3)
    response = client.post("/api/models", **form(specs=specs, data=data,
                                                  settings=json.dumps({"epochs": 20, "learningRate": 0.001})))
    assert response.status_code == 201, response.text
    assert response.json()["model"] == "taught"
    manifest = json.loads((models / "taught" / "manifest.json").read_text())
    assert manifest["labels"] == LABELS and manifest["task"] == "classification"
    assert manifest["source"]["kind"] == "taught" and manifest["source"]["base"] == BASE
    assert manifest["source"]["training"] == {"epochs": 20, "learningRate": 0.001}
    assert manifest["preprocessing"] == small_mobilenet["manifest"]["preprocessing"]
    assert set(manifest["formats"]) == {"graph", "layers", "saved"}
    assert manifest["features"]["layer"] == "taught_hidden_1"  # what its last layer reads: it can be a base too
    assert "taught" in [m["name"] for m in client.get("/api/models").json()]

    # the server's predictions: the base's features through the head, numbers as the page's head gives
    base = keras_tfjs_loader.load_keras_model(str(models / BASE / "layers" / "model.json"))
    features = tf_keras.Model(base.inputs, base.get_layer("global_average_pooling2d").output)
    x = np.random.default_rng(1).uniform(-1, 1, (2, 96, 96, 3)).astype(np.float32)
    hidden = np.maximum(np.asarray(features(x)) @ layers[0][0] + layers[0][1], 0)
    expected = hidden @ layers[1][0] + layers[1][1]
    predicted = client.post("/api/models/taught/predict?include_logits=true", json={"instances": x.tolist()})
    assert predicted.status_code == 200, predicted.text
    logits = np.array([p["logits"] for p in predicted.json()["predictions"]])
    np.testing.assert_allclose(logits, expected, atol=1e-4)

    # the download: TF.js models, a Keras file that computes the same, labels and manifest
    import io
    import zipfile

    download = client.get("/api/models/taught/download")
    assert download.status_code == 200 and download.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(download.content))
    names = set(archive.namelist())
    assert {"taught/manifest.json", "taught/labels.txt", "taught/tfjs_graph/model.json",
            "taught/tfjs_layers/model.json", "taught/taught.keras"} <= names
    assert archive.read("taught/labels.txt").decode().splitlines() == LABELS
    archive.extract("taught/taught.keras", models.parent)
    keras_file = tf_keras.models.load_model(models.parent / "taught" / "taught.keras")
    np.testing.assert_allclose(np.asarray(keras_file(x)), expected, atol=1e-4)
    assert client.get("/api/models/nope/download").status_code == 404

    # an existing name: refused unless replace=true, then replaced
    again = client.post("/api/models", **form(labels=["cat", "cup"]))
    assert again.status_code == 409 and "replace=true" in error(again)
    replaced = client.post("/api/models", **form(labels=["cat", "cup"], replace="true"))
    assert replaced.status_code == 201, replaced.text
    assert json.loads((models / "taught" / "manifest.json").read_text())["labels"] == ["cat", "cup"]


def test_a_head_on_a_base_without_a_layers_model(tmp_path, tiny_graph_only):
    """A base with no TF.js layers model (graph and SavedModel only): the taught model is built
    on its frozen SavedModel cut at the features node the page read, with the Grad-CAM maps, and
    converted to graph + SavedModel. Its predictions and Grad-CAM equal the Keras model the base
    came from, with the head on its pooled features; the download holds the SavedModel."""
    import io
    import zipfile

    import keras
    import tensorflow as tf

    models = tmp_path / "models"
    shutil.copytree(tiny_graph_only["dir"], models / "tiny")
    client = client_for(models)
    specs, data, layers = head(features=12, classes=2, hidden=5, seed=4)
    response = client.post("/api/models", **form(name="on-tiny", base="tiny", specs=specs, data=data))
    assert response.status_code == 201, response.text
    manifest = json.loads((models / "on-tiny" / "manifest.json").read_text())
    assert set(manifest["formats"]) == {"graph", "saved"} and manifest["source"]["kind"] == "taught"
    assert manifest["source"]["features"] == tiny_graph_only["manifest"]["features"]["node"]
    assert manifest["explain"]["gradcam"] == "graph" and manifest["explain"]["layer"] == "features"
    assert manifest["features"]["size"] == 5  # the hidden layer: a taught model can be a base too

    original = keras.models.load_model(tiny_graph_only["keras"])
    split = keras.Model(original.inputs, [original.get_layer("features").output, original.get_layer("pool").output])
    x = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)

    def taught(pooled):
        hidden = tf.nn.relu(tf.matmul(pooled, layers[0][0]) + layers[0][1])
        return tf.matmul(hidden, layers[1][0]) + layers[1][1]

    predicted = client.post("/api/models/on-tiny/predict?include_logits=true", json={"instances": x.tolist()})
    assert predicted.status_code == 200, predicted.text
    logits = np.array([p["logits"] for p in predicted.json()["predictions"]])
    np.testing.assert_allclose(logits, np.asarray(taught(split(x)[1])), atol=1e-4)

    # Grad-CAM through the head: the server's equals the Keras model's, split at "features"
    maps = tf.constant(np.asarray(split(x[:1])[0]))
    pool = original.get_layer("pool")
    with tf.GradientTape() as tape:
        tape.watch(maps)
        score = taught(pool(maps))[0, 1]
    weights = tf.reduce_mean(tape.gradient(score, maps), axis=(1, 2), keepdims=True)
    cam = np.maximum(np.asarray(tf.reduce_sum(maps * weights, axis=-1))[0], 0)
    explained = client.post("/api/models/on-tiny/explain", json={
        "instances": x[:1].tolist(), "method": "gradcam", "class_index": 1})
    assert explained.status_code == 200, explained.text
    heatmap = np.array(explained.json()["heatmap"])
    assert heatmap.shape == cam.shape == (16, 16)
    np.testing.assert_allclose(heatmap, cam / cam.max(), atol=1e-4)

    archive = zipfile.ZipFile(io.BytesIO(client.get("/api/models/on-tiny/download").content))
    names = set(archive.namelist())
    assert {"on-tiny/tfjs_graph/model.json", "on-tiny/saved_model/saved_model.pb"} <= names
    assert not any(name.endswith(".keras") or "tfjs_layers" in name for name in names)


@pytest.mark.parametrize(("settings", "headers", "status", "says"), [
    ({"allow_saves": False}, {}, 403, "turned off"),
    ({"host": "0.0.0.0"}, {}, 403, "BELKA_ADMIN_TOKEN"),
    ({"admin_token": "s3cret"}, {}, 401, "admin token"),
    ({"admin_token": "s3cret"}, {"authorization": "Bearer wrong"}, 403, "not this server's"),
    ({"host": "0.0.0.0", "admin_token": "s3cret"}, {"authorization": "Bearer wrong"}, 403, "not this server's"),
    ({}, {"origin": "http://evil.example"}, 403, "another site"),
])
def test_writes_are_guarded(models, settings, headers, status, says):
    response = client_for(models, **settings).post("/api/models", headers=headers, **form())
    assert response.status_code == status, response.text
    assert says in error(response)
    assert sorted(p.name for p in models.iterdir()) == [BASE]  # nothing written


def test_the_right_token_lets_a_save_through_to_its_checks(models):
    client = client_for(models, host="0.0.0.0", admin_token="s3cret")
    response = client.post("/api/models", headers={"authorization": "Bearer s3cret",
                                                   "origin": "http://testserver"}, **form(name="Bad Name"))
    assert response.status_code == 422 and "model name" in error(response)


@pytest.mark.parametrize(("change", "status", "says"), [
    ({"name": "../escape"}, 422, "model name"),
    ({"name": ".hidden"}, 422, "model name"),
    ({"labels": ["only one"]}, 422, "teach 2 to 100"),
    ({"labels": ["a", "a"]}, 422, "same name"),
    ({"base": "nope"}, 404, "no classifier 'nope'"),
    ({"specs": head(features=1000)[0], "data": head(features=1000)[1]}, 422, "does not take 1280 features"),
    ({"specs": head(classes=3)[0], "data": head(classes=3)[1]}, 422, "3 scores for 2 labels"),
    ({"data": head()[1][:-4]}, 422, "fewer than the specs need"),
    ({"data": head()[1] + b"\0\0\0\0"}, 422, "the specs"),
])
def test_bad_saves_say_why_and_write_nothing(models, change, status, says):
    response = client_for(models).post("/api/models", **form(**change))
    assert response.status_code == status, response.text
    assert says in error(response)
    assert sorted(p.name for p in models.iterdir()) == [BASE]


def test_a_base_without_features_and_a_head_too_big(models):
    manifest_path = models / BASE / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    shutil.copytree(models / BASE, models / "old-base")
    (models / "old-base" / "manifest.json").write_text(json.dumps({**manifest, "features": None}))
    response = client_for(models).post("/api/models", **form(base="old-base"))
    assert response.status_code == 422 and "convert it again" in error(response)
    small = client_for(models, max_head_bytes=1000).post("/api/models", **form())
    assert small.status_code == 413 and "over" in error(small)


def test_a_failed_save_leaves_nothing_behind(models, monkeypatch):
    from app.convert.errors import VerificationFailed
    from app.convert.tasks import classification

    def broken(*args, **kwargs):
        raise VerificationFailed("forced for the test")

    monkeypatch.setattr(classification, "check_numbers", broken)
    response = client_for(models).post("/api/models", **form())
    assert response.status_code == 500 and "forced for the test" in error(response)
    assert sorted(p.name for p in models.iterdir()) == [BASE]  # no model, no staging folder
