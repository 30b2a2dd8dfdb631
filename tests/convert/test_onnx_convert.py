"""`belka convert onnx`: an ONNX image classifier written as models/NAME/onnx/model.onnx with its
manifest, after ONNX Runtime Web (Node) and onnxruntime agree with the original file; bad input
refused with exit 2 before anything is written."""
from __future__ import annotations

import json

import pytest

from tests.conftest import convert_in_process, run_belka
from tests.convert.test_onnx_model import CLASSES, FIXTURES, build


@pytest.fixture
def labels(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("\n".join(f"class {i}" for i in range(CLASSES)) + "\n")
    return path


@pytest.mark.parametrize("layout, preset", [("NCHW", "torch"), ("NHWC", "tf")])
def test_an_export_becomes_a_verified_model(tmp_path, labels, layout, preset):
    source = build(tmp_path / "net.onnx", layout=layout, softmax=layout == "NHWC")
    summary = convert_in_process("onnx", source, "--labels", labels, "--out", tmp_path / "models")
    assert summary["name"] == "net" and summary["formats"] == ["onnx"] and summary["task"] == "classification"
    reports = summary["verification"]["formats"]
    assert reports["onnx"]["ok"] and reports["onnx"]["max_abs_diff"] <= 1e-5, reports
    manifest = json.loads((tmp_path / "models" / "net" / "manifest.json").read_text())
    assert manifest["preprocessing"]["layout"] == layout and manifest["preprocessing"]["preset"] == preset
    assert manifest["input"]["shape"] == ([None, 3, 8, 8] if layout == "NCHW" else [None, 8, 8, 3])
    assert manifest["output"]["kind"] == ("probabilities" if layout == "NHWC" else "logits")
    assert manifest["explain"]["gradcam"] is None and "occlusion" in manifest["explain"]["reason"]
    assert manifest["formats"] == {"onnx": "onnx/"}
    assert (tmp_path / "models" / "net" / "onnx" / "model.onnx").is_file()


def test_external_data_goes_back_into_one_file(tmp_path, labels):
    folder = tmp_path / "export"
    folder.mkdir()
    build(folder / "model.onnx", external=True)
    summary = convert_in_process("onnx", folder / "model.onnx", "--labels", labels, "--out", tmp_path / "models")
    assert summary["name"] == "export"  # DIR/model.onnx: the folder names it
    written = sorted(p.name for p in (tmp_path / "models" / "export" / "onnx").iterdir())
    assert written == ["model.onnx"]
    assert summary["verification"]["formats"]["onnx"]["ok"]


@pytest.mark.parametrize("make, flags, message", [
    (lambda p: build(p), ["--formats", "graph"], "an ONNX model converts to onnx only"),
    (lambda p: build(p, size=None), [], "leaves the image size open"),
    (lambda p: build(p), ["--size", "16x16"], "fixed at 8x8"),
    (lambda p: p.write_text("not a model"), [], "not an ONNX model"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, labels, make, flags, message):
    make(tmp_path / "m.onnx")
    proc = run_belka("convert", "onnx", tmp_path / "m.onnx", "--labels", labels, *flags, "--out", tmp_path / "out")
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_labels_must_match_the_classes(tmp_path):
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    proc = run_belka("convert", "onnx", build(tmp_path / "m.onnx"), "--labels", tmp_path / "three.txt",
                     "--out", tmp_path / "out")
    assert proc.returncode == 2 and "3 labels for a model with 4 classes" in proc.stderr


@pytest.mark.parametrize("name", ["torchvision-mobilenet-v3-small", "torchvision-resnet18"])
def test_real_pytorch_exports_convert(tmp_path, name):
    folder = FIXTURES / name
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent (the real-architecture fixtures are not part of the repo)")
    summary = convert_in_process("onnx", folder / "model.onnx", "--labels", folder / "labels.txt",
                                 "--out", tmp_path)
    assert summary["name"] == name
    assert summary["verification"]["formats"]["onnx"]["max_abs_diff"] <= 1e-4
    manifest = json.loads((tmp_path / name / "manifest.json").read_text())
    assert manifest["source"]["producer"].startswith("pytorch") and manifest["preprocessing"]["preset"] == "torch"
