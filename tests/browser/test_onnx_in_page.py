"""Models converted from ONNX (PyTorch's) in the real classify page, on ONNX Runtime Web's two
back ends, checked against the server's onnxruntime on the same input tensor.

- A tiny NCHW classifier built with the ``onnx`` helper (dynamic batch) and one with a fixed
  batch of 1: the page on ``?backend=ort-wasm`` and ``ort-webgpu`` gives the server's
  probabilities within 1e-4; occlusion in the page equals the server's; Grad-CAM says why not;
  no tensor is left behind.
- The Backend panel lists ONNX Runtime's back ends only, a remembered TF.js backend becomes
  its counterpart, and "auto" measures ONNX Runtime's back ends.
- A TensorFlow model with an ONNX model beside its TF.js ones (``--formats ...,onnx``) runs on
  either runtime: on ``ort-wasm`` the page gives the server's numbers (onnxruntime) and TF.js's
  on ``wasm``, and Grad-CAM still works (TF.js's layers model, on TF.js's CPU backend).
- The real PyTorch exports in ../shared/fixtures (MobileNetV3-Small, ResNet-18), where present,
  classify on both back ends within 1e-4 of the server.
"""
from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from harness import models
from harness.models import run_belka
from harness.server import free_port
from tests.browser.conftest import another_page, classify_file, new_page, open_classify, serve
from tests.conftest import convert_in_process
from tests.convert.test_onnx_model import CLASSES, build

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
REAL = ["torchvision-mobilenet-v3-small", "torchvision-resnet18"]
SIZE = 32
BACKENDS = ["ort-wasm", "ort-webgpu"]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx_page")
    labels = folder / "labels.txt"
    labels.write_text("\n".join(f"class {i}" for i in range(CLASSES)) + "\n")
    out = folder / "models"
    convert_in_process("onnx", build(folder / "tiny.onnx", size=(SIZE, SIZE)), "--labels", labels, "--out", out)
    convert_in_process("onnx", build(folder / "single.onnx", size=(SIZE, SIZE), batch=1), "--labels", labels,
                       "--out", out)
    convert_in_process("onnx", build(folder / "hidden.onnx", size=(SIZE, SIZE), hidden=True), "--labels", labels,
                       "--out", out)
    tf_args = models.build_tiny_keras(folder)
    convert_in_process(*tf_args, "--formats", "graph,layers,saved,onnx", "--name", "tfmodel", "--out", out)
    for name in REAL:
        if (FIXTURES / name).is_dir():
            convert_in_process("onnx", FIXTURES / name / "model.onnx", "--labels", FIXTURES / name / "labels.txt",
                               "--name", name, "--out", out)
    return out


@pytest.fixture(scope="module")
def server(models_dir):
    with serve(models_dir) as url:
        yield url


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    from skimage import data

    path = tmp_path_factory.mktemp("onnx_photo") / "chelsea.png"
    Image.fromarray(data.chelsea()).save(path)
    return path


def page_input(result: dict, size: int) -> np.ndarray:
    """The page's model input, [H, W, 3] as the page computed it."""
    return np.array(result["input"], np.float32).reshape(size, size, 3)


def server_predict(url: str, model: str, image: np.ndarray, nchw: bool = True) -> np.ndarray:
    """The server's probabilities for the page's own input, sent in the model's layout (NCHW for
    a PyTorch export)."""
    instance = image.transpose(2, 0, 1) if nchw else image
    response = httpx.post(f"{url}/api/models/{model}/predict",
                          json={"instances": [instance.tolist()], "top_k": 1000}, timeout=120)
    assert response.status_code == 200, response.text
    probabilities = np.zeros(len(response.json()["predictions"][0]["top_k"]))
    for entry in response.json()["predictions"][0]["top_k"]:
        probabilities[entry["index"]] = entry["probability"]
    return probabilities


def explain(page, **request) -> dict:
    return page.evaluate("(r) => belka.explain(r)", request)


def check_cam(page, server: str, model: str, image: np.ndarray, class_index: int) -> None:
    """The page's Grad-CAM (the model's class activation map, in ONNX Runtime Web) equals the
    server's (onnxruntime) for the same input."""
    mine = explain(page, method="gradcam", classIndex=class_index)
    assert "error" not in mine and mine["model"] == "cam" and mine["source"] == "page", mine
    response = httpx.post(f"{server}/api/models/{model}/explain", timeout=120, json={
        "instances": [image.transpose(2, 0, 1).tolist()], "method": "gradcam", "class_index": class_index})
    assert response.status_code == 200, response.text
    theirs = response.json()
    assert mine["layer"] == theirs["gradcam"]["layer"]
    np.testing.assert_allclose(np.ravel(mine["heatmap"]), np.ravel(theirs["heatmap"]), atol=1e-4)
    assert np.max(theirs["heatmap"]) == pytest.approx(1.0)  # a real map, not all zeros


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("model", ["tiny", "single"])
def test_the_page_runs_it_on_onnx_runtime_web_like_the_server(browser, server, photo, backend, model):
    page, ready = open_classify(browser, f"{server}/?model={model}&backend={backend}&weights=float32")
    try:
        assert ready == {"ok": True, "backend": backend}, ready
        assert page.evaluate("belka.backend()") == backend
        result = classify_file(page, photo)
        mine = np.array(result["probabilities"], np.float64)
        theirs = server_predict(server, model, page_input(result, SIZE))
        assert np.abs(mine - theirs).max() <= 1e-4, (mine, theirs)
        assert mine.max() < 0.99 and len(mine) == CLASSES  # not saturated: the comparison means something

        # occlusion in the page: the server's map for the same input
        top = int(np.argmax(mine))
        occlusion = explain(page, method="occlusion", patch=8, stride=8, classIndex=top)
        assert "error" not in occlusion, occlusion
        response = httpx.post(f"{server}/api/models/{model}/explain", timeout=120, json={
            "instances": [page_input(result, SIZE).transpose(2, 0, 1).tolist()], "method": "occlusion",
            "patch": 8, "stride": 8, "class_index": top})
        assert response.status_code == 200, response.text
        facts = response.json()["occlusion"]
        assert occlusion["rows"] == facts["rows"] and occlusion["cols"] == facts["cols"]
        np.testing.assert_allclose(occlusion["drops"], np.ravel(facts["drops"]), atol=1e-4)

        # Grad-CAM: the class activation map ONNX Runtime Web computes, the server's
        check_cam(page, server, model, page_input(result, SIZE), top)

        before = page.evaluate("belka.numTensors()")
        classify_file(page, photo)
        assert page.evaluate("belka.numTensors()") == before
        assert page.errors == [], page.errors
    finally:
        page.context.close()


def test_without_a_class_activation_map_grad_cam_says_why(browser, server, photo):
    """Two linear layers after the pooling: no exact map, and the page says so (occlusion works)."""
    page, ready = open_classify(browser, f"{server}/?model=hidden&backend=ort-wasm&weights=float32")
    try:
        assert ready["ok"], ready
        classify_file(page, photo)
        gradcam = explain(page, method="gradcam")
        assert "not pooling and one linear layer" in gradcam["error"] and "Occlusion works" in gradcam["error"], gradcam
        assert "error" not in explain(page, method="occlusion", patch=8, stride=8)
        assert page.errors == [], page.errors
    finally:
        page.context.close()


def test_the_backend_panel_offers_onnx_runtime_only(browser, server, photo):
    page = new_page(browser)
    try:
        page.set_default_timeout(120_000)
        # a TF.js backend remembered from another page: the same device under ONNX Runtime
        page.goto(f"{server}/?model=tiny&backend=wasm")
        assert page.evaluate("window.belka.ready") == {"ok": True, "backend": "ort-wasm"}
        options = page.locator("#backend-select option").all_inner_texts()
        assert options[1:] == ["ONNX Runtime · WebGPU", "ONNX Runtime · WebAssembly"], options
        # auto measures ONNX Runtime's back ends (SwiftShader's WebGPU is left out: software)
        page.goto(f"{server}/?model=tiny&backend=auto")
        assert page.evaluate("window.belka.ready") == {"ok": True, "backend": "ort-wasm"}
        reason = page.evaluate("belka.autoReason()")
        assert "ort-webgpu: not tried (software GPU" in reason, reason
        with pytest.raises(Exception, match="cannot run on webgl"):
            page.evaluate("belka.setBackend('webgl')")
        assert page.errors == [], page.errors
    finally:
        page.context.close()


def fetched(page) -> list[str]:
    return page.evaluate("belka.worker('resources')")


@pytest.mark.parametrize("model", ["tiny", *REAL])
def test_the_page_downloads_the_float16_copy_by_default(browser, server, photo, model):
    """Without ?weights=float32 the page loads onnx-float16/ (half the download, float32 arithmetic)
    and gives the server's top class."""
    if model in REAL and not (FIXTURES / model).is_dir():
        pytest.skip(f"{FIXTURES / model} is absent (the real-architecture fixtures live beside the repo only)")
    manifest = httpx.get(f"{server}/models/{model}/manifest.json").json()
    assert manifest["page_weights"]["onnx"] == {"folder": "onnx-float16/", "dtype": "float16", "reason": None}
    sizes = {f["path"]: f["bytes"] for f in manifest["files"]}
    # half the weights' bytes (a tiny model's file is mostly its graph)
    assert sizes["onnx-float16/model.onnx"] < (0.6 if model in REAL else 0.9) * sizes["onnx/model.onnx"], sizes
    page, ready = open_classify(browser, f"{server}/?model={model}&backend=ort-wasm")
    try:
        assert ready["ok"], ready
        result = classify_file(page, photo)
        assert any(u.endswith("/onnx-float16/model.onnx") for u in fetched(page))
        assert not any(u.endswith("/onnx/model.onnx") for u in fetched(page))
        size = manifest["preprocessing"]["size"][0]
        theirs = server_predict(server, model, page_input(result, size))
        assert result["top5"][0]["index"] == int(np.argmax(theirs))
        assert np.abs(np.array(result["probabilities"]) - theirs).max() <= 0.02
    finally:
        page.context.close()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", REAL)
def test_real_pytorch_exports_classify_in_the_page(browser, server, photo, name, backend):
    if not (FIXTURES / name).is_dir():
        pytest.skip(f"{FIXTURES / name} is absent (the real-architecture fixtures live beside the repo only)")
    page, ready = open_classify(browser, f"{server}/?model={name}&backend={backend}&weights=float32")
    try:
        assert ready == {"ok": True, "backend": backend}, ready
        result = classify_file(page, photo)
        mine = np.array(result["probabilities"], np.float64)
        theirs = server_predict(server, name, page_input(result, 224))
        assert np.abs(mine - theirs).max() <= 1e-4, np.abs(mine - theirs).max()
        assert [e["index"] for e in result["top5"]] == list(np.argsort(-theirs, kind="stable")[:5])
        if name == "torchvision-resnet18":  # pooling + one linear layer: its class activation map
            if backend == "ort-wasm":  # (on WebGPU too for the tiny models: SwiftShader takes 20 s a run here)
                check_cam(page, server, name, page_input(result, 224), int(np.argmax(theirs)))
        else:  # MobileNetV3's head has two linear layers: no exact map, and the page says so
            assert "not pooling and one linear layer" in explain(page, method="gradcam")["error"]
        assert page.errors == [], page.errors
    finally:
        page.context.close()


def test_a_tensorflow_model_runs_on_either_runtime(browser, server, photo):
    page, ready = open_classify(browser, f"{server}/?model=tfmodel&backend=ort-wasm&weights=float32")
    try:
        assert ready == {"ok": True, "backend": "ort-wasm"}, ready
        options = page.eval_on_selector_all("#backend-select option", "os => os.map((o) => o.value)")
        assert options == ["auto", "webgpu", "webgl", "wasm", "cpu", "ort-webgpu", "ort-wasm"], options
        on_ort = classify_file(page, photo)
        image = page_input(on_ort, SIZE)
        theirs = server_predict(server, "tfmodel", image, nchw=False)
        ours = np.array(on_ort["probabilities"], np.float64)
        assert np.abs(ours - theirs).max() <= 1e-4, (ours, theirs)
        # Grad-CAM: TF.js's layers model, beside the ONNX model that classified
        cam = explain(page, method="gradcam", classIndex=int(np.argmax(ours)))
        assert "error" not in cam and cam["model"] == "layers", cam

        page.evaluate("belka.setBackend('wasm')")
        assert page.evaluate("belka.backend()") == "wasm"
        on_tfjs = classify_file(page, photo)
        assert on_tfjs["backend"] == "wasm"
        np.testing.assert_allclose(on_tfjs["probabilities"], on_ort["probabilities"], atol=1e-4)
        assert page.errors == [], page.errors
    finally:
        page.context.close()


def test_an_onnx_model_works_offline_after_one_visit(browser, models_dir, photo):
    """ONNX Runtime Web's module, its glue and binary, and the .onnx model are kept by the service
    worker like TF.js's files: a second visit classifies with the server gone."""
    port = free_port()
    page = new_page(browser)
    page.set_default_timeout(120_000)
    try:
        with serve(models_dir, port=port) as url:
            page.goto(f"{url}/?model=tiny&backend=ort-wasm")
            assert page.evaluate("window.belka.ready") == {"ok": True, "backend": "ort-wasm"}
            kept = page.evaluate("window.belka.offline")
            assert kept["ok"], kept
            code = page.evaluate("async () => (await (await caches.open('belka-code-v1')).keys()).map((r) => r.url)")
            names = {u.split("/")[-1] for u in code}
            assert {"ort.wasm.min.mjs", "ort-wasm-simd-threaded.wasm", "ort-model.js"} <= names, names
            online = classify_file(page, photo)
        first_page, page = page, another_page(page.context)
        first_page.close()
        page.goto(f"{url}/?model=tiny&backend=ort-wasm")
        assert page.evaluate("window.belka.ready") == {"ok": True, "backend": "ort-wasm"}
        assert classify_file(page, photo)["probabilities"] == online["probabilities"]
    finally:
        page.context.close()


def test_an_exported_static_site_runs_it(browser, models_dir, server, photo, tmp_path):
    """`belka export-site` takes the ONNX model and ONNX Runtime Web's files along: the page
    classifies there as on the server."""
    from tests.browser.test_static_site import static_server

    root = tmp_path / "www"
    proc = run_belka("export-site", root / "demo", "--models-dir", models_dir, "--base-path", "/demo",
                     "--models", "tiny")
    assert proc.returncode == 0, proc.stderr
    assert (root / "demo" / "models" / "tiny" / "onnx" / "model.onnx").is_file()
    assert not (root / "demo" / "models" / "tiny" / "saved_model").exists()
    with static_server(root) as url:
        page, ready = open_classify(browser, f"{url}?backend=ort-wasm&weights=float32")
        try:
            assert ready == {"ok": True, "backend": "ort-wasm"}, ready
            result = classify_file(page, photo)
            theirs = server_predict(server, "tiny", page_input(result, SIZE))
            assert np.abs(np.array(result["probabilities"]) - theirs).max() <= 1e-4
            assert page.errors == [], page.errors
        finally:
            page.context.close()
