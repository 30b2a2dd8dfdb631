"""The class activation map of an ONNX classifier whose head is global average pooling then one
linear layer (ResNet, DenseNet, EfficientNet, RegNet... in torchvision and timm): Grad-CAM
without gradients, exactly.

For such a head, logit_c = sum_k W[c, k] * mean_ij A[k, i, j] + b_c, so the gradient of logit_c
with respect to the feature map A is W[c, k] / (h w) at every position, Grad-CAM's channel
weights are W[c, k] / (h w), and its map, ReLU(sum_k W[c, k] A[k]) / max, is the class
activation map (Zhou et al., 2016) of that layer. ONNX Runtime gives no gradients, but it can
compute this: the converter adds one output to the model, ``belka_cam`` = A (as [N, h, w, C]) times
W^T, [N, h, w, classes], from the model's own weights (a Transpose and a MatMul: nothing
is computed unless a caller fetches it). The page and the server fetch it beside the logits,
take the class's map, ReLU, and divide by the maximum, as Grad-CAM does.

A head of any other shape (a ViT's token head, MobileNetV3's two linear layers with an
activation between them) has no exact map of this kind: ``find_head`` returns None and the
pages say that Grad-CAM needs gradients ONNX Runtime does not give (occlusion works on any model).
"""
from __future__ import annotations

from dataclasses import dataclass

CAM_OUTPUT = "belka_cam"
PASS_THROUGH = {"Identity", "Flatten", "Reshape", "Squeeze", "Dropout"}


@dataclass(frozen=True)
class Head:
    features: str    # the feature map's tensor name (Grad-CAM's layer)
    layout: str      # "NCHW" or "NHWC": how the feature map is laid out
    weight: str      # the linear layer's weight initializer
    transposed: bool  # True when it is [classes, channels] (Gemm transB=1, PyTorch's Linear)
    bias: str | None  # its bias initializer (None: no bias)


def find_head(model) -> Head | None:
    """The pooling + linear head ending at the model's first output (a final Softmax allowed),
    or None when the head has another shape."""
    from onnx import numpy_helper

    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    initializers = {init.name: init for init in graph.initializer}

    def attribute(node, name, default=None):
        from onnx import helper

        found = [a for a in node.attribute if a.name == name]
        return helper.get_attribute_value(found[0]) if found else default

    node = producers.get(graph.output[0].name)
    if node is not None and node.op_type == "Softmax":
        node = producers.get(node.input[0])
    if node is None:
        return None
    if node.op_type == "Gemm":
        if attribute(node, "transA", 0) or node.input[1] not in initializers:
            return None
        if attribute(node, "alpha", 1.0) != 1.0 or attribute(node, "beta", 1.0) != 1.0:
            return None
        weight, transposed, pooled = node.input[1], bool(attribute(node, "transB", 0)), node.input[0]
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
    elif node.op_type in ("Add", "MatMul"):
        matmul = node
        if node.op_type == "Add":
            matmul = next((producers[i] for i in node.input if i in producers and producers[i].op_type == "MatMul"),
                          None)
            if matmul is None:
                return None
        if matmul.input[1] not in initializers:
            return None
        weight, transposed, pooled = matmul.input[1], False, matmul.input[0]
        bias = next((i for i in node.input if i != matmul.output[0]), None) if node is not matmul else None
    else:
        return None
    if len(numpy_helper.to_array(initializers[weight]).shape) != 2 or (bias is not None and bias not in initializers):
        return None
    node = producers.get(pooled)
    while node is not None and node.op_type in PASS_THROUGH:
        node = producers.get(node.input[0])
    if node is None:
        return None
    if node.op_type == "GlobalAveragePool":
        layout = "NCHW"
    elif node.op_type == "ReduceMean":
        axes = attribute(node, "axes")
        if axes is None and len(node.input) > 1 and node.input[1] in initializers:
            axes = numpy_helper.to_array(initializers[node.input[1]]).tolist()
        axes = sorted(a % 4 for a in axes or [])
        layout = {(2, 3): "NCHW", (1, 2): "NHWC"}.get(tuple(axes))
        if layout is None:
            return None
    else:
        return None
    return Head(features=node.input[0], layout=layout, weight=weight, transposed=transposed, bias=bias)


def add_cam_output(model, head: Head):
    """``model`` with the ``belka_cam`` output ([N, h, w, classes]) after its own outputs."""
    from onnx import TensorProto, helper

    nhwc = head.features
    nodes = []
    if head.layout == "NCHW":
        nhwc = f"{CAM_OUTPUT}__features_nhwc"
        nodes.append(helper.make_node("Transpose", [head.features], [nhwc], perm=[0, 2, 3, 1],
                                      name=f"{CAM_OUTPUT}__transpose_features"))
    weight = head.weight
    if head.transposed:
        weight = f"{CAM_OUTPUT}__weight"
        nodes.append(helper.make_node("Transpose", [head.weight], [weight], perm=[1, 0],
                                      name=f"{CAM_OUTPUT}__transpose_weight"))
    nodes.append(helper.make_node("MatMul", [nhwc, weight], [CAM_OUTPUT], name=f"{CAM_OUTPUT}__matmul"))
    model.graph.node.extend(nodes)
    model.graph.output.append(helper.make_tensor_value_info(CAM_OUTPUT, TensorProto.FLOAT, None))
    return model


def check(cam, outputs, kind: str, bias) -> str | None:
    """None when ``cam`` ([N, h, w, classes] for N probe images) is the map of the head that made
    ``outputs`` ([N, classes], "logits" or "probabilities"): its spatial mean plus the linear
    layer's ``bias`` is the logits (their softmax, for probabilities). Else why not (the head
    was read wrong: no map then)."""
    import numpy as np

    logits = cam.astype(np.float64).mean(axis=(1, 2)) + np.asarray(bias, np.float64)
    if kind == "logits":
        expected, tolerance = logits, 1e-4 * (float(np.ptp(outputs)) or 1.0)
    else:
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        expected, tolerance = shifted / shifted.sum(axis=1, keepdims=True), 1e-5
    worst = float(np.abs(expected - outputs.astype(np.float64)).max())
    return None if worst <= tolerance else f"its map does not add up to the outputs (off by {worst:.2e})"
