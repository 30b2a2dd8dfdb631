"""POST /api/models/{name}/detect on the session's small (untrained, seeded) detector.

The detections are checked against post-processing written here independently (numpy:
best class per anchor, threshold, greedy class-agnostic NMS) on the SavedModel's raw outputs.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.convert import detector as conversion
from app.main import create_app
from app.settings import Settings
from tests.api.test_predict import assert_error, encode
from harness.detectors import iou

URL = "/api/models/squares/detect"


@pytest.fixture(scope="module")
def client(small_detector, small_mobilenet, tmp_path_factory):
    folder = tmp_path_factory.mktemp("detect-models")
    (folder / "squares").symlink_to(small_detector["dir"], target_is_directory=True)
    (folder / "tiny").symlink_to(small_mobilenet["dir"], target_is_directory=True)
    with TestClient(create_app(Settings(models_dir=folder))) as client:
        yield client


def expected_detections(boxes, scores, score_threshold, iou_threshold, max_boxes):
    """[(anchor, column, score)] by greedy NMS over the best class of each anchor."""
    best = scores[:, 1:].argmax(1)
    best_score = scores[:, 1:].max(1)
    kept = []
    for anchor in np.argsort(-best_score, kind="stable"):
        if best_score[anchor] < score_threshold or len(kept) == max_boxes:
            break
        if all(iou(boxes[anchor], boxes[k]) <= iou_threshold for k, _, _ in kept):
            kept.append((anchor, int(best[anchor]), float(best_score[anchor])))
    return kept


def test_detections_follow_the_post_processing_rules(client, small_detector):
    image = np.random.default_rng(3).uniform(-1, 1, (64, 64, 3)).astype(np.float32)
    raw = conversion.run_saved(small_detector["dir"] / "saved_model", image[None])
    boxes, scores = raw["boxes"][0], raw["scores"][0]
    for score_threshold, iou_threshold, max_boxes in [(0.5, 0.5, 20), (0.3, 0.3, 5), (0.0, 0.9, 100)]:
        response = client.post(URL, json={"instances": [image.tolist()], "score_threshold": score_threshold,
                                          "iou_threshold": iou_threshold, "max_boxes": max_boxes})
        assert response.status_code == 200, response.text
        body = response.json()
        expected = expected_detections(boxes, scores, score_threshold, iou_threshold, max_boxes)
        assert len(body["detections"]) == len(expected) > 0
        for found, (anchor, column, score) in zip(body["detections"], expected):
            assert found["score"] == pytest.approx(score, abs=1e-6)
            assert found["class_id"] == column + 1 and found["label"] == ["square", "circle"][column]
            clipped = np.clip(boxes[anchor], 0, 1)
            assert [found["box"][k] for k in ("ymin", "xmin", "ymax", "xmax")] == pytest.approx(clipped, abs=1e-6)
            x, y, w, h = found["bbox"]
            assert [x, y, x + w, y + h] == pytest.approx([clipped[1] * 64, clipped[0] * 64, clipped[3] * 64,
                                                          clipped[2] * 64], abs=1e-4)
    assert body["image"] == {"width": 64, "height": 64}
    assert set(body["timings"]) == {"preprocess_ms", "inference_ms", "postprocess_ms"}


def test_an_upload_is_resized_and_its_boxes_are_in_its_own_pixels(client):
    picture = np.random.default_rng(4).integers(0, 255, (120, 200, 3), dtype=np.uint8)
    response = client.post(URL, params={"score_threshold": 0.3},
                           files={"file": ("p.png", encode(picture), "image/png")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["image"] == {"width": 200, "height": 120}
    assert body["detections"] and body["timings"]["preprocess_ms"] > 0
    for found in body["detections"]:
        x, y, w, h = found["bbox"]
        assert x == pytest.approx(found["box"]["xmin"] * 200, abs=1e-3)
        assert h == pytest.approx((found["box"]["ymax"] - found["box"]["ymin"]) * 120, abs=1e-3)


def test_defaults_come_from_the_manifest(client, small_detector):
    image = np.full((64, 64, 3), 0.0)
    default = client.post(URL, json={"instances": [image.tolist()]}).json()["detections"]
    explicit = client.post(URL, json={"instances": [image.tolist()], "score_threshold": 0.5,
                                      "iou_threshold": 0.5, "max_boxes": 20}).json()["detections"]
    assert default == explicit
    assert all(d["score"] >= 0.5 for d in default)


def test_options_in_the_body_win_over_the_query(client):
    image = np.random.default_rng(3).uniform(-1, 1, (64, 64, 3))
    body = client.post(URL + "?max_boxes=1", json={"instances": [image.tolist()], "max_boxes": 3,
                                                    "score_threshold": 0.0}).json()
    assert len(body["detections"]) == 3


@pytest.mark.parametrize("request_args, status, message", [
    ({"params": {"score_threshold": 1.5}}, 422, None),
    ({"json": {"score_threshold": "high"}}, 422, "score_threshold must be a number from 0 to 1"),
    ({"json": {"iou_threshold": -0.1}}, 422, "iou_threshold must be a number from 0 to 1"),
    ({"json": {"max_boxes": 0}}, 422, "max_boxes must be an integer from 1 to 100"),
    ({"json": {"max_boxes": True}}, 422, "max_boxes must be an integer from 1 to 100"),
])
def test_bad_options(client, request_args, status, message):
    image = np.zeros((64, 64, 3)).tolist()
    if "json" in request_args:
        response = client.post(URL, json={"instances": [image], **request_args["json"]})
    else:
        response = client.post(URL, json={"instances": [image]}, params=request_args["params"])
    assert_error(response, status, message)


def test_bad_requests(client):
    image = np.zeros((64, 64, 3)).tolist()
    assert_error(client.post("/api/models/tiny/detect", json={"instances": [image]}), 404, "no detection model")
    assert_error(client.post("/api/models/squares/predict", json={"instances": [image]}), 404,
                 "no classification model")
    assert_error(client.post(URL, json={"instances": [image, image]}), 422, "detect takes one image")
    assert_error(client.post(URL, json={"instances": [np.zeros((96, 96, 3)).tolist()]}), 422, "shape")
    assert_error(client.post(URL, files={"file": ("x.png", b"nope", "image/png")}), 400, "decoded")
    png = io.BytesIO()
    Image.new("RGB", (10, 10)).save(png, "PNG")
    assert client.post(URL, files={"file": ("x.png", png.getvalue(), "image/png")}).status_code == 200
