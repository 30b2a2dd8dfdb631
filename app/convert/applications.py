"""``belka convert keras-app NAME``: any ImageNet classifier of ``keras.applications``, by name.

Each family wants its pixels prepared its own way (what its ``preprocess_input`` does);
the manifest's preprocessing spec says it, and page and server both apply it:

- "tf": pixels to -1..1 (MobileNet, MobileNetV2, Inception, Xception, NASNet, ResNet V2);
- "raw": pixels 0..255 as they are, the normalisation is inside the model (MobileNetV3,
  EfficientNet, EfficientNetV2, ConvNeXt, RegNet: ``include_preprocessing``);
- "torch": 0..1, then minus the ImageNet mean, divided by its std, per RGB channel (DenseNet);
- "caffe": 0..255 with the channels in BGR order, minus the ImageNet mean in BGR (ResNet, VGG).

The model outputs logits (``classifier_activation=None``). ``--weights imagenet`` is Keras's own
download (cached in ~/.keras/models; exit 4 when offline), ``none`` seeded untrained weights
made non-degenerate (BatchNorm statistics re-estimated, as for MobileNetV2), or a weights FILE.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from app import tf_runtime
from app.convert.errors import BadInput, DownloadFailed

IMAGENET_MEAN_RGB = [0.485, 0.456, 0.406]
IMAGENET_STD_RGB = [0.229, 0.224, 0.225]
CAFFE_MEAN_BGR = [103.939, 116.779, 123.68]

# What each preprocess_input mode is, as a preprocessing spec's value part.
PRESETS = {
    "tf": {"value_range": [-1.0, 1.0]},
    "raw": {"value_range": [0.0, 255.0]},
    "torch": {"value_range": [0.0, 1.0], "mean": IMAGENET_MEAN_RGB, "std": IMAGENET_STD_RGB},
    "caffe": {"value_range": [0.0, 255.0], "color": "bgr", "mean": CAFFE_MEAN_BGR},
}

# name: (preprocessing preset, default input size)
APPLICATIONS = {
    "MobileNet": ("tf", 224), "MobileNetV2": ("tf", 224),
    "MobileNetV3Small": ("raw", 224), "MobileNetV3Large": ("raw", 224),
    "EfficientNetB0": ("raw", 224), "EfficientNetB1": ("raw", 240), "EfficientNetB2": ("raw", 260),
    "EfficientNetB3": ("raw", 300), "EfficientNetB4": ("raw", 380), "EfficientNetB5": ("raw", 456),
    "EfficientNetB6": ("raw", 528), "EfficientNetB7": ("raw", 600),
    "EfficientNetV2B0": ("raw", 224), "EfficientNetV2B1": ("raw", 240), "EfficientNetV2B2": ("raw", 260),
    "EfficientNetV2B3": ("raw", 300), "EfficientNetV2S": ("raw", 384), "EfficientNetV2M": ("raw", 480),
    "EfficientNetV2L": ("raw", 480),
    "ConvNeXtTiny": ("raw", 224), "ConvNeXtSmall": ("raw", 224), "ConvNeXtBase": ("raw", 224),
    "ConvNeXtLarge": ("raw", 224), "ConvNeXtXLarge": ("raw", 224),
    "ResNet50": ("caffe", 224), "ResNet101": ("caffe", 224), "ResNet152": ("caffe", 224),
    "ResNet50V2": ("tf", 224), "ResNet101V2": ("tf", 224), "ResNet152V2": ("tf", 224),
    "VGG16": ("caffe", 224), "VGG19": ("caffe", 224),
    "DenseNet121": ("torch", 224), "DenseNet169": ("torch", 224), "DenseNet201": ("torch", 224),
    "InceptionV3": ("tf", 299), "InceptionResNetV2": ("tf", 299), "Xception": ("tf", 299),
    "NASNetMobile": ("tf", 224), "NASNetLarge": ("tf", 331),
}
# BatchNorm calibration: 32 pictures at 224x224, more for smaller inputs (up to 256) so that the
# last stages, whose maps shrink to 1x1, still see enough values per channel (EfficientNetB0 at
# 32x32 calibrated on 32 pictures: logits up to 280 and float32 rounding to match; on 256: 4).
CALIBRATION_BATCH = 32
CALIBRATION_MAX_BATCH = 256


def calibration_batch(height: int, width: int) -> int:
    """How many pictures calibrate a model of this input size: about the same pixel count as
    32 at 224x224, between 32 and 256."""
    return int(min(CALIBRATION_MAX_BATCH, max(CALIBRATION_BATCH, CALIBRATION_BATCH * 224 * 224 // (height * width))))


def lookup(name: str) -> str:
    """The application's exact name (case-insensitive match), or BadInput listing them."""
    by_lower = {n.lower(): n for n in APPLICATIONS}
    exact = by_lower.get(name.lower().replace("-", "").replace("_", ""))
    if exact is None:
        raise BadInput(f"unknown keras.applications model {name!r}; choose one of {', '.join(APPLICATIONS)}")
    return exact


def build(name: str, size: int | None, weights: str, seed: int = 0):
    """(Keras 3 model with logits output, preprocessing preset name, size, weights provenance)."""
    tf_runtime.tensorflow()
    import keras

    name = lookup(name)
    preset, default_size = APPLICATIONS[name]
    size = size or default_size
    if weights == "imagenet" and size != default_size:
        raise BadInput(f"the ImageNet weights of {name} are for {default_size}x{default_size} inputs; "
                       f"use --size {default_size} or --weights none")
    constructor = getattr(keras.applications, name)
    kwargs = dict(input_shape=(size, size, 3), include_top=True, classes=1000, classifier_activation=None)
    if weights == "imagenet":
        try:
            model = constructor(weights="imagenet", **kwargs)
        except Exception as exc:  # noqa: BLE001 - Keras raises a bare Exception on URL errors
            from app.convert.mobilenet import is_download_error, short_message

            if is_download_error(exc):
                raise DownloadFailed(
                    f"Could not download the ImageNet weights for {name} ({short_message(exc)}). Keras fetches "
                    "them once and caches them in ~/.keras/models; this machine could not reach the "
                    "download server. Pass a weights file with --weights FILE, or --weights none for "
                    "untrained (but non-degenerate) weights.") from exc
            raise
        return model, preset, size, {"provenance": "imagenet", "trained": True,
                                     "source": f"keras.applications {name} ImageNet checkpoint"}
    keras.utils.set_random_seed(seed)
    try:
        model = constructor(weights=None, **kwargs)
    except ValueError as exc:
        raise BadInput(f"{name} cannot be built at {size}x{size}: {' '.join(str(exc).split())[:200]}") from exc
    if weights == "none":
        calibrate_batchnorm(model, PRESETS[preset], seed)
        return model, preset, size, {
            "provenance": "none", "trained": False, "seed": seed,
            "init": (f"Keras default initialisers seeded with {seed}; every BatchNorm layer's moving mean "
                     f"and variance re-estimated from {calibration_batch(size, size)} random pictures so the "
                     "logits vary"),
        }
    path = Path(weights)
    if not path.is_file():
        raise BadInput(f"--weights {weights}: no such file (use imagenet, none or a weights file)")
    try:
        model.load_weights(str(path))
    except Exception as exc:  # noqa: BLE001 - h5py/Keras raise many types for a bad file
        raise BadInput(f"--weights {path}: not a weights file for {name} at {size}x{size}: "
                       f"{' '.join(str(exc).split())[:200]}") from exc
    from app.convert.files import sha256_of

    return model, preset, size, {"provenance": "file", "trained": True, "file": path.name, "sha256": sha256_of(path)}


def calibration_pixels(count: int, height: int, width: int, seed: int) -> np.ndarray:
    """``count`` random pictures, pixel values 0..255: uniform noise drawn at a coarse grid
    (2x2 up to full resolution, one grid per picture, cycling) and resized smoothly, so the
    batch holds flat regions, soft gradients and fine texture, as photos do. Statistics
    taken from pixel noise alone leave an untrained network ill-conditioned on smooth
    pictures (EfficientNetB0 at 224: logits spread 0.8 on noise, 1100 on a gradient)."""
    tf = tf_runtime.tensorflow()
    rng = np.random.default_rng(seed)
    grids = [g for g in (2, 4, 8, 16, 32, 64, 128) if g < max(height, width)] + [max(height, width)]
    pictures = []
    for i in range(count):
        grid = grids[i % len(grids)]
        coarse = rng.uniform(0, 255, size=(1, grid, grid, 3)).astype(np.float32)
        pictures.append(tf.image.resize(coarse, (height, width), method="bilinear").numpy()[0])
    return np.clip(np.stack(pictures), 0, 255).astype(np.float32)


def calibrate_batchnorm(model, values: dict, seed: int) -> None:
    """Every BatchNorm's moving statistics set to those of a batch of random images
    (``calibration_pixels``; one training-mode pass with momentum 0), so an untrained model's
    outputs vary with its input.
    A Normalization layer still at mean 0, variance 1 (EfficientNet's, whose ImageNet values
    come with the weights) first gets the ImageNet RGB mean and variance it would have."""
    from app.convert.keras_model import all_layers
    from app.inference.preprocess import normalise

    for layer in all_layers(model):
        weights = layer.get_weights() if type(layer).__name__ == "Normalization" else []
        if len(weights) == 3 and weights[0].shape == (3,) and not weights[0].any() and (weights[1] == 1).all():
            layer.set_weights([np.array(IMAGENET_MEAN_RGB, np.float32),
                               np.square(np.array(IMAGENET_STD_RGB, np.float32)), weights[2]])
            if hasattr(layer, "finalize_state"):
                layer.finalize_state()  # Keras 3 computes with values derived from the weights

    norms = [layer for layer in all_layers(model) if type(layer).__name__ == "BatchNormalization"]
    if not norms:
        return
    height, width = model.inputs[0].shape[1:3]
    x = normalise(calibration_pixels(calibration_batch(height, width), height, width, seed), values)
    # dropout (EfficientNet's stochastic depth drops whole residual branches) off for this pass:
    # the statistics must be those the layers will see at inference
    dropouts = [layer for layer in all_layers(model) if "Dropout" in type(layer).__name__]
    saved = [(layer.momentum, None) for layer in norms] + [(None, layer.rate) for layer in dropouts]
    for layer in norms:
        layer.momentum = 0.0
    for layer in dropouts:
        layer.rate = 0.0
    try:
        model(x, training=True)
    finally:
        for layer, (momentum, _) in zip(norms, saved):
            layer.momentum = momentum
        for layer, (_, rate) in zip(dropouts, saved[len(norms):]):
            layer.rate = rate
