"""`belka convert coco-ssd`: an Object Detection API SavedModel cut before its non-max
suppression, converted to a TF.js graph model, checked in TF.js against TensorFlow.

No pretrained detector can be downloaded here: the tests export a small SSD-style detector
the way the Object Detection API does (tests/detectors.py); `--source zoo` must fail offline
with exit 4 and a message that says what to do.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from app import tf_runtime
from app.convert import detector, verify
from app.convert.errors import VerificationFailed
from app.registry import Registry
from tests.conftest import convert_ok, run_belka, snapshot
from tests.convert.test_bad_input import assert_rejected
from tests.detectors import build_head, export_frozen_graph

SIZE, GRID, CLASSES = 64, 8, 2


@pytest.fixture(scope="module")
def source(small_detector):
    return small_detector["source"]


@pytest.fixture(scope="module")
def converted(small_detector):
    return small_detector


def test_the_manifest_describes_a_detector(converted):
    m = converted["manifest"]
    assert converted["name"] == "squares" and m["task"] == "detection"
    assert m["input"] == {"shape": [1, SIZE, SIZE, 3], "dtype": "float32"}
    assert m["output"]["boxes"]["shape"] == [1, GRID * GRID, 4]
    assert m["output"]["scores"]["shape"] == [1, GRID * GRID, CLASSES + 1]
    assert m["output"]["scores"]["background_column"] == 0
    assert m["output"]["boxes"]["node"] and m["output"]["scores"]["node"]
    assert m["preprocessing"]["size"] == [SIZE, SIZE] and m["preprocessing"]["crop"] == "none"
    assert m["preprocessing"]["value_range"] == [0.0, 255.0]
    assert m["labels"] == ["square", "circle"] and m["class_ids"] == [1, 2]
    assert m["postprocessing"] == {"score_threshold": 0.5, "iou_threshold": 0.5, "max_boxes": 20,
                                   "nms": "class-agnostic"}
    assert m["formats"] == {"graph": "graph/", "saved": "saved_model/"}
    assert m["weights"]["provenance"] == "file" and len(m["weights"]["sha256"]) == 64
    for fmt in ("saved", "graph"):
        for key in ("boxes", "scores"):
            report = m["verification"]["formats"][fmt][key]
            assert report["ok"] and report["max_abs_diff"] <= 1e-4, (fmt, key, report)
    assert m["verification"]["runtime"]["tfjs_version"].startswith("4.")


def test_the_graph_model_has_no_non_max_suppression(converted):
    graph = json.loads((converted["dir"] / "graph" / "model.json").read_text())
    ops = {node["op"] for node in graph["modelTopology"]["node"]}
    assert not any("NonMaxSuppression" in op for op in ops), ops
    assert "Conv2D" in ops or "_FusedConv2D" in ops


def test_the_served_saved_model_gives_the_sources_raw_outputs(source, converted):
    images = np.random.default_rng(5).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    loaded = detector.load_source(str(source / "squares"), (SIZE, SIZE), None)
    expected = detector.run_source(loaded, images)
    served = detector.run_saved(converted["dir"] / "saved_model", images)
    for key in ("boxes", "scores"):
        np.testing.assert_allclose(served[key], expected[key], atol=1e-6)
    assert expected["scores"][:, :, 1:].std() > 0.01  # not a constant: the check means something
    assert 0 < expected["boxes"][..., 2:].mean() < 1.5


def test_the_graph_model_in_tfjs_matches_tensorflow_on_other_images(converted):
    images = np.random.default_rng(6).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    names = converted["manifest"]["output"]
    outputs, _ = verify.run_tfjs(converted["dir"], ["graph"], images,
                                 output_names=[names["boxes"]["node"], names["scores"]["node"]])
    expected = detector.run_saved(converted["dir"] / "saved_model", images)
    np.testing.assert_allclose(outputs["graph"][names["boxes"]["node"]], expected["boxes"], atol=1e-4)
    np.testing.assert_allclose(outputs["graph"][names["scores"]["node"]], expected["scores"], atol=1e-4)


def test_without_labels_the_columns_get_cocos_names(source):
    loaded = detector.load_source(str(source / "squares"), (SIZE, SIZE), None)
    assert loaded.labels == ["person", "bicycle"] and loaded.class_ids == [1, 2]
    labels, ids = detector.coco_labels(90)
    assert len(ids) == 90 and labels[0] == "person" and labels[89] == "toothbrush"
    assert labels[11] is None  # COCO has no class 12: its column stays unnamed
    assert sum(label is not None for label in labels) == 80


def test_a_detector_is_listed_but_not_offered_as_a_classifier(converted):
    models = Registry(converted["dir"].parent).all()
    assert models["squares"].task == "detection"


def test_zoo_offline_fails_clearly_and_writes_nothing(tmp_path):
    proc = run_belka("convert", "coco-ssd", "--out", tmp_path / "out", env={"KERAS_HOME": str(tmp_path / "keras")})
    assert proc.returncode == 4, proc.stderr[-2000:]
    assert "Could not download the COCO SSD model from the TensorFlow model zoo" in proc.stderr
    assert "--source FOLDER" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, fragments", [
    (["--source", "{missing}", "--size", "64x64"], ["no such file or folder"]),
    (["--source", "{labels}", "--size", "64x64"], ["frozen graph"]),
    (["--source", "{other_graph}", "--size", "64x64"], ["has no image_tensor, Postprocessor/ExpandDims_1, "
                                                        "Postprocessor/Slice node"]),
    (["--source", "{empty}", "--size", "64x64"], ["not a SavedModel folder"]),
    (["--source", "{model}"], ["--size HxW is needed"]),
    (["--source", "{model}", "--size", "64x64", "--labels", "{three}"], ["3 labels", "scores 2 classes"]),
    (["--source", "{model}", "--size", "64x64", "--formats", "graph,layers,saved"], ["no TF.js layers model"]),
    (["--source", "{classifier}", "--size", "64x64"], ["no raw_detection_boxes and no raw_detection_scores"]),
])
def test_bad_input(source, small_mobilenet, tmp_path, args, fragments):
    (tmp_path / "empty").mkdir()
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    other = tf_runtime.tensorflow().function(lambda x: x * 2).get_concrete_function(
        tf_runtime.tensorflow().TensorSpec([2], "float32"))
    (tmp_path / "other.pb").write_bytes(other.graph.as_graph_def().SerializeToString())
    places = {"missing": tmp_path / "nope", "labels": source / "labels.txt", "empty": tmp_path / "empty",
              "model": source / "squares", "three": tmp_path / "three.txt",
              "classifier": small_mobilenet["dir"] / "saved_model", "other_graph": tmp_path / "other.pb"}
    args = [a.format(**places) for a in args]
    proc = run_belka("convert", "coco-ssd", *args, "--out", tmp_path / "out")
    assert_rejected(proc, *fragments, out=tmp_path / "out")


def test_bad_size_flag(tmp_path):
    proc = run_belka("convert", "coco-ssd", "--size", "big", "--out", tmp_path / "out")
    assert proc.returncode == 2 and "expected HxW such as 320x320" in proc.stderr


def test_a_failed_check_keeps_the_previous_detector(source, converted, tmp_path, monkeypatch):
    out = tmp_path / "models"
    import shutil

    shutil.copytree(converted["dir"], out / "squares")
    before = snapshot(out / "squares")

    def failing(*args, **kwargs):
        raise VerificationFailed("simulated mismatch")

    monkeypatch.setattr(detector, "_verify", failing)
    request = detector.pipeline.Request(name="squares", out=out, formats=("graph", "saved"))
    with pytest.raises(VerificationFailed):
        detector.convert(lambda: detector.load_source(str(source / "squares"), (SIZE, SIZE), None), request)
    assert snapshot(out / "squares") == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_a_tf1_frozen_graph_is_cut_where_coco_ssd_cuts_it(small_detector, tmp_path):
    """The same (seeded) head as the session's detector, as a TF1-style frozen graph: the same
    boxes and class scores come out, with the background column put back as zeros."""
    export_frozen_graph(build_head(SIZE, GRID, CLASSES), tmp_path / "frozen.pb", SIZE, GRID)
    summary = convert_ok("coco-ssd", "--source", tmp_path / "frozen.pb", "--size", "64x64",
                         "--labels", small_detector["source"] / "labels.txt", "--out", tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / "frozen" / "manifest.json").read_text())
    assert summary["name"] == "frozen" and manifest["output"]["scores"]["shape"] == [1, GRID * GRID, CLASSES + 1]
    assert manifest["verification"]["formats"]["graph"]["scores"]["max_abs_diff"] <= 1e-4
    images = np.random.default_rng(8).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    frozen = detector.run_saved(tmp_path / "out" / "frozen" / "saved_model", images)
    saved = detector.run_saved(small_detector["dir"] / "saved_model", images)
    np.testing.assert_allclose(frozen["boxes"], saved["boxes"], atol=1e-5)
    np.testing.assert_allclose(frozen["scores"][:, :, 1:], saved["scores"][:, :, 1:], atol=1e-5)
    assert (frozen["scores"][:, :, 0] == 0).all()
