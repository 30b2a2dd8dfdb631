"""Write the three artifact formats from a SourceModel.

- saved_model/: a TF SavedModel exported from the ORIGINAL model, with a ``serving_default``
  signature (float32 images in, one output tensor out) that the server runs; for a model
  without a layers model, also ``belka_features`` (output and feature maps) and
  ``belka_gradcam`` (the server's Grad-CAM).
- graph/: ``tfjs_graph_model`` (tensorflowjs converter, optimised, fastest in the browser),
  converted from ``belka_features`` when there is one: its ``output`` is what the page
  shows, its ``features`` node is where the page feeds feature maps to differentiate the
  rest (Grad-CAM without a layers model); else from ``serving_default``.
- graph-float16/: the same graph model with float16 weights, half the download, which the
  classify page loads by default (written for a float32 conversion of a classifier, kept
  when its numbers stay within the float16 gate; the server and the parity checks keep
  float32).
- layers/: ``tfjs_layers_model`` written from the legacy Keras rebuild (the only
  Keras JSON that TF.js 4.22 can read), when one can be made (layers_model.py).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from app import tf_runtime
from app.convert import tfjs_graph
from app.convert.sources import SourceModel
from app.convert.tfjs_graph import SHARD_BYTES

FEATURES_SIGNATURE = "belka_features"
GRADCAM_SIGNATURE = "belka_gradcam"


def quantization_map(quantize: str) -> dict | None:
    return None if quantize == "none" else {quantize: True}


def write_saved_model(source: SourceModel, out: Path, gradcam: bool = False) -> None:
    """SavedModel with a serving signature named by ``source.signature``; with ``gradcam`` (the
    model has a Grad-CAM split but no layers model) two more: ``FEATURES_SIGNATURE`` (the output
    and the features, which the TF.js graph model is converted from) and ``GRADCAM_SIGNATURE``
    (the server's Grad-CAM)."""
    tf = tf_runtime.tensorflow()
    from app.convert.keras_model import two_classes

    if source.saved_model_dir is not None and source.binary is None:
        shutil.copytree(source.saved_model_dir, out)
        return
    module = tf.Module()
    input_name, output_name = source.signature["input"], source.signature["output"]
    spec = tf.TensorSpec([None, *source.input_shape], tf.float32, name=input_name)
    if source.saved_model_dir is not None:  # the user's SavedModel with a binary head: two classes
        module.original = tf.saved_model.load(str(source.saved_model_dir))
        call = module.original.signatures["serving_default"]

        def model(images):
            return call(**{input_name: images})[output_name]
    else:
        from app.convert.keras_model import is_keras3

        if is_keras3(source.model):
            module.model = source.model
        else:  # a tf_keras model attached whole makes tf.saved_model trace every layer (17 s for a
            module.weights = list(source.model.variables)  # small MobileNetV2, 3 s with its variables)

        def model(images):
            return source.model(images, training=False)

    @tf.function(input_signature=[spec])
    def serve(images):
        return {output_name: two_classes(model(images), source.binary)}

    signatures = {"serving_default": serve}
    if gradcam and source.split is not None:

        @tf.function(input_signature=[spec])
        def features(images):
            maps, outputs = source.split(images, training=False)
            return {output_name: two_classes(outputs, source.binary), "features": maps}

        @tf.function(input_signature=[spec, tf.TensorSpec([], tf.int32, name="class_index")])
        def gradcam(images, class_index):
            with tf.GradientTape() as tape:
                # the images watched: the maps are recorded even when no variable computes them
                # (a taught head on a frozen base, app/teach.py)
                tape.watch(images)
                maps, outputs = source.split(images, training=False)
                outputs = two_classes(outputs, source.binary)
                score = tf.gather(outputs, class_index, axis=1)
            weights = tf.reduce_mean(tape.gradient(score, maps), axis=(1, 2), keepdims=True)
            return {"heatmap": tf.nn.relu(tf.reduce_sum(maps * weights, axis=-1)), output_name: outputs}

        signatures.update({FEATURES_SIGNATURE: features, GRADCAM_SIGNATURE: gradcam})
    module.serve = serve
    with tf_runtime.quiet_stdout():
        tf.saved_model.save(module, str(out), signatures=signatures)


def graph_signature(saved_model_dir: Path) -> str:
    """The signature the TF.js graph model is made from: with features when there are some."""
    tf_runtime.tensorflow()
    from tensorflow.python.tools import saved_model_utils

    meta = saved_model_utils.get_meta_graph_def(str(saved_model_dir), "serve")
    return FEATURES_SIGNATURE if FEATURES_SIGNATURE in meta.signature_def else "serving_default"


def features_node(graph_dir: Path) -> str | None:
    """The graph model's node that computes the Grad-CAM features (what the page feeds), or None."""
    model = json.loads((graph_dir / "model.json").read_text())
    output = model.get("signature", {}).get("outputs", {}).get("features")
    if output is None:
        return None
    nodes = {node["name"]: node for node in model["modelTopology"]["node"]}
    node = nodes[output["name"].split(":")[0]]
    while node["op"] == "Identity" and node.get("input"):
        source = node["input"][0].lstrip("^").split(":")[0]
        if source not in nodes:
            break
        node = nodes[source]
    return node["name"]


HEAD_OPS = ("MatMul", "_FusedMatMul")


def pooled_features(graph_dir: Path, output: str = "output") -> dict | None:
    """The graph model's node whose value is the features its classifier head reads: the input
    of the matrix product (a Dense layer) nearest to the ``output``, e.g. MobileNetV2's
    ``.../global_average_pooling2d/Mean``, [N, 1280]. {"node", "size"}, or None when no dense
    head computes the output (a convolutional head, say). What the page's /teach trains a new
    head on (issue 14)."""
    model = json.loads((graph_dir / "model.json").read_text())
    nodes = {node["name"]: node for node in model["modelTopology"]["node"]}
    signature = model.get("signature", {}).get("outputs", {})
    start = (signature.get(output) or next(iter(signature.values()), None) or {}).get("name", "")
    name_of = lambda ref: ref.lstrip("^").split(":")[0]  # noqa: E731
    queue, seen = [name_of(start)], set()
    while queue:  # breadth first, back from the output: the nearest dense product
        name = queue.pop(0)
        if name in seen or name not in nodes:
            continue
        seen.add(name)
        node = nodes[name]
        if node["op"] in HEAD_OPS and len(node.get("input", [])) >= 2:
            features, weights = (name_of(ref) for ref in node["input"][:2])
            while nodes.get(features, {}).get("op") == "Identity" and nodes[features].get("input"):
                features = name_of(nodes[features]["input"][0])
            size = _weight_shape(model, weights)
            return {"node": features, "size": size[0] if size else None}
        queue.extend(name_of(ref) for ref in node.get("input", []) if not ref.startswith("^"))
    return None


def _weight_shape(model: dict, name: str) -> list[int] | None:
    for group in model.get("weightsManifest", []):
        for weight in group["weights"]:
            if weight["name"] == name:
                return weight["shape"]
    return None


def write_graph_model(saved_model_dir: Path, out: Path, quantize: str) -> None:
    """The TF.js graph model; BadInput naming the ops when TF.js has no kernel for some.
    Converted unquantized, its fused ops' biases made rank 1 (``fix_fused_biases``), then
    its weights written with ``quantize``.

    The same model must convert to the same graph on every machine. With oneDNN on (TensorFlow's
    default on x86 CPUs with AVX-512 VNNI/BF16 or AMX), Grappler's remapper fuses patterns that
    TF.js has no kernel for: MobileNetV3's Conv2D + BiasAdd + hard-swish becomes one
    ``_FusedConv2D`` that no TF.js backend runs ("_fusedhardswish activation not yet
    supported"). So where this process has oneDNN on, the conversion runs in a child process
    with it off (``TF_ENABLE_ONEDNN_OPTS=0``, app/convert/tfjs_graph.py; `belka convert` turns it
    off in its own process instead: tf_runtime.conversion_process); the server keeps oneDNN (on
    such a CPU it ran MobileNetV2 at batch 32 1.65x faster)."""
    signature = graph_signature(saved_model_dir)
    if tf_runtime.onednn_enabled():
        tfjs_graph.CHILD.convert(saved_model_dir, out, signature)
    else:
        tfjs_graph.convert_graph(saved_model_dir, out, signature)
    fix_fused_biases(out, quantize)


def write_float16_graph(graph_dir: Path, out: Path) -> None:
    """A copy of the float32 graph model ``graph_dir`` with its weights stored as float16
    (TF.js turns them back into float32 as it loads them): same topology, half the bytes."""
    tf_runtime.tensorflowjs()  # imported quietly (TF-DF prints a welcome on import)
    from tensorflowjs import read_weights, write_weights

    model = json.loads((graph_dir / "model.json").read_text())
    groups = read_weights.read_weights(model["weightsManifest"], str(graph_dir))
    out.mkdir(parents=True)
    model["weightsManifest"] = write_weights.write_weights(
        groups, str(out), SHARD_BYTES, write_manifest=False, quantization_dtype_map=quantization_map("float16"))
    (out / "model.json").write_text(json.dumps(model))


FUSED_OPS = ("_FusedConv2D", "FusedDepthwiseConv2dNative", "_FusedMatMul")


def fix_fused_biases(graph_dir: Path, quantize: str) -> int:
    """Give every fused convolution / matmul a rank-1 bias [C]; rewrite the weights with ``quantize``.

    TF.js 4.22's wasm backend (the page's default) runs FusedConv2D only with a rank-1 bias
    ("FusedConv2D only supports rank-1 bias but got rank 4"); its cpu backend, which the
    conversion check uses in Node, takes any. Keras 3 convolutions followed by BatchNorm end
    up with [1, 1, 1, C] biases (ResNet50: all 53), MobileNetV3's `x + 3` with scalar ones.
    Returns how many biases were changed."""
    import numpy as np

    tf_runtime.tensorflowjs()  # imported quietly (TF-DF prints a welcome on import)
    from tensorflowjs import read_weights, write_weights

    model_path = graph_dir / "model.json"
    model = json.loads(model_path.read_text())
    nodes = {node["name"]: node for node in model["modelTopology"]["node"]}
    channels = {}
    for node in nodes.values():
        inputs = [i for i in node.get("input", []) if not i.startswith("^")]
        if node["op"] in FUSED_OPS and len(inputs) > 2:
            channels[inputs[2]] = _output_channels(node, inputs, model)
    groups = read_weights.read_weights(model["weightsManifest"], str(graph_dir))
    changed = 0
    for group in groups:
        for entry in group:
            count = channels.get(entry["name"])
            data = entry["data"]
            if count is None or data.ndim == 1:
                continue
            if data.size == count:
                entry["data"] = data.reshape(count)
            elif data.size == 1 and count:
                entry["data"] = np.full(count, data.reshape(()), data.dtype)
            else:
                continue
            changed += 1
    if not changed and quantize == "none":
        return 0
    for path in {p for group in model["weightsManifest"] for p in group["paths"]}:
        (graph_dir / path).unlink()
    model["weightsManifest"] = write_weights.write_weights(
        groups, str(graph_dir), SHARD_BYTES, write_manifest=False, quantization_dtype_map=quantization_map(quantize))
    model_path.write_text(json.dumps(model))
    return changed


def _output_channels(node: dict, inputs: list[str], model: dict) -> int | None:
    """How many output channels a fused op has: the last dimension of its filter / weights."""
    shapes = {w["name"]: w["shape"] for group in model["weightsManifest"] for w in group["weights"]}
    shape = shapes.get(inputs[1])
    if not shape:
        return None
    if node["op"] == "FusedDepthwiseConv2dNative":
        return shape[2] * shape[3]
    if node["op"] == "_FusedMatMul" and node.get("attr", {}).get("transpose_b", {}).get("b"):
        return shape[0]
    return shape[-1]


def write_layers_model(source: SourceModel, out: Path, quantize: str) -> None:
    tfjs = tf_runtime.tensorflowjs()
    with tf_runtime.quiet_stdout():
        tfjs.converters.save_keras_model(
            source.keras_model, str(out),
            quantization_dtype_map=quantization_map(quantize),
            weight_shard_size_bytes=SHARD_BYTES)
