"""Small SSD-style detectors built in the tests, exported the way the TF Object Detection API
exports its models (no pretrained detector can be downloaded here), with the parts of a real
export that a converter meets:

- a per-image preprocessing loop on the input path (``map_fn``: resize, and in TF2 exports
  also the scaling to -1..1), because the exporters' ``image_tensor`` input has any size;
- the network: convolutions, box encodings decoded against anchors (SSD's box coder), sigmoid
  scores with a background column;
- post-processing after the raw outputs: non-max suppression guarded by an ``Assert``.

``export_detector`` writes a TF2 SavedModel like ``exporter_main_v2.py`` (signature
``input_tensor`` uint8 [1, None, None, 3] -> ``raw_detection_boxes`` [1, N, 4],
``raw_detection_scores`` [1, N, 1 + classes] and the post-NMS ``detection_*``);
``export_frozen_graph`` a TF1 frozen graph like ``export_inference_graph.py --input_type
image_tensor`` (``image_tensor`` uint8 [None, None, None, 3], a TF1 ``Preprocessor/map/while``
loop with TensorArrayV3, ``Postprocessor/ExpandDims_1`` [batch, N, 1, 4] and
``Postprocessor/Slice`` [batch, N, classes], then a batched NMS loop).
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from app import tf_runtime
from app.convert.verify import iou  # noqa: F401 - the tests' IoU is the verification's


def anchors(grid: int, scale: float) -> np.ndarray:
    """One anchor per grid cell: [grid * grid, 4] as (y centre, x centre, height, width)."""
    centres = (np.arange(grid) + 0.5) / grid
    cy, cx = np.meshgrid(centres, centres, indexing="ij")
    size = np.full(grid * grid, scale)
    return np.stack([cy.ravel(), cx.ravel(), size, size], axis=1).astype(np.float32)


def build_head(size: int, grid: int, classes: int, seed: int = 0):
    """A tf_keras conv net: image [size, size, 3] in [-1, 1] -> (box encodings [N, 4], class logits
    [N, 1 + classes]) with N = grid * grid."""
    keras = tf_runtime.tf_keras()
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = inputs
    for filters in (16, 32, 32):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu")(x)
    while x.shape[1] > grid:
        x = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(x)
    encodings = keras.layers.Conv2D(4, 1, name="box_encodings")(x)
    logits = keras.layers.Conv2D(classes + 1, 1, name="class_logits")(x)
    encodings = keras.layers.Reshape((grid * grid, 4))(encodings)
    logits = keras.layers.Reshape((grid * grid, classes + 1))(logits)
    return keras.Model(inputs, [encodings, logits])


def decode(encodings, logits, prior):
    """(boxes [B, N, 4], sigmoid scores [B, N, 1 + classes]): encodings decoded from the anchors
    with SSD's box coder (scale factors 10, 10, 5, 5)."""
    tf = tf_runtime.tensorflow()
    ty, tx, th, tw = tf.unstack(encodings / [10.0, 10.0, 5.0, 5.0], axis=-1)
    yc, xc = ty * prior[:, 2] + prior[:, 0], tx * prior[:, 3] + prior[:, 1]
    h, w = tf.exp(th) * prior[:, 2], tf.exp(tw) * prior[:, 3]
    return tf.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], axis=-1), tf.sigmoid(logits)


def export_detector(head, out: Path, size: int, grid: int, anchor_scale: float = 0.25,
                    preprocess: str = "loop") -> Path:
    """Write ``head`` as an Object Detection API-style TF2 SavedModel (see the module doc).
    ``preprocess="batch"`` resizes the whole batch at once instead: no loop on the input path;
    ``"none"`` only scales (the pictures must come at the network's size)."""
    tf = tf_runtime.tensorflow()
    prior = tf.constant(anchors(grid, anchor_scale))

    def preprocessed(input_tensor):
        scaled = lambda image: tf.image.resize(tf.cast(image, tf.float32) / 127.5 - 1.0, (size, size))  # noqa: E731
        if preprocess == "batch":
            return scaled(input_tensor)
        if preprocess == "none":
            return tf.cast(input_tensor, tf.float32) / 127.5 - 1.0
        return tf.map_fn(scaled, input_tensor, fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))

    class Detector(tf.Module):
        def __init__(self):
            super().__init__()
            self.head = head

        @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8, name="input_tensor")])
        def serve(self, input_tensor):
            boxes, scores = decode(*self.head(preprocessed(input_tensor), training=False), prior)
            check = tf.debugging.Assert(tf.reduce_all(tf.math.is_finite(scores)), [scores])
            with tf.control_dependencies([check]):
                nms = tf.image.combined_non_max_suppression(boxes[:, :, None, :], scores[:, :, 1:], 20, 20, 0.5, 0.3)
            return {"raw_detection_boxes": boxes, "raw_detection_scores": scores,
                    "detection_boxes": nms.nmsed_boxes, "detection_scores": nms.nmsed_scores,
                    "detection_classes": nms.nmsed_classes + 1,
                    "num_detections": tf.cast(nms.valid_detections, tf.float32)}

    module = Detector()
    tf.saved_model.save(module, str(out), signatures={"serving_default": module.serve})
    return out


@contextlib.contextmanager
def tf1_control_flow():
    """Graph-mode while loops as TF1 wrote them (Enter/Exit/Merge/Switch, TensorArrayV3)."""
    tf = tf_runtime.tensorflow()
    tf.compat.v1.disable_control_flow_v2()
    try:
        yield
    finally:
        tf.compat.v1.enable_control_flow_v2()


def export_frozen_graph(head, out: Path, size: int, grid: int, anchor_scale: float = 0.25) -> Path:
    """Write ``head``'s weights as a TF1 Object Detection API-style frozen graph (see the module
    doc): the same network as ``export_detector(head, ...)``, built as a tf.compat.v1 graph."""
    tf = tf_runtime.tensorflow()
    convs = [layer for layer in head.layers if type(layer).__name__ == "Conv2D"]
    body = [(layer.strides, *layer.get_weights()) for layer in convs
            if layer.name not in ("box_encodings", "class_logits")]
    heads = {layer.name: layer.get_weights() for layer in convs if layer.name in ("box_encodings", "class_logits")}
    classes = heads["class_logits"][1].shape[0] - 1
    graph = tf.Graph()
    with graph.as_default(), tf1_control_flow():
        image_tensor = tf.compat.v1.placeholder(tf.uint8, [None, None, None, 3], name="image_tensor")
        with tf.compat.v1.name_scope("Preprocessor"):
            floats = tf.cast(image_tensor, tf.float32, name="ToFloat")

            @tf.autograph.experimental.do_not_convert
            def resize(image):  # the exporter's per-image loop: resize, and the image's true shape
                resized = tf.compat.v1.image.resize_images(image, [size, size])
                return resized, tf.shape(resized)
            resized, true_shapes = tf.map_fn(resize, floats, dtype=(tf.float32, tf.int32), name="map")
            preprocessed = tf.subtract(tf.multiply(resized, 2.0 / 255.0, name="mul"), 1.0, name="sub")
        with tf.compat.v1.name_scope("FeatureExtractor"):
            x = preprocessed
            for strides, kernel, bias in body:
                x = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, kernel, strides, "SAME"), bias))
        with tf.compat.v1.name_scope("BoxPredictor"):
            batch = tf.shape(x)[0]
            kernel, bias = heads["box_encodings"]
            encodings = tf.reshape(tf.nn.bias_add(tf.nn.conv2d(x, kernel, 1, "SAME"), bias), [batch, -1, 4])
            kernel, bias = heads["class_logits"]
            logits = tf.reshape(tf.nn.bias_add(tf.nn.conv2d(x, kernel, 1, "SAME"), bias), [batch, -1, classes + 1])
        with tf.compat.v1.name_scope("Postprocessor"):
            boxes, scores = decode(encodings, logits, tf.constant(anchors(grid, anchor_scale)))
            expanded = tf.expand_dims(boxes, 2, name="ExpandDims_1")
            sliced = tf.slice(scores, [0, 0, 1], [-1, -1, -1], name="Slice")
            with tf.compat.v1.name_scope("BatchMultiClassNonMaxSuppression"):
                @tf.autograph.experimental.do_not_convert
                def suppress(args):
                    image_boxes, image_scores, shape = args
                    check = tf.debugging.Assert(tf.reduce_all(shape > 0), [shape])
                    with tf.control_dependencies([check]):
                        best = tf.reduce_max(image_scores, axis=1)
                        keep = tf.image.non_max_suppression(image_boxes[:, 0], best, 20, 0.5, 0.3)
                    return tf.pad(tf.gather(best, keep), [[0, 20 - tf.shape(keep)[0]]])
                detection_scores = tf.map_fn(suppress, (expanded, sliced, true_shapes), dtype=tf.float32,
                                             name="map")
        tf.identity(detection_scores, name="detection_scores")
    out.write_bytes(graph.as_graph_def().SerializeToString())
    return out


def square_frames(rng, count: int, size: int, side: int):
    """Grey noise (0..100) with one white square of ``side`` pixels somewhere: images [count,
    size, size, 3] uint8 and the squares' boxes (ymin, xmin, ymax, xmax) as fractions."""
    images = rng.integers(0, 100, (count, size, size, 1)).repeat(3, axis=3).astype(np.uint8)
    boxes = np.zeros((count, 4), np.float32)
    for k in range(count):
        top, left = rng.integers(0, size - side + 1, 2)
        images[k, top:top + side, left:left + side] = 255
        boxes[k] = [top / size, left / size, (top + side) / size, (left + side) / size]
    return images, boxes


def train_square_detector(size: int = 64, grid: int = 8, side: int = 16, steps: int = 400, seed: int = 0):
    """A head (build_head, one class: "square") trained here to find the white square: the anchor
    whose cell holds the square's centre learns the class and the box (SSD's encoding against
    that anchor), every other anchor the background."""
    tf = tf_runtime.tensorflow()
    keras = tf_runtime.tf_keras()
    head = build_head(size, grid, 1, seed)
    prior = anchors(grid, side / size)
    optimizer = keras.optimizers.Adam(2e-3)
    rng = np.random.default_rng(seed)

    def targets(boxes):
        count = len(boxes)
        cy, cx = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        h, w = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        cell = np.minimum((cy * grid).astype(int), grid - 1) * grid + np.minimum((cx * grid).astype(int), grid - 1)
        classes = np.zeros((count, grid * grid, 2), np.float32)
        classes[:, :, 0] = 1
        classes[np.arange(count), cell] = [0, 1]
        a = prior[cell]
        encodings = np.stack([(cy - a[:, 0]) / a[:, 2] * 10, (cx - a[:, 1]) / a[:, 3] * 10,
                              np.log(h / a[:, 2]) * 5, np.log(w / a[:, 3]) * 5], axis=1).astype(np.float32)
        return classes, cell, encodings

    @tf.function
    def step(x, classes, cell, encodings):
        with tf.GradientTape() as tape:
            predicted, logits = head(x, training=True)
            class_loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(classes, logits)) * 10
            chosen = tf.gather(predicted, cell, batch_dims=1)
            box_loss = tf.reduce_mean(tf.keras.losses.huber(encodings, chosen))
            loss = class_loss + box_loss
        optimizer.apply_gradients(zip(tape.gradient(loss, head.trainable_variables), head.trainable_variables))
        return loss

    for _ in range(steps):
        images, boxes = square_frames(rng, 32, size, side)
        classes, cell, encodings = targets(boxes)
        step(tf.constant(images / 127.5 - 1.0, tf.float32), tf.constant(classes), tf.constant(cell),
             tf.constant(encodings))
    return head
