"""/learn/convolution (issue 15): every preset kernel, 3x3 and 5x5, grayscale and per channel, on a
real photo in the page's TF.js (wasm, cpu, and webgl and webgpu on SwiftShader) against the server's TensorFlow
(POST /api/learn/convolve, compared here, not by the page); one output pixel's arithmetic; no
tensor left behind after 50 kernel edits; the classifier's first layer on the photo."""
from __future__ import annotations

import base64
import json
import math

import httpx
import numpy as np
import pytest

from tests.browser.conftest import ARTIFACTS, READY_TIMEOUT_MS, new_page, save_screenshot, serve

TOLERANCE = 1e-5
BACKENDS = ["wasm", "webgl", "cpu", "webgpu"]
MODES = ["grayscale", "per-channel"]
USE_PHOTO = """async (b64) => belka.usePhoto(new File([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))],
  'chelsea.png', {type: 'image/png'}))"""
DIFFS: dict[str, dict[str, float]] = {}  # backend -> case -> max |difference|, for the report


def open_lesson(browser, server: str, backend: str, photo: str | None = None):
    page = new_page(browser)
    page.set_default_timeout(READY_TIMEOUT_MS)
    page.goto(f"{server}/learn/convolution?backend={backend}")
    ready = page.evaluate("window.belka.ready")
    assert ready == {"ok": True, "backend": backend}, ready
    if photo:
        assert page.evaluate(USE_PHOTO, photo) == {"width": 256, "height": 170}  # Chelsea is 451 x 300
    return page


@pytest.fixture(scope="module")
def photo(chelsea_png) -> str:
    return base64.b64encode(chelsea_png.read_bytes()).decode()


@pytest.fixture(scope="module")
def wasm_page(browser, server, photo):
    page = open_lesson(browser, server, "wasm", photo)
    yield page
    page.context.close()


# the page's output (or input), its kernel and options; the float32 values as base64 (lossless,
# and much quicker through Playwright than a list of 130 000 numbers)
FLOATS = """async (what) => {
  const {shape, data} = await belka[what]();
  const bytes = new Uint8Array(new Float32Array(data).buffer);
  let text = '';
  for (let i = 0; i < bytes.length; i += 8192) text += String.fromCharCode(...bytes.subarray(i, i + 8192));
  return {shape, data: btoa(text), kernel: belka.kernel(), options: belka.options()};
}"""


def page_floats(page, what: str = "output") -> dict:
    """belka.output() or belka.input(): {shape, data (a float32 array), kernel, options}."""
    result = page.evaluate(FLOATS, what)
    return {**result, "data": np.frombuffer(base64.b64decode(result["data"]), np.float32)}
ANSWERS: dict[str, dict] = {}  # the server's answers, by request: the backends' pages send the same


def server_convolution(client: httpx.Client, server: str, image: dict, kernel, stride: int, padding: str,
                       mode: str) -> dict:
    body = {"image": image, "kernel": kernel, "stride": stride, "padding": padding, "mode": mode}
    key = json.dumps(body)
    if key not in ANSWERS:
        response = client.post(f"{server}/api/learn/convolve", content=key,
                               headers={"content-type": "application/json"}, timeout=60)
        assert response.status_code == 200, response.text
        ANSWERS[key] = response.json()
    return ANSWERS[key]


def compare(page, client, server, image, case: str, backend: str) -> float:
    """The page's output for its current kernel and options against the server's: max |difference|."""
    output = page_floats(page)
    options = output["options"]
    answer = server_convolution(client, server, image, output["kernel"], options["stride"], options["padding"],
                                options["mode"])
    assert output["shape"] == answer["shape"], case
    diff = float(np.max(np.abs(output["data"].astype(np.float64) - np.asarray(answer["data"], np.float64))))
    DIFFS.setdefault(backend, {})[case] = diff
    assert diff <= TOLERANCE, f"{backend} {case}: max |difference| {diff:.3g}"
    return diff


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_preset_matches_tensorflow(browser, server, photo, wasm_page, backend):
    page = wasm_page if backend == "wasm" else open_lesson(browser, server, backend, photo)
    try:
        sent = page_floats(page, "input")
        assert sent["shape"] == [170, 256, 3]
        pixels = sent["data"]
        assert pixels.min() >= 0 and pixels.max() <= 1 and pixels.std() > 0.1  # a real photo, 0..1
        image = {"shape": sent["shape"], "data": pixels.tolist()}  # float32 values, exactly, as JSON
        presets = page.evaluate("belka.presets()")
        assert presets[0] == "identity" and {"box-blur", "gaussian", "sharpen", "sobel-x", "sobel-y", "laplacian",
                                             "emboss"} <= set(presets)
        with httpx.Client() as client:
            for mode in MODES:
                page.evaluate("(mode) => belka.setOptions({mode, stride: 1, padding: 'same'})", mode)
                for name in presets:
                    for size in (3, 5):
                        page.evaluate("([name, size]) => belka.usePreset(name, size)", [name, size])
                        compare(page, client, server, image, f"{name} {size}x{size} {mode}", backend)
            # stride 2 without padding, both modes
            for mode in MODES:
                page.evaluate("(mode) => belka.setOptions({mode, stride: 2, padding: 'valid'})", mode)
                page.evaluate("belka.usePreset('gaussian', 5)")
                assert page.evaluate("belka.options()")["stride"] == 2
                assert page_floats(page)["shape"] == [83, 126, 1 if mode == "grayscale" else 3]
                compare(page, client, server, image, f"gaussian 5x5 {mode} stride 2 valid", backend)
            page.evaluate("belka.setOptions({mode: 'grayscale', stride: 1, padding: 'same'})")
        # the page's own check, as the user sees it
        checked = page.evaluate("belka.checkServer()")
        assert checked["maxAbsDiff"] <= TOLERANCE and checked["server"]["method"] == "tf.nn.conv2d"
        assert "parity-ok" in page.get_attribute("#parity", "class")
        assert page.errors == []
    finally:
        if page is not wasm_page:
            page.context.close()
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "learn-convolution-parity.json").write_text(json.dumps(DIFFS, indent=1))
        if DIFFS.get(backend):
            case = max(DIFFS[backend], key=DIFFS[backend].get)
            print(f"\n{backend}: max |difference| from TensorFlow {DIFFS[backend][case]:.2g} ({case}), "
                  f"{len(DIFFS[backend])} cases")


def test_one_pixel_by_hand(wasm_page):
    page = wasm_page
    page.evaluate("belka.usePreset('sharpen', 5)")
    for mode, channel in (("grayscale", 0), ("per-channel", 2)):
        page.evaluate("(mode) => belka.setOptions({mode, stride: 1, padding: 'same'})", mode)
        for row, col in ((85, 128), (0, 0), (169, 100)):  # interior, the corner, the bottom edge
            e = page.evaluate("([r, c, ch]) => belka.explainPixel(r, c, ch)", [row, col, channel])
            assert abs(e["sum"] - e["output"]) <= TOLERANCE, (mode, row, col, e)
            assert len(e["neighbourhood"]) == len(e["kernel"]) == len(e["products"]) == 5
            padded = sum(v is None for r in e["neighbourhood"] for v in r)
            assert padded == (0 if (row, col) == (85, 128) else 16 if (row, col) == (0, 0) else 10)
        assert not page.is_hidden("#zoom") and "Sum of the products" in page.inner_text("#zoom-sum")
    # stride 2, 'valid': the neighbourhood starts at (2 r, 2 c)
    page.evaluate("belka.setOptions({mode: 'grayscale', stride: 2, padding: 'valid'})")
    e = page.evaluate("belka.explainPixel(10, 20)")
    assert (e["top"], e["left"]) == (20, 40) and abs(e["sum"] - e["output"]) <= TOLERANCE
    # stride 2, 'same' on 170 rows with a 5x5: TensorFlow pads 1 row above and 2 below
    page.evaluate("belka.setOptions({stride: 2, padding: 'same'})")
    for row, col in ((0, 0), (84, 127), (40, 60)):
        e = page.evaluate("([r, c]) => belka.explainPixel(r, c)", [row, col])
        assert (e["top"], e["left"]) == (2 * row - 1, 2 * col - 1) and abs(e["sum"] - e["output"]) <= TOLERANCE, e
    page.evaluate("belka.setOptions({stride: 1, padding: 'same'})")
    # clicking the output picks the pixel under the pointer
    # (the mouse lands on whole CSS pixels, an output pixel is about 1.2 of them: where it lands is
    # worked out here from the canvas's box, its 1px border and the output's 170 x 256 pixels)
    box = page.locator("#output-canvas").bounding_box()
    width, height = box["width"] - 2, box["height"] - 2
    x, y = round(box["x"] + 1 + width * 64.5 / 256), round(box["y"] + 1 + height * 85.5 / 170)
    page.mouse.click(x, y)
    row, col = math.floor((y - box["y"] - 1) / height * 170), math.floor((x - box["x"] - 1) / width * 256)
    assert abs(row - 85) <= 1 and abs(col - 64) <= 1
    assert f"row {row}, column {col} " in page.inner_text("#zoom-intro")
    page.keyboard.press("ArrowRight")
    assert f"row {row}, column {col + 1} " in page.inner_text("#zoom-intro")
    assert page.errors == []


def test_no_tensor_left_behind(wasm_page):
    page = wasm_page
    page.evaluate("belka.firstLayer()")  # the network is loaded: its weights are counted from here on
    page.evaluate("belka.usePreset('identity', 3)")
    before = page.evaluate("belka.numTensors()")
    counts = page.evaluate("""async () => {
      const counts = [];
      for (let i = 0; i < 50; i += 1) {
        const k = i % 2 ? 5 : 3;
        const rows = Array.from({length: k}, (_, r) => Array.from({length: k}, (__, c) => (r * k + c + i) / 25 - 0.3));
        await belka.setKernel(rows);
        if (i === 20) await belka.setOptions({mode: 'per-channel'});
        if (i === 40) await belka.setOptions({mode: 'grayscale', stride: 2});
        counts.push(belka.numTensors());
      }
      await belka.setOptions({stride: 1});
      return counts;
    }""")
    assert set(counts) == {before}, counts
    assert page.evaluate("belka.numTensors()") == before
    # a new photo replaces the old one's tensors
    page.evaluate("belka.useSample(1)")
    page.evaluate("belka.firstLayer()")
    assert page.evaluate("belka.numTensors()") == before
    assert page.errors == []


def test_first_layer_and_page(wasm_page, server):
    page = wasm_page
    page.evaluate("belka.useSample(0)")  # the cat sample
    layer = page.evaluate("belka.firstLayer()")
    # MobileNetV2 0.35: 16 filters of 3x3x3, stride 2 on the 96 px input; ReLU6 fused in
    assert layer["filters"] == 16 and layer["maps"] == 16, layer
    assert layer["filterShape"] == [3, 3, 3, 16] and layer["mapShape"] == [48, 48, 16], layer
    assert layer["op"] == "_FusedConv2D" and "Conv1" in layer["node"], layer
    assert page.locator("#filters .filter-canvas").count() == 16
    assert page.locator("#filters .map-canvas").count() == 16
    config = page.evaluate("belka.config")
    assert page.locator(".sample-row button").count() == len(config["samples"]) > 1
    assert config["samples"][0]["url"].endswith("cat.jpg")
    assert page.get_attribute(".sample-row button[data-index='0']", "aria-pressed") == "true"
    # the UI: a preset, the 5x5 grid, normalise, the server check button
    page.click("#presets [data-preset='box-blur']")
    page.click("[data-size='5']")
    assert page.locator("#kernel-grid input").count() == 25
    page.fill("#kernel-grid input >> nth=12", "3")
    assert page.evaluate("belka.setOptions({})")["shape"] == [170, 256, 1]
    page.click("#normalise")
    assert abs(sum(map(sum, page.evaluate("belka.kernel()"))) - 1) < 1e-9
    # OpenCV's integer 5x5 Sobel: outputs beyond 30, where float32's last place is ~4e-6; the page
    # judges its difference from TensorFlow against that (1e-5 x the largest |output|)
    big = page.evaluate("""belka.setKernel([[-1, -4, -6, -4, -1], [-2, -8, -12, -8, -2], [0, 0, 0, 0, 0],
      [2, 8, 12, 8, 2], [1, 4, 6, 4, 1]]).then(() => belka.checkServer())""")
    assert big["ok"] and big["largest"] > 10 and big["maxAbsDiff"] <= 1e-5 * big["largest"], big
    page.click("[data-preset='sobel-y']")
    page.click("#check-server")
    page.wait_for_selector("#parity.parity-ok")
    assert "max |difference| from TensorFlow" in page.inner_text("#parity")
    assert "|value|" in page.inner_text("#output-caption")  # an edge kernel's output as its absolute value
    page.evaluate("belka.explainPixel(85, 128)")
    assert page.errors == []
    save_screenshot(page, "learn-convolution")


def test_without_a_model(browser, tmp_path):
    with serve(tmp_path) as url:
        page = new_page(browser)
        try:
            page.goto(url + "/learn/convolution")
            assert page.evaluate("window.belka.ready")["ok"] is True
            assert page.evaluate("belka.firstLayer()") is None
            assert "no classifier" in page.inner_text(".conv-network")
            assert page.locator("#filters").count() == 0
            assert page.errors == []
        finally:
            page.context.close()
