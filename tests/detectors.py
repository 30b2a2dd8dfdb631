"""Small SSD-style detectors built in the tests, exported like the TF Object Detection API's
SavedModels (no pretrained detector can be downloaded here).

The signature is the zoo's: ``input_tensor`` uint8 [1, None, None, 3] in, and among the
outputs ``raw_detection_boxes`` [1, N, 4] (decoded anchor boxes, ymin/xmin/ymax/xmax as
fractions) and ``raw_detection_scores`` [1, N, 1 + classes] (sigmoid, column 0 the
background), plus the post-NMS outputs (``detection_boxes``...) that Belka cuts away.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from app import tf_runtime


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
    encodings = keras.layers.Reshape((grid * grid, 4))(keras.layers.Conv2D(4, 1)(x))
    logits = keras.layers.Reshape((grid * grid, classes + 1))(keras.layers.Conv2D(classes + 1, 1)(x))
    return keras.Model(inputs, [encodings, logits])


def decode(head, prior, input_tensor, size: int):
    """The head on uint8 pictures -> (boxes [1, N, 4], sigmoid scores [1, N, 1 + classes]), boxes
    decoded from the anchors with SSD's box coder (scale factors 10, 10, 5, 5)."""
    tf = tf_runtime.tensorflow()
    x = tf.image.resize(tf.cast(input_tensor, tf.float32), (size, size)) / 127.5 - 1.0
    encodings, logits = head(x, training=False)
    ty, tx, th, tw = tf.unstack(encodings / [10.0, 10.0, 5.0, 5.0], axis=-1)
    yc, xc = ty * prior[:, 2] + prior[:, 0], tx * prior[:, 3] + prior[:, 1]
    h, w = tf.exp(th) * prior[:, 2], tf.exp(tw) * prior[:, 3]
    return tf.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], axis=-1), tf.sigmoid(logits)


def export_detector(head, out: Path, size: int, grid: int, anchor_scale: float = 0.25) -> Path:
    """Write ``head`` as an Object Detection API-style SavedModel (see the module doc)."""
    tf = tf_runtime.tensorflow()
    prior = tf.constant(anchors(grid, anchor_scale))

    class Detector(tf.Module):
        def __init__(self):
            super().__init__()
            self.head = head

        @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8, name="input_tensor")])
        def serve(self, input_tensor):
            boxes, scores = decode(self.head, prior, input_tensor, size)
            nms = tf.image.combined_non_max_suppression(boxes[:, :, None, :], scores[:, :, 1:], 20, 20, 0.5, 0.3)
            return {"raw_detection_boxes": boxes, "raw_detection_scores": scores,
                    "detection_boxes": nms.nmsed_boxes, "detection_scores": nms.nmsed_scores,
                    "detection_classes": nms.nmsed_classes + 1,
                    "num_detections": tf.cast(nms.valid_detections, tf.float32)}

    module = Detector()
    tf.saved_model.save(module, str(out), signatures={"serving_default": module.serve})
    return out


def export_frozen_graph(head, out: Path, size: int, grid: int, anchor_scale: float = 0.25) -> Path:
    """Write ``head`` as a TF1 Object Detection API-style frozen graph: ``image_tensor`` in,
    ``Postprocessor/ExpandDims_1`` (boxes [1, N, 1, 4]) and ``Postprocessor/Slice`` (scores
    without the background column) among its nodes, as in the graph coco-ssd was made from."""
    tf = tf_runtime.tensorflow()
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    prior = tf.constant(anchors(grid, anchor_scale))

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8, name="image_tensor")])
    def graph(image_tensor):
        boxes, scores = decode(head, prior, image_tensor, size)
        with tf.name_scope("Postprocessor"):
            expanded = tf.expand_dims(boxes, 2, name="ExpandDims_1")
            sliced = tf.slice(scores, [0, 0, 1], [-1, -1, -1], name="Slice")
        return expanded, sliced

    frozen = convert_variables_to_constants_v2(graph.get_concrete_function())
    out.write_bytes(frozen.graph.as_graph_def().SerializeToString())
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


def iou(a, b) -> float:
    """Intersection over union of two boxes (ymin, xmin, ymax, xmax)."""
    ya, xa = max(a[0], b[0]), max(a[1], b[1])
    yb, xb = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, yb - ya) * max(0.0, xb - xa)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
