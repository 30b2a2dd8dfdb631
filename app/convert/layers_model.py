"""The TF.js layers model of a Keras model: a legacy (tf_keras 2.x) rebuild TF.js can load.

TF.js 4.22 reads only the Keras 2 layers-model JSON, and only the layer classes it
implements. From the user's model (Keras 3 or Keras 2) ``build`` makes a tf_keras model
that computes the same numbers and that TF.js can load:

1. a Keras 3 config is translated to the Keras 2 one (keras3_config.py);
2. nested models (a MobileNetV2 base called with ``training=False``) are flattened into
   one graph, so Grad-CAM can reach their layers;
3. layers that are the identity at inference (``RandomFlip``, ``RandomRotation``,
   ``RandomZoom``... found by ``keras_model.inference_identities``) are removed;
4. layers TF.js cannot load but that are a per-pixel affine map of one input (the Keras 3
   operation layers that ``preprocess_input`` and arithmetic on Keras tensors create,
   Keras 2's ``TFOpLambda``, a ``Lambda`` such as ``t / 127.5 - 1``, a channel reversal)
   are replaced by a ``Rescaling`` (one scale and offset) or a 1x1 ``Conv2D`` (a matrix
   across channels and an offset), measured by running the original layer on a few
   images; anything else is reported as the reason there is no layers model; Keras 3's
   ``hard_sigmoid`` / ``hard_silu`` activations become ``Rescaling``, ``ReLU`` and ``Multiply``,
   and a global pooling with ``keepdims`` (which TF.js ignores) a pooling and a ``Reshape``;
5. a binary head (one output unit) gets a fixed ``Dense(2)`` after it, as the SavedModel
   does (see ``keras_model.two_class_weights``);
6. the weights are copied layer by layer from the original.

``Normalization`` stays a ``Normalization``: TF.js has none, so static/js/custom-layers.js
registers ours. The conversion then checks the result numerically in TF.js against the
original model; a layers model that does not load or compute the same numbers is not
written, and the manifest says why.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np

from app import tf_runtime
from app.convert.keras3_config import OPERATION_PREFIX, as_node_list, translate
from app.convert.keras_model import IDENTITY_AT_INFERENCE, is_keras3, keras_of, outer_node, two_class_weights

_MODEL_CLASSES = ("Functional", "Sequential", "Model")
# Keras 2 layers that hold arbitrary Python: replaced when they are affine, else no layers model.
_PYTHON_LAYERS = ("Lambda", "TFOpLambda", "SlicingOpLambda")
AFFINE_MAX_CHANNELS = 64
AFFINE_RTOL = 1e-5
TWO_CLASSES_LAYER = "belka_two_classes"
# Keras 3 operations between two tensors (x * hard_sigmoid(x) in MobileNetV3) that are Keras 2
# merge layers, which TF.js has.
MERGE_OPERATIONS = {"Add": "Add", "Subtract": "Subtract", "Multiply": "Multiply", "Maximum": "Maximum",
                    "Minimum": "Minimum"}
# Keras 3 activations TF.js lacks (MobileNetV3), spelled in layers it has: hard_sigmoid(x) =
# relu6(x + 3) / 6 = min(max(x / 6 + 0.5, 0), 1) and hard_silu(x) = x * hard_sigmoid(x).
# (TF.js's own hardSigmoid is Keras 2's 0.2 x + 0.5, another function.)
HARD_ACTIVATIONS = ("hard_sigmoid", "hard_silu", "hard_swish")
# Global poolings TF.js 4.22 runs without their ``keepdims`` option (squeeze-and-excite blocks).
GLOBAL_POOLINGS = ("GlobalAveragePooling2D", "GlobalMaxPooling2D")


class LayersUnavailable(Exception):
    """No TF.js layers model can be made; the message says why (one sentence)."""


def build(original, identities: set[int], binary: str | None) -> tuple[Any, list[str]]:
    """(tf_keras model computing what ``original`` computes, notes); LayersUnavailable if none can.
    ``identities``: the ids of the layers that are the identity at inference; ``binary``: the
    kind of a one-unit head ("logit" or "sigmoid"), None for a softmax/logits head."""
    tf_keras = tf_runtime.tf_keras()

    notes: list[str] = []
    config = {"class_name": original.__class__.__name__, "config": original.get_config()}
    if config["class_name"] not in _MODEL_CLASSES:
        raise LayersUnavailable(
            f"the model is a subclassed Keras model ({config['class_name']}), whose Python code TF.js "
            "cannot read; rebuild it with the functional API to get one")
    if config["class_name"] == "Model":
        config["class_name"] = "Functional"
    if is_keras3(original):
        config = translate(json.loads(json.dumps(config, default=_json_default)), notes, tf_keras)
    else:
        config = json.loads(json.dumps(config, default=_json_default))
    graph = _Graph(identities, keras3=is_keras3(original))
    body = graph.flatten(_as_functional(config), original)
    synthetic: dict[str, list[np.ndarray]] = {}
    body = graph.simplify(body, synthetic, tf_keras)
    if not is_keras3(original) and not binary and body == _as_functional(config):
        return original, []  # a Keras 2 model TF.js can load as it is (MobileNetV2): no rebuild
    if binary:
        body = _append_two_classes(body, binary, synthetic)
    try:
        rebuilt = tf_keras.models.model_from_json(json.dumps({"class_name": "Functional", "config": body}))
    except Exception as exc:  # noqa: BLE001 - any failure here means "cannot translate"
        raise LayersUnavailable(f"Keras 2 cannot rebuild the model ({_first_line(exc)})") from exc
    _copy_weights(graph.sources, synthetic, rebuilt)
    return rebuilt, sorted({n for n in notes if n.split(":")[0] not in IDENTITY_AT_INFERENCE})


def _json_default(obj):
    # get_config() may hold tuples and numpy scalars; json handles tuples already.
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"cannot serialize {type(obj).__name__} in the model config")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


# --- graph surgery on a Keras 2 functional config ----------------------------------------

def _refs(node) -> list[list]:
    """The inbound tensor references of one node: [[layer, node_index, tensor_index, kwargs]]."""
    if node and isinstance(node[0], str):  # Keras 2 writes a single-input op layer's node flat
        return [node]
    return node


def _as_functional(config: dict) -> dict:
    """A model config ({"class_name", "config"}) as a Keras 2 functional body (a Sequential as a
    chain; a nested one may have no input shape, its input comes from the call)."""
    body = config["config"]
    if config["class_name"] != "Sequential":
        return {**body, "layers": [dict(layer) for layer in body["layers"]]}
    layers = list(body["layers"])
    if layers and layers[0]["class_name"] == "InputLayer":
        first, layers = layers[0], layers[1:]
        first = {**first, "name": first["config"]["name"]}
    else:
        shape = (layers[0]["config"].get("batch_input_shape") if layers else None)
        name = f"{body['name']}_input"
        first = {"class_name": "InputLayer", "name": name,
                 "config": {"batch_input_shape": shape, "dtype": "float32", "name": name}}
    chain = [{**first, "inbound_nodes": []}]
    for layer in layers:
        layer_config = dict(layer["config"])
        layer_config.pop("batch_input_shape", None)
        chain.append({"class_name": layer["class_name"], "config": layer_config, "name": layer_config["name"],
                      "inbound_nodes": [[[chain[-1]["name"], 0, 0, {}]]]})
    return {"name": body["name"], "layers": chain, "input_layers": [[first["name"], 0, 0]],
            "output_layers": [[chain[-1]["name"], 0, 0]]}


class _Graph:
    """Flattening and simplification, with the live original layers at hand (for weights
    and for probing what a layer computes)."""

    def __init__(self, identities: set[int], keras3: bool = False):
        self.identities = identities
        self.keras3 = keras3
        self.sources: dict[str, Any] = {}      # rebuilt layer name -> original layer (weights)
        self.live: dict[str, tuple] = {}       # rebuilt layer name -> (original model, name in it)

    def flatten(self, body: dict, model) -> dict:
        """``body`` with every nested model called once replaced by its layers."""
        taken = {layer["name"] for layer in body["layers"]}
        layers, replace = [], {}
        for layer in body["layers"]:
            name = layer["name"]
            if layer["class_name"] in _MODEL_CLASSES and len(layer["inbound_nodes"]) == 1:
                inner_graph = _Graph(self.identities, self.keras3)
                inner = inner_graph.flatten(_as_functional(layer), model.get_layer(name))
                calls = _refs(layer["inbound_nodes"][0])
                renames = {}
                for inner_layer in inner["layers"]:
                    old = inner_layer["name"]
                    new = old if old not in taken else _unique(f"{name}_{old}", taken)
                    taken.add(new)
                    renames[old] = new
                inputs = {ref[0]: calls[k][:3] for k, ref in enumerate(inner["input_layers"])}
                for inner_layer in inner["layers"]:
                    old = inner_layer["name"]
                    if old in inputs:
                        continue
                    new = renames[old]
                    nodes = [[_rename_ref(r, renames, inputs) for r in _refs(node)]
                             for node in inner_layer["inbound_nodes"]]
                    layers.append({**inner_layer, "name": new, "inbound_nodes": nodes,
                                   "config": {**inner_layer["config"], "name": new}})
                    if old in inner_graph.live:
                        self.sources[new] = inner_graph.sources[old]
                        self.live[new] = inner_graph.live[old]
                for t, ref in enumerate(inner["output_layers"]):  # any node index: Keras 2 counts the
                    replace[(name, None, t)] = [renames.get(ref[0], ref[0]), ref[1], ref[2]]  # model's own
                continue
            if layer["class_name"] != "InputLayer":
                self.sources[name] = _find_layer(model, name)
                self.live[name] = (model, name)
            layers.append(layer)
        return _rewire({**body, "layers": layers}, replace)

    def simplify(self, body: dict, synthetic: dict, tf_keras) -> dict:
        """Drop the identity layers; replace the affine Python/operation layers (see the module doc)."""
        layers, replace = [], {}
        for layer in body["layers"]:
            name, cls = layer["name"], layer["class_name"]
            if cls == "InputLayer":
                layers.append(layer)
                continue
            refs = [r for node in layer["inbound_nodes"] for r in _refs(node)]
            if id(self.sources.get(name)) in self.identities:
                replace[(name, 0, 0)] = refs[0][:3]
                continue
            if self.keras3 and cls == "Activation" and layer["config"].get("activation") in HARD_ACTIVATIONS:
                layers.extend(_hard_activation(layer, refs[0]))
                continue
            if cls in GLOBAL_POOLINGS and layer["config"].get("keepdims"):
                layers.extend(_pool_then_reshape(layer, self._channels(name)))
                continue
            operation = cls.removeprefix(OPERATION_PREFIX)
            if cls.startswith(OPERATION_PREFIX) and operation in MERGE_OPERATIONS and len(refs) == 2 \
                    and len(layer["inbound_nodes"]) == 1:
                layers.append({**layer, "class_name": MERGE_OPERATIONS[operation],
                               "config": {"name": name, "dtype": "float32"},
                               "inbound_nodes": [[[*r[:3], {}] for r in refs]]})
                continue
            if cls in _PYTHON_LAYERS or not hasattr(tf_keras.layers, cls):
                if len(layer["inbound_nodes"]) != 1 or len(refs) != 1:
                    raise LayersUnavailable(f"layer {name!r} ({cls}) has no TF.js equivalent")
                replacement = self._affine_replacement(layer, synthetic)
                if replacement is None:
                    replace[(name, 0, 0)] = refs[0][:3]
                    continue
                layer = replacement
            layers.append(layer)
        return _rewire({**body, "layers": layers}, replace)

    def _channels(self, name: str) -> int:
        """The channel count of layer ``name``'s output in the original model."""
        model, original_name = self.live[name]
        channels = _find_layer(model, original_name).output.shape[-1]
        if not channels:
            raise LayersUnavailable(f"layer {name!r} has an output of unknown channel count")
        return int(channels)

    def _affine_replacement(self, layer: dict, synthetic: dict) -> dict | None:
        """A Rescaling / 1x1 Conv2D computing what ``layer`` computes (None: it is the identity)."""
        name, cls = layer["name"], layer["class_name"]
        model, original_name = self.live[name]
        function, shape = _layer_function(model, original_name)
        fit = _fit_affine(function, shape)
        if fit is None:
            raise LayersUnavailable(
                f"layer {name!r} ({cls.removeprefix(OPERATION_PREFIX)}) is Python code TF.js cannot run (it is not a per-pixel "
                "scale, offset or channel reordering, the kinds Belka can rewrite)")
        matrix, offset = fit
        ref = _refs(layer["inbound_nodes"][0])[0]
        node = [[[ref[0], ref[1], ref[2], {}]]]
        channels = matrix.shape[0]
        self.sources.pop(name, None)
        if np.allclose(matrix, np.eye(channels), rtol=0, atol=1e-7) and np.allclose(offset, 0, atol=1e-7):
            return None
        scale = float(matrix[0, 0])
        if np.allclose(matrix, scale * np.eye(channels), rtol=1e-6, atol=0) and np.allclose(offset, offset[0]):
            return {"class_name": "Rescaling", "name": name, "inbound_nodes": node,
                    "config": {"name": name, "scale": scale, "offset": float(offset[0]), "dtype": "float32"}}
        synthetic[name] = [matrix.reshape(1, 1, channels, channels).astype(np.float32),
                           offset.astype(np.float32)]
        return {"class_name": "Conv2D", "name": name, "inbound_nodes": node,
                "config": {"name": name, "filters": channels, "kernel_size": [1, 1], "strides": [1, 1],
                           "padding": "valid", "use_bias": True, "activation": "linear", "dtype": "float32"}}


def _hard_activation(layer: dict, ref: list) -> list[dict]:
    """Keras 3's Activation(hard_sigmoid | hard_silu) as layers TF.js has; the last keeps the name."""
    name, silu = layer["name"], layer["config"]["activation"] != "hard_sigmoid"
    scale_name, clip_name = f"{name}_hard_sigmoid_affine", (f"{name}_hard_sigmoid" if silu else name)
    node = [[[*ref[:3], {}]]]
    layers = [{"class_name": "Rescaling", "name": scale_name, "inbound_nodes": node,
               "config": {"name": scale_name, "scale": 1 / 6, "offset": 0.5, "dtype": "float32"}},
              {"class_name": "ReLU", "name": clip_name, "inbound_nodes": [[[scale_name, 0, 0, {}]]],
               "config": {"name": clip_name, "max_value": 1.0, "dtype": "float32"}}]
    if silu:
        layers.append({"class_name": "Multiply", "name": name, "config": {"name": name, "dtype": "float32"},
                       "inbound_nodes": [[[*ref[:3], {}], [clip_name, 0, 0, {}]]]})
    return layers


def _pool_then_reshape(layer: dict, channels: int) -> list[dict]:
    """A global pooling with keepdims=True as the pooling without it, then Reshape to [1, 1, C]."""
    name = layer["name"]
    pool = f"{name}_pool"
    return [{**layer, "name": pool, "config": {**layer["config"], "name": pool, "keepdims": False}},
            {"class_name": "Reshape", "name": name, "inbound_nodes": [[[pool, 0, 0, {}]]],
             "config": {"name": name, "target_shape": [1, 1, channels], "dtype": "float32"}}]


def _unique(name: str, taken: set[str]) -> str:
    candidate, k = name, 1
    while candidate in taken:
        k += 1
        candidate = f"{name}_{k}"
    return candidate


def _rename_ref(ref: list, renames: dict, inputs: dict) -> list:
    if ref[0] in inputs:
        return [*inputs[ref[0]], *(ref[3:] or [{}])]
    return [renames.get(ref[0], ref[0]), *ref[1:]]


def _rewire(body: dict, replace: dict) -> dict:
    """Point every reference to a replaced (layer, node, tensor) at its replacement."""
    def resolve(ref):
        for _ in range(10000):
            key = next((k for k in ((ref[0], ref[1], ref[2]), (ref[0], None, ref[2])) if k in replace), None)
            if key is None:
                break
            ref = [*replace[key], *ref[3:]]
        return ref
    layers = [{**layer, "inbound_nodes": [[resolve(r) for r in _refs(node)] for node in layer["inbound_nodes"]]}
              for layer in body["layers"]]
    outputs = [resolve(list(ref))[:3] for ref in as_node_list(body["output_layers"])]
    return {**body, "layers": layers, "output_layers": outputs,
            "input_layers": as_node_list(body["input_layers"])}


def _append_two_classes(body: dict, binary: str, synthetic: dict) -> dict:
    (output,) = body["output_layers"]
    layer = {"class_name": "Dense", "name": TWO_CLASSES_LAYER, "inbound_nodes": [[[*output[:3], {}]]],
             "config": {"name": TWO_CLASSES_LAYER, "units": 2, "activation": "linear", "use_bias": True,
                        "dtype": "float32"}}
    synthetic[TWO_CLASSES_LAYER] = list(two_class_weights(binary))
    return {**body, "layers": [*body["layers"], layer], "output_layers": [[TWO_CLASSES_LAYER, 0, 0]]}


def _find_layer(model, name: str):
    """The original layer called ``name`` in ``model`` (None for a Keras 3 operation, which has no weights)."""
    try:
        return model.get_layer(name)
    except ValueError:
        return None


def _layer_function(model, name: str):
    """(function of one numpy batch, its input shape) running ``model``'s node ``name`` alone."""
    model = getattr(model, "_functional", None) or model  # a Keras 3 Sequential keeps its graph there
    operations = getattr(model, "_operations", None) or model.layers
    operation = next(op for op in operations if op.name == name)
    node = outer_node(model, operation)
    nest = tf_runtime.tensorflow().nest
    inputs, outputs = (nest.flatten(node.input_tensors), nest.flatten(node.output_tensors)) if node else ([], [])
    if len(inputs) != 1 or len(outputs) != 1:
        raise LayersUnavailable(f"layer {name!r} ({type(operation).__name__}) has no TF.js equivalent")
    sub = keras_of(model).Model(inputs[0], outputs[0])

    def function(batch: np.ndarray) -> np.ndarray:
        return np.asarray(sub(batch, training=False))
    return function, tuple(inputs[0].shape)


def _fit_affine(function, shape) -> tuple[np.ndarray, np.ndarray] | None:
    """(matrix [C, C], offset [C]) with function(x) = x @ matrix + offset at every pixel, else None.
    Over ``AFFINE_MAX_CHANNELS`` channels only one scale and offset for all are looked for."""
    if len(shape) < 2 or shape[-1] is None:
        return None
    channels = int(shape[-1])
    if channels > AFFINE_MAX_CHANNELS:
        return _fit_scalar_affine(function, shape)
    spatial = [int(d) if d is not None else 8 for d in shape[1:-1]]
    rng = np.random.default_rng(0)
    batch = np.zeros((channels + 3, *spatial, channels), np.float32)
    for k in range(channels):
        batch[1 + k, ..., k] = 1.0
    batch[-2:] = rng.uniform(-3.0, 260.0, size=(2, *spatial, channels))
    try:
        out = function(batch).astype(np.float64)
    except Exception:  # noqa: BLE001 - the layer cannot run alone: not affine as far as we know
        return None
    if out.shape != batch.shape:
        return None
    pixels = out.reshape(len(batch), -1, channels)
    offset = pixels[0, 0]
    matrix = pixels[1:1 + channels, 0] - offset
    predicted = batch[-2:].reshape(2, -1, channels).astype(np.float64) @ matrix + offset
    constant = np.abs(pixels[:1 + channels] - pixels[:1 + channels, :1]).max()
    scale = 1.0 + np.abs(pixels[-2:]).max()
    if constant > AFFINE_RTOL * scale or np.abs(predicted - pixels[-2:]).max() > AFFINE_RTOL * scale:
        return None
    return matrix, offset


def _fit_scalar_affine(function, shape) -> tuple[np.ndarray, np.ndarray] | None:
    """function(x) = a * x + b with one a and b for every value, as (a * I, b * ones), else None."""
    channels = int(shape[-1])
    dims = [int(d) if d is not None else 4 for d in shape[1:]]
    batch = np.stack([np.zeros(dims, np.float32), np.ones(dims, np.float32),
                      np.random.default_rng(0).uniform(-3.0, 260.0, size=dims).astype(np.float32)])
    try:
        out = function(batch).astype(np.float64)
    except Exception:  # noqa: BLE001 - the layer cannot run alone: not affine as far as we know
        return None
    if out.shape != batch.shape:
        return None
    offset, scale = out[0].flat[0], out[1].flat[0] - out[0].flat[0]
    tolerance = AFFINE_RTOL * (1.0 + np.abs(out).max())
    if np.abs(out[0] - offset).max() > tolerance or np.abs(out[1] - offset - scale).max() > tolerance \
            or np.abs(batch[2] * scale + offset - out[2]).max() > tolerance:
        return None
    return scale * np.eye(channels), np.full(channels, offset)


def _copy_weights(sources: dict, synthetic: dict, target) -> None:
    for layer in target.layers:
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if layer.name in synthetic:
            values = synthetic[layer.name]
        elif sources.get(layer.name) is not None:
            values = sources[layer.name].get_weights()
        else:
            values = []
        if not expected and not values:
            continue
        if expected != [tuple(v.shape) for v in values]:
            raise LayersUnavailable(
                f"layer {layer.name!r} stores its weights differently in Keras 2 "
                f"({expected} vs {[tuple(np.shape(v)) for v in values]})")
        layer.set_weights(values)
