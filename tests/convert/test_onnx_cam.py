"""Grad-CAM for ONNX models without gradients: the class activation map of a pooling + linear head
(app/convert/onnx_cam.py), which the converter adds as an output and checks.

The reference is Grad-CAM itself: the same network built in Keras with the same weights, and the
server's Grad-CAM (app/inference/gradcam.py, tf.GradientTape) at the same layer. For a pooling +
linear head the two must be the same map; for any other head there is no map, and the manifest
and the API say why."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.convert import onnx_cam
from app.main import create_app
from app.settings import Settings
from tests.conftest import convert_in_process
from tests.convert.test_onnx_model import CLASSES, build

SIZE = 16


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("onnx_cam")
    (folder / "labels.txt").write_text("\n".join(f"class {i}" for i in range(CLASSES)) + "\n")
    out = folder / "models"
    sources = {"nchw": build(folder / "nchw.onnx", size=(SIZE, SIZE)),
               "nhwc": build(folder / "nhwc.onnx", layout="NHWC", size=(SIZE, SIZE)),
               "softmax": build(folder / "softmax.onnx", size=(SIZE, SIZE), softmax=True),
               "hidden": build(folder / "hidden.onnx", size=(SIZE, SIZE), hidden=True)}
    for name, source in sources.items():
        convert_in_process("onnx", source, "--labels", folder / "labels.txt", "--preprocessing", "raw", "--out", out)
    manifests = {name: json.loads((out / name / "manifest.json").read_text()) for name in sources}
    return {"out": out, "sources": sources, "manifests": manifests}


def keras_twin(source: Path):
    """The ONNX model's network in Keras (NHWC), with its weights: Conv 3x3 (layer "act" after its
    ReLU), global average pooling, Dense."""
    import onnx
    from onnx import numpy_helper

    from app import tf_runtime

    tf_runtime.tensorflow()
    import tf_keras as keras

    weights = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(source)).graph.initializer}
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", name="conv")(inputs)
    x = keras.layers.ReLU(name="act")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(CLASSES, name="fc")(x)
    model = keras.Model(inputs, outputs)
    model.get_layer("conv").set_weights([weights["conv_w"].transpose(2, 3, 1, 0), weights["conv_b"]])
    model.get_layer("fc").set_weights([weights["fc_w"], weights["fc_b"]])
    return model


def test_a_pooling_and_linear_head_gets_its_class_activation_map(converted):
    for name in ("nchw", "nhwc", "softmax"):
        explain = converted["manifests"][name]["explain"]
        assert explain["gradcam"] == explain["server"] == "cam" and explain["layer"] == "act", (name, explain)
        assert explain["shape"] == [SIZE, SIZE, 6] and explain["output"] == onnx_cam.CAM_OUTPUT
    hidden = converted["manifests"]["hidden"]["explain"]
    assert hidden["gradcam"] is None and "not pooling and one linear layer" in hidden["reason"], hidden


@pytest.mark.parametrize("name", ["nchw", "nhwc"])
def test_it_is_the_grad_cam_tensorflow_computes(converted, name):
    from app.inference import gradcam

    model = keras_twin(converted["sources"][name])
    image = np.random.default_rng(7).uniform(0, 255, (SIZE, SIZE, 3)).astype(np.float32)
    with TestClient(create_app(Settings(models_dir=converted["out"]))) as client:
        for class_index in range(CLASSES):
            body = client.post(f"/api/models/{name}/explain", json={
                "instances": [(image.transpose(2, 0, 1) if name == "nchw" else image).tolist()],
                "method": "gradcam", "class_index": class_index}).json()
            expected, outputs = gradcam.gradcam(gradcam.split_at(model, "act"), image[None], class_index)
            assert body["gradcam"]["layer"] == "act"
            np.testing.assert_allclose(body["heatmap"], expected[0], atol=1e-5)
            assert float(np.max(expected[0])) == pytest.approx(1.0) or float(np.max(expected[0])) == 0.0
            shifted = np.exp(outputs[0] - outputs[0].max())
            assert body["probability"] == pytest.approx(float(shifted[class_index] / shifted.sum()), abs=1e-5)


def test_a_map_that_does_not_add_up_is_refused():
    """The converter's check: the map's spatial mean plus the bias is the logits; a map read from
    the wrong weights is no map."""
    rng = np.random.default_rng(0)
    cam = rng.normal(size=(4, 3, 3, CLASSES))
    bias = rng.normal(size=CLASSES)
    logits = cam.mean(axis=(1, 2)) + bias
    assert onnx_cam.check(cam, logits, "logits", bias) is None
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert onnx_cam.check(cam, probabilities, "probabilities", bias) is None
    assert "does not add up" in onnx_cam.check(cam[..., ::-1], logits, "logits", bias)
    assert "does not add up" in onnx_cam.check(cam, probabilities, "probabilities", bias[::-1])
