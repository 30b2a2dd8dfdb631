"""Rebuild a Keras 3 model as a legacy (tf_keras 2.x) model with the same weights.

Why: TF.js 4.22 only reads the Keras 2 layers-model JSON. Keras 3 (TF 2.19's
default ``tf.keras``) writes ``batch_shape`` instead of ``batch_input_shape``,
``DTypePolicy`` objects instead of dtype strings, ``module`` /
``registered_name`` keys and a new ``inbound_nodes`` format, so
``tf.loadLayersModel`` fails ("An InputLayer should be passed either a
`batchInputShape` or an `inputShape`"; older converters said "Unknown layer:
Functional"). We translate the Keras 3 config into the Keras 2 one, build it
with tf_keras, copy the weights layer by layer and then save with tf_keras,
whose JSON TF.js loads. Conversion later checks the result numerically against
the original Keras 3 model, so a translation that changed the maths fails loudly.
"""
from __future__ import annotations

import inspect
import json
from typing import Any

from app import tf_runtime
from app.convert.errors import BadInput

# Keys Keras 3 adds to every serialized object that Keras 2 does not know.
_KERAS3_ONLY_KEYS = ("module", "registered_name", "build_config", "compile_config", "shared_object_id")
_DTYPE_POLICIES = ("DTypePolicy", "FloatDTypePolicy", "Policy")
# Keyword arguments every Keras 2 layer accepts besides those of its own __init__.
_LAYER_BASE_KWARGS = {
    "name", "trainable", "dtype", "dynamic", "input_dim", "input_shape", "batch_input_shape",
    "batch_size", "weights", "activity_regularizer", "autocast", "implementation",
}


def to_legacy_keras(model) -> tuple[Any, list[str]]:
    """Return (tf_keras model with ``model``'s weights, notes on what was dropped)."""
    tf_keras = tf_runtime.tf_keras()

    notes: list[str] = []
    config = {"class_name": model.__class__.__name__, "config": model.get_config()}
    if config["class_name"] not in ("Functional", "Sequential", "Model"):
        raise BadInput(
            f"the model is a subclassed Keras model ({config['class_name']}); only Sequential and "
            "functional models can be written as a TF.js layers model. Rebuild it with the "
            "functional API, or convert with --formats graph,saved.")
    if config["class_name"] == "Model":
        config["class_name"] = "Functional"
    legacy = _translate(json.loads(json.dumps(config, default=_json_default)), notes, tf_keras)
    try:
        rebuilt = tf_keras.models.model_from_json(json.dumps(legacy))
    except Exception as exc:  # noqa: BLE001 - any failure here means "cannot translate"
        raise BadInput(
            f"this Keras 3 model cannot be rebuilt as a Keras 2 model for TF.js ({_first_line(exc)}). "
            "Custom layers need a TF.js implementation; with standard layers only, "
            "please report it.") from exc
    _copy_weights(model, rebuilt)
    return rebuilt, sorted(set(notes))


def _json_default(obj):
    # get_config() may hold tuples and numpy scalars; json handles tuples already.
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"cannot serialize {type(obj).__name__} in the model config")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def _translate(obj: Any, notes: list[str], tf_keras) -> Any:
    if isinstance(obj, list):
        return [_translate(item, notes, tf_keras) for item in obj]
    if not isinstance(obj, dict):
        return obj
    class_name = obj.get("class_name")
    if class_name in _DTYPE_POLICIES and isinstance(obj.get("config"), dict):
        return obj["config"].get("name", "float32")
    out = {}
    for key, value in obj.items():
        if key in _KERAS3_ONLY_KEYS:
            continue
        if key == "inbound_nodes":
            out[key] = [_translate_node(node) for node in value]
        elif key in ("input_layers", "output_layers"):
            out[key] = _as_node_list(value)
        else:
            out[key] = _translate(value, notes, tf_keras)
    if class_name and isinstance(out.get("config"), dict):
        out["config"] = _fit_config(class_name, out["config"], obj.get("module") or "", notes, tf_keras)
    return out


def _as_node_list(value):
    # Keras 3 writes a single ["name", 0, 0]; Keras 2 always a list of them.
    if value and isinstance(value[0], str):
        return [value]
    return value


def _translate_node(node) -> list:
    if isinstance(node, list):  # already Keras 2 style
        return node
    tensors: list[list] = []

    def collect(value):
        if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
            name, node_index, tensor_index = value["config"]["keras_history"]
            tensors.append([name, node_index, tensor_index, {}])
        elif isinstance(value, (list, tuple)):
            for item in value:
                collect(item)

    collect(node.get("args", []))
    kwargs = {k: v for k, v in (node.get("kwargs") or {}).items()
              if not (isinstance(v, dict) and v.get("class_name") == "__keras_tensor__")}
    if tensors and kwargs:
        tensors[0][3] = kwargs
    return tensors


def _fit_config(class_name: str, config: dict, module: str, notes: list[str], tf_keras) -> dict:
    """Drop the Keras 3 config keys that the tf_keras class of the same name does not accept."""
    if class_name == "InputLayer":
        config = dict(config)
        if "batch_shape" in config:
            config["batch_input_shape"] = config.pop("batch_shape")
        config.pop("optional", None)
        return config
    if class_name in ("Functional", "Sequential"):
        return config
    namespace = {
        "keras.initializers": tf_keras.initializers,
        "keras.regularizers": tf_keras.regularizers,
        "keras.constraints": tf_keras.constraints,
    }.get(module, tf_keras.layers)
    cls = getattr(namespace, class_name, None)
    if cls is None:
        return config  # unknown class: let tf_keras report it with its own message
    accepted = _accepted_kwargs(cls)
    if accepted is None:
        return config
    dropped = [k for k in config if k not in accepted]
    for key in dropped:
        if config[key] not in (None, False, {}, [], 0):
            notes.append(f"{class_name}: dropped Keras 3 option {key}={config[key]!r}")
    return {k: v for k, v in config.items() if k in accepted}


def _accepted_kwargs(cls) -> set[str] | None:
    names: set[str] = set()
    for klass in inspect.getmro(cls):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names.update(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        if klass.__name__ == "Layer":
            return names | _LAYER_BASE_KWARGS
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return names - {"self"}
    return None


def _copy_weights(source, target) -> None:
    by_name = {layer.name: layer for layer in target.layers}
    for layer in source.layers:
        values = layer.get_weights()
        if not values:
            continue
        twin = by_name.get(layer.name)
        if twin is None:
            raise BadInput(f"layer {layer.name!r} disappeared while rebuilding the model for TF.js")
        expected = [tuple(w.shape) for w in twin.get_weights()]
        if expected != [tuple(v.shape) for v in values]:
            raise BadInput(
                f"layer {layer.name!r} stores its weights differently in Keras 3 and Keras 2 "
                f"({[tuple(v.shape) for v in values]} vs {expected}); it cannot be converted "
                "to a TF.js layers model.")
        twin.set_weights(values)
