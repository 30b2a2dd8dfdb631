"""A photo given while the page is still starting is the warm-up: no throwaway inference on
zeros runs ahead of it (issue 12). Without an early photo the page warms up on zeros, so the
first photo the user drops later is fast."""
from __future__ import annotations

import base64
import io

from PIL import Image
from skimage import data

from tests.browser.conftest import new_page

# Runs before any page script: hands the photo in as soon as the page's API exists.
EARLY_PHOTO = """
window.__earlyPhoto = (b64) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return window.belka.classifyBlob(new Blob([bytes], {type: 'image/jpeg'}));
};
document.addEventListener('DOMContentLoaded', () => {
  const wait = () => (window.belka ? (window.__first = window.__earlyPhoto(window.__photo))
                                   : setTimeout(wait, 1));
  wait();
});
"""


def jpeg_b64() -> str:
    buffer = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buffer, format="JPEG", quality=90)
    return base64.b64encode(buffer.getvalue()).decode()


def model_calls(page) -> int:
    """How many times the model's graph ran in the page's worker (warm-ups included)."""
    return page.evaluate("belka.worker('stats')")["modelCalls"]


def test_an_early_photo_is_the_warm_up(browser, server):
    page = new_page(browser)
    try:
        page.add_init_script(f"window.__photo = {jpeg_b64()!r};")
        page.add_init_script(EARLY_PHOTO)
        page.goto(f"{server}/?backend=wasm")
        assert page.evaluate("window.belka.ready") == {"ok": True, "backend": "wasm"}
        first = page.evaluate("window.__first")
        assert first and len(first["top5"]) == 5
        timings = page.evaluate("window.belka.timings()")
        assert model_calls(page) == 1  # the photo, and nothing before it
        assert timings["warmupMs"] == first["inferenceMs"] and timings["samples"] == 0, timings
        assert page.evaluate("window.belka.runs()") == 1
        assert not page.errors, page.errors
    finally:
        page.context.close()


def test_without_a_photo_the_page_warms_up_on_zeros(browser, server):
    page = new_page(browser)
    try:
        page.goto(f"{server}/?backend=wasm")
        assert page.evaluate("window.belka.ready") == {"ok": True, "backend": "wasm"}
        timings = page.evaluate("window.belka.timings()")
        assert model_calls(page) == 1 and timings["warmupMs"] > 0
        assert page.evaluate("window.belka.runs()") == 0
    finally:
        page.context.close()
