"""What Belka needs to know about a user's Keras model (Keras 3 or Keras 2) before exporting it.

- ``inference_identities``: the layers that do nothing at inference (random augmentation,
  dropout, noise). They are switched to the identity in the original model, so the
  SavedModel and the graph model hold none of their random ops (a Keras 3 augmentation
  layer draws random numbers even with ``training=False``, from a seed variable that
  ``tf.saved_model.save`` cannot even reach), and they are left out of the layers model.
- ``binary_head``: a model with one output unit is a binary classifier. Its unit is a
  probability when the model ends in a sigmoid (the last layer's ``activation="sigmoid"``,
  an ``Activation("sigmoid")`` layer, or ``keras.ops.sigmoid`` / ``tf.sigmoid`` on the
  output), else a logit. Belka makes it two classes with a fixed linear map
  (``two_class_weights``): a logit z becomes the logits [-z/2, z/2], whose softmax is
  [1 - sigmoid(z), sigmoid(z)]; a probability p becomes [1 - p, p]. Either way the two
  probabilities add up to 1, and Grad-CAM of the first class looks at what lowers z.
- ``explain_split``: where Grad-CAM splits the model when there is no layers model: the
  last layer with an [h, w, channels] output that the whole output depends on alone (its
  tensor is a cut of the graph, so feeding it is enough to compute the output).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from app import tf_runtime

# Layers that are the identity at inference (``training=False``), by class name. Every one is
# also checked numerically before it is switched off. Not here: RandomCrop (at inference it
# crops the centre), AutoContrast and Equalization (deterministic image operations).
IDENTITY_AT_INFERENCE = {
    "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast",
    "RandomBrightness", "RandomHeight", "RandomWidth", "RandomHue", "RandomSaturation",
    "RandomSharpness", "RandomShear", "RandomGrayscale", "RandomColorJitter",
    "RandomColorDegeneration", "RandomPosterization", "RandomInvert", "RandomErasing",
    "RandomGaussianBlur", "RandomPerspective", "RandomElasticTransform", "AugMix", "RandAugment",
    "CutMix", "MixUp", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
    "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization", "StochasticDepth",
}
SIGMOID_FUNCTIONS = {"sigmoid", "math.sigmoid", "nn.sigmoid"}


def is_keras3(model) -> bool:
    return not type(model).__module__.startswith("tf_keras")


def all_layers(model):
    """Every layer of ``model``, nested models' layers included (depth first)."""
    for layer in getattr(model, "layers", []):
        yield layer
        if hasattr(layer, "layers") and layer is not model:
            yield from all_layers(layer)


def inference_identities(model) -> set[int]:
    """The ids of the layers that are the identity at inference; in a Keras 3 model they are
    also switched off (tf_keras's are the identity with ``training=False`` already, and its
    SavedModel export traces each layer's own ``call``, which must stay)."""
    found = set()
    for layer in all_layers(model):
        if type(layer).__name__ not in IDENTITY_AT_INFERENCE or not _is_identity(layer):
            continue
        if is_keras3(layer):
            layer.call = _identity
        found.add(id(layer))
    return found


def _identity(inputs, *args, **kwargs):
    return inputs


def _is_identity(layer) -> bool:
    try:
        shape = [d if d is not None else 8 for d in layer.input.shape]
    except Exception:  # noqa: BLE001 - a layer used several times has no single input: trust its class
        return True
    shape[0] = 2
    x = np.random.default_rng(0).uniform(0, 255, size=shape).astype(np.float32)
    try:
        return bool(np.array_equal(np.asarray(layer(x, training=False)), x))
    except Exception:  # noqa: BLE001 - cannot run alone: keep it (the conversion checks the numbers)
        return False


def output_operation(model):
    """The layer or operation that makes the model's (one) output, looking into nested models."""
    history = model.outputs[0]._keras_history
    operation = getattr(history, "operation", None) or getattr(history, "layer", None) or history[0]
    if hasattr(operation, "outputs") and hasattr(operation, "layers") and operation is not model:
        return output_operation(operation)
    return operation


def binary_head(model) -> str:
    """"sigmoid" when the one-unit output is a probability, else "logit" (see the module doc)."""
    operation = output_operation(model)
    name = type(operation).__name__
    if name == "Sigmoid":  # keras.ops.sigmoid on a Keras tensor
        return "sigmoid"
    if name in ("TFOpLambda",) and operation.get_config().get("function") in SIGMOID_FUNCTIONS:
        return "sigmoid"
    activation = getattr(operation, "activation", None)
    if activation is not None and getattr(activation, "__name__", "") == "sigmoid":
        return "sigmoid"
    return "logit"


def two_class_weights(kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(kernel [1, 2], bias [2]) of the fixed Dense layer that makes a binary head two classes."""
    if kind == "sigmoid":
        return np.array([[-1.0, 1.0]], np.float32), np.array([1.0, 0.0], np.float32)
    return np.array([[-0.5, 0.5]], np.float32), np.zeros(2, np.float32)


def two_classes(outputs, kind: str | None):
    """A TF function of the model's output: itself, or the two classes of a binary head."""
    if kind is None:
        return outputs
    tf = tf_runtime.tensorflow()
    kernel, bias = two_class_weights(kind)
    return tf.matmul(outputs, kernel) + bias


def explain_split(model, identities: set[int] = frozenset()) -> tuple[str, Any, list[int]] | None:
    """(layer name, its output tensor in ``model``, [h, w, channels]) for Grad-CAM, or None;
    layers in ``identities`` (switched off) are passed over."""
    keras = keras_of(model)
    graph = getattr(model, "_functional", None) or model
    operations = list(getattr(graph, "_operations", None) or graph.layers)
    for operation in reversed(operations):
        if type(operation).__name__ == "InputLayer" or not hasattr(operation, "weights") \
                or id(operation) in identities:
            continue
        tensor = outer_output(graph, operation)
        shape = tuple(tensor.shape) if tensor is not None else ()
        if len(shape) != 4 or None in shape[1:]:
            continue
        try:
            keras.Model(tensor, graph.outputs)
        except Exception:  # noqa: BLE001 - not a cut: the output needs more than this tensor
            continue
        return operation.name, tensor, [int(d) for d in shape[1:]]
    return None


def split_model(model, tensor):
    """``model`` with two outputs: ``tensor`` (the Grad-CAM features) and its own output."""
    graph = getattr(model, "_functional", None) or model
    return keras_of(model).Model(graph.inputs, [tensor, graph.outputs[0]])


def outer_node(model, operation):
    """``operation``'s one call in ``model``'s own graph (a nested model has others), or None."""
    in_model = {id(n) for nodes in model._nodes_by_depth.values() for n in nodes}
    nodes = [n for n in operation._inbound_nodes if id(n) in in_model]
    return nodes[0] if len(nodes) == 1 else None


def outer_output(model, operation):
    """``operation``'s output tensor in ``model``'s own graph, or None."""
    node = outer_node(model, operation)
    if node is None:
        return None
    outputs = tf_runtime.tensorflow().nest.flatten(node.output_tensors)
    return outputs[0] if len(outputs) == 1 else None


def keras_of(model):
    """The Keras library ``model`` belongs to: keras (3) or tf_keras (2)."""
    if is_keras3(model):
        tf_runtime.tensorflow()
        import keras
        return keras
    return tf_runtime.tf_keras()
