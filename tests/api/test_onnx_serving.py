"""A model converted from ONNX on the server: onnxruntime runs it; the API takes the same
uploads as for every model, and tensors in the model's own layout (NCHW for a PyTorch export);
occlusion works; Grad-CAM is the class activation map where the head allows it
(tests/convert/test_onnx_cam.py), and says why not elsewhere."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.convert import onnx_runtime
from app.inference.preprocess import preprocess_bytes
from app.main import create_app
from app.settings import Settings
from tests.conftest import convert_in_process
from tests.convert.test_onnx_model import CLASSES, build


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx_serving")
    (folder / "labels.txt").write_text("\n".join(f"class {i}" for i in range(CLASSES)) + "\n")
    out = folder / "models"
    for layout in ("NCHW", "NHWC"):
        source = build(folder / f"{layout.lower()}.onnx", layout=layout, size=(16, 16))
        convert_in_process("onnx", source, "--labels", folder / "labels.txt", "--out", out)
    source = build(folder / "hidden.onnx", size=(16, 16), hidden=True)  # two linear layers: no class activation map
    convert_in_process("onnx", source, "--labels", folder / "labels.txt", "--out", out)
    return out


@pytest.fixture(scope="module")
def client(models):
    with TestClient(create_app(Settings(models_dir=models))) as client:
        yield client


def photo() -> bytes:
    pixels = np.random.default_rng(3).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("name, layout", [("nchw", "NCHW"), ("nhwc", "NHWC")])
def test_an_upload_and_a_tensor_give_onnxruntimes_numbers(client, models, name, layout):
    listed = {m["name"]: m for m in client.get("/api/models").json()}
    assert name in listed
    response = client.post(f"/api/models/{name}/predict", files={"file": ("p.png", photo(), "image/png")})
    assert response.status_code == 200, response.text
    top = response.json()["predictions"][0]["top_k"]
    spec = json.loads((models / name / "manifest.json").read_text())["preprocessing"]
    image = preprocess_bytes(photo(), spec, 10_000_000).reshape(16, 16, 3)
    tensor = image.transpose(2, 0, 1) if layout == "NCHW" else image
    expected = onnx_runtime.run_python(models / name / "onnx" / "model.onnx", tensor[None].astype(np.float32))[0]
    probabilities = np.exp(expected - expected.max()) / np.exp(expected - expected.max()).sum()
    assert top[0]["index"] == int(probabilities.argmax())
    assert abs(top[0]["probability"] - float(probabilities.max())) < 1e-4
    sent = client.post(f"/api/models/{name}/predict", json={"instances": [tensor.tolist()]})
    assert sent.status_code == 200, sent.text
    assert sent.json()["predictions"][0]["top_k"][0]["index"] == top[0]["index"]
    other_layout = np.zeros((16, 16, 3) if layout == "NCHW" else (3, 16, 16))
    wrong = client.post(f"/api/models/{name}/predict", json={"instances": [other_layout.tolist()]})
    assert wrong.status_code == 422 and str([1, *tensor.shape]) in wrong.text


def test_occlusion_runs_and_gradcam_says_why_not_without_a_class_activation_map(client):
    upload = {"file": ("p.png", photo(), "image/png")}
    occlusion = client.post("/api/models/hidden/explain", files=upload, data={"method": "occlusion", "patch": "8",
                                                                              "stride": "8"})
    assert occlusion.status_code == 200, occlusion.text
    assert np.array(occlusion.json()["heatmap"]).size > 1
    gradcam = client.post("/api/models/hidden/explain", files=upload, data={"method": "gradcam"})
    assert gradcam.status_code == 422, gradcam.text
    assert "head is not pooling and one linear layer" in gradcam.json()["error"]["message"], gradcam.text


def test_the_ray_engine_serves_it_too(models):
    """Which models `belka serve --engine ray` deploys: an ONNX classifier is one (its replica runs the
    same Services as uvicorn). Not yet run end to end on Ray with an ONNX model."""
    from app.ray_engine import servable
    from app.registry import Registry

    found = Registry(models).all()
    assert {name for name, info in found.items() if servable(info)} == {"hidden", "nchw", "nhwc"}


@pytest.mark.parametrize("path, content_type", [("dist/ort.wasm.min.mjs", "text/javascript"),
                                                ("dist/ort-wasm-simd-threaded.wasm", "application/wasm")])
def test_onnx_runtime_web_is_served_from_npm(client, path, content_type):
    """The page's ONNX runtime comes from node_modules like TF.js (no CDN), under /vendor."""
    response = client.get(f"/vendor/onnxruntime-web/{path}")
    assert response.status_code == 200 and response.headers["content-type"].startswith(content_type)


def test_teach_says_why_an_onnx_model_is_no_base(client):
    """A head is trained on TF.js features: the teach page leaves ONNX-only models out, and says why."""
    html = client.get("/teach").text
    assert "No base model yet" in html
    note = html.split('id="picker-note">', 1)[1].split("</p>", 1)[0]
    assert "Not offered as a base: hidden, nchw, nhwc" in note and "ONNX Runtime Web only" in note, note
