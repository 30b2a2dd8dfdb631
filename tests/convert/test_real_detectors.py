"""The real zoo architecture: ``ssd_mobilenet_v2_320x320_coco17_tpu-8`` exported by the Object
Detection API (random weights; ../shared/fixtures, see the ``zoo_detector`` fixture), converted
with `belka convert coco-ssd --source DIR` and its defaults, as a user would with the zoo's
download. Skipped where the fixture folder is absent (a user's clone).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from app.convert import detector, verify
from tests.conftest import run_belka
from tests.convert.test_bad_input import assert_rejected
from tests.convert.test_coco_ssd import assert_cut, saved_model_ops

pytestmark = pytest.mark.slow


def photos(size: int) -> np.ndarray:
    """Real photos (scikit-image's cat, astronaut, coffee), squashed to the model's size."""
    from PIL import Image
    from skimage import data

    return np.stack([np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR), np.float32)
                     for image in (data.chelsea(), data.astronaut(), data.coffee())])


def test_it_converts_at_its_own_size(zoo_detector):
    m = zoo_detector["manifest"]
    assert m["preprocessing"]["size"] == [300, 300]  # fixed_shape_resizer, not the "320" of its name
    assert m["source"]["input_size_from"] == "graph" and m["source"]["cut_preprocessing"]
    assert m["preprocessing"]["value_range"] == [-1.0, 1.0]
    assert m["output"]["boxes"]["shape"] == [1, 1917, 4] and m["output"]["scores"]["shape"] == [1, 1917, 91]
    assert m["graph_execution"] == "execute"
    assert sum(label is not None for label in m["labels"]) == 80


def test_no_nms_assert_or_loop_is_left(zoo_detector):
    assert_cut(zoo_detector["dir"])
    source_ops = saved_model_ops(zoo_detector["source"] / "saved_model")
    assert {"Assert", "NonMaxSuppressionV5"} <= source_ops  # what the cut removed


def test_the_conversion_checked_raw_tensors_and_detections(zoo_detector):
    for fmt, report in zoo_detector["manifest"]["verification"]["formats"].items():
        assert report["ok"], (fmt, report)
        assert report["scores"]["max_abs_diff"] <= verify.DETECTOR_TOLERANCE
        detections = report["detections"]
        assert detections["ok"] and detections["matched"] >= 0.9 * detections["detections"] > 0, detections
        assert detections["min_iou"] >= 0.99 and detections["max_score_diff"] <= 1e-3


def test_tfjs_detections_equal_tensorflows_on_real_photos(zoo_detector):
    """The original whole model (its own preprocessing loop and all) on photos, against the
    TF.js graph model fed the page's preprocessing: the same detections after post-processing."""
    m = zoo_detector["manifest"]
    source = detector.load_source(str(zoo_detector["source"] / "saved_model"), None, None)
    pixels = photos(300)
    reference = detector.run_original(source, pixels)
    names = [m["output"]["boxes"]["node"], m["output"]["scores"]["node"]]
    tfjs, _ = verify.run_tfjs(zoo_detector["dir"], ["graph"], pixels / 127.5 - 1, output_names=names,
                              execute="execute")
    candidate = {"boxes": tfjs["graph"][names[0]], "scores": tfjs["graph"][names[1]]}
    assert np.abs(candidate["scores"] - reference["scores"]).max() <= verify.DETECTOR_TOLERANCE
    for threshold in (0.5, 0.3):
        report = verify.compare_detections(reference, candidate, m["labels"], {**m["postprocessing"],
                                                                              "score_threshold": threshold})
        assert report["ok"] and report["matched"] > 0, report
    assert reference["scores"][..., 1:].std() > 0.05  # spread-out scores: the comparison means something


def test_belka_verify_passes(zoo_detector):
    proc = run_belka("verify", zoo_detector["dir"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "detections" in proc.stderr and "Traceback" not in proc.stderr


def test_a_size_other_than_its_own_is_refused(zoo_detector, tmp_path):
    proc = run_belka("convert", "coco-ssd", "--source", zoo_detector["source"], "--size", "320x320",
                     "--out", tmp_path / "out")
    assert_rejected(proc, "resizes every picture to 300x300", out=tmp_path / "out")
    assert "pipeline.config" not in json.dumps(zoo_detector["manifest"]["source"])
