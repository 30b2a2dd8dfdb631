"""Grad-CAM on the server, on the very weights the browser differentiates.

The browser's Grad-CAM needs the TF.js *layers* model (a GraphModel cannot be
differentiated), so the server reads the same ``layers/`` artifacts back into
legacy Keras (tensorflowjs's own loader) and computes, with tf.GradientTape:

1. split the model at ``layer``: activations A = layer output [h, w, channels];
2. score = the model's output for ``class_index`` (for Belka's models the
   pre-softmax logit; a model that ends in softmax gives the probability);
3. channel weights = spatial mean of dscore/dA;
4. heatmap = ReLU(sum over channels of weight * A), divided by its maximum
   (all zeros when nothing pushes the class up), in [0, 1], at the layer's
   resolution (resizing to the image is the display's job).

Inference mode throughout: ``training=False``, so BatchNorm uses its moving
statistics, as the browser does.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from app import tf_runtime


def load_layers_model(model_dir: Path):
    """The TF.js layers model in ``model_dir/layers`` as a tf_keras model (same weights)."""
    tf_runtime.tensorflowjs()
    from tensorflowjs.converters import keras_tfjs_loader

    return keras_tfjs_loader.load_keras_model(str(model_dir / "layers" / "model.json"))


def spatial_layers(model) -> list[tuple[str, list[int]]]:
    """(name, output shape [h, w, channels]) of every layer with a spatial output, input
    excluded, in model order: the layers a heatmap can be taken from."""
    found = []
    for layer in model.layers[1:]:
        shape = layer.output_shape
        if isinstance(shape, tuple) and len(shape) == 4:
            found.append((layer.name, [int(d) for d in shape[1:]]))
    return found


def default_layer(model) -> str:
    """The last layer with a spatial output (MobileNetV2: out_relu, the last conv block)."""
    layers = spatial_layers(model)
    if not layers:
        raise ValueError("the model has no layer with a spatial (h, w, channels) output")
    return layers[-1][0]


def split_at(model, layer: str):
    """The model as a function of its input with two outputs: ``layer``'s activations and the
    model's output (KeyError-free: raises ValueError naming the layers when ``layer`` is unknown)."""
    keras = tf_runtime.tf_keras()
    names = [name for name, _ in spatial_layers(model)]
    if layer not in names:
        raise ValueError(f"no layer with a spatial output named {layer!r}")
    return keras.Model(model.inputs, [model.get_layer(layer).output, model.output])


def gradcam(split, images: np.ndarray, class_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps [N, h, w] in [0, 1] for ``class_index`` at the split's layer (see the module
    doc), and the model's outputs [N, classes] for the same images. ``split`` is
    ``split_at(model, layer)``."""
    tf = tf_runtime.tensorflow()
    x = tf.constant(images, dtype=tf.float32)
    with tf.GradientTape() as tape:
        activations, outputs = split(x, training=False)
        score = outputs[:, class_index]
    grads = tape.gradient(score, activations)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)          # [N, 1, 1, C]
    cam = tf.nn.relu(tf.reduce_sum(activations * weights, axis=-1)).numpy()  # [N, h, w]
    return normalise(cam), outputs.numpy()


def normalise(maps: np.ndarray) -> np.ndarray:
    """Each map divided by its maximum (all zeros where the maximum is not positive)."""
    peak = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, *([1] * (maps.ndim - 1)))
    return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0).astype(np.float32)
