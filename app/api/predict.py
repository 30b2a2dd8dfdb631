"""POST /api/models/{name}/predict: classify an image, or a tensor the browser already made.

Two request forms, one endpoint:
- ``multipart/form-data`` with ``file``: the server decodes and preprocesses the
  image as the manifest says (app/inference/preprocess.py);
- ``application/json`` ``{"instances": [[H][W][3] numbers, ...]}``: inputs that are
  already preprocessed, e.g. exactly what the browser fed its model, so the two
  runtimes can be compared number for number.

``top_k`` (1..1000, default 5) and ``include_logits`` come from the query string or
the body (the body wins). Bad input always gets a 4xx with the JSON error shape.
"""
from __future__ import annotations

from fastapi import APIRouter, Query, Request

from app.api.deps import ClassifierDep, SettingsDep
from app.api.inputs import BadRequest, option, read_model_input
from app.api.schemas import PREDICT_REQUEST_BODY, ErrorResponse, PredictResponse
from app.inference.classifier import top_k as best_classes

router = APIRouter(prefix="/api", tags=["predict"])

ERRORS = {status: {"model": ErrorResponse} for status in (400, 404, 413, 415, 422, 503)}


@router.post("/models/{name}/predict", response_model=PredictResponse, responses=ERRORS,
             openapi_extra={"requestBody": PREDICT_REQUEST_BODY})
async def predict(name: str, request: Request, service: ClassifierDep, settings: SettingsDep,
                  top_k: int = Query(5, ge=1, le=1000, description="how many classes to return"),
                  include_logits: bool = Query(False, description="also return the raw outputs")):
    """Classify one image (multipart ``file``) or a batch of preprocessed ``instances`` (JSON)."""
    with service.incoming():  # a batch about to run may wait a few ms for this request
        received = await read_model_input(request, service.manifest, settings,
                                          ("top_k", "include_logits"))
    images, preprocess_ms = received.images, received.preprocess_ms
    k = option(received.options, "top_k", top_k, int, lambda v: 1 <= v <= 1000, "an integer from 1 to 1000")
    with_logits = option(received.options, "include_logits", include_logits, bool, lambda v: True,
                         "true or false")

    if len(images) > service.max_queue:  # could never fit: "retry later" would be a lie
        raise BadRequest(413, f"{len(images)} instances in one request; the limit is {service.max_queue}")
    result = await service.predict(images)  # QueueFull: 503 with Retry-After (app/errors.py)
    labels = service.manifest["labels"]
    prediction = result.prediction
    timings = {"preprocess_ms": round(preprocess_ms, 3), "queue_ms": round(result.queue_ms, 3),
               "inference_ms": round(prediction.inference_ms, 3), "batch_size": result.batch_size}
    return {
        "model": name,
        "output_kind": service.manifest["output"]["kind"],
        "predictions": [
            {"top_k": best_classes(probabilities, labels, k),
             "logits": outputs.tolist() if with_logits else None,
             "timings": timings}
            for outputs, probabilities in zip(prediction.outputs, prediction.probabilities)
        ],
    }


