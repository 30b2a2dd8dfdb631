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
    # pooling + one linear layer: Grad-CAM is its class activation map (tests/convert/test_onnx_cam.py)
    assert manifest["explain"]["gradcam"] == "cam" and manifest["explain"]["layer"] == "act", manifest["explain"]
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


def build_vit(path):
    """A tiny vision transformer as PyTorch exports one (opset 17): 4x4 patches by a strided Conv,
    tokens, LayerNormalization, one self-attention (MatMul, Softmax), a GELU MLP (Erf), the
    tokens' mean, a Linear head. Seeded weights."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    dim, tokens = 8, 16

    def weight(name, *shape, scale=0.3):
        return numpy_helper.from_array(rng.normal(0, scale, shape).astype(np.float32), name)

    inits = [weight("patch_w", dim, 3, 4, 4), weight("patch_b", dim), weight("q", dim, dim), weight("k", dim, dim),
             weight("v", dim, dim), weight("mlp1", dim, 2 * dim), weight("mlp2", 2 * dim, dim),
             weight("head_w", CLASSES, dim, scale=1.0), weight("head_b", CLASSES),
             numpy_helper.from_array(np.ones(dim, np.float32), "ln_scale"),
             numpy_helper.from_array(np.zeros(dim, np.float32), "ln_bias"),
             numpy_helper.from_array(np.array([0, dim, tokens], np.int64), "tokens_shape"),
             numpy_helper.from_array(np.array(np.sqrt(dim), np.float32), "sqrt_dim"),
             numpy_helper.from_array(np.array(np.sqrt(2.0), np.float32), "sqrt2"),
             numpy_helper.from_array(np.array(0.5, np.float32), "half"),
             numpy_helper.from_array(np.array(1.0, np.float32), "one")]
    n = helper.make_node
    nodes = [n("Conv", ["pixel_values", "patch_w", "patch_b"], ["patches"], strides=[4, 4]),
             n("Reshape", ["patches", "tokens_shape"], ["flat"]),
             n("Transpose", ["flat"], ["x"], perm=[0, 2, 1]),
             n("LayerNormalization", ["x", "ln_scale", "ln_bias"], ["ln"], axis=-1),
             n("MatMul", ["ln", "q"], ["qx"]), n("MatMul", ["ln", "k"], ["kx"]), n("MatMul", ["ln", "v"], ["vx"]),
             n("Transpose", ["kx"], ["kt"], perm=[0, 2, 1]), n("MatMul", ["qx", "kt"], ["scores"]),
             n("Div", ["scores", "sqrt_dim"], ["scaled"]), n("Softmax", ["scaled"], ["attn"], axis=-1),
             n("MatMul", ["attn", "vx"], ["mixed"]), n("Add", ["x", "mixed"], ["res1"]),
             n("MatMul", ["res1", "mlp1"], ["h"]), n("Div", ["h", "sqrt2"], ["hs"]), n("Erf", ["hs"], ["erf"]),
             n("Add", ["erf", "one"], ["erf1"]), n("Mul", ["h", "erf1"], ["h2"]), n("Mul", ["h2", "half"], ["gelu"]),
             n("MatMul", ["gelu", "mlp2"], ["mlp"]), n("Add", ["res1", "mlp"], ["res2"]),
             n("ReduceMean", ["res2"], ["pooled"], axes=[1], keepdims=0),
             n("Gemm", ["pooled", "head_w", "head_b"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "vit", [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT,
                                                                           ["batch", 3, 16, 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="pytorch")
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    return path


def test_a_small_vision_transformer_converts(tmp_path, labels):
    """Attention, LayerNormalization and GELU run in ONNX Runtime Web as in onnxruntime; its token
    head has no class activation map, and the manifest says why (occlusion explains it)."""
    summary = convert_in_process("onnx", build_vit(tmp_path / "vit.onnx"), "--labels", labels,
                                 "--out", tmp_path / "models")
    assert summary["verification"]["formats"]["onnx"]["max_abs_diff"] <= 1e-5, summary["verification"]
    manifest = json.loads((tmp_path / "models" / "vit" / "manifest.json").read_text())
    assert manifest["input"]["layout"] == "NCHW" and manifest["preprocessing"]["size"] == [16, 16]
    assert manifest["explain"]["gradcam"] is None and "not pooling and one linear layer" in manifest["explain"]["reason"]
