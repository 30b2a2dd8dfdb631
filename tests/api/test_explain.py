"""The explain API: GET /api/models/{name}/layers and POST /api/models/{name}/explain.

On the session's small MobileNetV2 (alpha 0.35, 96 px, untrained but non-degenerate); the
heatmaps are checked against Grad-CAM computed directly (app/inference/gradcam.py) and the
occlusion drops against the predict endpoint run on occluded images built here.
"""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from skimage import data as samples

from app.inference import gradcam
from app.inference.occlusion import positions
from app.inference.preprocess import preprocess_bytes
from app.main import create_app
from app.settings import Settings
from tests.api.test_predict import assert_error, encode

MODEL = "tiny"
NO_LAYERS = "tiny-graph-only"
URL = f"/api/models/{MODEL}/explain"


@pytest.fixture(scope="module")
def models(small_mobilenet, tmp_path_factory):
    """The small model, and a copy of it without the layers model (as from a SavedModel)."""
    folder = tmp_path_factory.mktemp("explain-models")
    source = small_mobilenet["dir"]
    (folder / MODEL).symlink_to(source, target_is_directory=True)
    bare = folder / NO_LAYERS
    bare.mkdir()
    for part in ("graph", "saved_model"):
        (bare / part).symlink_to(source / part, target_is_directory=True)
    manifest = dict(small_mobilenet["manifest"])
    manifest["formats"] = {k: v for k, v in manifest["formats"].items() if k != "layers"}
    (bare / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture(scope="module")
def client(models):
    with TestClient(create_app(Settings(models_dir=models))) as client:
        yield client


@pytest.fixture(scope="module")
def chelsea(small_mobilenet) -> dict:
    png = encode(samples.chelsea())
    return {"png": png, "input": preprocess_bytes(png, small_mobilenet["manifest"]["preprocessing"], 40_000_000)[0]}


@pytest.fixture(scope="module")
def layers_model(small_mobilenet):
    return gradcam.load_layers_model(small_mobilenet["dir"])


def explain_upload(client, png: bytes, url: str = URL, **params):
    return client.post(url, params=params, files={"file": ("chelsea.png", png, "image/png")})


def explain_tensor(client, image: np.ndarray, url: str = URL, **body):
    return client.post(url, json={"instances": [image.tolist()], **body})


def logits_of(client, image: np.ndarray) -> np.ndarray:
    response = client.post(f"/api/models/{MODEL}/predict", json={"instances": [image.tolist()],
                                                                  "include_logits": True})
    assert response.status_code == 200, response.text
    return np.array(response.json()["predictions"][0]["logits"], np.float32)


def probabilities_of(client, images: np.ndarray, class_index: int) -> np.ndarray:
    """p(class_index) for each image, from the predict endpoint (a few images per request)."""
    found = []
    for start in range(0, len(images), 5):
        response = client.post(f"/api/models/{MODEL}/predict",
                               json={"instances": images[start:start + 5].tolist(), "top_k": 1000})
        assert response.status_code == 200, response.text
        found += [next(c["probability"] for c in p["top_k"] if c["index"] == class_index)
                  for p in response.json()["predictions"]]
    return np.array(found)


def decode_png(text: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))))


# -- GET layers ----------------------------------------------------------------------------------

def test_layers_lists_spatial_layers_with_shapes(client):
    response = client.get(f"/api/models/{MODEL}/layers")
    assert response.status_code == 200
    layers = response.json()
    by_name = {layer["name"]: layer for layer in layers}
    assert layers[-1] == {"name": "out_relu", "class_name": "ReLU", "shape": [3, 3, 1280]}
    assert by_name["block_12_expand"]["class_name"] == "Conv2D"
    assert by_name["block_12_expand"]["shape"][:2] == [6, 6]
    assert all(len(layer["shape"]) == 3 for layer in layers)
    assert "input_1" not in by_name and "predictions" not in by_name  # no input, no flat layers


def test_layers_errors(client):
    assert_error(client.get("/api/models/nope/layers"), 404, "no classification model named 'nope'")
    assert_error(client.get(f"/api/models/{NO_LAYERS}/layers"), 422, "no TF.js layers model")


# -- POST explain: Grad-CAM ----------------------------------------------------------------------

def test_gradcam_defaults_to_the_top1_and_the_last_spatial_layer(client, chelsea):
    response = explain_upload(client, chelsea["png"])
    assert response.status_code == 200, response.text
    body = response.json()
    logits = logits_of(client, chelsea["input"])
    assert body["method"] == "gradcam"
    assert body["class_index"] == int(logits.argmax())
    assert body["gradcam"]["layer"] == "out_relu"
    assert body["gradcam"]["score_kind"] == "logit"
    assert body["gradcam"]["score"] == pytest.approx(float(logits.max()), abs=1e-4)
    assert body["occlusion"] is None
    heat = np.array(body["heatmap"])
    assert body["heatmap_shape"] == [3, 3] and heat.shape == (3, 3)
    assert heat.min() >= 0 and heat.max() == pytest.approx(1.0)
    assert heat.std() > 0.05  # a map, not a constant
    overlay = decode_png(body["overlay_png"])
    assert overlay.shape == (96, 96, 3)
    assert set(body["timings"]) == {"preprocess_ms", "explain_ms", "total_ms"}
    assert body["timings"]["explain_ms"] > 0 and body["timings"]["preprocess_ms"] > 0


@pytest.mark.parametrize("layer", ["block_12_expand", "block_16_project", "out_relu"])
def test_gradcam_for_any_class_and_layer_equals_gradcam_computed_directly(client, chelsea, layers_model, layer):
    expected, outputs = gradcam.gradcam(gradcam.split_at(layers_model, layer), chelsea["input"][None], 335)
    response = explain_tensor(client, chelsea["input"], class_index=335, layer=layer)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["class_index"] == 335 and body["label"].startswith("fox squirrel")
    assert body["gradcam"]["layer"] == layer
    assert body["gradcam"]["score"] == pytest.approx(float(outputs[0, 335]), abs=1e-5)
    np.testing.assert_allclose(np.array(body["heatmap"]), expected[0], atol=1e-5)
    assert body["timings"]["preprocess_ms"] == 0


def test_an_upload_and_its_tensor_give_the_same_heatmap(client, chelsea):
    by_file = explain_upload(client, chelsea["png"], layer="block_13_expand").json()
    by_tensor = explain_tensor(client, chelsea["input"], layer="block_13_expand").json()
    assert by_file["class_index"] == by_tensor["class_index"]
    np.testing.assert_allclose(by_file["heatmap"], by_tensor["heatmap"], atol=1e-5)


def test_options_in_the_body_win_over_the_query(client, chelsea):
    form = client.post(URL, params={"layer": "out_relu", "class_index": 1},
                       files={"file": ("c.png", chelsea["png"], "image/png")},
                       data={"layer": "block_15_add", "class_index": "335"}).json()
    assert form["gradcam"]["layer"] == "block_15_add" and form["class_index"] == 335
    body = client.post(URL + "?method=gradcam", json={"instances": [chelsea["input"].tolist()],
                                                      "method": "occlusion", "patch": 48, "stride": 48}).json()
    assert body["method"] == "occlusion" and body["occlusion"]["patch"] == 48


def test_format_png_returns_the_overlay_picture(client, chelsea):
    response = explain_upload(client, chelsea["png"], format="png")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.size == (96, 96) and image.mode == "RGB"


# -- POST explain: occlusion ---------------------------------------------------------------------

def test_occlusion_drops_are_the_predict_endpoints_probabilities_on_occluded_images(client, chelsea):
    image = chelsea["input"]
    response = explain_tensor(client, image, method="occlusion", patch=24, stride=20, class_index=281)
    assert response.status_code == 200, response.text
    body = response.json()
    facts = body["occlusion"]
    assert facts["patch"] == 24 and facts["stride"] == 20
    assert facts["rows"] == facts["cols"] == positions(96, 24, 20) == [0, 20, 40, 60, 72]
    drops = np.array(facts["drops"])
    assert drops.shape == (5, 5)

    baseline = probabilities_of(client, image[None], 281)[0]
    assert facts["baseline_probability"] == pytest.approx(baseline, abs=1e-6)
    assert body["probability"] == pytest.approx(baseline, abs=1e-6)
    occluded = []
    for top in facts["rows"]:
        for left in facts["cols"]:
            copy = image.copy()
            copy[top:top + 24, left:left + 24] = 0.0  # grey: the middle of [-1, 1]
            occluded.append(copy)
    expected = baseline - probabilities_of(client, np.stack(occluded), 281)
    np.testing.assert_allclose(drops.ravel(), expected, atol=1e-6)

    heat = np.array(body["heatmap"])
    assert body["heatmap_shape"] == [96, 96]
    assert heat.min() >= 0 and heat.max() == pytest.approx(1.0)
    # the pixel covered by one patch only takes that patch's drop; the top-left corner is one
    peak = max(drops.max(), 1e-12)
    assert heat[0, 0] == pytest.approx(max(drops[0, 0], 0) / peak, abs=1e-5)


def test_occlusion_default_patch_and_stride(client, chelsea):
    body = explain_upload(client, chelsea["png"], method="occlusion").json()
    assert body["occlusion"]["patch"] == 14 and body["occlusion"]["stride"] == 7  # 96 / 7, half of it
    assert body["occlusion"]["rows"][-1] == 96 - 14


def test_occlusion_works_without_a_layers_model(client, chelsea):
    url = f"/api/models/{NO_LAYERS}/explain"
    body = explain_upload(client, chelsea["png"], url=url, method="occlusion", patch=48, stride=48).json()
    assert body["method"] == "occlusion" and np.array(body["heatmap"]).shape == (96, 96)
    assert_error(explain_upload(client, chelsea["png"], url=url), 422, "method=occlusion")


# -- POST explain: bad input ---------------------------------------------------------------------

@pytest.mark.parametrize("params, message", [
    ({"layer": "nope"}, "no layer with a spatial output named 'nope'; GET /api/models/tiny/layers"),
    ({"layer": "predictions"}, "no layer with a spatial output named 'predictions'"),
    ({"method": "lime"}, "method must be gradcam or occlusion"),
    ({"class_index": 1000}, "class_index must be from 0 to 999"),
    ({"class_index": -1}, None),
    ({"class_index": "squirrel"}, None),
    ({"format": "jpeg"}, "format must be json or png"),
    ({"method": "occlusion", "patch": 97}, "patch must be from 1 to 96"),
    ({"method": "occlusion", "patch": 10, "stride": 11}, "stride must be from 1 to the patch size (10)"),
    ({"method": "occlusion", "stride": 0}, None),
    ({"patch": 0}, None),
])
def test_bad_options_are_422(client, chelsea, params, message):
    assert_error(explain_upload(client, chelsea["png"], **params), 422, message)


@pytest.mark.parametrize("body, message", [
    ({"layer": ""}, "layer must be a layer name"),
    ({"layer": 3}, "layer must be a string"),
    ({"class_index": 2.5}, "class_index must be an integer"),
    ({"class_index": True}, "class_index must be an integer"),
    ({"method": None}, "method must be a string"),
    ({"patch": "big", "method": "occlusion"}, "patch must be an integer"),
])
def test_bad_options_in_a_json_body_are_422(client, chelsea, body, message):
    assert_error(explain_tensor(client, chelsea["input"], **body), 422, message)


def test_bad_requests(client, chelsea):
    assert_error(explain_upload(client, chelsea["png"], url="/api/models/nope/explain"), 404)
    two = client.post(URL, json={"instances": [chelsea["input"].tolist()] * 2})
    assert_error(two, 422, "explain takes one image; the request holds 2")
    assert_error(client.post(URL, json={"instances": [[[0.0]]]}), 422, "shape")
    assert_error(client.post(URL, files={"file": ("x.png", b"not an image", "image/png")}), 400, "decoded")
    assert_error(client.post(URL, content=b"x", headers={"content-type": "text/plain"}), 415)
