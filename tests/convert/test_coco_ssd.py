"""`belka convert coco-ssd`: an Object Detection API export cut between its preprocessing loop
and its non-max suppression, converted to a TF.js graph model, checked in TF.js against
TensorFlow.

No pretrained detector can be downloaded here: the tests export small SSD-style detectors the
way the Object Detection API does, preprocessing loop, NMS and Assert included
(tests/detectors.py), as TF2 SavedModels and TF1 frozen graphs; `--source zoo` must fail
offline with exit 4 and a message that says what to do. The real zoo architecture is tested
in test_real_detectors.py.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from app import tf_runtime
from app.convert import detector, graph_cut, pipeline, verify
from app.convert.errors import VerificationFailed
from app.convert.tasks import detection
from app.registry import Registry
from tests.conftest import convert_ok, run_belka, snapshot
from tests.convert.test_bad_input import assert_rejected
from harness.detectors import build_head, export_detector, export_frozen_graph

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
    assert m["preprocessing"]["value_range"] == [-1.0, 1.0]  # measured from the export's own loop
    assert m["source"]["input_size_from"] == "graph" and m["source"]["cut_preprocessing"] is True
    assert m["graph_execution"] == "execute"
    assert m["labels"] == ["square", "circle"] and m["class_ids"] == [1, 2]
    assert m["postprocessing"] == {"score_threshold": 0.5, "iou_threshold": 0.5, "max_boxes": 20,
                                   "nms": "class-agnostic"}
    assert m["formats"] == {"graph": "graph/", "saved": "saved_model/"}
    assert m["weights"]["provenance"] == "file" and len(m["weights"]["sha256"]) == 64
    for fmt in ("saved", "graph"):
        report = m["verification"]["formats"][fmt]
        for key in ("boxes", "scores"):
            assert report[key]["ok"] and report[key]["max_abs_diff"] <= 1e-4, (fmt, key, report)
        detections = report["detections"]
        assert detections["ok"] and detections["gated"] and detections["detections"] > 0, detections
        assert detections["matched"] + detections["borderline"] == detections["detections"]
    assert m["verification"]["runtime"]["tfjs_version"].startswith("4.")


def saved_model_ops(folder) -> set[str]:
    """Every op of a SavedModel's graph and function library."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((folder / "saved_model.pb").read_bytes())
    ops = set()
    for meta in proto.meta_graphs:
        ops |= {node.op for node in meta.graph_def.node}
        for function in meta.graph_def.library.function:
            ops |= {node.op for node in function.node_def}
    return ops


def graph_model_ops(folder) -> set[str]:
    topology = json.loads((folder / "model.json").read_text())["modelTopology"]
    ops = {node["op"] for node in topology["node"]}
    for function in topology.get("library", {}).get("function", []):
        ops |= {node["op"] for node in function.get("nodeDef", [])}
    return ops


def assert_cut(model_dir) -> None:
    """No loop, NMS or Assert in the graph model or the served SavedModel: only the network."""
    graph_ops, saved_ops = graph_model_ops(model_dir / "graph"), saved_model_ops(model_dir / "saved_model")
    assert not graph_ops & graph_cut.FORBIDDEN_OPS, graph_ops & graph_cut.FORBIDDEN_OPS
    assert not graph_ops & detector.TFJS_ASYNC_OPS, graph_ops & detector.TFJS_ASYNC_OPS
    network = saved_ops - {"StatefulPartitionedCall", "PartitionedCall"}  # the signature's own call
    assert not network & graph_cut.FORBIDDEN_OPS, network & graph_cut.FORBIDDEN_OPS
    assert {"Conv2D", "_FusedConv2D"} & graph_ops and "Conv2D" in saved_ops


def test_the_graph_model_and_the_served_model_hold_only_the_network(converted, source):
    assert_cut(converted["dir"])
    source_ops = saved_model_ops(source / "squares")  # the source had them: the cut removed them
    assert {"Assert", "CombinedNonMaxSuppression"} <= source_ops and {"While", "StatelessWhile"} & source_ops


def test_the_served_saved_model_gives_the_sources_raw_outputs(source, converted):
    pixels = np.random.default_rng(5).integers(0, 256, (2, SIZE, SIZE, 3)).astype(np.float32)
    loaded = detector.load_source(str(source / "squares"), None, None)
    expected = detector.run_original(loaded, pixels)
    served = detector.run_saved(converted["dir"] / "saved_model", pixels / 127.5 - 1)
    for key in ("boxes", "scores"):
        np.testing.assert_allclose(served[key], expected[key], atol=1e-5)
    assert expected["scores"][:, :, 1:].std() > 0.01  # not a constant: the check means something
    assert 0 < expected["boxes"][..., 2:].mean() < 1.5


def test_the_graph_model_in_tfjs_matches_tensorflow_on_other_images(converted):
    images = np.random.default_rng(6).uniform(-1, 1, (2, SIZE, SIZE, 3)).astype(np.float32)
    names = converted["manifest"]["output"]
    outputs, _ = verify.run_tfjs(converted["dir"], ["graph"], images,
                                 output_names=[names["boxes"]["node"], names["scores"]["node"]], execute="execute")
    expected = detector.run_saved(converted["dir"] / "saved_model", images)
    np.testing.assert_allclose(outputs["graph"][names["boxes"]["node"]], expected["boxes"], atol=1e-4)
    np.testing.assert_allclose(outputs["graph"][names["scores"]["node"]], expected["scores"], atol=1e-4)


def test_without_labels_the_columns_get_cocos_names(source):
    loaded = detector.load_source(str(source / "squares"), None, None)
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


@pytest.fixture(scope="module")
def unsized(source):
    """A detector whose graph neither loops nor resizes: nothing in it says its input size."""
    export_detector(build_head(SIZE, GRID, CLASSES), source / "unsized", SIZE, GRID, preprocess="none")
    return source / "unsized"


@pytest.mark.parametrize("args, fragments", [
    (["--source", "{missing}"], ["no such file or folder"]),
    (["--source", "{labels}"], ["frozen graph"]),
    (["--source", "{other_graph}"], ["has no image_tensor, Postprocessor/ExpandDims_1, Postprocessor/Slice node"]),
    (["--source", "{empty}"], ["not a SavedModel folder"]),
    (["--source", "{unsized}"], ["does not fix its input size", "--size HxW"]),
    (["--source", "{model}", "--size", "32x32"], ["resizes every picture to 64x64 inside its graph", "drop --size"]),
    (["--source", "{model}", "--labels", "{three}"], ["3 labels", "scores 2 classes"]),
    (["--source", "{model}", "--formats", "graph,layers,saved"], ["no TF.js layers model"]),
    (["--source", "{classifier}"], ["no raw_detection_boxes and no raw_detection_scores"]),
])
def test_bad_input(source, unsized, small_mobilenet, tmp_path, args, fragments):
    (tmp_path / "empty").mkdir()
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    other = tf_runtime.tensorflow().function(lambda x: x * 2).get_concrete_function(
        tf_runtime.tensorflow().TensorSpec([2], "float32"))
    (tmp_path / "other.pb").write_bytes(other.graph.as_graph_def().SerializeToString())
    places = {"missing": tmp_path / "nope", "labels": source / "labels.txt", "empty": tmp_path / "empty",
              "model": source / "squares", "three": tmp_path / "three.txt", "unsized": unsized,
              "classifier": small_mobilenet["dir"] / "saved_model", "other_graph": tmp_path / "other.pb"}
    args = [a.format(**places) for a in args]
    proc = run_belka("convert", "coco-ssd", *args, "--out", tmp_path / "out")
    assert_rejected(proc, *fragments, out=tmp_path / "out")


def test_bad_size_flag(tmp_path):
    proc = run_belka("convert", "coco-ssd", "--size", "big", "--out", tmp_path / "out")
    assert proc.returncode == 2 and "expected HxW such as 300x300" in proc.stderr


def test_a_failed_check_keeps_the_previous_detector(source, converted, tmp_path, monkeypatch):
    out = tmp_path / "models"
    import shutil

    shutil.copytree(converted["dir"], out / "squares")
    before = snapshot(out / "squares")

    def failing(*args, **kwargs):
        raise VerificationFailed("simulated mismatch")

    monkeypatch.setattr(detection, "check_numbers", failing)
    request = pipeline.Request(name="squares", out=out, formats=("graph", "saved"))
    with pytest.raises(VerificationFailed):
        pipeline.convert(lambda: detector.load_source(str(source / "squares"), None, None), request, "coco-ssd")
    assert snapshot(out / "squares") == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


@pytest.fixture(scope="module")
def tf1_converted(small_detector, tmp_path_factory):
    """The session detector's head (same seed, same weights) as a TF1 frozen graph with the
    exporter's Preprocessor/map/while loop and a batched NMS loop, converted with its defaults."""
    folder = tmp_path_factory.mktemp("tf1")
    export_frozen_graph(build_head(SIZE, GRID, CLASSES), folder / "frozen_inference_graph.pb", SIZE, GRID)
    summary = convert_ok("coco-ssd", "--source", folder / "frozen_inference_graph.pb",
                         "--labels", small_detector["source"] / "labels.txt", "--out", folder / "out")
    summary["pb"] = folder / "frozen_inference_graph.pb"
    summary["dir"] = folder / "out" / "frozen_inference_graph"
    summary["manifest"] = json.loads((summary["dir"] / "manifest.json").read_text())
    return summary


def test_the_tf1_source_has_the_structure_of_a_real_export(tf1_converted):
    graph_def = tf_runtime.tensorflow().compat.v1.GraphDef()
    graph_def.ParseFromString(tf1_converted["pb"].read_bytes())
    ops = {node.op for node in graph_def.node}
    names = {node.name for node in graph_def.node}
    assert {"Enter", "Exit", "Merge", "Switch", "LoopCond", "TensorArrayV3", "Assert", "NonMaxSuppressionV3"} <= ops
    assert {"image_tensor", "Preprocessor/map/while/Enter", "Postprocessor/ExpandDims_1",
            "Postprocessor/Slice"} <= names
    image_tensor = next(node for node in graph_def.node if node.name == "image_tensor")
    assert [d.size for d in image_tensor.attr["shape"].shape.dim] == [-1, -1, -1, 3]


def test_a_tf1_frozen_graph_converts_with_its_defaults(tf1_converted):
    m = tf1_converted["manifest"]
    assert tf1_converted["name"] == "frozen_inference_graph" and m["source"]["format"] == "frozen-graph"
    assert m["preprocessing"]["size"] == [SIZE, SIZE] and m["source"]["input_size_from"] == "graph"
    assert m["preprocessing"]["value_range"] == [0.0, 255.0]  # its loop only resizes; the scaling follows it
    assert m["output"]["scores"]["shape"] == [1, GRID * GRID, CLASSES + 1]
    assert m["graph_execution"] == "execute"
    report = m["verification"]["formats"]["graph"]
    assert report["detections"]["ok"] and report["detections"]["matched"] > 0
    assert_cut(tf1_converted["dir"])


def test_a_tf1_frozen_graph_computes_what_the_tf2_export_computes(small_detector, tf1_converted):
    """Same head, two exporters: the same boxes and class scores, the background column zeros."""
    pixels = np.random.default_rng(8).integers(0, 256, (2, SIZE, SIZE, 3)).astype(np.float32)
    frozen = detector.run_saved(tf1_converted["dir"] / "saved_model", pixels)
    saved = detector.run_saved(small_detector["dir"] / "saved_model", pixels / 127.5 - 1)
    np.testing.assert_allclose(frozen["boxes"], saved["boxes"], atol=1e-5)
    np.testing.assert_allclose(frozen["scores"][:, :, 1:], saved["scores"][:, :, 1:], atol=1e-5)
    assert (frozen["scores"][:, :, 0] == 0).all()


def test_belka_verify_checks_detectors(converted, tf1_converted):
    for model in (converted["dir"], tf1_converted["dir"]):
        proc = run_belka("verify", model, "--json")
        assert proc.returncode == 0, proc.stderr[-3000:]
        report = json.loads(proc.stdout)
        assert report["task"] == "detection" and report["formats"]["graph"]["detections"]["ok"]
        assert "detections" in proc.stderr and "Traceback" not in proc.stderr


def test_belka_verify_fails_on_a_changed_detector(converted, tmp_path):
    import shutil

    shutil.copytree(converted["dir"], tmp_path / "squares")
    shard = next((tmp_path / "squares" / "graph").glob("*.bin"))
    shard.write_bytes(shard.read_bytes()[::-1])
    proc = run_belka("verify", tmp_path / "squares")
    assert proc.returncode == 3 and "changed since conversion" in proc.stderr, proc.stderr[-2000:]


def test_a_batch_resize_without_a_loop_is_cut_at_the_input(source, tmp_path):
    export_detector(build_head(SIZE, GRID, CLASSES), tmp_path / "batch", SIZE, GRID, preprocess="batch")
    summary = convert_ok("coco-ssd", "--source", tmp_path / "batch", "--out", tmp_path / "out")
    m = json.loads((tmp_path / "out" / "batch" / "manifest.json").read_text())
    assert summary["name"] == "batch" and m["preprocessing"]["size"] == [SIZE, SIZE]
    assert m["preprocessing"]["value_range"] == [0.0, 255.0] and m["source"]["cut_preprocessing"] is False
    assert m["verification"]["formats"]["graph"]["detections"]["ok"]
    assert_cut(tmp_path / "out" / "batch")


def test_a_really_wrong_graph_model_fails_the_check(source, tmp_path, monkeypatch):
    """The TF.js model of another detector (other weights): exit 3, nothing written."""
    from app.convert import export

    other = export_detector(build_head(SIZE, GRID, CLASSES, seed=7), tmp_path / "other", SIZE, GRID)
    write_graph_model = export.write_graph_model

    def wrong(saved_model_dir, out, quantize):
        staging = tmp_path / "other-cut"
        detector.write_cut_saved_model(detector.load_source(str(other), None, None), staging)
        write_graph_model(staging, out, quantize)

    monkeypatch.setattr(export, "write_graph_model", wrong)
    request = pipeline.Request(name="squares", out=tmp_path / "out", formats=("graph", "saved"))
    with pytest.raises(VerificationFailed, match="graph scores: max difference"):
        pipeline.convert(lambda: detector.load_source(str(source / "squares"), None, None), request, "coco-ssd")
    assert not (tmp_path / "out" / "squares").exists()
