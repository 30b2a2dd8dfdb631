"""Write the three artifact formats from a SourceModel.

- saved_model/: a TF SavedModel with one ``serving_default`` signature
  (float32 images in, one output tensor out). The server loads it; the graph
  model is converted from it.
- graph/: ``tfjs_graph_model`` (tensorflowjs converter, optimised, fastest in the browser).
- layers/: ``tfjs_layers_model`` written from the legacy Keras model (the only
  Keras JSON that TF.js 4.22 can read), needed for gradients (Grad-CAM).
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from app import tf_runtime
from app.convert.errors import BadInput
from app.convert.sources import SourceModel

SHARD_BYTES = 4 * 1024 * 1024
QUANTIZATIONS = ("none", "float16", "uint8")


def quantization_map(quantize: str) -> dict | None:
    return None if quantize == "none" else {quantize: True}


def write_saved_model(source: SourceModel, out: Path) -> None:
    """SavedModel with a serving signature named by ``source.signature``."""
    if source.saved_model_dir is not None:
        shutil.copytree(source.saved_model_dir, out)
        return
    tf = tf_runtime.tensorflow()
    model = source.keras_model
    spec = tf.TensorSpec([None, *source.input_shape], tf.float32, name=source.signature["input"])

    @tf.function(input_signature=[spec])
    def serve(images):
        return {source.signature["output"]: model(images, training=False)}

    module = tf.Module()
    module.model = model
    module.serve = serve
    with tf_runtime.quiet_stdout():
        tf.saved_model.save(module, str(out), signatures={"serving_default": serve})


def write_graph_model(saved_model_dir: Path, out: Path, quantize: str) -> None:
    """The TF.js graph model; BadInput naming the ops when TF.js has no kernel for some."""
    tf_runtime.tensorflowjs()
    from tensorflowjs.converters import tf_saved_model_conversion_v2 as saved_model_conversion

    try:
        with tf_runtime.quiet_stdout(), tf_runtime.quiet_native():
            saved_model_conversion.convert_tf_saved_model(
                str(saved_model_dir), str(out),
                signature_def="serving_default", saved_model_tags="serve",
                quantization_dtype_map=quantization_map(quantize),
                weight_shard_size_bytes=SHARD_BYTES)
    except ValueError as exc:
        match = re.search(r"Unsupported Ops in the model(?: before optimization)?\s*(.*)", str(exc))
        if not match:
            raise
        ops = ", ".join(sorted({op.strip() for op in match.group(1).split(",") if op.strip()}))
        raise BadInput(f"TF.js has no kernel for these ops of the model: {ops}; the browser cannot run it. "
                       "Rebuild the model without them (or cut it before them), then convert again") from exc


def write_layers_model(source: SourceModel, out: Path, quantize: str) -> None:
    tfjs = tf_runtime.tensorflowjs()
    with tf_runtime.quiet_stdout():
        tfjs.converters.save_keras_model(
            source.keras_model, str(out),
            quantization_dtype_map=quantization_map(quantize),
            weight_shard_size_bytes=SHARD_BYTES)
