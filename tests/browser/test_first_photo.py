"""A photo given while the page is still starting is the warm-up: no throwaway inference on
zeros runs ahead of it (issue 12), and it goes to the model's worker at once, right behind the
start-up's requests, not after their answers came back. Without an early photo the page warms
up on zeros, so the first photo the user drops later is fast."""
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


# Runs before any page script: records each request the page posts to its model's worker, with
# how many of the worker's messages had come back by then.
WATCH_POSTS = """
window.__posts = [];
let answers = 0;
const watched = new WeakSet();
const post = MessagePort.prototype.postMessage;
MessagePort.prototype.postMessage = function (message, ...rest) {
  if (!watched.has(this)) {
    watched.add(this);
    this.addEventListener('message', () => { answers += 1; });
  }
  if (message?.op) window.__posts.push({op: message.op, answersBefore: answers});
  return post.call(this, message, ...rest);
};
"""


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


def open_with_an_early_photo(page, url):
    """Open the page with its posts to the worker watched and the photo given as soon as the page's
    code can take it (EARLY_PHOTO)."""
    page.add_init_script(WATCH_POSTS)
    page.add_init_script(f"window.__photo = {jpeg_b64()!r};")
    page.add_init_script(EARLY_PHOTO)
    page.goto(url)


def test_an_early_photo_goes_to_the_worker_behind_the_start_up(browser, server):
    page = new_page(browser)
    try:
        open_with_an_early_photo(page, f"{server}/?backend=wasm")
        assert page.evaluate("window.belka.ready") == {"ok": True, "backend": "wasm"}
        first = page.evaluate("window.__first")
        posts = page.evaluate("window.__posts")
        # the photo went before the worker had answered anything: it waited in the worker for
        # the model (engine.js `changing`), not for a round trip through this page
        assert [p["op"] for p in posts[:4]] == ["start", "backend", "loadClassifier", "classify"], posts
        assert posts[3]["answersBefore"] == 0, posts
        assert first and len(first["top5"]) == 5
        assert model_calls(page) == 1  # the photo was the warm-up
        # the same answer as the same photo classified in turn, later
        again = page.evaluate("window.__earlyPhoto(window.__photo)")
        assert [c["index"] for c in again["top5"]] == [c["index"] for c in first["top5"]]
        assert not page.errors, page.errors
    finally:
        page.context.close()


def test_with_auto_the_photo_waits_for_the_measured_choice(browser, server):
    """"auto" measures backends first (the page's own requests, one by one): a photo given
    meanwhile goes to the worker only once the choice is made, and is classified on it."""
    page = new_page(browser)
    try:
        open_with_an_early_photo(page, f"{server}/?backend=auto")
        ready = page.evaluate("window.belka.ready")
        assert ready["ok"], ready
        first = page.evaluate("window.__first")
        assert first and len(first["top5"]) == 5 and first["backend"] == ready["backend"]
        posts = page.evaluate("window.__posts")
        classify = next(i for i, p in enumerate(posts) if p["op"] == "classify")
        assert posts[classify]["answersBefore"] > 0, posts
        assert not page.errors, page.errors
    finally:
        page.context.close()
