"""What an ONNX image classifier says about itself, read from its graph (`belka convert onnx`).

A PyTorch export (``torch.onnx.export``, the TorchScript exporter or ``dynamo=True``) or a
tf2onnx conversion holds one image input and one output of class scores. ``read`` finds:

- the input: its name, its layout (NCHW, PyTorch's, when dimension 1 is 3; NHWC, TensorFlow's,
  when dimension 3 is), a fixed or dynamic batch, a fixed or dynamic height and width;
- the output: its name, the number of classes when the graph fixes it, and whether a Softmax
  ends the graph (the scores are then probabilities, not logits);
- the opset (13 and up), and the external data files a large export keeps its weights in
  (``model.onnx`` + ``model.onnx.data``), which must sit beside the model.

Anything else (several inputs, an input that is not a batch of 3-channel images, a size the
graph leaves open and the command does not give) is a BadInput that says what to do.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from app.convert.errors import BadInput

MIN_OPSET = 13


@dataclass
class OnnxClassifier:
    path: Path
    input_name: str
    output_name: str
    layout: str  # "NCHW" or "NHWC"
    batch: int | None  # None: dynamic
    size: tuple[int, int]  # (height, width) the model runs at
    size_fixed: bool  # whether the graph fixes it (else it came from --size)
    classes: int | None  # None: the graph leaves it open
    softmax: bool  # the output is a Softmax's: probabilities
    opset: int
    producer: str
    external_data: list[str] = field(default_factory=list)

    @property
    def input_shape(self) -> list[int | None]:
        """The model's input shape with the batch left open: [None, 3, H, W] or [None, H, W, 3]."""
        height, width = self.size
        return [None, 3, height, width] if self.layout == "NCHW" else [None, height, width, 3]


def _dims(value_info) -> list[int | str | None]:
    """A tensor's dimensions: an int when fixed, its symbolic name (or None) when not."""
    dims = []
    for dim in value_info.type.tensor_type.shape.dim:
        if dim.HasField("dim_value") and dim.dim_value > 0:
            dims.append(int(dim.dim_value))
        else:
            dims.append(dim.dim_param or None)
    return dims


def _load(path: Path):
    import onnx

    if not path.is_file():
        raise BadInput(f"{path}: no such file (expected an .onnx model, e.g. from torch.onnx.export)")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - a protobuf parse error, said plainly
        raise BadInput(f"{path}: not an ONNX model ({type(exc).__name__}: {str(exc)[:200]})") from exc
    if not model.graph.node:
        raise BadInput(f"{path}: not an ONNX model (no graph nodes)")
    return model


def _external_files(model, folder: Path) -> list[str]:
    """The external data files the model's weights are in, each checked to be beside it."""
    names = []
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location" and entry.value not in names:
                names.append(entry.value)
    for name in names:
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise BadInput(f"the model's weights point outside its folder ({name!r}); export it again with "
                           "its data file beside it")
        if not (folder / name).is_file():
            raise BadInput(f"the model keeps its weights in {name!r}, which is not beside it in {folder}: copy "
                           "that file next to the .onnx file (torch.onnx.export writes both)")
    return names


def read(path: Path, size: tuple[int, int] | None = None) -> OnnxClassifier:
    """The classifier's facts (see the module doc); ``size`` is --size (height, width)."""
    path = Path(path)
    model = _load(path)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < MIN_OPSET:
        raise BadInput(f"the model uses ONNX opset {opset}; Belka reads opset {MIN_OPSET} and up: export it again "
                       f"with torch.onnx.export(..., opset_version=17)")
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise BadInput(f"an image classifier has one input; this model has {len(inputs)} ({names})")
    graph_input = inputs[0]
    if graph_input.type.tensor_type.elem_type != 1:  # FLOAT
        raise BadInput(f"the input {graph_input.name!r} must be float32 images")
    dims = _dims(graph_input)
    layout = _layout(graph_input.name, dims)
    batch = dims[0] if isinstance(dims[0], int) else None
    if batch not in (None, 1):
        raise BadInput(f"the input {graph_input.name!r} has a fixed batch of {batch}; export with a dynamic "
                       "batch (dynamic_axes / dynamic_shapes) or a batch of 1")
    spatial = dims[2:4] if layout == "NCHW" else dims[1:3]
    graph_size = tuple(spatial) if all(isinstance(d, int) for d in spatial) else None
    if graph_size is not None and size is not None and tuple(size) != graph_size:
        raise BadInput(f"--size {size[0]}x{size[1]}: the model's input is fixed at {graph_size[0]}x{graph_size[1]}")
    if graph_size is None and size is None:
        raise BadInput(f"the model's input {graph_input.name!r} leaves the image size open ({dims}): say it "
                       "with --size HxW, e.g. --size 224x224")
    outputs = list(model.graph.output)
    if len(outputs) != 1:
        names = ", ".join(o.name for o in outputs)
        raise BadInput(f"an image classifier has one output (the class scores); this model has {len(outputs)} "
                       f"({names})")
    out_dims = _dims(outputs[0])
    if len(out_dims) != 2:
        raise BadInput(f"the output {outputs[0].name!r} must be [batch, classes]; it is {out_dims}")
    producer_node = next((n for n in model.graph.node if outputs[0].name in n.output), None)
    return OnnxClassifier(
        path=path, input_name=graph_input.name, output_name=outputs[0].name, layout=layout, batch=batch,
        size=graph_size or tuple(size), size_fixed=graph_size is not None,
        classes=out_dims[1] if isinstance(out_dims[1], int) else None,
        softmax=producer_node is not None and producer_node.op_type == "Softmax", opset=opset,
        producer=" ".join(filter(None, [model.producer_name, model.producer_version])) or "unknown",
        external_data=_external_files(model, path.parent))


def _layout(name: str, dims: list) -> str:
    if len(dims) != 4:
        raise BadInput(f"the input {name!r} must be a batch of images (4 dimensions); it has {len(dims)}: {dims}")
    if dims[1] == 3:
        return "NCHW"
    if dims[3] == 3:
        return "NHWC"
    raise BadInput(f"the input {name!r} {dims} is not a batch of RGB images: neither [N, 3, H, W] (PyTorch) nor "
                   "[N, H, W, 3] (TensorFlow)")
