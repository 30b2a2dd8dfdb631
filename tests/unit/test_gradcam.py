"""Server-side Grad-CAM: the layers model read back in Python, heatmap shapes, and that the
heatmap points at the only region that can drive the class."""
from __future__ import annotations

import numpy as np
import pytest

from app import tf_runtime
from app.convert import verify
from app.inference import gradcam


@pytest.fixture(scope="module")
def layers_model(small_mobilenet):
    return gradcam.load_layers_model(small_mobilenet["dir"])


def test_layers_model_read_back_in_python_computes_what_the_saved_model_computes(small_mobilenet, layers_model):
    batch = verify.probe_batch(96, 96, [-1, 1], seed=3)
    expected = verify.run_saved_model(small_mobilenet["dir"] / "saved_model",
                                      small_mobilenet["manifest"]["signature"], batch)
    np.testing.assert_allclose(layers_model(batch, training=False).numpy(), expected, atol=1e-4)


def test_spatial_layers_and_default(layers_model):
    layers = dict(gradcam.spatial_layers(layers_model))
    assert layers["block_12_expand"][:2] == [6, 6]  # 96 px / 16
    assert gradcam.default_layer(layers_model) == "out_relu"
    assert layers["out_relu"][:2] == [3, 3]


@pytest.mark.parametrize("layer, size", [("block_12_expand", 6), ("block_16_project", 3), ("out_relu", 3)])
def test_heatmaps_are_normalised_and_at_the_layer_resolution(layers_model, layer, size):
    batch = verify.probe_batch(96, 96, [-1, 1], seed=4)[:2]
    logits = layers_model(batch, training=False).numpy()
    heat, outputs = gradcam.gradcam(gradcam.split_at(layers_model, layer), batch, int(logits[0].argmax()))
    np.testing.assert_allclose(outputs, logits, atol=1e-5)
    assert heat.shape == (2, size, size)
    assert heat.min() >= 0 and heat.max() <= 1
    assert heat[0].max() == pytest.approx(1.0)  # the top class has positive evidence somewhere


def test_heatmap_follows_the_evidence_for_the_class():
    """A model whose class-1 logit grows with a feature that fires only on bright pixels:
    on a dark image with one bright square, Grad-CAM for class 1 lights up the square
    (and its 3x3 neighbourhood) and nothing else."""
    keras = tf_runtime.tf_keras()
    inputs = keras.Input((16, 16, 3))
    features = keras.layers.Conv2D(2, 3, padding="same", activation="relu", kernel_initializer="ones",
                                   bias_initializer="zeros", name="features")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    logits = keras.layers.Dense(2, kernel_initializer="ones", name="logits")(pooled)
    model = keras.Model(inputs, logits)
    image = np.zeros((1, 16, 16, 3), np.float32)
    image[0, 2:5, 10:13] = 1.0  # a bright square, top right
    heat = gradcam.gradcam(gradcam.split_at(model, "features"), image, 1)[0][0]
    assert heat.shape == (16, 16)
    assert np.unravel_index(heat.argmax(), heat.shape) == (3, 11)  # the square's centre
    outside = np.ones_like(heat, bool)
    outside[1:6, 9:14] = False  # the square grown by the 3x3 kernel
    assert heat[outside].max() == 0 and heat.max() == pytest.approx(1.0)
