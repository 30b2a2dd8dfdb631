"""Cut a detector's frozen TensorFlow graph down to its network: from the preprocessed image to
the raw boxes and scores, with no loop, no non-max suppression and no ``Assert`` left.

A TensorFlow Object Detection API export runs three stages in one graph:

1. preprocessing: a per-image ``while`` loop (``map_fn``) that resizes each picture to the
   network's size and, depending on the version, scales its pixels (TF2 exports use
   ``While``/``TensorList`` ops, TF1 exports ``Enter``/``Exit``/``Merge``/``Switch`` and
   ``TensorArrayV3``);
2. the network: convolutions, box decoding against the anchors, sigmoid scores;
3. post-processing: non-max suppression per class, in more loops, guarded by ``Assert`` ops.

Stage 2 is all the browser needs (TF.js runs it with the synchronous ``execute()``); stage 3
is done by Belka itself, the same way in the page and on the server. ``cut()`` walks back from
the raw outputs along data edges and stops where a loop ends: that tensor (the preprocessed
image batch) becomes the new input. Stage 1 is then measured, not guessed: the original graph
is run on a few pictures at the network's size (where the resize is the identity) and its
output is fitted as ``a * pixel + b``; that becomes the manifest's ``value_range``, which the
page and the server apply themselves. A graph without a loop on the input path is cut at its
own input, which keeps any resize and scaling inside.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app import tf_runtime
from app.convert.frozen import imported_graph, wrapped_graph
from app.convert.errors import BadInput

# Ops that build or end a loop (TF1 and TF2 control flow and the lists/arrays loops fill).
LOOP_OPS = frozenset({
    "While", "StatelessWhile", "If", "StatelessIf", "Enter", "Exit", "Merge", "Switch", "NextIteration",
    "LoopCond", "RefEnter", "RefExit", "RefMerge", "RefSwitch", "RefNextIteration",
    "TensorArrayV3", "TensorArrayGatherV3", "TensorArrayReadV3", "TensorArrayConcatV3", "TensorArraySizeV3",
    "TensorListStack", "TensorListGetItem", "TensorListConcatV2", "TensorListGather", "TensorListLength",
})
# Ops that must not be left in a cut graph (the checks in the tests and `belka convert` use it).
FORBIDDEN_OPS = LOOP_OPS | {
    "Assert", "NonMaxSuppression", "NonMaxSuppressionV2", "NonMaxSuppressionV3", "NonMaxSuppressionV4",
    "NonMaxSuppressionV5", "CombinedNonMaxSuppression", "TensorListReserve", "TensorListFromTensor",
    "TensorListSetItem", "TensorArrayWriteV3", "TensorArrayScatterV3", "StatefulPartitionedCall",
    "PartitionedCall",
}
CUT_INPUT = "images"
RESIZE_OPS = ("ResizeBilinear", "ResizeNearestNeighbor", "ResizeArea", "ResizeBicubic")
# How well "a * pixel + b" must describe the preprocessing loop: the largest residual, as a
# fraction of the output range (float32 rounding of resize + scale measured at about 1e-7).
AFFINE_RESIDUAL = 1e-4


@dataclass
class CutGraph:
    graph_def: object                  # tf.compat.v1.GraphDef: CUT_INPUT -> outputs, nothing else
    input_name: str                    # the placeholder to feed, "images:0" or the original input
    input_dtype: object                # tf.DType of that placeholder
    outputs: list[str]                 # tensor names of the raw outputs, in the order asked for
    size: tuple[int, int]              # the network's input height and width
    size_from: str                     # where that size comes from: graph, pipeline.config, --size
    value_range: tuple[float, float]   # what pixels 0..255 become before the network
    preprocessing_cut: bool            # True: the loop was cut off (the page scales); False: cut at the input
    notes: list[str] = field(default_factory=list)


def cut(graph_def, input_name: str, outputs: list[str], size: tuple[int, int] | None,
        pipeline_size: tuple[int, int] | None = None) -> CutGraph:
    """The graph from the preprocessed image (or the input) to ``outputs`` (see the module doc).
    ``size`` is the user's --size; ``pipeline_size`` what a pipeline.config next to the model says."""
    tf = tf_runtime.tensorflow()
    nodes = {node.name: node for node in graph_def.node}
    frontier = _frontier(nodes, [_node_of(name) for name in outputs])
    graph = imported_graph(graph_def)
    if len(frontier) != 1:
        found = ", ".join(f"{t} ({graph.get_tensor_by_name(t).shape})" for t in sorted(frontier))
        raise BadInput(f"cannot cut this detector: its raw outputs depend on {len(frontier)} tensors from its "
                       f"input or preprocessing ({found}); Belka needs exactly one image tensor there")
    start, = frontier
    if start == _tensor_name(input_name):
        return _cut_at_input(graph_def, graph, input_name, outputs, size, pipeline_size)
    tensor = graph.get_tensor_by_name(start)
    preprocess = _preprocessing(graph_def, input_name, start)
    graph_size = _fixed_size(preprocess, start)
    if graph_size and size and tuple(size) != graph_size:
        raise BadInput(f"--size {size[0]}x{size[1]}: this detector resizes every picture to "
                       f"{graph_size[0]}x{graph_size[1]} inside its graph, so that is its input size; "
                       f"drop --size (the page and the server resize to it)")
    chosen = graph_size or (tuple(size) if size else None) or pipeline_size
    if chosen is None:
        raise BadInput("this detector's graph does not fix its input size: give it with --size HxW "
                       "(the size it was trained at)")
    size_from = "graph" if graph_size else "--size" if size else "pipeline.config"
    notes = [f"input size {chosen[0]}x{chosen[1]}, from the {size_from}"]
    value_range = _fit_affine(preprocess, chosen)
    notes.append(f"cut after the preprocessing loop ({start}): the page and the server resize and scale "
                 f"pixels to {value_range[0]:g}..{value_range[1]:g} themselves")
    dtype = tf.as_dtype(tensor.dtype)
    cut_def = _rewire(graph_def, start, dtype, chosen, outputs)
    return CutGraph(cut_def, f"{CUT_INPUT}:0", dtype, outputs, chosen, size_from, value_range, True, notes)


def _cut_at_input(graph_def, graph, input_name, outputs, size, pipeline_size) -> CutGraph:
    """No loop between the input and the network: keep everything from the input on."""
    from tensorflow.python.framework import graph_util

    resized = _resize_size(graph)
    chosen = size or pipeline_size or resized
    if chosen is None:
        raise BadInput("this detector's graph does not fix its input size: give it with --size HxW "
                       "(the size it was trained at)")
    size_from = "--size" if size else "pipeline.config" if pipeline_size else "graph"
    kept = _prune_library(graph_util.extract_sub_graph(_without_control_inputs(graph_def),
                                                       [_node_of(o) for o in outputs]))
    dtype = graph.get_tensor_by_name(_tensor_name(input_name)).dtype
    return CutGraph(kept, _tensor_name(input_name), dtype, outputs, tuple(chosen), size_from, (0.0, 255.0), False,
                    [f"input size {chosen[0]}x{chosen[1]}, from the {size_from}",
                     "no preprocessing loop: the graph keeps its own resize and scaling"])


def forbidden_ops(graph_def) -> set[str]:
    """The ops of FORBIDDEN_OPS in a GraphDef, its function library included."""
    ops = {node.op for node in graph_def.node}
    for function in graph_def.library.function:
        ops |= {node.op for node in function.node_def}
    return ops & FORBIDDEN_OPS


def read_pipeline_size(folder: Path) -> tuple[int, int] | None:
    """The fixed_shape_resizer's height and width in the pipeline.config next to a SavedModel
    (the zoo's archives and exporter_main_v2.py put it there), or None."""
    for candidate in (folder / "pipeline.config", folder.parent / "pipeline.config"):
        if candidate.is_file():
            text = candidate.read_text(errors="replace")
            match = re.search(r"fixed_shape_resizer\s*\{([^}]*)\}", text)
            if match:
                height = re.search(r"height:\s*(\d+)", match.group(1))
                width = re.search(r"width:\s*(\d+)", match.group(1))
                if height and width:
                    return int(height.group(1)), int(width.group(1))
    return None


def _frontier(nodes: dict, starts: list[str]) -> set[str]:
    """The tensors where a walk back from ``starts`` along data edges leaves the network:
    outputs of loop ops, or the graph's placeholders."""
    frontier, seen, stack = set(), set(), list(starts)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        for inp in nodes[name].input:
            if inp.startswith("^"):
                continue
            source = nodes[_node_of(inp)]
            if source.op in LOOP_OPS or source.op == "Placeholder":
                frontier.add(_tensor_name(inp))
            else:
                stack.append(source.name)
    return frontier


def _rewire(graph_def, start: str, dtype, size, outputs):
    """A copy of ``graph_def`` whose consumers of ``start`` read a new placeholder CUT_INPUT
    [1, H, W, 3] instead, pruned to what ``outputs`` need, control edges dropped (they only
    order the Asserts and NoOps that the cut leaves behind)."""
    tf = tf_runtime.tensorflow()
    from tensorflow.python.framework import graph_util

    rewired = tf.compat.v1.GraphDef()
    rewired.versions.CopyFrom(graph_def.versions)
    rewired.library.CopyFrom(graph_def.library)
    placeholder = rewired.node.add(name=CUT_INPUT, op="Placeholder")
    placeholder.attr["dtype"].type = dtype.as_datatype_enum
    placeholder.attr["shape"].shape.CopyFrom(tf.TensorShape([1, *size, 3]).as_proto())
    for node in graph_def.node:
        if node.name == CUT_INPUT:
            raise BadInput(f"cannot cut this detector: it already has a node named {CUT_INPUT!r}")
        copy = rewired.node.add()
        copy.CopyFrom(node)
        del copy.input[:]
        copy.input.extend(CUT_INPUT if _tensor_name(i) == start else i for i in node.input if not i.startswith("^"))
    return _prune_library(graph_util.extract_sub_graph(rewired, [_node_of(o) for o in outputs]))


def _preprocessing(graph_def, input_name: str, start: str):
    """The original graph from its input to ``start`` as a function of uint8 pictures [N, H, W, 3]
    (one at a time where the input takes a batch of one) -> numpy array."""
    tf = tf_runtime.tensorflow()
    function = wrapped_graph(graph_def)
    pruned = function.prune(feeds=_tensor_name(input_name), fetches=start)
    placeholder = function.graph.get_tensor_by_name(_tensor_name(input_name))
    one_at_a_time = placeholder.shape.rank == 4 and placeholder.shape[0] == 1

    def run(pixels: np.ndarray) -> np.ndarray:
        step = 1 if one_at_a_time else len(pixels)
        rows = [pruned(tf.constant(pixels[k:k + step], dtype=placeholder.dtype)).numpy()
                for k in range(0, len(pixels), step)]
        return np.concatenate(rows)
    run.keep = function
    return run


def _fixed_size(preprocess, start: str) -> tuple[int, int] | None:
    """The (height, width) the preprocessing resizes every picture to, or None when its output
    follows the picture's size; BadInput when its output is not a batch of RGB images."""
    shapes = []
    for height, width in ((37, 53), (61, 29)):
        out = preprocess(np.zeros((1, height, width, 3), np.uint8))
        if out.ndim != 4 or out.shape[-1] != 3 or not np.issubdtype(out.dtype, np.floating):
            raise BadInput(f"cannot cut this detector: the tensor its preprocessing loop hands to the network, "
                           f"{start}, is {out.dtype} {list(out.shape)}, not a batch of RGB images")
        shapes.append(tuple(int(v) for v in out.shape[1:3]))
    return shapes[0] if shapes[0] == shapes[1] else None


def _fit_affine(preprocess, size) -> tuple[float, float]:
    """Run the preprocessing on pictures of ``size`` (where its resize is the identity) and fit
    its output as ``a * pixel + b``; return (b, 255 a + b): the value range it scales to."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (2, *size, 3)).astype(np.uint8)
    pixels[1] = np.linspace(0, 255, size[1]).astype(np.uint8)[None, :, None]  # every level, smoothly
    out = preprocess(pixels).astype(np.float64)
    if out.shape != pixels.shape:
        raise BadInput(f"cannot cut this detector: its preprocessing turned {list(pixels.shape)} pictures into "
                       f"{list(out.shape)}, not the same size")
    x = pixels.reshape(-1, 3).astype(np.float64)
    y = out.reshape(-1, 3)
    fits = []
    for channel in range(3):
        design = np.stack([x[:, channel], np.ones(len(x))], axis=1)
        (a, b), *_ = np.linalg.lstsq(design, y[:, channel], rcond=None)
        residual = float(np.abs(design @ (a, b) - y[:, channel]).max())
        fits.append((a, b, residual))
    span = max(abs(a) * 255 for a, _, _ in fits) or 1.0
    if any(residual > AFFINE_RESIDUAL * span for _, _, residual in fits):
        raise BadInput("cannot cut this detector: its preprocessing loop does more than resize and scale "
                       "the pixels (its output is not a * pixel + b), so the page cannot reproduce it")
    a, b, _ = fits[0]
    if any(abs(a2 - a) * 255 > AFFINE_RESIDUAL * span or abs(b2 - b) > AFFINE_RESIDUAL * span
           for a2, b2, _ in fits[1:]):
        raise BadInput("cannot cut this detector: its preprocessing scales the colour channels differently "
                       "(a per-channel mean or std), which Belka's preprocessing spec cannot express yet")
    if a <= 0:
        raise BadInput("cannot cut this detector: its preprocessing inverts the pixel values")
    return _tidy(b), _tidy(255 * a + b)


def _tidy(value: float) -> float:
    """-1.00000002 -> -1.0: fitted ends are float32 arithmetic of simple constants."""
    rounded = round(value, 5)
    return float(rounded) if abs(rounded - value) < 1e-6 * max(1.0, abs(value)) else float(value)


def _resize_size(graph) -> tuple[int, int] | None:
    """The constant size of the resize ops in front of the network, when they all agree."""
    sizes = set()
    for op in graph.get_operations():
        if op.type in RESIZE_OPS and op.inputs[1].op.type == "Const":
            sizes.add(tuple(int(v) for v in tf_runtime.tensorflow().make_ndarray(op.inputs[1].op.get_attr("value"))))
    return sizes.pop() if len(sizes) == 1 else None


def _prune_library(graph_def):
    """Drop the library functions that no kept node calls (the loops and the NMS's helpers)."""
    functions = {f.signature.name: f for f in graph_def.library.function}

    def called(nodes) -> set[str]:
        names = set()
        for node in nodes:
            for value in node.attr.values():
                if value.HasField("func"):
                    names.add(value.func.name)
                names |= {f.name for f in value.list.func}
            if node.op in functions:
                names.add(node.op)
        return names

    needed, todo = set(), called(graph_def.node)
    while todo:
        name = todo.pop()
        if name in needed or name not in functions:
            continue
        needed.add(name)
        todo |= called(functions[name].node_def)
    kept = [f for f in graph_def.library.function if f.signature.name in needed]
    del graph_def.library.function[:]
    graph_def.library.function.extend(kept)
    return graph_def


def _without_control_inputs(graph_def):
    tf = tf_runtime.tensorflow()
    copy = tf.compat.v1.GraphDef()
    copy.CopyFrom(graph_def)
    for node in copy.node:
        kept = [i for i in node.input if not i.startswith("^")]
        del node.input[:]
        node.input.extend(kept)
    return copy


def _node_of(name: str) -> str:
    return name.lstrip("^").split(":")[0]


def _tensor_name(name: str) -> str:
    name = name.lstrip("^")
    return name if ":" in name else f"{name}:0"
