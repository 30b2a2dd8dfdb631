"""Heatmaps as pictures: the colormap, the bilinear resize to the image, the overlay PNG.

The page draws the same way (static/js/heatmap.js): the heatmap is resized to the
image with TF's bilinear kernel (half-pixel centres, as tf.image.resizeBilinear(x,
size, false, true) in TF.js), coloured with the "jet" colormap (blue = 0, red = 1)
and laid over the picture with the chosen opacity.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from app import tf_runtime

# "jet": (position, (r, g, b)); linear in between.
JET = ((0.0, (0, 0, 128)), (0.125, (0, 0, 255)), (0.375, (0, 255, 255)), (0.625, (255, 255, 0)),
       (0.875, (255, 0, 0)), (1.0, (128, 0, 0)))


def colormap(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (any shape) -> uint8 RGB (shape + [3]) with JET."""
    v = np.clip(values, 0, 1)
    stops = np.array([s for s, _ in JET])
    colors = np.array([c for _, c in JET], np.float64)
    rgb = np.stack([np.interp(v, stops, colors[:, k]) for k in range(3)], axis=-1)
    return np.round(rgb).astype(np.uint8)


def resize(heatmap: np.ndarray, height: int, width: int) -> np.ndarray:
    """[h, w] -> [height, width], bilinear with half-pixel centres."""
    tf = tf_runtime.tensorflow()
    return tf.image.resize(heatmap[None, :, :, None], (height, width), method="bilinear",
                           antialias=False).numpy()[0, :, :, 0]


def input_pixels(image: np.ndarray, spec: dict) -> np.ndarray:
    """A model input [H, W, 3] (preprocessed as ``spec`` says) back to uint8 RGB pixels."""
    from app.inference.preprocess import denormalise

    return np.clip(np.round(denormalise(image, spec)), 0, 255).astype(np.uint8)


def overlay_png(pixels: np.ndarray, heatmap: np.ndarray, opacity: float = 0.5) -> bytes:
    """PNG bytes: ``pixels`` (uint8 [H, W, 3]) with ``heatmap`` ([h, w] in [0, 1]) resized
    over it, coloured, at ``opacity``."""
    height, width = pixels.shape[:2]
    heat = colormap(resize(heatmap, height, width)).astype(np.float32)
    blended = (1 - opacity) * pixels.astype(np.float32) + opacity * heat
    return png(np.round(blended).astype(np.uint8))


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()
