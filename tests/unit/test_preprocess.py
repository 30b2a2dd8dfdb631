"""Server-side preprocessing (app/inference/preprocess.py): decode, to_rgb, to_model_input.

Images are built in memory with Pillow (plus scikit-image's sample photos); no model needed.
"""
from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image
from skimage import data as samples

from app.inference.preprocess import (BACKGROUND, ImageError, center_square, decode, preprocess_bytes,
                                      to_model_input, to_rgb)

MAX_PIXELS = 40_000_000
SPEC = {"size": [96, 96], "crop": "center", "resize": "bilinear", "color": "rgb",
        "value_range": [-1.0, 1.0], "exif_orientation": True}


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def pixels(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image).astype(int)


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR declares width x height RGB pixels (the data holds a few bytes)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


# -- decode: modes -------------------------------------------------------------------------------

def test_rgb_png_round_trips_exactly():
    photo = samples.chelsea()
    np.testing.assert_array_equal(pixels(decode(encode(Image.fromarray(photo), "PNG"), MAX_PIXELS)), photo)


def test_grey_l_becomes_three_equal_channels():
    image = decode(encode(Image.new("L", (3, 2), 77), "PNG"), MAX_PIXELS)
    assert image.size == (3, 2)
    assert (pixels(image) == 77).all()


def test_la_is_composited_over_white():
    la = Image.new("LA", (2, 1))
    la.putpixel((0, 0), (40, 255))  # opaque dark grey
    la.putpixel((1, 0), (40, 0))    # fully transparent
    out = pixels(decode(encode(la, "PNG"), MAX_PIXELS))
    assert out[0, 0].tolist() == [40, 40, 40]
    assert out[0, 1].tolist() == list(BACKGROUND) == [255, 255, 255]


def test_palette_with_a_transparent_index_is_composited_over_white():
    p = Image.new("P", (2, 1))
    p.putpalette([200, 10, 20] + [0, 0, 0] * 255)
    p.putpixel((0, 0), 0)
    p.putpixel((1, 0), 1)
    out = pixels(decode(encode(p, "PNG", transparency=1), MAX_PIXELS))
    assert out[0, 0].tolist() == [200, 10, 20]
    assert out[0, 1].tolist() == [255, 255, 255]  # index 1 is black but transparent


def test_palette_without_transparency_keeps_its_colours():
    p = Image.new("P", (1, 1))
    p.putpalette([1, 2, 3] * 256)
    assert pixels(decode(encode(p, "PNG"), MAX_PIXELS))[0, 0].tolist() == [1, 2, 3]


def test_rgba_is_composited_over_white():
    rgba = Image.new("RGBA", (3, 1))
    rgba.putpixel((0, 0), (10, 20, 30, 255))  # opaque: unchanged
    rgba.putpixel((1, 0), (0, 0, 0, 0))       # fully transparent black: white, not black
    rgba.putpixel((2, 0), (0, 0, 0, 128))     # half transparent black over white: mid grey
    out = pixels(decode(encode(rgba, "PNG"), MAX_PIXELS))
    assert out[0, 0].tolist() == [10, 20, 30]
    assert out[0, 1].tolist() == [255, 255, 255]
    assert all(abs(v - 127) <= 1 for v in out[0, 2])


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (16, 16), (255, 0, 0, 0))  # pure cyan ink
    data = encode(cmyk, "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = pixels(decode(data, MAX_PIXELS))
    assert out.shape == (16, 16, 3)
    assert np.abs(out - [0, 255, 255]).max() <= 3


def test_16_bit_grey_png_is_scaled_to_8_bits():
    grey16 = Image.fromarray(np.array([[0, 257, 32768, 65535]], dtype=np.uint16))
    data = encode(grey16, "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    out = pixels(decode(data, MAX_PIXELS))
    assert out[0, :, 0].tolist() == [0, 1, 128, 255]
    assert (out == out[..., :1]).all()  # grey: three equal channels


def test_to_rgb_handles_32_bit_integer_grey():
    image = Image.fromarray(np.array([[0, 255, 1000]], dtype=np.int32), "I")
    out = pixels(to_rgb(image))
    # Values above 255 mean a 16-bit range: the high byte is kept, as Chromium does.
    assert out[0, :, 0].tolist() == [0, 0, 3]


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "YCbCr", "I;16", "I", "F"])
def test_to_rgb_gives_rgb_for_every_mode(mode):
    out = to_rgb(Image.new(mode, (5, 4)))
    assert out.mode == "RGB" and out.size == (5, 4)


def test_exif_orientation_6_comes_out_upright():
    # Stored 40 wide x 20 high: top half red, bottom half blue. Orientation 6 says "rotate 90
    # degrees clockwise to display": upright it is 20 wide x 40 high, red on the right.
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:10] = (255, 0, 0)
    stored[10:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.fromarray(stored), "JPEG", quality=95, exif=exif.tobytes())
    image = decode(data, MAX_PIXELS)
    assert image.size == (20, 40)
    out = pixels(image)
    assert np.abs(out[:, 14:] - [255, 0, 0]).max() < 40, "right side should be red"
    assert np.abs(out[:, :6] - [0, 0, 255]).max() < 40, "left side should be blue"


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 2
    assert (pixels(decode(data, MAX_PIXELS)) == [255, 0, 0]).all()


def test_one_pixel_image():
    image = decode(encode(Image.new("RGB", (1, 1), (9, 8, 7)), "PNG"), MAX_PIXELS)
    assert pixels(image).tolist() == [[[9, 8, 7]]]


# -- decode: bad input ---------------------------------------------------------------------------

def test_empty_file():
    with pytest.raises(ImageError, match="empty") as info:
        decode(b"", MAX_PIXELS)
    assert info.value.status == 400


@pytest.mark.parametrize("data", [b"hello, not an image", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"\xff\xd8\xff"])
def test_not_an_image(data):
    with pytest.raises(ImageError, match="could not be decoded") as info:
        decode(data, MAX_PIXELS)
    assert info.value.status == 400


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_image(fmt):
    data = encode(Image.fromarray(samples.chelsea()), fmt)
    with pytest.raises(ImageError, match="truncated") as info:
        decode(data[: len(data) // 2], MAX_PIXELS)
    assert info.value.status == 400


@pytest.mark.parametrize("side", [100_000, 10_000, 7_000], ids=["over-pillow-error", "over-pillow-warning",
                                                                 "over-our-limit"])
def test_decompression_bomb_is_refused_before_decoding(side):
    data = png_declaring(side, side)
    assert len(data) < 200
    start = time.perf_counter()
    with pytest.raises(ImageError) as info:
        decode(data, MAX_PIXELS)
    assert time.perf_counter() - start < 2  # nothing was allocated or decoded
    assert info.value.status == 413
    assert "the limit is 40 megapixels" in str(info.value)


def test_pixel_limit_is_configurable():
    data = encode(Image.new("RGB", (1000, 600)), "PNG")
    assert decode(data, 600_000).size == (1000, 600)
    with pytest.raises(ImageError, match=r"1000x600 pixels; the limit is 0\.5 megapixels") as info:
        decode(data, 500_000)
    assert info.value.status == 413


# -- to_model_input ------------------------------------------------------------------------------

def test_center_square():
    assert center_square(10, 30) == (0, 10, 10)
    assert center_square(31, 10) == (10, 0, 10)
    assert center_square(7, 7) == (0, 0, 7)


def test_value_range_and_shape():
    white = to_model_input(Image.new("RGB", (50, 50), (255, 255, 255)), SPEC)
    black = to_model_input(Image.new("RGB", (50, 50), (0, 0, 0)), SPEC)
    assert white.shape == black.shape == (1, 96, 96, 3)
    assert white.dtype == np.float32
    np.testing.assert_allclose(white, 1.0, atol=1e-6)
    np.testing.assert_allclose(black, -1.0, atol=1e-6)
    unit = to_model_input(Image.new("RGB", (4, 4), (51, 102, 204)), {**SPEC, "value_range": [0.0, 1.0]})
    np.testing.assert_allclose(unit[0, 0, 0], [0.2, 0.4, 0.8], atol=1e-6)


def test_center_crop_keeps_the_middle_square_and_none_squashes_all():
    wide = np.zeros((30, 90, 3), np.uint8)
    wide[:, :] = (255, 0, 0)       # red sides
    wide[:, 30:60] = (0, 255, 0)   # green centred square
    image = Image.fromarray(wide)
    cropped = to_model_input(image, {**SPEC, "value_range": [0, 255]})
    np.testing.assert_allclose(cropped[0].reshape(-1, 3), [[0, 255, 0]] * 96 * 96, atol=1e-3)
    squashed = to_model_input(image, {**SPEC, "crop": "none", "value_range": [0, 255]})
    assert squashed.shape == (1, 96, 96, 3)
    np.testing.assert_allclose(squashed[0, 48, 0], [255, 0, 0], atol=1e-3)
    np.testing.assert_allclose(squashed[0, 48, 48], [0, 255, 0], atol=1e-3)


def test_resize_is_bilinear_with_half_pixel_centres_and_no_antialiasing():
    # One row [0, 255] stretched to 4 pixels samples x = -0.25, 0.25, 0.75, 1.25 (clamped).
    row = np.array([[[0, 0, 0], [255, 255, 255]]] * 2, np.uint8)
    out = to_model_input(Image.fromarray(row), {**SPEC, "size": [2, 4], "crop": "none", "value_range": [0, 255]})
    np.testing.assert_allclose(out[0, 0, :, 0], [0, 63.75, 191.25, 255], atol=1e-4)
    # Shrinking 4 -> 2 without antialiasing samples x = 0.5 and 2.5: the means of pixel pairs.
    row = np.array([[[0] * 3, [100] * 3, [200] * 3, [40] * 3]], np.uint8)
    out = to_model_input(Image.fromarray(row), {**SPEC, "size": [1, 2], "crop": "none", "value_range": [0, 255]})
    np.testing.assert_allclose(out[0, 0, :, 0], [50, 120], atol=1e-4)


def test_unsupported_spec_is_refused():
    with pytest.raises(ValueError, match="unsupported"):
        to_model_input(Image.new("RGB", (4, 4)), {**SPEC, "resize": "nearest"})


def test_preprocess_bytes_is_decode_then_to_model_input():
    data = encode(Image.fromarray(samples.coffee()), "JPEG", quality=90)
    out = preprocess_bytes(data, SPEC, MAX_PIXELS)
    assert out.shape == (1, 96, 96, 3) and out.dtype == np.float32
    assert -1.0 <= out.min() < out.max() <= 1.0
    np.testing.assert_array_equal(out, to_model_input(decode(data, MAX_PIXELS), SPEC))
