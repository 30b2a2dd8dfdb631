"""The manifest's preprocessing spec, on the server (static/js/preprocess.js is its twin).

Spec (from manifest.json)::

    {"size": [H, W], "crop": "center" | "none", "resize": "bilinear", "color": "rgb" | "bgr",
     "value_range": [lo, hi], "mean": [m0, m1, m2] (optional), "std": [s0, s1, s2] (optional),
     "exif_orientation": true}

Steps, identical on both sides:

1. Decode; apply the EXIF orientation (browsers do it by default); animated images
   give their first frame.
2. To RGB, 8 bits per channel, from every mode Pillow knows: L, LA, P (palette, with
   or without transparency), CMYK, I;16 (16-bit grey: its high byte), RGBA...
   Transparent pixels are composited over WHITE (``BACKGROUND``): the page draws the
   picture onto a white canvas the same way.
3. Crop "center": the largest centred square, ``side = min(h, w)``,
   ``top = (h - side) // 2``, ``left = (w - side) // 2``; "none" keeps everything.
4. Resize to [H, W], bilinear, half-pixel centres, no corner alignment, no
   antialiasing: TensorFlow's ``tf.image.resize(..., "bilinear")``, the same kernel as
   TF.js's ``tf.image.resizeBilinear(x, size, false, true)``.
5. ``p -> lo + p * (hi - lo) / 255`` as float32; then, for "color": "bgr", the channels
   reversed (Caffe's order); then ``(x - mean) / std`` per channel (in the model's channel
   order) when the spec has them. This covers the three ``keras.applications`` modes:
   "tf" (value_range [-1, 1]), "torch" (value_range [0, 1], ImageNet mean and std) and
   "caffe" (value_range [0, 255], BGR, ImageNet mean in BGR order); ``normalise`` is the
   one implementation. A batch of one: [1, H, W, 3].
"""
from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

from app import tf_runtime

BACKGROUND = (255, 255, 255)


class ImageError(ValueError):
    """The upload cannot be turned into a model input; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def decode(data: bytes, max_pixels: int) -> Image.Image:
    """Bytes -> upright RGB image (first frame), or ImageError with a reason a person can act on."""
    if not data:
        raise ImageError("the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(f"the image is {width}x{height} pixels; the limit is "
                                 f"{max_pixels / 1e6:g} megapixels", status=413)
            image.seek(0)  # animated GIF/WebP/PNG: the first frame
            image.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own guard (above ~89 megapixels) fired before ours: name the server's limit
        raise ImageError(f"the image declares too many pixels; the limit is {max_pixels / 1e6:g} megapixels",
                         status=413) from exc
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for bad data
        reason = "it is truncated" if "truncated" in str(exc) else "it is not an image Pillow can read"
        raise ImageError(f"the file could not be decoded as an image: {reason}") from exc
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - a damaged EXIF block: keep the pixels as stored
        pass
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB, transparency composited over BACKGROUND."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grey keeps its high byte (v >> 8), as Chromium decodes it: bit-identical
        # with the page (rounding v * 255 / 65535 instead differs by one level on 1/4 of values).
        pixels = np.asarray(image).astype(np.int64)
        if image.mode.startswith("I;16") or pixels.max() > 255:
            pixels = pixels >> 8
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "L").convert("RGB")
    if (image.mode == "P" and "transparency" in image.info) or image.mode in ("LA", "PA", "La", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGBA", image.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, image).convert("RGB")
    return image.convert("RGB")


def center_square(height: int, width: int) -> tuple[int, int, int]:
    """(top, left, side) of the largest centred square."""
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side


def to_model_input(image: Image.Image, spec: dict) -> np.ndarray:
    """An RGB image -> float32 [1, H, W, 3] exactly as the spec says."""
    if spec.get("resize", "bilinear") != "bilinear" or spec.get("color", "rgb") not in ("rgb", "bgr"):
        raise ValueError(f"unsupported preprocessing spec {spec}")
    pixels = np.asarray(image, dtype=np.float32)
    if spec.get("crop", "center") == "center":
        top, left, side = center_square(*pixels.shape[:2])
        pixels = pixels[top:top + side, left:left + side]
    tf = tf_runtime.tensorflow()
    resized = tf.image.resize(pixels[None], spec["size"], method="bilinear", antialias=False).numpy()
    return normalise(resized, spec)


def normalise(pixels: np.ndarray, spec: dict) -> np.ndarray:
    """Pixel values 0..255 (RGB, last axis) -> the model's input values, float32 (step 5)."""
    lo, hi = spec["value_range"]
    x = (np.float32(lo) + pixels.astype(np.float32) * np.float32((hi - lo) / 255.0)).astype(np.float32)
    if spec.get("color", "rgb") == "bgr":
        x = x[..., ::-1]
    if spec.get("mean") is not None:
        x = x - np.asarray(spec["mean"], np.float32)
    if spec.get("std") is not None:
        x = x / np.asarray(spec["std"], np.float32)
    return np.ascontiguousarray(x, dtype=np.float32)


def denormalise(x: np.ndarray, spec: dict) -> np.ndarray:
    """The model's input values -> pixel values 0..255 (RGB, float): ``normalise`` undone."""
    x = x.astype(np.float64)
    if spec.get("std") is not None:
        x = x * np.asarray(spec["std"])
    if spec.get("mean") is not None:
        x = x + np.asarray(spec["mean"])
    if spec.get("color", "rgb") == "bgr":
        x = x[..., ::-1]
    lo, hi = spec["value_range"]
    return (x - lo) * 255.0 / (hi - lo)


def preprocess_bytes(data: bytes, spec: dict, max_pixels: int) -> np.ndarray:
    return to_model_input(decode(data, max_pixels), spec)


def from_model_layout(batch: np.ndarray, layout: str | None) -> np.ndarray:
    """A batch in the model's layout (the manifest's ``input.layout``: "NCHW" for PyTorch exports)
    as the server holds every batch: [N, H, W, C]. The API turns tensors sent in the model's
    layout into this; an NCHW model's runtime turns it back (to_model_layout)."""
    return batch.transpose(0, 2, 3, 1) if layout == "NCHW" else batch


def to_model_layout(batch: np.ndarray, layout: str | None) -> np.ndarray:
    """[N, H, W, C] images in the model's layout, contiguous float32."""
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2) if layout == "NCHW" else batch, dtype=np.float32)
