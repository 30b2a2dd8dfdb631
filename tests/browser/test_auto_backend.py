"""The honest "auto" backend (static/js/auto-backend.js): measured, not a fixed order.

Headless Chromium here has WebGL and WebGPU on SwiftShader, a software GPU: "auto" must
not pick them (950 ms per MobileNetV2 inference on WebGL against ~50 ms on wasm) and must
say why. The probe itself (several real candidates) is checked with the module's own
functions and a stand-in measurement, since no machine here has a real GPU.
"""
from __future__ import annotations

from tests.browser.conftest import classify_file, new_page


def test_auto_picks_wasm_on_a_software_gpu_and_says_why(browser, server):
    page = new_page(browser)
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    try:
        page.goto(f"{server}/")
        ready = page.evaluate("window.belka.ready")
        assert ready == {"ok": True, "backend": "wasm"}, ready
        assert page.evaluate("window.belka.choice()") == "auto"
        reason = page.evaluate("window.belka.autoReason()")
        assert reason.startswith("auto chose wasm:"), reason
        assert "webgl: not tried (software GPU (SwiftShader))" in reason, reason
        assert "webgpu: not tried" in reason, reason
        assert reason in page.locator("#backend-note").inner_text()
        # the WebGPU bundle is never downloaded for a page that runs on wasm
        assert not [url for url in requested if "tf-backend-webgpu" in url]
        assert [url for url in requested if "tf-backend-wasm" in url]
        assert not page.errors, page.errors
    finally:
        page.context.close()


def test_an_explicit_choice_still_wins(browser, server):
    page = new_page(browser)
    try:
        page.goto(f"{server}/?backend=webgl")
        assert page.evaluate("window.belka.ready") == {"ok": True, "backend": "webgl"}
        assert page.evaluate("window.belka.autoReason()") is None
    finally:
        page.context.close()


PROBE_SCRIPT = """async () => {
  const auto = await import('/static/js/auto-backend.js');
  const store = new Map();
  const storage = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v) };
  const detect = async () => ({ candidates: ['webgpu', 'webgl', 'wasm'], gpu: 'Some GPU 3000',
                                skipped: [] });
  const times = { webgpu: 12, webgl: 31, wasm: 48 };
  const tried = [];
  const measure = async (b) => { tried.push(b); if (b === 'webgpu') throw new Error('lost the device');
                                 return times[b]; };
  const manifest = { files: [{ path: 'graph/model.json', sha256: 'ab'.repeat(32) }] };
  const first = await auto.pickAuto({ model: 'm', manifest, measure, storage, detect });
  const triedFirst = [...tried];
  const second = await auto.pickAuto({ model: 'm', manifest, measure, storage, detect });
  const other = { files: [{ path: 'graph/model.json', sha256: 'cd'.repeat(32) }] };
  const third = await auto.pickAuto({ model: 'm', manifest: other, measure, storage, detect });
  return { first, triedFirst, second, third, tried,
           software: ['ANGLE (Google, Vulkan 1.3.0 (SwiftShader Device (Subzero)), SwiftShader driver)',
                      'llvmpipe (LLVM 15.0.7, 256 bits)', 'Microsoft Basic Render Driver',
                      'ANGLE (NVIDIA, NVIDIA GeForce RTX 3060 Direct3D11 vs_5_0 ps_5_0, D3D11)',
                      'Apple M2'].map(auto.isSoftwareGpu) };
}"""


def test_the_probe_measures_remembers_and_explains(browser, server):
    page = new_page(browser)
    try:
        page.goto(f"{server}/")
        page.evaluate("window.belka.ready")
        result = page.evaluate(PROBE_SCRIPT)
    finally:
        page.context.close()
    first = result["first"]
    assert first["backend"] == "webgl" and first["source"] == "probe"  # the fastest that ran
    assert result["triedFirst"] == ["webgpu", "webgl", "wasm"]
    assert first["why"] == "webgpu: failed (lost the device); webgl: 31 ms; wasm: 48 ms"
    second = result["second"]  # the same model on the same device: remembered, not measured again
    assert second["backend"] == "webgl" and second["source"] == "remembered"
    assert second["why"].startswith(first["why"])
    third = result["third"]  # a re-converted model: measured again
    assert third["source"] == "probe" and len(result["tried"]) == 6
    assert result["software"] == [True, True, True, False, False]


def test_switching_back_to_auto_chooses_again_and_classifies(browser, server, tmp_path):
    from PIL import Image
    from skimage import data

    photo = tmp_path / "chelsea.png"
    Image.fromarray(data.chelsea()).save(photo)
    page = new_page(browser)
    try:
        page.goto(f"{server}/?backend=cpu")
        assert page.evaluate("window.belka.ready")["backend"] == "cpu"
        assert classify_file(page, photo)["backend"] == "cpu"
        result = page.evaluate("window.belka.setBackend('auto')")
        assert result["backend"] == "wasm" and len(result["top5"]) == 5
        assert page.evaluate("window.belka.autoReason()").startswith("auto chose wasm")
        assert not page.errors, page.errors
    finally:
        page.context.close()
