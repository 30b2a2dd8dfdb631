"""Occlusion sensitivity (app/inference/occlusion.py) and the heatmap pictures
(app/inference/heatmap_image.py), on models simple enough to know the answer."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app.inference import heatmap_image
from app.inference.occlusion import check_params, occlusion, positions


@pytest.mark.parametrize("size, patch, stride, expected", [
    (96, 14, 7, list(range(0, 83, 7)) + [82]),  # the steps miss the edge: size - patch is added
    (8, 4, 2, [0, 2, 4]),
    (8, 8, 1, [0]),
    (10, 3, 3, [0, 3, 6, 7]),
    (5, 1, 1, [0, 1, 2, 3, 4]),
])
def test_positions_reach_every_edge(size, patch, stride, expected):
    assert positions(size, patch, stride) == expected
    assert positions(size, patch, stride)[-1] + patch == size


@pytest.mark.parametrize("patch, stride, message", [
    (0, 1, "patch must be from 1 to 16"), (17, 1, "patch must be from 1 to 16"),
    (4, 0, "stride must be from 1 to the patch size (4)"), (4, 5, "stride must be from 1 to the patch size (4)"),
])
def test_bad_patch_or_stride(patch, stride, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_params(16, 24, patch, stride)


def region_model(top: int, left: int, size: int):
    """'Probabilities' whose class 1 is the mean brightness of one square region: hiding any
    other part of the picture changes nothing."""
    def probabilities(batch: np.ndarray) -> np.ndarray:
        p1 = batch[:, top:top + size, left:left + size].mean(axis=(1, 2, 3))
        return np.stack([1 - p1, p1], axis=1)
    return probabilities


def test_occlusion_finds_the_only_region_that_matters():
    image = np.ones((16, 16, 3), np.float32)
    result = occlusion(region_model(2, 10, 4), image, class_index=1, patch=4, stride=2, fill=0.0, batch_size=5)
    assert result.baseline == pytest.approx(1.0)
    assert result.rows == result.cols == [0, 2, 4, 6, 8, 10, 12]
    assert result.drops.shape == (7, 7)
    # the patch exactly on the region hides all of it
    assert result.drops[1, 5] == pytest.approx(1.0)
    # patches that do not touch the region change nothing
    assert result.drops[5, 0] == 0 and result.drops[6, 6] == 0
    heat = result.heatmap
    assert heat.shape == (16, 16) and heat.max() == pytest.approx(1.0)
    peak = np.unravel_index(heat.argmax(), heat.shape)
    assert 2 <= peak[0] < 6 and 10 <= peak[1] < 14
    assert heat[8:, :].max() == 0 and heat[:, :6].max() == 0  # far from the region: nothing


def test_occlusion_heatmap_is_zero_when_hiding_only_helps():
    image = np.zeros((8, 8, 3), np.float32)
    result = occlusion(region_model(0, 0, 8), image, class_index=1, patch=4, stride=4, fill=1.0)
    assert (result.drops < 0).all()  # grey raises the score everywhere
    assert result.heatmap.max() == 0


def test_colormap_ends_and_middle():
    colours = heatmap_image.colormap(np.array([0.0, 0.5, 1.0, -3.0, 7.0]))
    assert colours.tolist() == [[0, 0, 128], [128, 255, 128], [128, 0, 0], [0, 0, 128], [128, 0, 0]]


def test_overlay_png():
    pixels = np.full((20, 30, 3), 200, np.uint8)
    heat = np.array([[0.0, 1.0], [0.5, 0.25]], np.float32)
    overlay = np.asarray(Image.open(io.BytesIO(heatmap_image.overlay_png(pixels, heat, opacity=0.5))))
    assert overlay.shape == (20, 30, 3)
    assert overlay[0, 0].tolist() == [100, 100, 164]  # half grey, half jet(0) = dark blue
    assert overlay[0, -1].tolist() == [164, 100, 100]  # jet(1) = dark red
    assert heatmap_image.input_pixels(np.array([[[-1.0, 0.0, 1.0]]]), {"value_range": [-1, 1]}).tolist() == [[[0, 128, 255]]]
