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


class ErrorBody(BaseModel):
    code: str
    message: str
    detail: Any = None


class ErrorResponse(BaseModel):
    error: ErrorBody


PREDICT_REQUEST_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "string", "format": "binary",
                             "description": "an image (PNG, JPEG, GIF, WebP, BMP, TIFF...); the server "
                                            "applies the manifest's preprocessing"},
                    "top_k": {"type": "integer", "minimum": 1, "maximum": 1000},
                    "include_logits": {"type": "boolean"},
                },
            },
        },
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["instances"],
                "properties": {
                    "instances": {
                        "type": "array", "minItems": 1,
                        "description": "already-preprocessed inputs, each [H, W, 3] float numbers "
                                       "(exactly what the browser fed its model)",
                        "items": {"type": "array"},
                    },
                    "top_k": {"type": "integer", "minimum": 1, "maximum": 1000},
                    "include_logits": {"type": "boolean"},
                },
            },
        },
    },
}
