"""/learn/pca (issue 15): photos through the classifier to its features in the page's worker, PCA
in TF.js on the page (static/js/pca.js), against numpy's SVD of the same features in this test
and the server's (POST /api/learn/pca); on the sample photos, on wasm and webgl."""
from __future__ import annotations

import httpx
import numpy as np
import pytest

from tests.browser.conftest import new_page, save_screenshot

TOLERANCE = 1e-4


def numpy_pca(features: np.ndarray, k: int):
    centred = features - features.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    variance = singular ** 2 / (len(features) - 1)
    return vt[:k], variance[:k], variance.sum()


def assert_same_up_to_sign(mine, expected, tolerance=TOLERANCE):
    for i, (a, b) in enumerate(zip(np.asarray(mine), np.asarray(expected))):
        diff = min(np.abs(a - b).max(), np.abs(a + b).max())
        assert diff < tolerance, f"component {i + 1}: max |diff| {diff:.2e} (up to sign)"


@pytest.mark.parametrize("backend", ["wasm", "webgl"])
def test_pca_of_the_sample_photos_matches_numpy(browser, server, backend):
    page = new_page(browser)
    page.set_default_timeout(240_000)
    try:
        page.goto(f"{server}/learn/pca?backend={backend}")
        assert page.evaluate("belka.ready") == {"ok": True, "backend": backend}
        samples = page.evaluate("JSON.parse(document.getElementById('belka-config').textContent).samples.length")
        assert page.evaluate("belka.useSamples()") == samples >= 10
        features = np.array(page.evaluate("belka.features()"), np.float64)
        assert features.shape == (samples, 1280)
        result = page.evaluate("belka.result()")
        k = len(result["components"])
        assert k == min(10, samples - 1)
        components, variance, total = numpy_pca(features, k)
        assert_same_up_to_sign(result["components"], components)
        np.testing.assert_allclose(result["explainedVariance"], variance, rtol=1e-4)
        np.testing.assert_allclose(result["ratio"], variance / total, rtol=1e-4)
        projected = (features - features.mean(axis=0)) @ np.asarray(result["components"]).T
        np.testing.assert_allclose(result["projected"], projected, atol=1e-3 * np.abs(projected).max())

        # the server's numpy on the same features, as the page shows it
        served = httpx.post(f"{server}/api/learn/pca", json={"features": features.tolist(), "components": k},
                            timeout=60).json()
        assert_same_up_to_sign(result["components"], served["components"])
        check = page.evaluate("belka.server()")
        assert check["maxComponentDiff"] < TOLERANCE
        assert "finds the same" in page.locator("#pca-parity").inner_text()
        assert len(page.evaluate("belka.labels()")) == samples
        assert "placed by their first two principal components" in page.locator("#pca-status").inner_text()

        # axes: any two components; the tensors of a PCA are all freed
        page.evaluate("belka.setAxes(2, 3)")
        assert page.locator("#axis-x").input_value() == "2"
        before = page.evaluate("belka.numTensors()")
        page.evaluate("belka.clear()")
        page.evaluate("belka.useSamples()")
        assert page.evaluate("belka.numTensors()") == before
        assert not page.errors, page.errors
        if backend == "wasm":
            save_screenshot(page, "learn-pca")
    finally:
        page.context.close()
