"""One preprocessing spec, two implementations; one model, two runtimes.

The manifest's preprocessing spec is implemented twice: static/js/preprocess.js and model-input.js
in the page (Chromium decodes, a white canvas flattens transparency, a loop crops, TF.js resizes
and scales) and
app/inference/preprocess.py on the server (Pillow decodes and converts, TensorFlow resizes).
These tests hold the two to the same numbers, then the two runtimes (TF.js on each backend,
TensorFlow behind POST /api/models/{name}/predict) to the same outputs, on the real server with
the session's small MobileNetV2 (alpha 0.35, 96 px, untrained but non-degenerate weights).

Run with ``pytest -s`` to see the measured differences.
"""
from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest

from app.inference.preprocess import preprocess_bytes
from tests.browser.conftest import open_classify

BACKENDS = ["webgpu", "webgl", "wasm", "cpu"]
LOGITS_ATOL = 1e-4  # float32 model, browser vs server, same input tensor
PROBABILITY_ATOL = 1e-3  # same PNG, each side preprocessing it itself
MAX_PIXELS = 40_000_000
# Pixel levels on top of the one-level bound: float32 rounding inside the two resize kernels,
# which compute the source coordinates and weights in a different order (measured: up to 0.006
# levels where the scale is not exact, e.g. 512 -> 96; 0 where it is, e.g. 300 -> 96).
FLOAT_SLACK = 0.02

# Every image in the page: base64 -> Blob -> the page's own path (decodeImage on the page, then
# toModelInput in the model's worker, as classify() does) -> flat float32 array.
PAGE_PREPROCESS = """async ({images}) => {
  const m = await import('/static/js/preprocess.js');
  const out = {};
  for (const [name, [b64, type]] of Object.entries(images)) {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const bitmap = await m.decodeImage(new Blob([bytes], {type}));
    const {input} = await window.belka.worker('classify', {image: bitmap});
    bitmap.close();
    out[name] = Array.from(input);
  }
  return out;
}"""

# The decoded, flattened 8-bit RGB pixels before any crop or resize (decodeImage + opaquePixels,
# as toModelInput does), base64-encoded: to compare the decoders themselves.
PAGE_DECODE = """async ({images}) => {
  const m = await import('/static/js/preprocess.js');
  const out = {};
  for (const [name, [b64, type]] of Object.entries(images)) {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const bitmap = await m.decodeImage(new Blob([bytes], {type}));
    const {data, width, height} = m.opaquePixels(bitmap);
    bitmap.close();
    let text = '';
    for (let i = 0; i < data.length; i += 4) {
      text += String.fromCharCode(data[i], data[i + 1], data[i + 2]);
    }
    out[name] = [btoa(text), height, width];
  }
  return out;
}"""


# ---------------------------------------------------------------- images (Pillow writes them)

def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _alpha_ramp(height: int, width: int) -> np.ndarray:
    """Alpha 0..255 left to right, with a fully transparent band (top quarter) and a fully
    opaque one (bottom quarter)."""
    alpha = np.tile(np.linspace(0, 255, width).round().astype(np.uint8), (height, 1))
    alpha[: height // 4] = 0
    alpha[-height // 4:] = 255
    return alpha


def png_cases() -> dict[str, bytes]:
    """PNGs of every mode the spec converts, and shapes that exercise the crop and the resize."""
    from PIL import Image
    from skimage import data

    chelsea, astronaut, coffee = (Image.fromarray(f()) for f in (data.chelsea, data.astronaut, data.coffee))
    h, w = chelsea.height, chelsea.width
    cases = {
        "RGB chelsea 451x300": _png(chelsea),
        "RGB astronaut 512x512": _png(astronaut),
        "RGB coffee 600x400": _png(coffee),
        # Odd margins: the crop's floor((h - side) / 2) matters (301 - 200 = 101 -> top 50).
        "RGB tall crop 200x301": _png(astronaut.crop((157, 41, 357, 342))),
        # Smaller than the model's 96x96: the resize upsamples (and the crop has an odd margin).
        "RGB small 61x45": _png(coffee.resize((61, 45), Image.Resampling.BILINEAR)),
    }
    rgba = np.dstack([np.asarray(chelsea), _alpha_ramp(h, w)])
    cases["RGBA partial+full transparency"] = _png(Image.fromarray(rgba, "RGBA"))
    clear = rgba.copy()
    clear[..., 3] = 0  # fully transparent everywhere, colours still stored: must become white
    cases["RGBA fully transparent"] = _png(Image.fromarray(clear, "RGBA"))
    grey = chelsea.convert("L")
    cases["L"] = _png(grey)
    cases["LA"] = _png(Image.fromarray(np.dstack([np.asarray(grey), _alpha_ramp(h, w)]), "LA"))
    # Palette with a tRNS chunk: index 0 fully transparent, a third of the entries half transparent.
    palette = chelsea.quantize(64)
    alphas = bytes(0 if i == 0 else 128 if i % 3 == 0 else 255 for i in range(64))
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG", transparency=alphas)
    cases["P + tRNS"] = buffer.getvalue()
    # 16-bit grey with values that are not multiples of 257, so 16 -> 8 bit rounding shows.
    smooth = np.asarray(grey, dtype=np.float64) * 257 + np.linspace(-128, 128, w)[None, :]
    grey16 = Image.fromarray(np.clip(smooth, 0, 65535).round().astype("<u2"))  # mode I;16
    assert grey16.mode == "I;16"
    cases["I;16"] = _png(grey16)
    assert Image.open(io.BytesIO(cases["I;16"])).mode == "I;16"  # a 16-bit grey PNG, read back as such
    # EXIF orientation 6 ("rotate 90 degrees clockwise to view") in a PNG eXIf chunk.
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    chelsea.transpose(Image.Transpose.ROTATE_90).save(buffer, format="PNG", exif=exif)
    cases["RGB EXIF orientation 6"] = buffer.getvalue()
    return cases


def jpeg_cases() -> dict[str, bytes]:
    """Quality-90 JPEGs (Pillow's defaults: 4:2:0 chroma subsampling), and one CMYK JPEG."""
    from PIL import Image
    from skimage import data

    cases = {name: _jpeg(Image.fromarray(f())) for name, f in
             (("chelsea", data.chelsea), ("astronaut", data.astronaut), ("coffee", data.coffee))}
    cases["coffee CMYK"] = _jpeg(Image.fromarray(data.coffee()).convert("CMYK"))
    return cases


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def spec(small_mobilenet) -> dict:
    return small_mobilenet["manifest"]["preprocessing"]


@pytest.fixture(scope="module")
def pixel_scale(spec) -> float:
    """Model-input units -> pixel units (0..255): 255 / (hi - lo)."""
    lo, hi = spec["value_range"]
    return 255.0 / (hi - lo)


@pytest.fixture(scope="module")
def predict_url(server, small_mobilenet) -> str:
    return f"{server}/api/models/{small_mobilenet['dir'].name}/predict"


def _page_inputs(page, cases: dict[str, bytes], mime: str, spec: dict) -> dict[str, np.ndarray]:
    out = page.evaluate(PAGE_PREPROCESS, {"images": {k: [_b64(v), mime] for k, v in cases.items()}})
    return {k: np.array(v, dtype=np.float32).reshape(1, *spec["size"], 3) for k, v in out.items()}


# ---------------------------------------------------------------- preprocessing parity

def test_png_preprocessing_matches_the_server_within_one_level(wasm_page, spec, pixel_scale):
    """The same PNG through preprocess.js (Chromium) and preprocess.py (Pillow + TensorFlow): every
    model-input value agrees within 1/255 of the value range, i.e. one 8-bit level (tolerance
    (hi - lo) / 255 in model-input units, plus FLOAT_SLACK).

    What bounds the rest: both sides resize with the same kernel (TF's bilinear, half-pixel
    centres, no antialiasing) and scale the same way, so once the 8-bit RGB pixels agree the
    tensors agree up to float32 rounding (FLOAT_SLACK). The 8-bit pixels can differ only where
    the two sides round to 8 bits in different places:
    - alpha compositing over white (Skia on a premultiplied canvas vs. Pillow's
      alpha_composite): measured identical for RGBA, LA and P + tRNS;
    - 16 -> 8 bit grey: Chromium keeps the high byte (v >> 8, checked on all 65536 values),
      the server rounds (round(v * 255 / 65535)); they differ by exactly one level on about a
      quarter of the values, hence the I;16 case's maximum of 1.
    Bilinear weights are convex, so one level per pixel stays at most one level after the resize.
    """
    cases = png_cases()
    page_inputs = _page_inputs(wasm_page, cases, "image/png", spec)
    assert wasm_page.errors == []
    failures = []
    print("\nPNG preprocessing, page vs server, |diff| in pixel levels (1 = 1/255 of the range):")
    print(f"  {'case':34} {'max':>8} {'mean':>8}  values > 1e-3 levels")
    for name, png in cases.items():
        server = preprocess_bytes(png, spec, MAX_PIXELS)
        page = page_inputs[name]
        assert server.shape == page.shape == (1, *spec["size"], 3), name
        diff = np.abs(page.astype(np.float64) - server.astype(np.float64)) * pixel_scale
        print(f"  {name:34} {diff.max():8.4f} {diff.mean():8.4f}  {int((diff > 1e-3).sum())}/{diff.size}")
        if diff.max() > 1.0 + FLOAT_SLACK:
            failures.append(f"{name}: max {diff.max():.3f} levels")
    assert not failures, "page and server preprocess differently: " + "; ".join(failures)


def test_fully_transparent_png_is_white_on_both_sides(wasm_page, spec):
    """The documented background is white: a fully transparent picture is all `hi`."""
    from PIL import Image

    png = _png(Image.fromarray(np.dstack([np.full((50, 70, 3), 40, np.uint8), np.zeros((50, 70), np.uint8)]),
                               "RGBA"))
    page = _page_inputs(wasm_page, {"clear": png}, "image/png", spec)["clear"]
    server = preprocess_bytes(png, spec, MAX_PIXELS)
    hi = spec["value_range"][1]
    np.testing.assert_allclose(page, hi, rtol=0, atol=1e-6)
    np.testing.assert_allclose(server, hi, rtol=0, atol=1e-6)


def test_jpeg_decoding_chromium_vs_pillow(wasm_page, spec, pixel_scale):
    """JPEG decoders are allowed to differ (IDCT and chroma upsampling are implementation
    choices), so this MEASURES Chromium vs Pillow on quality-90 photos, on the decoded 8-bit
    pixels and on the model input after the whole preprocessing, and fails only on a broken
    pipeline, not on decoder noise.

    Measured (Chromium 156, Pillow 13, both on libjpeg-turbo): the decoded pixels are
    identical, 4:2:0 and CMYK alike; the model inputs then differ by float rounding only
    (< 0.01 level). Bound: mean < 1 level and max < 16 levels on the model input. A decoder
    with another IDCT or chroma upsampling moves pixels by a level or two, and the 96x96
    downscale averages that further; a swapped channel order, a wrong crop, an inverted CMYK
    or a missing EXIF rotation gives means of tens of levels.
    """
    from app.inference.preprocess import decode

    cases = jpeg_cases()
    page_inputs = _page_inputs(wasm_page, cases, "image/jpeg", spec)
    page_pixels = wasm_page.evaluate(PAGE_DECODE, {"images": {k: [_b64(v), "image/jpeg"] for k, v in cases.items()}})
    assert wasm_page.errors == []
    print("\nJPEG (quality 90), Chromium vs Pillow, |diff| in pixel levels:")
    print(f"  {'image':12} {'decoded: mean':>14} {'max':>4} {'identical':>10}   "
          f"{'model input: mean':>17} {'max':>7} {'p99':>7}")
    for name, jpeg in cases.items():
        b64, height, width = page_pixels[name]
        chromium = np.frombuffer(base64.b64decode(b64), np.uint8).reshape(height, width, 3).astype(np.int16)
        pillow = np.asarray(decode(jpeg, MAX_PIXELS), dtype=np.int16)
        assert chromium.shape == pillow.shape, name
        decoded = np.abs(chromium - pillow)

        server = preprocess_bytes(jpeg, spec, MAX_PIXELS)
        diff = np.abs(page_inputs[name].astype(np.float64) - server.astype(np.float64)) * pixel_scale
        print(f"  {name:12} {decoded.mean():14.4f} {decoded.max():4d} {(decoded == 0).mean():10.1%}   "
              f"{diff.mean():17.4f} {diff.max():7.4f} {np.percentile(diff, 99):7.4f}")
        assert diff.mean() < 1.0, name
        assert diff.max() < 16.0, name


# ---------------------------------------------------------------- runtime parity

def _post_instances(url: str, batch: np.ndarray) -> dict:
    response = httpx.post(url, json={"instances": batch.tolist(), "include_logits": True, "top_k": 5},
                          timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["predictions"][0]


@pytest.fixture(scope="module")
def chelsea_blob_png() -> bytes:
    from PIL import Image
    from skimage import data

    return _png(Image.fromarray(data.chelsea()))


CLASSIFY_BYTES = """async ({b64, name}) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return await window.belka.classifyBlob(new File([bytes], name, {type: 'image/png'}));
}"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_browser_tensor_on_the_server_gives_the_same_logits(browser, server, wasm_page, predict_url,
                                                           small_mobilenet, spec, chelsea_blob_png, backend):
    """Tensor level: the page's own model input, sent to the server as JSON instances; the
    server's TensorFlow logits match the page's TF.js logits within 1e-4, same top-5."""
    if backend == "wasm":
        page = wasm_page
    else:
        page, ready = open_classify(browser, f"{server}/?backend={backend}&weights=float32")
        assert ready == {"ok": True, "backend": backend}, ready
    try:
        result = page.evaluate(CLASSIFY_BYTES, {"b64": _b64(chelsea_blob_png), "name": "chelsea.png"})
        assert result is not None and result["backend"] == backend
        batch = np.array(result["input"], dtype=np.float32).reshape(1, *spec["size"], 3)
        browser_logits = np.array(result["logits"], dtype=np.float32)

        served = _post_instances(predict_url, batch)
        server_logits = np.array(served["logits"], dtype=np.float32)
        assert server_logits.shape == browser_logits.shape == (len(small_mobilenet["manifest"]["labels"]),)
        print(f"\n{backend}: max |browser - server| logit {np.abs(browser_logits - server_logits).max():.3g} "
              f"(logits span {np.ptp(server_logits):.3g})")
        np.testing.assert_allclose(browser_logits, server_logits, rtol=0, atol=LOGITS_ATOL)
        assert [e["index"] for e in result["top5"]] == [e["index"] for e in served["top_k"]]
        assert page.errors == []
    finally:
        if page is not wasm_page:
            page.context.close()


def test_same_png_in_the_page_and_through_multipart(wasm_page, predict_url, chelsea_blob_png):
    """Image level: the PNG classified in the page (file input) and uploaded to the server
    (multipart ``file``), each side preprocessing it itself: same top-5, probabilities within 1e-3."""
    from PIL import Image
    from skimage import data

    pngs = {"chelsea.png": chelsea_blob_png,
            "astronaut-rgba.png": _png(Image.fromarray(np.dstack([data.astronaut(), _alpha_ramp(512, 512)]),
                                                       "RGBA"))}
    for name, png in pngs.items():
        wasm_page.set_input_files("#file-input", {"name": name, "mimeType": "image/png", "buffer": png})
        wasm_page.evaluate("window.belka.idle()")
        result = wasm_page.evaluate("window.belka.lastResult()")
        response = httpx.post(predict_url, files={"file": (name, png, "image/png")},
                              data={"include_logits": "true"}, timeout=60)
        assert response.status_code == 200, response.text
        served = response.json()["predictions"][0]

        page_probabilities = np.array(result["probabilities"], dtype=np.float64)
        server_top5 = [e["index"] for e in served["top_k"]]
        server_probabilities = np.exp(np.array(served["logits"], dtype=np.float64) - max(served["logits"]))
        server_probabilities /= server_probabilities.sum()
        logit_diff = np.abs(np.array(result["logits"]) - np.array(served["logits"])).max()
        print(f"\n{name}: max |page - server| probability "
              f"{np.abs(page_probabilities - server_probabilities).max():.3g}, logit {logit_diff:.3g}")
        assert [e["index"] for e in result["top5"]] == server_top5, name
        np.testing.assert_allclose([e["probability"] for e in result["top5"]],
                                   [e["probability"] for e in served["top_k"]], rtol=0, atol=PROBABILITY_ATOL,
                                   err_msg=name)
        np.testing.assert_allclose(page_probabilities, server_probabilities, rtol=0, atol=PROBABILITY_ATOL,
                                   err_msg=name)
    assert wasm_page.errors == []
