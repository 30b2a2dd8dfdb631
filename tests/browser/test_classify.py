"""The classify page ("is it a squirrel?") in Chromium, on the real server with the session's
small MobileNetV2 (alpha 0.35, 96 px, untrained but non-degenerate weights).

The page is driven through its real UI (the file input, the backend <select>); numbers come
from its test API, window.belka (documented in static/js/classify.js).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from app.convert import verify
from tests.browser.conftest import classify_file, new_page, open_classify, serve

BACKENDS = ["webgpu", "webgl", "wasm", "cpu"]
ATOL = 1e-4


@pytest.fixture(scope="module")
def backend_results() -> dict:
    """What the page computed for Chelsea, per backend (filled by the parametrized test)."""
    return {}


def short_label(label: str) -> str:
    return label.split(",")[0].strip()


def test_page_loads_with_no_console_errors(browser, server, small_mobilenet):
    page, ready = open_classify(browser, server + "/")
    try:
        assert ready["ok"] is True, ready
        assert page.evaluate("belka.choice()") == "auto"
        assert ready["backend"] in BACKENDS
        assert page.title() == "Is it a squirrel? · Belka"
        assert page.locator("[data-field=name]").inner_text() == small_mobilenet["dir"].name
        assert page.locator("[data-field=backend]").inner_text() == ready["backend"]
        assert page.locator("[data-field=warmup]").inner_text().endswith(("ms", " s"))
        assert page.locator("#status").inner_text().startswith("Ready")
        assert page.locator(".banner").count() == 0
        assert page.errors == []
    finally:
        page.context.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_chelsea_on_each_backend_matches_tensorflow(browser, server, small_mobilenet, chelsea_png,
                                                    backend_results, backend):
    page, ready = open_classify(browser, f"{server}/?backend={backend}&weights=float32")
    try:
        assert ready == {"ok": True, "backend": backend}, ready
        tensors_before = page.evaluate("belka.numTensors()")
        result = classify_file(page, chelsea_png)
        assert result is not None and result["backend"] == backend
        assert page.evaluate("belka.runs()") == 1
        assert page.evaluate("belka.numTensors()") == tensors_before  # nothing left behind

        manifest = small_mobilenet["manifest"]
        height, width = manifest["preprocessing"]["size"]
        batch = np.array(result["input"], dtype=np.float32).reshape(1, height, width, 3)
        assert -1.0 <= batch.min() < batch.max() <= 1.0  # MobileNet's value range, a real picture
        expected = verify.run_saved_model(small_mobilenet["dir"] / "saved_model", manifest["signature"], batch)[0]
        logits = np.array(result["logits"], dtype=np.float32)
        np.testing.assert_allclose(logits, expected, rtol=0, atol=ATOL)

        top5 = [entry["index"] for entry in result["top5"]]
        assert top5 == list(np.argsort(-expected, kind="stable")[:5])
        probabilities = np.exp(expected - expected.max()) / np.exp(expected - expected.max()).sum()
        np.testing.assert_allclose([e["probability"] for e in result["top5"]], probabilities[top5], atol=1e-6)
        assert [e["label"] for e in result["top5"]] == [manifest["labels"][i] for i in top5]

        # What the page shows: the verdict, the top-5, the preview and the model's view.
        top1 = result["top5"][0]
        verdict = page.locator("#verdict .verdict-text").inner_text()
        assert verdict.startswith(f"Not a squirrel: looks like a{'n' if short_label(top1['label'])[0] in 'aeiou' else ''} "
                                  f"{short_label(top1['label'])} (")
        assert page.locator("#top5 li").count() == 5
        assert page.locator("#top5 li").first.get_attribute("data-index") == str(top1["index"])
        assert page.locator("#preview").is_visible() and page.locator("#model-view").is_visible()
        assert "451×300 px" in page.locator("#preview-caption").inner_text()
        assert page.locator("[data-field=median]").inner_text().endswith("(1 run)")
        assert page.errors == []
        backend_results[backend] = {"input": batch, "logits": logits, "top5": top5,
                                    "warmup_ms": page.evaluate("belka.timings().warmupMs"),
                                    "inference_ms": result["inferenceMs"]}
    finally:
        page.context.close()


def test_backends_agree(backend_results):
    assert set(backend_results) == set(BACKENDS), (
        f"runs after test_chelsea_on_each_backend_matches_tensorflow; got {sorted(backend_results)}")
    reference = backend_results["cpu"]
    for backend in BACKENDS:
        got = backend_results[backend]
        assert got["top5"] == reference["top5"], backend
        np.testing.assert_allclose(got["logits"], reference["logits"], rtol=0, atol=ATOL, err_msg=backend)
        np.testing.assert_allclose(got["input"], reference["input"], rtol=0, atol=1e-5, err_msg=backend)
    print("\nbackend  warm-up ms  first inference ms")
    for backend in BACKENDS:
        print(f"{backend:8} {backend_results[backend]['warmup_ms']:10.1f}  {backend_results[backend]['inference_ms']:10.1f}")


def test_untrained_weights_warning_shows(wasm_page):
    warning = wasm_page.locator("#untrained-warning")
    assert warning.is_visible()
    assert "Untrained weights: predictions are meaningless" in warning.inner_text()
    assert wasm_page.locator("[data-field=weights]").inner_text() == "untrained (seed 0)"


def test_model_panel_describes_the_download(wasm_page, small_mobilenet):
    graph_files = [f for f in small_mobilenet["manifest"]["files"] if f["path"].startswith("graph/")]
    megabytes = sum(f["bytes"] for f in graph_files) / 1e6
    assert wasm_page.locator("[data-field=download]").inner_text().startswith(f"{megabytes:.2f} MB")
    assert wasm_page.locator("[data-field=shards]").inner_text() == str(
        sum(f["path"].endswith(".bin") for f in graph_files))
    assert wasm_page.locator("[data-field=quantization]").inner_text() == "none"
    assert wasm_page.locator("[data-field=input]").inner_text() == "96×96 px, 1000 classes"
    assert wasm_page.locator("[data-field=load-time]").inner_text().endswith(("ms", " s"))


def test_the_page_downloads_float16_weights_unless_asked_for_float32(browser, server, small_mobilenet,
                                                                    wasm_page, chelsea_png):
    """The page's default is the converter's float16 graph (half the download); ?weights=float32
    (the parity pages, wasm_page here) loads the float32 graph. Both give the same answer."""
    files = small_mobilenet["manifest"]["files"]
    float16_files = [f for f in files if f["path"].startswith("graph-float16/")]
    page, ready = open_classify(browser, server + "/?backend=wasm")
    try:
        assert ready["ok"], ready
        download = page.locator("[data-field=download]").inner_text()
        assert download == f"{sum(f['bytes'] for f in float16_files) / 1e6:.2f} MB (TF.js graph model, float16 weights)"
        fetched = [url for url in page.evaluate("belka.worker('resources')") if "/models/" in url]
        assert any("/graph-float16/" in url and ".bin?v=" in url for url in fetched), fetched
        assert not any("/graph/" in url for url in fetched), fetched
        assert "float32 weights" in wasm_page.locator("[data-field=download]").inner_text()
        half = classify_file(page, chelsea_png)
        full = classify_file(wasm_page, chelsea_png)
        assert half["input"] == full["input"]  # same preprocessing; only the weights differ
        assert half["top5"][0]["index"] == full["top5"][0]["index"]
        gap = np.max(np.abs(np.array(half["probabilities"]) - np.array(full["probabilities"])))
        assert 0 < gap < 0.02, gap
        assert not page.errors, page.errors
    finally:
        page.context.close()


def test_no_tensor_leaks_over_50_classifications(wasm_page, chelsea_png):
    classify_file(wasm_page, chelsea_png)
    after_first = wasm_page.evaluate("belka.numTensors()")
    counts = wasm_page.evaluate("""async () => {
      // A different picture each time: a 320x200 gradient with a moving square.
      const counts = [];
      for (let i = 0; i < 49; i++) {
        const canvas = new OffscreenCanvas(320, 200);
        const ctx = canvas.getContext('2d');
        const gradient = ctx.createLinearGradient(0, 0, 320, 200);
        gradient.addColorStop(0, `hsl(${i * 7}, 70%, 50%)`);
        gradient.addColorStop(1, '#fff3e0');
        ctx.fillStyle = gradient;
        ctx.fillRect(0, 0, 320, 200);
        ctx.fillStyle = '#3e2723';
        ctx.fillRect(i * 5, 40, 60, 60);
        const blob = await canvas.convertToBlob({type: 'image/png'});
        await belka.classifyBlob(blob);
        counts.push(await belka.numTensors());
      }
      return counts;
    }""")
    assert counts == [after_first] * 49
    assert wasm_page.locator("[data-field=median]").inner_text().endswith("(20 runs)")
    assert wasm_page.errors == []


MAKE_PNG_FILE = """async (name) => {
  const canvas = new OffscreenCanvas(200, 300);
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#6d4c41';
  ctx.fillRect(0, 0, 200, 300);
  ctx.fillStyle = '#fff3e0';
  ctx.fillRect(50, 100, 100, 100);
  const blob = await canvas.convertToBlob({type: 'image/png'});
  return new File([blob], name, {type: 'image/png'});
}"""


def test_drop_and_paste_an_image(wasm_page):
    runs = wasm_page.evaluate("belka.runs()")
    dropped = wasm_page.evaluate_handle(f"""async () => {{
      const transfer = new DataTransfer();
      transfer.items.add(await ({MAKE_PNG_FILE})('dropped.png'));
      return transfer;
    }}""")
    wasm_page.dispatch_event("#dropzone", "drop", {"dataTransfer": dropped})
    wasm_page.evaluate("belka.idle()")
    assert wasm_page.evaluate("belka.runs()") == runs + 1
    assert wasm_page.locator("#preview-caption").inner_text().startswith("dropped.png · 200×300 px")

    wasm_page.evaluate(f"""async () => {{
      const transfer = new DataTransfer();
      transfer.items.add(await ({MAKE_PNG_FILE})('image.png'));
      document.dispatchEvent(new ClipboardEvent('paste', {{clipboardData: transfer}}));
    }}""")
    wasm_page.evaluate("belka.idle()")
    assert wasm_page.evaluate("belka.runs()") == runs + 2
    assert wasm_page.locator("#preview-caption").inner_text().startswith("image.png · 200×300 px")
    assert wasm_page.errors == []


def center_crop_resize_reference(rgb: np.ndarray, size, value_range) -> np.ndarray:
    """The manifest's preprocessing in Python: floor-centred square crop, TensorFlow's bilinear
    resize (half-pixel centres, no antialiasing), p -> lo + p * (hi - lo) / 255."""
    from app import tf_runtime

    tf = tf_runtime.tensorflow()
    height, width = rgb.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    crop = rgb[top:top + side, left:left + side].astype(np.float32)
    resized = tf.image.resize(crop[None], size, method="bilinear", antialias=False).numpy()
    lo, hi = value_range
    return (lo + resized * (hi - lo) / 255).astype(np.float32)


def test_preprocessing_matches_tensorflow_resize(wasm_page, small_mobilenet, chelsea_png):
    from PIL import Image

    spec = small_mobilenet["manifest"]["preprocessing"]
    assert spec["crop"] == "center" and spec["resize"] == "bilinear"
    result = classify_file(wasm_page, chelsea_png)
    got = np.array(result["input"], dtype=np.float32).reshape(1, *spec["size"], 3)
    expected = center_crop_resize_reference(np.asarray(Image.open(chelsea_png).convert("RGB")),
                                            spec["size"], spec["value_range"])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_exif_orientation_is_applied(wasm_page, chelsea_png, tmp_path):
    """A JPEG stored sideways with EXIF orientation 6 ("rotate 90° clockwise to view") is
    classified upright: same input as the upright JPEG, up to JPEG noise."""
    from PIL import Image

    upright = Image.open(chelsea_png).convert("RGB")
    upright.save(tmp_path / "upright.jpg", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "sideways.jpg", quality=95, exif=exif)

    plain = np.array(classify_file(wasm_page, tmp_path / "upright.jpg")["input"])
    rotated = np.array(classify_file(wasm_page, tmp_path / "sideways.jpg")["input"])
    assert "sideways.jpg · 451×300 px" in wasm_page.locator("#preview-caption").inner_text()
    assert np.abs(rotated - plain).mean() < 0.02  # JPEG noise only (values span -1..1)
    assert wasm_page.errors == []


def test_non_image_file_shows_a_readable_error(wasm_page, chelsea_png):
    result = classify_file(wasm_page, {"name": "notes.png", "mimeType": "image/png",
                                       "buffer": b"shopping list: nuts, more nuts\n"})
    banner = wasm_page.locator(".banner-error")
    assert banner.count() == 1
    text = banner.inner_text()
    assert "not an image" in text and '"notes.png"' in text and "could not be decoded" in text
    assert not wasm_page.locator("#verdict").is_visible()
    assert not wasm_page.locator("#preview").is_visible()
    # A real picture afterwards works and clears the error.
    runs = wasm_page.evaluate("belka.runs()")
    result = classify_file(wasm_page, chelsea_png)
    assert wasm_page.evaluate("belka.runs()") == runs + 1 and result["backend"] == "wasm"
    assert wasm_page.locator(".banner-error").count() == 0
    assert wasm_page.locator("#verdict").is_visible()
    assert wasm_page.errors == []


def test_backend_from_url_is_remembered_and_the_select_reruns_the_image(browser, server, chelsea_png):
    page, ready = open_classify(browser, server + "/?backend=cpu")
    try:
        assert ready == {"ok": True, "backend": "cpu"}
        assert page.evaluate("localStorage.getItem('belka.backend')") == "cpu"

        # No parameter: the remembered choice.
        page, ready = open_classify(browser, server + "/", page=page)
        assert ready == {"ok": True, "backend": "cpu"}
        assert page.locator("#backend-select").input_value() == "cpu"
        # the options: "auto", then BACKEND_LIST (static/js/backend-choice.js), labelled
        options = page.eval_on_selector_all("#backend-select option", "os => os.map((o) => [o.value, o.text])")
        assert [value for value, _ in options] == ["auto", *BACKENDS], options
        assert all(text for _, text in options), options
        first = classify_file(page, chelsea_png)
        assert first["backend"] == "cpu"

        # The <select>: switches, remembers, re-runs the current image.
        page.select_option("#backend-select", "wasm")
        page.wait_for_function("() => belka.runs() === 2")
        page.evaluate("belka.idle()")
        second = page.evaluate("belka.lastResult()")
        assert second["backend"] == "wasm" and page.evaluate("belka.backend()") == "wasm"
        assert [e["index"] for e in second["top5"]] == [e["index"] for e in first["top5"]]
        np.testing.assert_allclose(second["logits"], first["logits"], rtol=0, atol=ATOL)
        assert page.locator("[data-field=backend]").inner_text() == "wasm"
        assert page.locator("[data-field=median]").inner_text().endswith("(1 run)")
        assert page.evaluate("localStorage.getItem('belka.backend')") == "wasm"

        # The query parameter wins over the remembered choice (and is remembered in turn).
        page, ready = open_classify(browser, server + "/?backend=cpu", page=page)
        assert ready == {"ok": True, "backend": "cpu"}
        assert page.evaluate("localStorage.getItem('belka.backend')") == "cpu"

        # An unknown value is ignored, said so, and the remembered choice is used.
        page, ready = open_classify(browser, server + "/?backend=tpu", page=page)
        assert ready == {"ok": True, "backend": "cpu"}
        banner = page.locator('[data-topic="address"]').inner_text()
        assert 'Unknown backend "tpu" in the address.' in banner and "Using cpu meanwhile." in banner
        assert page.errors == []
    finally:
        page.context.close()


def test_unavailable_backend_is_reported_and_falls_back(browser, server):
    page = new_page(browser, dedicated_worker=True)  # its worker's requests are routed
    # WebGPU that cannot start: its backend's code does not load (in the model's worker).
    page.route("**/tf-backend-webgpu.es2017.min.js", lambda route: route.fulfill(status=404, body="gone"))
    try:
        page, ready = open_classify(browser, server + "/?backend=webgpu", page=page)
        assert ready == {"ok": True, "backend": "webgl"}
        banner = page.locator(".banner-warning")
        assert "webgpu backend is unavailable" in banner.inner_text()
        assert "its code did not load" in banner.inner_text()
        assert "Running on webgl instead" in banner.inner_text()
        assert page.locator("[data-field=backend]").inner_text() == "webgl"
        assert page.locator("#backend-select").input_value() == "webgpu"
        # (Chromium logs the refused request itself)
        assert [e for e in page.errors if "404" not in e] == [], page.errors
    finally:
        page.context.close()


@pytest.mark.parametrize("missing", ["manifest.json", "graph-float16/model.json"])  # what the page loads
def test_model_that_fails_to_load_shows_an_error(browser, server, small_mobilenet, missing):
    page = new_page(browser, dedicated_worker=True)  # its worker's requests are routed
    name = small_mobilenet["dir"].name
    page.route(f"**/models/{name}/{missing}*", lambda route: route.fulfill(  # * : with its ?v= too
        status=404, content_type="application/json",
        body=json.dumps({"error": {"code": "not_found", "message": "Not Found", "detail": None}})))
    try:
        page, ready = open_classify(browser, server + "/?backend=cpu", page=page)
        assert ready["ok"] is False
        banner = page.locator(".banner-error")
        assert banner.count() == 1
        assert f'The model "{name}" could not be loaded' in banner.inner_text()
        assert "404" in banner.inner_text() and missing in banner.inner_text()
        assert page.locator("#status").inner_text() == "Not ready."
        # Only the browser's own report of the failed request reaches the console.
        assert all("404" in e for e in page.errors), page.errors
    finally:
        page.context.close()


def test_squirrel_verdict(browser, small_mobilenet, chelsea_png):
    every_class = ",".join(map(str, range(1000)))
    with serve(small_mobilenet["dir"].parent, BELKA_SQUIRREL_CLASSES=every_class) as url:
        page, ready = open_classify(browser, url + "/?backend=wasm")
        try:
            assert ready["ok"] is True
            result = classify_file(page, chelsea_png)
            top1 = result["top5"][0]
            assert result["verdict"]["squirrel"] is True
            verdict = page.locator("#verdict")
            assert verdict.locator(".verdict-text").inner_text().startswith(f"Squirrel ({short_label(top1['label'])}, ")
            assert "verdict-yes" in verdict.get_attribute("class")
            assert "meaningless" in verdict.locator(".verdict-note").inner_text()
            assert page.errors == []
        finally:
            page.context.close()


def test_no_model_tells_how_to_convert_one(browser, tmp_path):
    with serve(tmp_path) as url:
        page = new_page(browser)
        try:
            page.goto(url + "/")
            assert "belka convert mobilenet-v2" in page.locator(".empty-state").inner_text()
            assert page.locator("#file-input").count() == 0
            assert page.errors == []
        finally:
            page.context.close()



def test_a_backend_that_cannot_start_is_said_plainly(browser, server):
    """WebGL that does not initialise (no WebGL context in the model's worker: its script is
    served with getContext('webgl...') answering null, as on a machine without one): the banner
    says why in one plain clause, not "(failed to initialise (no suitable GPU adapter or context?))"."""
    no_webgl = ("const getContext = OffscreenCanvas.prototype.getContext;\n"
                "OffscreenCanvas.prototype.getContext = function (type, ...rest) {\n"
                "  return /webgl/.test(type) ? null : getContext.call(this, type, ...rest);\n};\n")

    def without_webgl(route):
        response = route.fetch()
        route.fulfill(response=response, body=no_webgl + response.text())

    page = new_page(browser, dedicated_worker=True)  # its worker's requests are routed
    page.route("**/js/engine-worker.js?*", without_webgl)
    try:
        page, ready = open_classify(browser, server + "/?backend=webgl", page=page)
        assert ready["ok"] and ready["backend"] != "webgl", ready
        banner = page.locator('[data-topic="backend"]').inner_text()
        assert "The webgl backend is unavailable here:" in banner, banner
        assert "it did not start: no usable GPU adapter or context" in banner, banner
        assert f"Running on {ready['backend']} instead." in banner
        assert "((" not in banner and "?)" not in banner, banner
    finally:
        page.context.close()
