"""The REST API: GET /api/models and POST /api/models/{name}/predict.

One small MobileNetV2 (alpha 0.35, 96 px, untrained but non-degenerate), loaded once per
client; the clients are module-scoped so TensorFlow loads the SavedModel only a few times.
"""
from __future__ import annotations

import asyncio
import io
import json
import struct
import time
import zlib
from http import HTTPStatus

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from skimage import data as samples

from app.convert.verify import run_saved_model
from app.inference.classifier import softmax
from app.inference.preprocess import preprocess_bytes
from app.main import create_app
from app.settings import Settings

MODEL = "tiny"
URL = f"/api/models/{MODEL}/predict"


# -- fixtures and helpers ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def models(small_mobilenet, tmp_path_factory):
    """A models folder of our own holding only the small model (as a link: nothing is copied),
    so models other tests convert into the shared folder do not change what these tests see."""
    folder = tmp_path_factory.mktemp("predict-models")
    (folder / MODEL).symlink_to(small_mobilenet["dir"], target_is_directory=True)
    return folder


@pytest.fixture(scope="module")
def model(small_mobilenet) -> dict:
    return {"dir": small_mobilenet["dir"], "manifest": small_mobilenet["manifest"]}


@pytest.fixture(scope="module")
def client(models):
    with TestClient(create_app(Settings(models_dir=models))) as client:
        yield client


@pytest.fixture(scope="module")
def strict_client(models):
    """Small limits: 40 kB uploads, half a megapixel."""
    settings = Settings(models_dir=models, max_upload_bytes=40_000, max_pixels=500_000)
    with TestClient(create_app(settings)) as client:
        yield client


def encode(image: Image.Image | np.ndarray, fmt: str = "PNG", **options) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def upload(client, data: bytes, *, filename: str = "photo.png", mime: str = "image/png", url: str = URL,
           form: dict | None = None):
    return client.post(url, files={"file": (filename, data, mime)}, data=form or {})


def post_json_text(client, text: str | bytes, url: str = URL):
    return client.post(url, content=text, headers={"content-type": "application/json"})


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR declares width x height RGB pixels (the data holds a few bytes)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def assert_error(response, status: int, message: str | None = None) -> dict:
    """A clear 4xx with the one JSON error shape."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "detail"}, error
    assert error["code"] == HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    assert isinstance(error["message"], str) and error["message"]
    if message is not None:
        assert message in error["message"], error["message"]
    return error


def assert_prediction_shape(prediction: dict, labels: list[str], k: int) -> None:
    top = prediction["top_k"]
    assert len(top) == k
    assert len({c["index"] for c in top}) == k
    for c in top:
        assert set(c) == {"index", "label", "probability"}
        assert 0 <= c["index"] < len(labels) and c["label"] == labels[c["index"]]
        assert 0.0 <= c["probability"] <= 1.0
    probabilities = [c["probability"] for c in top]
    assert probabilities == sorted(probabilities, reverse=True)
    assert set(prediction["timings"]) == {"preprocess_ms", "queue_ms", "inference_ms", "batch_size"}
    assert prediction["timings"]["inference_ms"] > 0
    assert prediction["timings"]["queue_ms"] >= 0


@pytest.fixture(scope="module")
def photos(model) -> dict:
    """Real photos as PNG bytes and as the model inputs the manifest's preprocessing makes."""
    spec = model["manifest"]["preprocessing"]
    out = {}
    for name in ("chelsea", "coffee", "astronaut"):
        png = encode(getattr(samples, name)())
        out[name] = {"png": png, "input": preprocess_bytes(png, spec, 40_000_000)}
    return out


# -- GET /api/models -----------------------------------------------------------------------------

def test_list_models_from_the_manifests(client, model):
    response = client.get("/api/models")
    assert response.status_code == 200
    listed = response.json()
    assert [m["name"] for m in listed] == [MODEL]
    (summary,) = listed
    manifest = model["manifest"]
    assert summary["task"] == "classification"
    assert summary["input"] == {"shape": [None, 96, 96, 3], "dtype": "float32"}
    assert summary["output"]["kind"] == "logits" and summary["output"]["shape"] == [None, 1000]
    assert summary["preprocessing"] == manifest["preprocessing"]
    assert summary["preprocessing"]["size"] == [96, 96]
    assert summary["preprocessing"]["value_range"] == [-1.0, 1.0]
    assert summary["weights"] == manifest["weights"]
    assert summary["weights"]["provenance"] == "none" and summary["weights"]["trained"] is False
    assert summary["formats"] == manifest["formats"] and "saved" in summary["formats"]
    assert summary["quantization"] == "none"
    assert summary["num_labels"] == 1000
    assert summary["files"] == manifest["files"]
    assert {f["path"] for f in summary["files"]} >= {"graph/model.json", "saved_model/saved_model.pb"}
    assert all(set(f) == {"path", "bytes", "sha256"} for f in summary["files"])
    manifest_response = client.get(summary["manifest_url"])
    assert manifest_response.status_code == 200
    assert manifest_response.json()["labels"] == manifest["labels"]


def test_list_models_when_there_are_none(tmp_path):
    with TestClient(create_app(Settings(models_dir=tmp_path))) as empty:
        response = empty.get("/api/models")
    assert response.status_code == 200 and response.json() == []


# -- POST predict: results -----------------------------------------------------------------------

def test_predict_a_photo_upload(client, model, photos):
    response = upload(client, photos["chelsea"]["png"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == MODEL and body["output_kind"] == "logits"
    (prediction,) = body["predictions"]
    assert_prediction_shape(prediction, model["manifest"]["labels"], k=5)
    assert prediction["logits"] is None  # only with include_logits
    assert prediction["timings"]["preprocess_ms"] > 0
    assert prediction["timings"]["batch_size"] == 1


def test_logits_match_the_saved_model_and_probabilities_are_their_softmax(client, model, photos):
    batch = np.concatenate([photos["chelsea"]["input"], photos["coffee"]["input"]])
    response = client.post(URL, json={"instances": batch.tolist(), "include_logits": True, "top_k": 1000})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == 2

    logits = np.array([p["logits"] for p in predictions], np.float32)
    expected = run_saved_model(model["dir"] / "saved_model", model["manifest"]["signature"], batch)
    assert logits.shape == expected.shape == (2, 1000)
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-5)
    assert not np.allclose(logits[0], logits[1])  # two different photos, two different answers

    for prediction, row in zip(predictions, logits):
        assert_prediction_shape(prediction, model["manifest"]["labels"], k=1000)
        assert prediction["timings"]["batch_size"] == 2
        assert prediction["timings"]["preprocess_ms"] == 0  # the instances came preprocessed
        top = prediction["top_k"]
        probabilities = np.zeros(1000)
        probabilities[[c["index"] for c in top]] = [c["probability"] for c in top]
        assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)  # all 1000 classes: sums to one
        np.testing.assert_allclose(probabilities, softmax(row[None])[0], rtol=0, atol=1e-6)
        order = [c["index"] for c in top]
        assert np.all(np.diff(row[order]) <= 1e-6)  # most probable first is largest logit first
        assert row[order[0]] == row.max()


def test_a_photo_upload_gives_exactly_what_its_preprocessed_tensor_gives(client, photos):
    photo = photos["astronaut"]
    from_file = upload(client, photo["png"], url=URL + "?include_logits=true&top_k=10")
    from_tensor = client.post(URL, json={"instances": photo["input"].tolist(), "include_logits": True,
                                         "top_k": 10})
    assert from_file.status_code == from_tensor.status_code == 200
    (a,), (b,) = from_file.json()["predictions"], from_tensor.json()["predictions"]
    assert len(a["top_k"]) == 10
    assert a["top_k"] == b["top_k"]
    assert a["logits"] == b["logits"]


def test_top_k_and_include_logits_from_query_form_and_body(client, photos):
    png, instances = photos["coffee"]["png"], photos["coffee"]["input"].tolist()
    by_query = upload(client, png, url=URL + "?top_k=3")
    assert len(by_query.json()["predictions"][0]["top_k"]) == 3
    by_form = upload(client, png, url=URL + "?top_k=9", form={"top_k": "4", "include_logits": "true"})
    assert by_form.status_code == 200, by_form.text
    assert len(by_form.json()["predictions"][0]["top_k"]) == 4  # the body wins over the query
    assert len(by_form.json()["predictions"][0]["logits"]) == 1000
    by_body = client.post(URL + "?top_k=7&include_logits=true", json={"instances": instances, "top_k": 2,
                                                                      "include_logits": False})
    assert by_body.status_code == 200, by_body.text
    (prediction,) = by_body.json()["predictions"]
    assert len(prediction["top_k"]) == 2 and prediction["logits"] is None
    by_query = client.post(URL + "?top_k=1", json={"instances": instances})
    assert len(by_query.json()["predictions"][0]["top_k"]) == 1
    everything = client.post(URL + "?top_k=1000", json={"instances": instances})
    assert len(everything.json()["predictions"][0]["top_k"]) == 1000


def test_animated_gif_uses_its_first_frame(client):
    red = Image.new("RGB", (48, 48), (255, 0, 0))
    blue = Image.new("RGB", (48, 48), (0, 0, 255))
    gif = encode(red, "GIF", save_all=True, append_images=[blue], duration=100, loop=0)
    assert Image.open(io.BytesIO(gif)).n_frames == 2
    query = "?include_logits=true&top_k=10"
    from_gif = upload(client, gif, filename="anim.gif", mime="image/gif", url=URL + query).json()["predictions"][0]
    first = upload(client, encode(red), url=URL + query).json()["predictions"][0]
    second = upload(client, encode(blue), url=URL + query).json()["predictions"][0]
    assert from_gif["logits"] == first["logits"]
    assert from_gif["top_k"] == first["top_k"]
    assert from_gif["logits"] != second["logits"]


def test_a_one_pixel_image_works(client, model):
    response = upload(client, encode(Image.new("RGB", (1, 1), (120, 200, 30))))
    assert response.status_code == 200, response.text
    assert_prediction_shape(response.json()["predictions"][0], model["manifest"]["labels"], k=5)


@pytest.mark.parametrize("fmt, mime", [("JPEG", "image/jpeg"), ("WEBP", "image/webp"), ("BMP", "image/bmp"),
                                       ("TIFF", "image/tiff")])
def test_other_image_formats(client, fmt, mime):
    data = encode(samples.chelsea(), fmt)
    response = upload(client, data, filename=f"photo.{fmt.lower()}", mime=mime)
    assert response.status_code == 200, response.text


# -- POST predict: bad uploads -------------------------------------------------------------------

def test_not_an_image(client):
    assert_error(upload(client, b"just some text, not pixels", filename="notes.txt", mime="text/plain"),
                 400, "could not be decoded")


def test_empty_file(client):
    assert_error(upload(client, b""), 400, "empty")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_image(client, fmt):
    data = encode(samples.chelsea(), fmt)
    assert_error(upload(client, data[: len(data) // 2], filename=f"cut.{fmt.lower()}"), 400, "truncated")


@pytest.mark.parametrize("side", [100_000, 7_000])
def test_decompression_bomb(client, side):
    bomb = png_declaring(side, side)  # 10^10 or 4.9 * 10^7 pixels declared in a ~100-byte file
    assert len(bomb) < 200
    error = assert_error(upload(client, bomb, filename="bomb.png"), 413)
    assert "40 megapixels" in error["message"]


def test_configured_pixel_limit(strict_client):
    data = encode(Image.new("RGB", (1000, 600)))
    assert len(data) < 40_000
    error = assert_error(upload(strict_client, data), 413)
    assert error["message"] == "the image is 1000x600 pixels; the limit is 0.5 megapixels"


def test_upload_over_the_size_limit(strict_client):
    assert Settings().max_upload_bytes == 10 * 1024 * 1024  # the default; these tests use 40 kB
    noise = np.random.default_rng(0).integers(0, 256, (150, 150, 3), dtype=np.uint8)
    data = encode(noise)  # noise does not compress: about 67 kB, the limit is 40 kB
    assert 40_000 < len(data) < 40_000 + 64 * 1024
    assert_error(upload(strict_client, data), 413, "limit")
    small = encode(noise[:40, :40])
    assert upload(strict_client, small).status_code == 200


def test_request_declaring_too_many_bytes_is_refused_before_reading(strict_client):
    body = b"x" * 200_000
    response = strict_client.post(URL, content=body, headers={"content-type": "application/json"})
    assert_error(response, 413, "the request is 195 KiB; the limit is 39.1 KiB")


def test_json_body_over_the_size_limit(strict_client):
    body = json.dumps({"instances": [[[[0] * 3] * 96] * 96]}, separators=(",", ":")).encode()
    assert 40_000 < len(body) < 40_000 + 64 * 1024  # read, then refused
    assert_error(post_json_text(strict_client, body), 413, "the request is over the 39.1 KiB limit")


def test_unknown_model(client, photos):
    assert_error(upload(client, photos["coffee"]["png"], url="/api/models/no-such-model/predict"), 404,
                 "no classification model named 'no-such-model'")
    assert_error(client.post("/api/models/no-such-model/predict", json={"instances": [[0]]}), 404)


@pytest.mark.parametrize("content_type", ["text/plain", "image/png", "application/x-www-form-urlencoded",
                                          "application/xml", None])
def test_wrong_content_type(client, photos, content_type):
    headers = {"content-type": content_type} if content_type else {}
    response = client.post(URL, content=photos["coffee"]["png"], headers=headers)
    assert_error(response, 415, "multipart/form-data")


@pytest.mark.parametrize("body, content_type, status", [
    (b"no boundary at all", "multipart/form-data", 400),
    (b"--zz\r\nContent-Type: text/plain\r\n\r\nhello\r\n--zz--\r\n", "multipart/form-data; boundary=zz", 400),
    (b"", "multipart/form-data; boundary=zz", 422),
    (b"--zz\r\ngarbage without headers", "multipart/form-data; boundary=zz", 400),
], ids=["no-boundary", "part-without-name", "empty", "garbage"])
def test_malformed_multipart(client, body, content_type, status):
    assert_error(client.post(URL, content=body, headers={"content-type": content_type}), status)


def test_missing_file_field(client, photos):
    assert_error(client.post(URL, files={"image": ("a.png", photos["coffee"]["png"], "image/png")}), 422, "'file'")
    assert_error(client.post(URL, files={"top_k": (None, "3")}), 422, "'file'")
    # a 'file' field that is plain text, not a file
    assert_error(client.post(URL, files={"file": (None, "not a file"), "x": (None, "y")}), 422, "'file'")


def test_more_than_one_file(client, photos):
    png = photos["coffee"]["png"]
    response = client.post(URL, files=[("file", ("a.png", png, "image/png")), ("file", ("b.png", png, "image/png"))])
    assert_error(response, 400, "Too many files")


# -- POST predict: bad tensors -------------------------------------------------------------------

def image_list(value=0.0) -> list:
    """One [96][96][3] instance as nested lists."""
    return np.full((96, 96, 3), value, np.float32).tolist()


def with_one(value) -> list:
    instance = image_list()
    instance[50][20][1] = value
    return [instance]


@pytest.mark.parametrize("instances, message", [
    (with_one("0.5"), "numbers only"),
    (with_one(None), "numbers only"),
    (with_one(True), "numbers only"),
    ([np.full((96, 96, 3), True).tolist()], "numbers only"),
    (with_one({"r": 1}), "numbers only"),
    (with_one([1.0]), "not a regular array"),
    ([image_list(), image_list()[:95]], "not a regular array"),
    ([[[[0.0, 0.0, 0.0]] * 96] * 95 + [[[0.0, 0.0]] * 96]], "not a regular array"),
    ([np.zeros((95, 96, 3)).tolist()], "has shape [1, 95, 96, 3]"),
    ([np.zeros((96, 96, 4)).tolist()], "has shape [1, 96, 96, 4]"),
    ([np.zeros((96, 96)).tolist()], "the model takes [1, 96, 96, 3]"),
    (np.zeros((96, 96, 3)).tolist(), "has shape [96, 96, 3]"),
    ([1, 2, 3], "has shape [3]"),
    ([], "non-empty list"),
    ("pixels", "non-empty list"),
    ({"0": image_list()}, "non-empty list"),
    (None, "non-empty list"),
], ids=["string", "null", "boolean-among-numbers", "all-booleans", "object", "too-deep", "ragged-instances",
        "ragged-rows", "wrong-height", "four-channels", "no-channels", "no-batch", "flat", "empty", "string-body",
        "object-body", "null-body"])
def test_bad_instances(client, instances, message):
    assert_error(client.post(URL, json={"instances": instances}), 422, message)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e39", "-1e400"])
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # 1e39 -> float32
def test_non_finite_values(client, literal):
    text = json.dumps({"instances": [image_list()]})
    text = text.replace("0.0", literal, 1)
    assert literal in text
    assert_error(post_json_text(client, text), 422, "NaN or infinite")


@pytest.mark.parametrize("body, status, message", [
    (b"", 400, "empty"),
    (b"{not json", 400, "not valid JSON"),
    (b"\xff\xfe\x00garbage", 400, "not valid JSON"),
    (b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "not valid JSON"),
    (b'{"instances": [' + b"9" * 5000 + b"]}", 400, "not valid JSON"),
    (b"[1, 2, 3]", 422, "instances"),
    (b'{"inputs": [[0]]}', 422, "instances"),
    (b'"instances"', 422, "instances"),
], ids=["empty", "broken", "not-utf8", "nested-100000-deep", "5000-digit-integer", "array", "no-instances",
        "string"])
def test_bad_json_bodies(client, body, status, message):
    assert_error(post_json_text(client, body), status, message)


# -- POST predict: binary tensors (raw float32, .npy) ----------------------------------------------

def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def post_binary(client, body: bytes, content_type: str = "application/octet-stream", shape: str | None = None,
                url: str = URL):
    headers = {"content-type": content_type, **({"x-shape": shape} if shape is not None else {})}
    return client.post(url, content=body, headers=headers)


def test_binary_tensors_give_what_json_gives(client, photos):
    """The astronaut's tensor as JSON, as raw float32 bytes (with and without X-Shape) and as
    .npy (float32, float64, one image without the batch axis): the same logits to the bit."""
    tensor = photos["astronaut"]["input"].astype(np.float32)  # [1, 96, 96, 3]
    query = "?include_logits=true&top_k=10"
    expected = client.post(URL, json={"instances": tensor.tolist(), "include_logits": True, "top_k": 10})
    assert expected.status_code == 200
    expected = expected.json()["predictions"]
    raw = tensor.astype("<f4").tobytes()
    for response in (post_binary(client, raw, shape="1,96,96,3", url=URL + query),
                     post_binary(client, raw, url=URL + query),
                     post_binary(client, npy(tensor), "application/x-npy", url=URL + query),
                     post_binary(client, npy(tensor[0].astype(np.float64)), "application/x-npy", url=URL + query)):
        assert response.status_code == 200, response.text
        assert response.json()["predictions"][0]["top_k"] == expected[0]["top_k"]
        assert response.json()["predictions"][0]["logits"] == expected[0]["logits"]
    two = np.concatenate([tensor, np.zeros_like(tensor)])
    batch = post_binary(client, two.astype("<f4").tobytes(), shape="2,96,96,3", url=URL + "?top_k=3")
    assert batch.status_code == 200 and len(batch.json()["predictions"]) == 2
    first = batch.json()["predictions"][0]["top_k"]  # batched: the same up to float32 rounding
    assert [c["index"] for c in first] == [c["index"] for c in expected[0]["top_k"][:3]]
    np.testing.assert_allclose([c["probability"] for c in first],
                               [c["probability"] for c in expected[0]["top_k"][:3]], rtol=1e-5)


@pytest.mark.parametrize("body, shape, status, message", [
    (b"\x00" * 7, None, 422, "not a whole number of float32"),
    (b"\x00" * 400, None, 422, "X-Shape header"),
    (b"\x00" * (96 * 96 * 4), "1,96,96", 422, "has shape [1, 96, 96]"),
    (b"\x00" * (96 * 96 * 3 * 4), "1,96,96,4", 422, "X-Shape [1, 96, 96, 4] needs 147456 bytes"),
    (b"\x00" * (96 * 96 * 3 * 4), "one,96,96,3", 422, "X-Shape must be comma-separated"),
    (b"\x00" * (96 * 96 * 3 * 4), "-1,96,96,3", 422, "X-Shape must be comma-separated"),
    (b"\x00" * (96 * 96 * 3 * 4), "", 422, "X-Shape must be comma-separated"),
    (b"\x00" * (2 * 48 * 96 * 3 * 4), "2,48,96,3", 422, "has shape [2, 48, 96, 3]"),
    (np.full((1, 96, 96, 3), np.nan, "<f4").tobytes(), None, 422, "NaN or infinite"),
    (b"", "1,96,96,3", 400, "empty"),
], ids=["odd-bytes", "not-whole-images", "no-channels", "shape-mismatch", "word", "negative", "blank",
        "wrong-size", "nan", "empty"])
def test_bad_float32_bodies(client, body, shape, status, message):
    assert_error(post_binary(client, body, shape=shape), status, message)


@pytest.mark.parametrize("body, status, message", [
    (b"not a numpy file", 400, "not a .npy file"),
    (npy(np.zeros((1, 96, 96, 3)))[:100], 400, "not a .npy file"),
    (npy(np.array(["a", "b"])), 422, "must hold numbers"),
    (npy(np.zeros((1, 96, 96, 3), bool)), 422, "must hold numbers"),
    (npy(np.zeros((2, 32, 32, 3), np.float32)), 422, "has shape [2, 32, 32, 3]"),
    (npy(np.zeros((0, 96, 96, 3), np.float32)), 422, "holds no inputs"),
    (npy(np.full((96, 96, 3), np.inf, np.float32)), 422, "NaN or infinite"),
], ids=["garbage", "truncated", "strings", "booleans", "wrong-size", "no-images", "infinite"])
def test_bad_npy_bodies(client, body, status, message):
    assert_error(post_binary(client, body, "application/x-npy"), status, message)


def test_a_pickled_npy_is_refused(client):
    """np.load never unpickles what a client sends."""
    assert_error(post_binary(client, npy_pickled(), "application/x-npy"), 400, "not a .npy file")


def npy_pickled() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    return buffer.getvalue()


def test_binary_body_over_the_size_limit(strict_client):
    assert_error(post_binary(strict_client, b"\x00" * 60_000), 413)


# -- POST predict: bad options -------------------------------------------------------------------

@pytest.mark.parametrize("query", ["top_k=0", "top_k=1001", "top_k=-3", "top_k=five", "top_k=2.5",
                                   "include_logits=maybe"])
def test_bad_query_options(client, photos, query):
    error = assert_error(upload(client, photos["coffee"]["png"], url=f"{URL}?{query}"), 422, "invalid request")
    assert isinstance(error["detail"], list) and error["detail"][0]["loc"][0] == "query"


@pytest.mark.parametrize("options, message", [
    ({"top_k": 0}, "top_k must be an integer from 1 to 1000"),
    ({"top_k": 1001}, "top_k must be an integer from 1 to 1000"),
    ({"top_k": 2.5}, "top_k"),
    ({"top_k": True}, "top_k"),
    ({"top_k": None}, "top_k"),
    ({"top_k": "many"}, "top_k"),
    ({"top_k": [5]}, "top_k"),
    ({"include_logits": "maybe"}, "include_logits must be true or false"),
    ({"include_logits": 1}, "include_logits"),
    ({"include_logits": None}, "include_logits"),
])
def test_bad_body_options(client, options, message):
    assert_error(client.post(URL, json={"instances": [image_list()], **options}), 422, message)


@pytest.mark.parametrize("value", ["0", "1001", "-1", "--5", "five", "2.5", "", "\u00b2", "1e3"])
def test_bad_form_top_k(client, photos, value):
    response = upload(client, photos["coffee"]["png"], form={"top_k": value})
    assert_error(response, 422, "top_k must be an integer from 1 to 1000")


def test_bad_form_include_logits(client, photos):
    response = upload(client, photos["coffee"]["png"], form={"include_logits": "perhaps"})
    assert_error(response, 422, "include_logits must be true or false")


def test_wrong_method(client):
    assert_error(client.get(URL), 405)


# -- back-pressure: 503 with Retry-After ---------------------------------------------------------

@pytest.mark.parametrize("batching", [True, False], ids=["batching", "no-batching"])
def test_excess_concurrent_requests_get_503_with_retry_after(models, batching):
    """queue_max 2 and a model that takes 0.8 s: of six concurrent one-image
    requests two are served, four are told to come back later; then there is room again."""
    app = create_app(Settings(models_dir=models, queue_max=2, batching=batching, batch_max=8, batch_wait_ms=1))
    body = {"instances": [image_list(0.25)]}

    async def scenario():
        async with app.router.lifespan_context(app):
            service = await app.state.services.get(MODEL)
            real_run = service.batcher.run

            def slow_run(batch):
                time.sleep(0.8)
                return real_run(batch)

            # The batcher holds the classifier's bound predict: slow down what it calls.
            service.batcher.run = slow_run
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                responses = await asyncio.gather(*(http.post(URL, json=body) for _ in range(6)))
                in_flight = service.batcher.in_flight
                again = await http.post(URL, json=body)
                # Three instances could never fit in a queue of two: 413, not a 503 "retry".
                too_many = await http.post(URL, json={"instances": [image_list()] * 3})
        return responses, in_flight, again, too_many

    responses, in_flight, again, too_many = asyncio.run(scenario())
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 503, 503, 503, 503], statuses
    for response in responses:
        if response.status_code == 503:
            assert response.headers["retry-after"] == "1"
            assert_error(response, 503, "busy")
    assert in_flight == 0
    assert again.status_code == 200
    assert_error(too_many, 413, "3 instances in one request; the limit is 2")
