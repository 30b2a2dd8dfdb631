"""Frozen TensorFlow graphs: a SavedModel signature frozen into one GraphDef, and a GraphDef
brought back to life as a graph or a function to prune.

Three parts of the conversion work on frozen graphs: the detector cut (graph_cut.py reads
shapes and runs the preprocessing loop of the original graph), the detector source
(detector.py runs the whole original TF1 graph and the cut network) and the taught head
(app/teach.py cuts its base's SavedModel at the features node). They all freeze and import
the same way, here.
"""
from __future__ import annotations

from app import tf_runtime


def freeze_signature(fn):
    """A SavedModel signature as one flat frozen GraphDef (variables as constants, function calls
    inlined, control flow kept as functional While ops): (graph_def, input tensor name,
    {output key: tensor name})."""
    tf = tf_runtime.tensorflow()
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    with tf_runtime.quiet_native():
        frozen = convert_variables_to_constants_v2(fn, lower_control_flow=False, aggressive_inlining=True)
    # a signature's flat outputs follow tf.nest's order of its dict of outputs: sorted keys
    keys = sorted(fn.structured_outputs)
    outputs = {key: tensor.name for key, tensor in zip(keys, frozen.outputs)}
    inputs = [t for t in frozen.inputs if t.dtype != tf.resource]
    return frozen.graph.as_graph_def(), inputs[0].name, outputs


def imported_graph(graph_def):
    """A tf.Graph holding ``graph_def`` under its own node names: to read tensors and shapes."""
    tf = tf_runtime.tensorflow()
    graph = tf.Graph()
    with graph.as_default(), tf_runtime.quiet_native():
        tf.compat.v1.import_graph_def(graph_def, name="")
    return graph


def wrapped_graph(graph_def):
    """``graph_def`` as a TF2 function of no arguments (its node names kept), whose ``prune(feeds,
    fetches)`` makes a callable of any part of it; ``.graph`` holds its tensors. Keep a
    reference to it as long as a pruned function is in use."""
    tf = tf_runtime.tensorflow()
    with tf_runtime.quiet_native():
        return tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
