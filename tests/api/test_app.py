"""The app as far as the foundation goes: /healthz, the model list, model files."""
from __future__ import annotations

from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings


def test_healthz_and_index_list_converted_models(small_mobilenet, tmp_path):
    client = TestClient(create_app(Settings(models_dir=small_mobilenet["dir"].parent)))
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "models": ["mobilenet-v2-0.35-96"]}
    page = client.get("/")
    assert page.status_code == 200
    assert "mobilenet-v2-0.35-96" in page.text
    assert "Untrained weights" in page.text
    model_json = client.get("/models/mobilenet-v2-0.35-96/graph/model.json")
    assert model_json.status_code == 200 and "weightsManifest" in model_json.json()


def test_no_models_yet(tmp_path):
    client = TestClient(create_app(Settings(models_dir=tmp_path / "empty")))
    assert client.get("/healthz").json()["models"] == []
    assert "<pre><code>.venv/bin/belka convert mobilenet-v2</code></pre>" in client.get("/").text
    # each command on a line of its own (a --flag in running text broke across lines)
    assert "<pre><code>.venv/bin/belka convert coco-ssd --source FOLDER</code></pre>" in client.get("/detect").text
