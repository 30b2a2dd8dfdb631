"""The /learn lessons' server side (app/learn.py, app/api/learn.py): least squares, convolution in
TensorFlow and PCA in numpy, each checked against an independent computation, and their errors."""
from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    return TestClient(create_app(Settings(models_dir=tmp_path_factory.mktemp("no-models"))))


def error(response) -> str:
    return response.json()["error"]["message"]


def test_line_is_the_least_squares_answer(client):
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, 50)
    y = 1.7 * x - 0.4 + rng.normal(0, 0.3, 50)
    answer = client.post("/api/learn/line", json={"x": x.tolist(), "y": y.tolist()}).json()
    a, b = np.polyfit(x, y, 1)
    assert answer["a"] == pytest.approx(a, abs=1e-9) and answer["b"] == pytest.approx(b, abs=1e-9)
    assert answer["loss"] == pytest.approx(np.mean((a * x + b - y) ** 2), rel=1e-9)
    assert answer["n"] == 50 and answer["method"] == "numpy.linalg.lstsq"
    # no other line does better
    for da, db in [(0.01, 0), (0, 0.01), (-0.01, 0.01)]:
        assert np.mean(((a + da) * x + b + db - y) ** 2) > answer["loss"]


@pytest.mark.parametrize(("body", "says"), [
    ({"x": [1, 2], "y": [1]}, "same length"),
    ({"x": [1], "y": [1]}, "send 2"),
    ({"x": [2, 2, 2], "y": [1, 2, 3]}, "same x"),
    ({"x": [1, 2], "y": ["a", 2]}, "y"),
])
def test_line_refuses_what_has_no_best_line(client, body, says):
    response = client.post("/api/learn/line", json=body)
    assert response.status_code == 422 and says in error(response)


def reference_convolution(image, kernel, stride, padding):
    """Cross-correlation (what conv2d computes) in numpy, channel by channel."""
    k = kernel.shape[0]
    if padding == "same":
        total_h = max((-(-image.shape[0] // stride) - 1) * stride + k - image.shape[0], 0)
        total_w = max((-(-image.shape[1] // stride) - 1) * stride + k - image.shape[1], 0)
        image = np.pad(image, ((total_h // 2, total_h - total_h // 2), (total_w // 2, total_w - total_w // 2), (0, 0)))
    h = (image.shape[0] - k) // stride + 1
    w = (image.shape[1] - k) // stride + 1
    out = np.zeros((h, w, image.shape[2]))
    for i in range(h):
        for j in range(w):
            patch = image[i * stride:i * stride + k, j * stride:j * stride + k]
            out[i, j] = (patch * kernel[:, :, None]).sum(axis=(0, 1))
    return out


@pytest.mark.parametrize(("mode", "stride", "padding", "size"), [
    ("grayscale", 1, "same", 3), ("per-channel", 1, "same", 5), ("per-channel", 2, "valid", 3),
    ("grayscale", 2, "same", 5),
])
def test_convolve_is_tensorflows_convolution(client, mode, stride, padding, size):
    rng = np.random.default_rng(size + stride)
    image = rng.uniform(0, 1, (13, 17, 3)).astype(np.float32)
    kernel = rng.normal(0, 1, (size, size)).astype(np.float32)
    answer = client.post("/api/learn/convolve", json={
        "image": {"shape": [13, 17, 3], "data": image.ravel().tolist()}, "kernel": kernel.tolist(),
        "stride": stride, "padding": padding, "mode": mode})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    source = image if mode == "per-channel" else (image @ np.array([0.2989, 0.5870, 0.1140]))[:, :, None]
    expected = reference_convolution(source.astype(np.float64), kernel.astype(np.float64), stride, padding)
    assert body["shape"] == list(expected.shape)
    np.testing.assert_allclose(np.array(body["data"]).reshape(expected.shape), expected, atol=1e-5)


@pytest.mark.parametrize(("change", "says"), [
    ({"kernel": [[1, 2], [3]]}, "same length"),
    ({"kernel": [[1, 2, 3], [3, 4, 5]]}, "square grid"),
    ({"kernel": [[1] * 11] * 11}, "9x9"),
    ({"image": {"shape": [2, 2, 3], "data": [0.5] * 5}}, "12 needed"),
    ({"image": {"shape": [2, 2, 4], "data": [0.5] * 16}}, "channels"),
    ({"stride": 9}, "stride"),
    ({"padding": "reflect"}, "padding"),
    ({"mode": "sepia"}, "mode"),
])
def test_convolve_says_what_is_wrong(client, change, says):
    body = {"image": {"shape": [2, 2, 3], "data": [0.5] * 12}, "kernel": [[0, 0, 0], [0, 1, 0], [0, 0, 0]], **change}
    response = client.post("/api/learn/convolve", json=body)
    assert response.status_code == 422 and says in error(response), response.text


def test_pca_matches_an_eigendecomposition_of_the_covariance(client):
    rng = np.random.default_rng(3)
    rows = rng.normal(0, 1, (30, 8)) @ rng.normal(0, 1, (8, 8))
    answer = client.post("/api/learn/pca", json={"features": rows.tolist(), "components": 3}).json()
    values, vectors = np.linalg.eigh(np.cov(rows, rowvar=False))
    order = np.argsort(values)[::-1][:3]
    np.testing.assert_allclose(answer["explained_variance"], values[order], rtol=1e-9)
    for got, want in zip(np.array(answer["components"]), vectors[:, order].T):
        assert min(np.abs(got - want).max(), np.abs(got + want).max()) < 1e-9  # up to sign
    assert answer["total_variance"] == pytest.approx(values.sum())
    np.testing.assert_allclose(answer["explained_variance_ratio"], values[order] / values.sum(), rtol=1e-9)
    projected = (rows - rows.mean(axis=0)) @ np.array(answer["components"]).T
    np.testing.assert_allclose(answer["projected"], projected, atol=1e-9)


@pytest.mark.parametrize(("body", "says"), [
    ({"features": [[1, 2]]}, "2 to"),
    ({"features": [[1, 2], [3]]}, "same length"),
    ({"features": [[1, 2], [3, 4]], "components": 3}, "components"),
])
def test_pca_says_what_is_wrong(client, body, says):
    response = client.post("/api/learn/pca", json=body)
    assert response.status_code == 422 and says in error(response), response.text
