"""Response and request shapes of the REST API (they make the OpenAPI schema at /docs)."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ClassScore(BaseModel):
    index: int = Field(description="class index in the model's labels")
    label: str
    probability: float


class Timings(BaseModel):
    preprocess_ms: float = Field(description="decode + crop + resize + normalise (0 for tensors sent as instances)")
    queue_ms: float = Field(description="waiting for a model call (batching)")
    inference_ms: float = Field(description="the model call that served this instance")
    batch_size: int = Field(description="images in that model call")


class InstancePrediction(BaseModel):
    top_k: list[ClassScore]
    logits: list[float] | None = Field(None, description="raw model outputs, with include_logits=true")
    timings: Timings


class PredictResponse(BaseModel):
    model: str
    output_kind: str = Field(description='"logits" (softmax applied for probabilities) or "probabilities"')
    predictions: list[InstancePrediction]


class ModelSummary(BaseModel):
    name: str
    task: str
    input: dict[str, Any]
    output: dict[str, Any]
    preprocessing: dict[str, Any]
    weights: dict[str, Any]
    formats: dict[str, str]
    quantization: str
    num_labels: int
    files: list[dict[str, Any]]
    manifest_url: str = Field(description="the full manifest, labels included")
    server_runtime: str = Field(description="what predict runs it in: onnxruntime (a model with an ONNX model) "
                                            "or tensorflow")


class ErrorBody(BaseModel):
    code: str
    message: str
    detail: Any = None


class ErrorResponse(BaseModel):
    error: ErrorBody


def image_or_tensor_body(options: dict, max_instances: int | None = None) -> dict:
    """The OpenAPI request body of an endpoint that takes a multipart ``file`` (an image), JSON
    ``instances`` (preprocessed tensors), or the same tensors as binary: raw float32 (``X-Shape``
    header) or a .npy file.

    The endpoint's options (``options``: top_k, class_index...) are documented once, as query
    parameters. The server also reads them from a form field or a JSON key (the body wins), but
    listing them twice made /docs' "Try it out" send prefilled form values (top_k=1,
    include_logits=true) over the query's, so the body schemas leave them out and say so."""
    instances = {"type": "array", "minItems": 1,
                 "description": "already-preprocessed inputs, each [H, W, 3] float numbers "
                                "(exactly what the browser fed its model)",
                 "items": {"type": "array"}}
    if max_instances is not None:
        instances["maxItems"] = max_instances
    file = {"type": "string", "format": "binary",
            "description": "an image (PNG, JPEG, GIF, WebP, BMP, TIFF...); the server applies the "
                           "manifest's preprocessing"}
    also = (f"Options ({', '.join(options)}) go in the query string; a client may also send them as "
            "form fields or JSON keys next to the input (the body wins).")
    return {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "description": also,
                                               "properties": {"file": file}}},
            "application/json": {"schema": {"type": "object", "required": ["instances"], "description": also,
                                            "properties": {"instances": instances}}},
            "application/octet-stream": {"schema": {
                "type": "string", "format": "binary",
                "description": "the preprocessed inputs as raw little-endian float32 values (a JS "
                               "Float32Array's bytes), shaped by the X-Shape header, e.g. "
                               "'X-Shape: 1,224,224,3' (without it: as many inputs of the model's "
                               "size as the bytes hold); options in the query string"}},
            "application/x-npy": {"schema": {
                "type": "string", "format": "binary",
                "description": "the preprocessed inputs as a .npy file (numpy.save), [N, H, W, 3] "
                               "or one [H, W, 3]; options in the query string"}},
        },
    }


PREDICT_REQUEST_BODY = image_or_tensor_body({
    "top_k": {"type": "integer", "minimum": 1, "maximum": 1000},
    "include_logits": {"type": "boolean"},
})


class LayerInfo(BaseModel):
    name: str
    class_name: str = Field(description="the Keras layer class, e.g. Conv2D, ReLU, Add")
    shape: list[int] = Field(description="its output [h, w, channels] for one image")


class GradCamFacts(BaseModel):
    layer: str = Field(description="the layer whose activations were weighted")
    score_kind: str = Field(description='"logit" (pre-softmax; Belka\'s models) or "probability" '
                                        '(models that end in softmax): what was differentiated')
    score: float = Field(description="that score for the class, on this image")


class OcclusionFacts(BaseModel):
    patch: int = Field(description="the grey square's side, in input pixels")
    stride: int
    rows: list[int] = Field(description="the patch's top edge for each row of drops")
    cols: list[int] = Field(description="its left edge for each column")
    drops: list[list[float]] = Field(description="p(clean) - p(occluded) for each position (signed)")
    baseline_probability: float


class ExplainTimings(BaseModel):
    preprocess_ms: float
    explain_ms: float = Field(description="the gradient pass, or every occluded batch")
    total_ms: float


class ExplainResponse(BaseModel):
    model: str
    method: str = Field(description="gradcam or occlusion")
    class_index: int
    label: str
    probability: float = Field(description="the class's probability on the (unoccluded) image")
    heatmap: list[list[float]] = Field(description="[h, w] in [0, 1]: Grad-CAM at the layer's resolution, "
                                                   "occlusion at the input's")
    heatmap_shape: list[int]
    overlay_png: str = Field(description="base64 PNG: the model input with the heatmap (jet colormap) "
                                         "resized bilinearly over it at 50% opacity")
    gradcam: GradCamFacts | None = None
    occlusion: OcclusionFacts | None = None
    timings: ExplainTimings


EXPLAIN_REQUEST_BODY = image_or_tensor_body({
    "method": {"type": "string", "enum": ["gradcam", "occlusion"]},
    "class_index": {"type": "integer", "minimum": 0},
    "layer": {"type": "string"},
    "patch": {"type": "integer", "minimum": 1},
    "stride": {"type": "integer", "minimum": 1},
    "format": {"type": "string", "enum": ["json", "png"]},
}, max_instances=1)


class Detection(BaseModel):
    bbox: list[float] = Field(description="[x, y, width, height] in the picture's pixels (as coco-ssd's bbox)")
    box: dict[str, float] = Field(description="ymin, xmin, ymax, xmax as fractions of the picture")
    class_id: int = Field(description="the dataset's class id (COCO: 1..90)")
    label: str
    score: float


class DetectTimings(BaseModel):
    preprocess_ms: float
    inference_ms: float
    postprocess_ms: float = Field(description="best class per box, threshold, non-max suppression")


class DetectResponse(BaseModel):
    model: str
    image: dict[str, int] = Field(description="the picture's width and height in pixels")
    detections: list[Detection]
    timings: DetectTimings


DETECT_REQUEST_BODY = image_or_tensor_body({
    "score_threshold": {"type": "number", "minimum": 0, "maximum": 1},
    "iou_threshold": {"type": "number", "minimum": 0, "maximum": 1},
    "max_boxes": {"type": "integer", "minimum": 1, "maximum": 100},
}, max_instances=1)
