"""Occlusion sensitivity: where does hiding the picture hurt the class most?

A grey square (``patch`` pixels, the middle of the value range) slides over the model
input with step ``stride``; each occluded image goes through the model (in batches) and
the *drop* of the class probability, p(clean) - p(occluded), is recorded for that
position. static/js/occlusion.js implements the same steps:

1. positions along each axis: 0, stride, 2*stride, ... up to size - patch, plus
   size - patch itself when the steps miss it, so the patch reaches every edge;
2. ``drops[i, j]`` for the patch at (rows[i], cols[j]), in probability (signed: hiding
   a distracting part can raise the class);
3. the per-pixel map: every pixel gets the mean drop of the patches that covered it;
4. the heatmap: ReLU of that map divided by its maximum, in [0, 1], at the input's
   resolution.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass
class Occlusion:
    heatmap: np.ndarray         # [H, W] in [0, 1]
    drops: np.ndarray           # [len(rows), len(cols)] signed probability drops
    rows: list[int]             # the patch's top edge for each row of drops
    cols: list[int]             # its left edge for each column
    baseline: float             # the class probability on the clean image


def positions(size: int, patch: int, stride: int) -> list[int]:
    """Where the patch's leading edge goes along one axis (step 1 of the module doc)."""
    found = list(range(0, size - patch + 1, stride))
    if found[-1] != size - patch:
        found.append(size - patch)
    return found


def default_params(height: int, width: int) -> tuple[int, int]:
    """The default (patch, stride): 1/7 of the input's shorter side, and half of that."""
    patch = max(1, round(min(height, width) / 7))
    return patch, max(1, patch // 2)


def check_params(height: int, width: int, patch: int, stride: int) -> None:
    """ValueError with a reason when the patch or stride cannot be used on an H x W input."""
    if not 1 <= patch <= min(height, width):
        raise ValueError(f"patch must be from 1 to {min(height, width)} pixels (the input is {height}x{width})")
    if not 1 <= stride <= patch:
        raise ValueError(f"stride must be from 1 to the patch size ({patch}), so every pixel is covered")


def occlusion(probabilities: Callable[[np.ndarray], np.ndarray], image: np.ndarray, class_index: int,
              patch: int, stride: int, fill: float, batch_size: int = 32) -> Occlusion:
    """The occlusion map of ``image`` ([H, W, 3] model input) for ``class_index``.
    ``probabilities(batch [N, H, W, 3])`` returns [N, classes]; ``fill`` is the patch's value."""
    height, width = image.shape[:2]
    check_params(height, width, patch, stride)
    rows, cols = positions(height, patch, stride), positions(width, patch, stride)
    spots = [(top, left) for top in rows for left in cols]
    baseline = float(probabilities(image[None])[0, class_index])
    scores = []
    for start in range(0, len(spots), batch_size):
        chunk = spots[start:start + batch_size]
        batch = np.repeat(image[None], len(chunk), axis=0)
        for k, (top, left) in enumerate(chunk):
            batch[k, top:top + patch, left:left + patch] = fill
        scores.append(probabilities(batch)[:, class_index])
    drops = (baseline - np.concatenate(scores)).astype(np.float32)
    total = np.zeros((height, width), np.float64)
    count = np.zeros((height, width), np.int32)
    for drop, (top, left) in zip(drops, spots):
        total[top:top + patch, left:left + patch] += drop
        count[top:top + patch, left:left + patch] += 1
    per_pixel = (total / count).astype(np.float32)
    heatmap = np.maximum(per_pixel, 0)
    peak = heatmap.max()
    heatmap = heatmap / peak if peak > 0 else np.zeros_like(heatmap)
    return Occlusion(heatmap.astype(np.float32), drops.reshape(len(rows), len(cols)), rows, cols, baseline)
