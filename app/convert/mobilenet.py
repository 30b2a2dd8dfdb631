"""MobileNetV2 for ImageNet, built with legacy Keras (tf_keras) so TF.js can load its layers JSON.

The model outputs LOGITS (``classifier_activation=None``); softmax is applied by
whoever reads them (browser or server), as the manifest says. Logits are what
parity tests compare and what Grad-CAM differentiates.

Weights:
- ``imagenet``: Keras's own download and cache (~/.keras/models), the real path
  for users with the internet. Offline it raises DownloadFailed.
- ``none``: untrained but NOT degenerate. Keras's untrained MobileNetV2 gives
  exactly 1/1000 for every class (BatchNorm's moving variance of 1 blows nothing
  up, the activations die out), which makes any parity test compare constants.
  We seed the initialisers and then re-estimate every BatchNorm layer's moving
  mean and variance from a batch of random inputs, so activations keep their
  scale through the network and the logits vary from image to image.
- a file: Keras weights (``.h5`` / ``.weights.h5``) for the same alpha and size.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from app import tf_runtime
from app.convert.errors import BadInput, DownloadFailed

ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
SIZES = (96, 128, 160, 192, 224)
NUM_CLASSES = 1000
SQUIRREL_CLASSES = [335]  # ImageNet 335: fox squirrel
# Pixel p in 0..255 becomes -1 + 2 * p / 255, as keras.applications.mobilenet_v2.preprocess_input.
VALUE_RANGE = [-1.0, 1.0]
CALIBRATION_BATCH = 8

OFFLINE_MESSAGE = (
    "Could not download the ImageNet weights for MobileNetV2 ({reason}). Keras fetches them once "
    "from the internet and caches them in ~/.keras/models; this machine could not reach the "
    "download server. Either put a weights file you already have on disk and pass "
    "`--weights FILE`, or build the demo with untrained (but non-degenerate) weights with "
    "`--weights none`; its predictions are meaningless, but every part of the app works."
)


def build(alpha: float, size: int, weights: str, seed: int = 0):
    """Return (tf_keras model with logits output, weights provenance dict)."""
    tf_keras = tf_runtime.tf_keras()

    if alpha not in ALPHAS:
        raise BadInput(f"--alpha must be one of {', '.join(map(str, ALPHAS))} (got {alpha})")
    if size not in SIZES:
        raise BadInput(f"--size must be one of {', '.join(map(str, SIZES))} (got {size})")
    kwargs = dict(input_shape=(size, size, 3), alpha=alpha, include_top=True,
                  classes=NUM_CLASSES, classifier_activation=None)
    if weights == "imagenet":
        if alpha > 1.0 and size != 224:
            raise BadInput(f"ImageNet weights for alpha {alpha} exist only for --size 224")
        try:
            model = tf_keras.applications.MobileNetV2(weights="imagenet", **kwargs)
        except Exception as exc:  # noqa: BLE001 - Keras raises a bare Exception on URL errors
            if is_download_error(exc):
                raise DownloadFailed(OFFLINE_MESSAGE.format(reason=short_message(exc))) from exc
            raise
        return model, {"provenance": "imagenet", "trained": True,
                       "source": "keras.applications MobileNetV2 ImageNet checkpoint"}
    tf_keras.utils.set_random_seed(seed)
    model = tf_keras.applications.MobileNetV2(weights=None, **kwargs)
    if weights == "none":
        calibrate_batchnorm(model, seed)
        return model, {
            "provenance": "none", "trained": False, "seed": seed,
            "init": (f"Keras default initialisers seeded with {seed}; every BatchNorm layer's moving "
                     f"mean and variance re-estimated from {CALIBRATION_BATCH} random inputs in "
                     "[-1, 1] so the logits vary (Keras's untrained model is degenerate)"),
        }
    return model, load_weights_file(model, Path(weights))


def calibrate_batchnorm(model, seed: int, batch: int = CALIBRATION_BATCH) -> None:
    """Set every BatchNorm's moving statistics to those of a random batch, in one forward pass.

    With momentum 0, a training-mode call replaces the moving mean/variance by the
    batch statistics; every BatchNorm normalises with those same statistics during
    that pass, so each layer sees the activations it will see at inference.
    """
    tf_keras = tf_runtime.tf_keras()

    norms = [layer for layer in model.layers if isinstance(layer, tf_keras.layers.BatchNormalization)]
    shape = (batch, *model.input_shape[1:])
    x = np.random.default_rng(seed).uniform(-1.0, 1.0, size=shape).astype("float32")
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    try:
        model(x, training=True)
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum


def load_weights_file(model, path: Path) -> dict:
    from app.convert.files import sha256_of

    if not path.is_file():
        raise BadInput(f"--weights: no such file: {path}")
    try:
        model.load_weights(str(path))
    except Exception as exc:  # noqa: BLE001 - h5py/Keras raise many types for a bad file
        raise BadInput(f"--weights {path}: not a weights file for this MobileNetV2 "
                       f"(alpha/size must match): {short_message(exc)}") from exc
    return {"provenance": "file", "trained": True, "file": path.name, "sha256": sha256_of(path)}


def is_download_error(exc: BaseException) -> bool:
    import urllib.error

    text = str(exc)
    return (isinstance(exc, (urllib.error.URLError, OSError, ConnectionError))
            or "URL fetch failure" in text or "HTTP Error" in text)


def short_message(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:240] or type(exc).__name__
