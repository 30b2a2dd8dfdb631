"""A Keras 3 model config translated into the Keras 2 (tf_keras) one, the only one TF.js 4.22 reads.

``batch_shape`` becomes ``batch_input_shape``, dtype policies become dtype strings, the new
``inbound_nodes`` format the old one, Keras 3 operations on Keras tensors (``x / 127.5``) are
marked with OPERATION_PREFIX (layers_model.py replaces them), and options Keras 2 does not know
are dropped (said in a note). Pure data: the config in, the config out; layers_model.py does
the graph surgery and the rebuild.
"""
from __future__ import annotations

import inspect
from typing import Any

# Keys Keras 3 adds to every serialized object that Keras 2 does not know.
_KERAS3_ONLY_KEYS = ("module", "registered_name", "build_config", "compile_config", "shared_object_id")
_DTYPE_POLICIES = ("DTypePolicy", "FloatDTypePolicy", "Policy")
# Keyword arguments every Keras 2 layer accepts besides those of its own __init__.
_LAYER_BASE_KWARGS = {
    "name", "trainable", "dtype", "dynamic", "input_dim", "input_shape", "batch_input_shape",
    "batch_size", "weights", "activity_regularizer", "autocast", "implementation",
}
# The class-name prefix of a Keras 3 operation on Keras tensors (keras.ops.Add...), not a layer.
OPERATION_PREFIX = "keras.ops."


def translate(obj: Any, notes: list[str], tf_keras) -> Any:
    """The Keras 2 form of (any part of) a Keras 3 config; what is dropped goes into ``notes``."""
    if isinstance(obj, list):
        return [translate(item, notes, tf_keras) for item in obj]
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
            out[key] = as_node_list(value)
        else:
            out[key] = translate(value, notes, tf_keras)
    if class_name and str(obj.get("module", "")).startswith("keras.src.ops"):
        # A Keras 3 operation on Keras tensors (x / 127.5, x[..., ::-1]...): not a layer, even when
        # tf_keras has a layer of the same name (Add, Subtract, Multiply...)
        out["class_name"] = f"{OPERATION_PREFIX}{class_name}"
        return out
    if class_name and isinstance(out.get("config"), dict):
        out["config"] = _fit_config(class_name, out["config"], obj.get("module") or "", notes, tf_keras)
    return out


def as_node_list(value):
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
