"""A TensorFlow classifier's ONNX output (``--formats ...,onnx``: tf2onnx from the SavedModel),
checked in ONNX Runtime Web (Node) and onnxruntime like every target; the server then runs the
model in onnxruntime, with TensorFlow kept for Grad-CAM. One that does not pass its check is
dropped with the reason, and the rest of the model is published."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.convert import onnx_runtime
from app.convert.errors import VerificationFailed
from app.inference import classifier as classifiers
from app.main import create_app
from app.registry import Registry
from app.settings import Settings
from harness import models
from tests.conftest import convert_in_process


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """The tiny Keras classifier converted to graph, saved and onnx (no layers model: the server's
    Grad-CAM then needs the SavedModel's signature, which an onnxruntime model must still reach)."""
    folder = tmp_path_factory.mktemp("onnx_target")
    args = models.build_tiny_keras(folder)
    summary = convert_in_process(*args, "--formats", "graph,saved,onnx", "--out", folder / "models")
    path = Path(summary["path"])
    return {"summary": summary, "path": path, "manifest": json.loads((path / "manifest.json").read_text())}


def photo() -> bytes:
    pixels = np.random.default_rng(4).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_onnx_model_is_written_and_checked_in_both_runtimes(tiny):
    manifest = tiny["manifest"]
    assert manifest["formats"] == {"graph": "graph/", "saved": "saved_model/", "onnx": "onnx/"}
    assert (tiny["path"] / "onnx" / "model.onnx").is_file()
    reports = manifest["verification"]["formats"]
    for fmt in ("onnx", "onnx-server"):
        assert reports[fmt]["ok"] and reports[fmt]["max_abs_diff"] <= 1e-5, reports[fmt]
        assert reports[fmt]["top1_agreement"] == 1.0
    assert manifest["conversion"]["onnx_model"] == {"written": True, "reason": None}
    assert manifest["verification"]["onnx_runtime"]["ort_version"]
    assert "layout" not in manifest["input"]  # NHWC, as TensorFlow's: the page hands it over as it is


def test_the_server_runs_it_in_onnxruntime_and_keeps_tensorflow_for_gradcam(tiny):
    info = Registry(tiny["path"].parent).get(tiny["path"].name)
    onnx_model = classifiers.load(info)
    assert isinstance(onnx_model, classifiers.OnnxClassifier)
    batch = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    ours = onnx_model.predict(batch)
    theirs = classifiers.Classifier(info).predict(batch)
    np.testing.assert_allclose(ours.outputs, theirs.outputs, atol=1e-5)
    np.testing.assert_allclose(ours.probabilities, theirs.probabilities, atol=1e-6)

    with TestClient(create_app(Settings(models_dir=tiny["path"].parent))) as client:
        listed = {m["name"]: m for m in client.get("/api/models").json()}
        assert listed[info.name]["server_runtime"] == "onnxruntime"
        predicted = client.post(f"/api/models/{info.name}/predict", files={"file": ("p.png", photo(), "image/png")})
        assert predicted.status_code == 200, predicted.text
        explained = client.post(f"/api/models/{info.name}/explain?method=gradcam&format=json",
                                files={"file": ("p.png", photo(), "image/png")})
        assert explained.status_code == 200, explained.text
        body = explained.json()
        assert body["gradcam"]["layer"] == tiny["manifest"]["explain"]["layer"] and np.max(body["heatmap"]) > 0


def test_an_onnx_model_that_fails_its_check_is_dropped_with_the_reason(tmp_path, monkeypatch):
    def broken(models_, batch, *args, **kwargs):
        raise VerificationFailed("ONNX Runtime Web has no kernel for the operator Foo of the model")

    monkeypatch.setattr(onnx_runtime, "run_web", broken)
    args = models.build_tiny_keras(tmp_path)
    summary = convert_in_process(*args, "--formats", "graph,saved,onnx", "--out", tmp_path / "models")
    manifest = json.loads((Path(summary["path"]) / "manifest.json").read_text())
    assert set(manifest["formats"]) == {"graph", "saved"}
    assert not (Path(summary["path"]) / "onnx").exists()
    reason = manifest["conversion"]["onnx_model"]["reason"]
    assert manifest["conversion"]["onnx_model"]["written"] is False and "operator Foo" in reason, reason
    info = Registry(tmp_path / "models").get(summary["name"])
    assert classifiers.runtime_of(info) == "tensorflow"
