"""The /learn pages' arithmetic, done in Python so the browser's can be checked (issue 15).

- ``least_squares``: the exact best line y = a x + b through points (numpy's lstsq), what
  gradient descent in /learn/line should reach;
- ``convolve``: a kernel over an image with TensorFlow (``tf.nn.conv2d`` on the grayscale image,
  or ``tf.nn.depthwise_conv2d``, the same kernel on each channel), as /learn/convolution does
  with TF.js;
- ``pca``: principal components of feature rows with numpy's SVD, as /learn/pca does in TF.js.

Each raises LearnError (a 422 for the API) on input it cannot work with, saying why.
"""
from __future__ import annotations

import numpy as np

MAX_POINTS = 10_000
MAX_PIXELS = 1024 * 1024
MAX_KERNEL = 9
MAX_ROWS, MAX_FEATURES = 1000, 4096
# what tf.image.rgb_to_grayscale and TF.js's tf.image.rgbToGrayscale weigh R, G and B with
GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)


class LearnError(ValueError):
    """Input the lesson's arithmetic cannot take (the message says why)."""


def _finite(values, what: str, dtype=np.float64) -> np.ndarray:
    """``values`` as an array of finite numbers; LearnError for ragged lists or NaN/infinity."""
    try:
        array = np.asarray(values, dtype)
    except (ValueError, TypeError) as exc:
        raise LearnError(f"{what}: rows of numbers, all of the same length") from exc
    if not np.isfinite(array).all():
        raise LearnError(f"{what}: every value must be a finite number")
    return array


def least_squares(x, y) -> dict:
    """The line y = a x + b with the least mean squared error over the points, exactly:
    {a, b, loss (that mean squared error), n}."""
    x = _finite(x, "x")
    y = _finite(y, "y")
    if x.ndim != 1 or y.shape != x.shape:
        raise LearnError(f"x and y: two lists of the same length (got {x.size} and {y.size} values)")
    if not 2 <= x.size <= MAX_POINTS:
        raise LearnError(f"points: {x.size}; send 2 to {MAX_POINTS}")
    if np.ptp(x) == 0:
        raise LearnError("x: every point has the same x, so no single line fits best; spread the points out")
    design = np.stack([x, np.ones_like(x)], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, y, rcond=None)
    loss = float(np.mean((a * x + b - y) ** 2))
    return {"a": float(a), "b": float(b), "loss": loss, "n": int(x.size)}


def convolve(data, shape, kernel, stride: int = 1, padding: str = "same", mode: str = "grayscale") -> dict:
    """``kernel`` (k x k) over the image (``data``: H*W*C values row by row, ``shape`` [H, W, C],
    C = 1 or 3): mode "grayscale" converts an RGB image to one channel first (GRAY_WEIGHTS) and
    uses tf.nn.conv2d; "per-channel" applies the kernel to each channel (tf.nn.depthwise_conv2d).
    {shape: [h, w, c], data: the output row by row}."""
    from app import tf_runtime

    tf = tf_runtime.tensorflow()
    if not (isinstance(shape, (list, tuple)) and len(shape) == 3 and all(isinstance(n, int) and n > 0 for n in shape)):
        raise LearnError(f"image.shape: [height, width, channels] of positive integers, not {shape!r}")
    height, width, channels = shape
    if channels not in (1, 3):
        raise LearnError(f"image.shape: {channels} channels; send 1 (gray) or 3 (RGB)")
    if height * width > MAX_PIXELS:
        raise LearnError(f"image: {height}x{width} is over {MAX_PIXELS} pixels")
    pixels = _finite(data, "image.data", np.float32)
    if pixels.size != height * width * channels:
        raise LearnError(f"image.data: {pixels.size} values for shape {list(shape)} "
                         f"({height * width * channels} needed)")
    weights = _finite(kernel, "kernel", np.float32)
    if weights.ndim != 2 or weights.shape[0] != weights.shape[1] or not 1 <= weights.shape[0] <= MAX_KERNEL:
        raise LearnError(f"kernel: a square grid of 1x1 to {MAX_KERNEL}x{MAX_KERNEL} numbers, "
                         f"not {list(weights.shape)}")
    if not (isinstance(stride, int) and 1 <= stride <= weights.shape[0]):
        raise LearnError(f"stride: an integer from 1 to the kernel's size ({weights.shape[0]}), not {stride!r}")
    if padding not in ("same", "valid"):
        raise LearnError(f"padding: 'same' or 'valid', not {padding!r}")
    if mode not in ("grayscale", "per-channel"):
        raise LearnError(f"mode: 'grayscale' or 'per-channel', not {mode!r}")
    if padding == "valid" and (weights.shape[0] > height or weights.shape[0] > width):
        raise LearnError(f"kernel: {weights.shape[0]}x{weights.shape[0]} is larger than the image with 'valid' padding")
    image = tf.constant(pixels.reshape(1, height, width, channels))
    size = weights.shape[0]
    if mode == "grayscale":
        if channels == 3:
            image = tf.image.rgb_to_grayscale(image)
        out = tf.nn.conv2d(image, weights.reshape(size, size, 1, 1), stride, padding.upper())
    else:
        filters = np.repeat(weights.reshape(size, size, 1, 1), channels, axis=2)
        out = tf.nn.depthwise_conv2d(image, filters, [1, stride, stride, 1], padding.upper())
    result = out.numpy()[0]
    return {"shape": list(result.shape), "data": result.ravel().tolist()}


def pca(features, components: int = 2) -> dict:
    """Principal components of the rows of ``features`` (n x d): centred, then numpy's SVD (in
    float64). {mean [d], components [k][d] (unit rows; each one's sign is arbitrary),
    explained_variance [k] (the covariance's eigenvalues, divided by n - 1), explained_variance_ratio
    [k] (of the total variance), total_variance, projected [n][k]}."""
    rows = _finite(features, "features")
    if rows.ndim != 2 or rows.shape[1] < 1:
        raise LearnError("features: a list of rows of numbers, all of the same length")
    n, d = rows.shape
    if not 2 <= n <= MAX_ROWS or d > MAX_FEATURES:
        raise LearnError(f"features: {n} rows of {d}; send 2 to {MAX_ROWS} rows of at most {MAX_FEATURES}")
    if not (isinstance(components, int) and 1 <= components <= min(n, d)):
        raise LearnError(f"components: an integer from 1 to {min(n, d)} (rows and features), not {components!r}")
    mean = rows.mean(axis=0)
    centred = rows - mean
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    variance = singular ** 2 / (n - 1)
    total = float(variance.sum())
    k = components
    return {
        "mean": mean.tolist(),
        "components": vt[:k].tolist(),
        "explained_variance": variance[:k].tolist(),
        "explained_variance_ratio": (variance[:k] / total if total > 0 else np.zeros(k)).tolist(),
        "total_variance": total,
        "projected": (centred @ vt[:k].T).tolist(),
    }
