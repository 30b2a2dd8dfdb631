"""ONNX image classifiers as PyTorch and tf2onnx write them: what Belka reads from the graph
(app/convert/onnx_model.py), and the same numbers in onnxruntime (the server's runtime) and
ONNX Runtime Web in Node (the page's: app/convert/onnx_runtime.py).

The small models are built here with onnx.helper (a convolution, global average pooling and a
dense layer, in the layouts and forms exporters write); the real exports in
../shared/fixtures (torchvision MobileNetV3-Small with the dynamo exporter, ResNet-18 with the
TorchScript one) are read too when that folder is there.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.convert import onnx_model, onnx_runtime
from app.convert.errors import BadInput, VerificationFailed

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
CLASSES = 4


def build(path: Path, *, layout="NCHW", size=(8, 8), batch="N", softmax=False, opset=17, external=False,
          inputs=1, op=None, hidden=False) -> Path:
    """A tiny classifier: [Transpose for NHWC] Conv 3x3 -> Relu -> GlobalAveragePool -> Flatten -> Gemm
    [-> Softmax], seeded weights; ``op`` replaces Relu (an operator ONNX Runtime Web lacks, say);
    ``hidden``: Gemm -> Relu -> Gemm as the head (no class activation map: two linear layers)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    height, width = size if size else ("H", "W")
    shape = [batch, 3, height, width] if layout == "NCHW" else [batch, height, width, 3]
    graph_inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)]
    graph_inputs += [helper.make_tensor_value_info(f"extra{i}", TensorProto.FLOAT, [1]) for i in range(1, inputs)]
    weights = [numpy_helper.from_array(rng.normal(0, 0.5, (6, 3, 3, 3)).astype(np.float32), "conv_w"),
               numpy_helper.from_array(rng.normal(0, 0.1, 6).astype(np.float32), "conv_b"),
               numpy_helper.from_array(rng.normal(0, 1.0, (6, CLASSES)).astype(np.float32), "fc_w"),
               numpy_helper.from_array(rng.normal(0, 0.1, CLASSES).astype(np.float32), "fc_b")]
    nodes = []
    x = "image"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [x], ["nchw"], perm=[0, 3, 1, 2]))
        x = "nchw"
    nodes += [helper.make_node("Conv", [x, "conv_w", "conv_b"], ["conv"], pads=[1, 1, 1, 1]),
              helper.make_node(op or "Relu", ["conv"], ["act"]),
              helper.make_node("GlobalAveragePool", ["act"], ["pool"]),
              helper.make_node("Flatten", ["pool"], ["flat"]),
              helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits" if softmax else "scores"])]
    if hidden:
        weights += [numpy_helper.from_array(rng.normal(0, 1.0, (6, 6)).astype(np.float32), "hidden_w"),
                    numpy_helper.from_array(rng.normal(0, 0.1, 6).astype(np.float32), "hidden_b")]
        nodes[-1:] = [helper.make_node("Gemm", ["flat", "hidden_w", "hidden_b"], ["hidden"]),
                      helper.make_node("Relu", ["hidden"], ["hidden_act"]),
                      helper.make_node("Gemm", ["hidden_act", "fc_w", "fc_b"], ["logits" if softmax else "scores"])]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["scores"], axis=1))
    output = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, CLASSES])
    graph = helper.make_graph(nodes, "tiny", graph_inputs, [output], initializer=weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="test")
    if op is None:
        onnx.checker.check_model(model)
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data", size_threshold=0)
    else:
        onnx.save_model(model, str(path))
    return path


def images(layout: str, size=(8, 8), count=3) -> np.ndarray:
    batch = np.random.default_rng(1).uniform(0, 1, (count, *size, 3)).astype(np.float32)
    return batch.transpose(0, 3, 1, 2).copy() if layout == "NCHW" else batch


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_the_layout_batch_size_and_output_are_read(tmp_path, layout):
    found = onnx_model.read(build(tmp_path / "m.onnx", layout=layout))
    assert (found.layout, found.batch, found.size, found.size_fixed) == (layout, None, (8, 8), True)
    assert (found.input_name, found.output_name, found.classes, found.softmax) == ("image", "scores", CLASSES, False)
    assert found.input_shape == ([None, 3, 8, 8] if layout == "NCHW" else [None, 8, 8, 3])
    assert found.opset == 17 and found.external_data == []


def test_softmax_fixed_batch_and_external_data(tmp_path):
    found = onnx_model.read(build(tmp_path / "m.onnx", softmax=True, batch=1, external=True))
    assert found.softmax and found.batch == 1
    assert found.external_data == ["m.onnx.data"]
    (tmp_path / "m.onnx.data").rename(tmp_path / "elsewhere")
    with pytest.raises(BadInput, match="keeps its weights in 'm.onnx.data', which is not beside it"):
        onnx_model.read(tmp_path / "m.onnx")


def test_an_open_size_needs_size_and_a_fixed_one_refuses_another(tmp_path):
    open_size = build(tmp_path / "open.onnx", size=None)
    with pytest.raises(BadInput, match="leaves the image size open .* --size HxW"):
        onnx_model.read(open_size)
    found = onnx_model.read(open_size, size=(32, 24))
    assert found.size == (32, 24) and not found.size_fixed
    with pytest.raises(BadInput, match="--size 32x32: the model's input is fixed at 8x8"):
        onnx_model.read(build(tmp_path / "fixed.onnx"), size=(32, 32))


@pytest.mark.parametrize("kwargs, message", [
    ({"opset": 12}, "opset 12; Belka reads opset 13 and up"),
    ({"inputs": 2}, "one input; this model has 2 .image, extra1."),
    ({"batch": 4}, "fixed batch of 4"),
])
def test_what_is_not_an_image_classifier_is_refused_plainly(tmp_path, kwargs, message):
    with pytest.raises(BadInput, match=message):
        onnx_model.read(build(tmp_path / "m.onnx", **kwargs))


def test_not_onnx_and_missing_files(tmp_path):
    (tmp_path / "text.onnx").write_text("hello")
    with pytest.raises(BadInput, match="not an ONNX model"):
        onnx_model.read(tmp_path / "text.onnx")
    with pytest.raises(BadInput, match="no such file"):
        onnx_model.read(tmp_path / "missing.onnx")


@pytest.mark.parametrize("layout, external, batch", [("NCHW", False, "N"), ("NHWC", True, "N"), ("NCHW", False, 1)])
def test_onnxruntime_and_onnx_runtime_web_agree(tmp_path, layout, external, batch):
    path = build(tmp_path / "m.onnx", layout=layout, external=external, batch=batch)
    found = onnx_model.read(path)
    probe = images(layout)
    server = onnx_runtime.run_python(path, probe)
    page, runtime = onnx_runtime.run_web({"onnx": path}, probe, found.external_data, one_at_a_time=batch == 1)
    assert page["onnx"].shape == server.shape == (3, CLASSES)
    np.testing.assert_allclose(page["onnx"], server, atol=1e-5)
    assert runtime["backend"] == "wasm" and runtime["ort_version"]


def test_an_operator_the_page_cannot_run_is_named(tmp_path):
    """ONNX Runtime Web's WebAssembly build has the CPU kernels onnxruntime has (DFT, Det, Mish,
    Microsoft's contrib ops...), but not ImageDecoder nor an exporter's custom operator."""
    import onnx
    from onnx import TensorProto, helper

    path = build(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    model.graph.node.append(helper.make_node("Frobnicate", ["scores"], ["odd"], domain="example.custom"))
    model.graph.output.append(helper.make_tensor_value_info("odd", TensorProto.FLOAT, ["N", CLASSES]))
    model.opset_import.append(helper.make_opsetid("example.custom", 1))
    onnx.save(model, str(path))
    with pytest.raises(VerificationFailed, match=r"no kernel for the operator example\.custom:Frobnicate"):
        onnx_runtime.run_web({"onnx": path}, images("NCHW"))


@pytest.mark.parametrize("name, layout", [("torchvision-mobilenet-v3-small", "NCHW"), ("torchvision-resnet18", "NCHW")])
def test_real_pytorch_exports(name, layout):
    folder = FIXTURES / name
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent (the real-architecture fixtures are not part of the repo)")
    found = onnx_model.read(folder / "model.onnx")
    assert (found.layout, found.batch, found.size, found.classes, found.softmax) == (layout, None, (224, 224), 1000,
                                                                                     False)
    probe = np.load(folder / "probe_input.npy").astype(np.float32)
    expected = np.load(folder / "probe_logits.npy")
    page, _ = onnx_runtime.run_web({"onnx": folder / "model.onnx"}, probe)
    np.testing.assert_allclose(onnx_runtime.run_python(folder / "model.onnx", probe), expected, atol=1e-4)
    np.testing.assert_allclose(page["onnx"], expected, atol=1e-4)
