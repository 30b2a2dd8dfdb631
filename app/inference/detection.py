"""A converted detector on the server: its cut SavedModel (boxes and scores before non-max
suppression, see app/convert/detector.py) and the post-processing the page runs too
(static/js/detection.js):

1. per anchor, the best class among the named score columns (column 0, the background,
   and columns without a label are left out) and its score;
2. anchors under ``score_threshold`` are dropped;
3. class-agnostic non-max suppression: from the best score down, a box is kept unless it
   overlaps an already kept one by IoU > ``iou_threshold``; at most ``max_boxes``
   (tf.image.non_max_suppression, the same algorithm as TF.js's tf.image.nonMaxSuppression);
4. boxes as fractions (ymin, xmin, ymax, xmax) clipped to [0, 1], and in the picture's
   pixels (x, y, width, height), like @tensorflow-models/coco-ssd's ``bbox``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from app import tf_runtime
from app.registry import ModelInfo


@dataclass
class RawDetections:
    boxes: np.ndarray        # [N, 4] ymin, xmin, ymax, xmax (fractions)
    scores: np.ndarray       # [N, 1 + classes], column 0 the background
    inference_ms: float


class Detector:
    """Runs ``saved_model/`` (float32 pixels [1, H, W, 3] in 0..255 -> boxes, scores)."""

    def __init__(self, info: ModelInfo):
        tf = tf_runtime.tensorflow()
        self.info = info
        self.manifest = info.manifest
        self._loaded = tf.saved_model.load(str(info.path / "saved_model"))
        self._fn = self._loaded.signatures["serving_default"]
        self.input_shape = tuple(self.manifest["input"]["shape"][1:])
        self._tf = tf

    def run(self, image: np.ndarray) -> RawDetections:
        """The raw outputs for one model input [H, W, 3]."""
        start = time.perf_counter()
        out = self._fn(images=self._tf.constant(image[None], dtype=self._tf.float32))
        boxes, scores = out["boxes"].numpy()[0], out["scores"].numpy()[0]
        return RawDetections(boxes, scores, (time.perf_counter() - start) * 1000)


def select(boxes: np.ndarray, scores: np.ndarray, labels: list, score_threshold: float, iou_threshold: float,
           max_boxes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps 1-3 of the module doc on raw boxes [N, 4] and scores [N, 1 + classes]: (the kept
    anchors, best first; every anchor's best named column; every anchor's best score)."""
    tf = tf_runtime.tensorflow()
    named = scores[:, 1:].copy()
    named[:, [k for k, label in enumerate(labels) if label is None]] = 0  # unnamed columns
    best = named.argmax(axis=1)
    best_score = named[np.arange(len(named)), best]
    keep = tf.image.non_max_suppression(boxes, best_score, max_boxes, iou_threshold=iou_threshold,
                                        score_threshold=score_threshold).numpy()
    return keep, best, best_score


def postprocess(raw: RawDetections, labels: list, class_ids: list[int], width: int, height: int,
                score_threshold: float, iou_threshold: float, max_boxes: int) -> list[dict]:
    """The detections (see the module doc), best first; ``width`` x ``height`` is the picture's size."""
    keep, best, best_score = select(raw.boxes, raw.scores, labels, score_threshold, iou_threshold, max_boxes)
    found = []
    for i in keep:
        ymin, xmin, ymax, xmax = (float(v) for v in np.clip(raw.boxes[i], 0, 1))
        column = int(best[i])
        found.append({
            "bbox": [xmin * width, ymin * height, (xmax - xmin) * width, (ymax - ymin) * height],
            "box": {"ymin": ymin, "xmin": xmin, "ymax": ymax, "xmax": xmax},
            "class_id": int(class_ids[column]),
            "label": labels[column] or f"class {class_ids[column]}",
            "score": float(best_score[i]),
        })
    return found
