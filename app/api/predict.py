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

import asyncio
import json
import math
import time

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Request
from starlette.datastructures import UploadFile

from app.api.schemas import PREDICT_REQUEST_BODY, ErrorResponse, PredictResponse
from app.inference.batching import QueueFull
from app.inference.classifier import top_k as best_classes
from app.inference.preprocess import ImageError, preprocess_bytes

router = APIRouter(prefix="/api", tags=["predict"])

ERRORS = {status: {"model": ErrorResponse} for status in (400, 404, 413, 415, 422, 503)}


class BadRequest(HTTPException):
    """A 4xx with a message for the client."""


@router.post("/models/{name}/predict", response_model=PredictResponse, responses=ERRORS,
             openapi_extra={"requestBody": PREDICT_REQUEST_BODY})
async def predict(name: str, request: Request,
                  top_k: int = Query(5, ge=1, le=1000, description="how many classes to return"),
                  include_logits: bool = Query(False, description="also return the raw outputs")):
    """Classify one image (multipart ``file``) or a batch of preprocessed ``instances`` (JSON)."""
    service = await request.app.state.services.get(name)
    if service is None:
        raise HTTPException(404, f"no classification model named {name!r}; GET /api/models lists them")
    settings = request.app.state.settings
    _check_declared_size(request, settings.max_upload_bytes)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    with service.batcher.incoming():  # the batcher may wait a few ms for this request
        if content_type == "multipart/form-data":
            images, preprocess_ms, options = await _from_upload(request, service.classifier.manifest, settings)
        elif content_type == "application/json":
            images, options = await _from_json(request, service.classifier.input_shape, settings.max_upload_bytes)
            preprocess_ms = 0.0
        else:
            raise BadRequest(415, "send multipart/form-data with a 'file' field, or application/json with "
                                  "'instances'")
    k = _option(options, "top_k", top_k, int, lambda v: 1 <= v <= 1000, "an integer from 1 to 1000")
    with_logits = _option(options, "include_logits", include_logits, bool, lambda v: True, "true or false")

    if len(images) > service.batcher.max_queue:  # could never fit: "retry later" would be a lie
        raise BadRequest(413, f"{len(images)} instances in one request; the limit is "
                              f"{service.batcher.max_queue}")
    try:
        result = await service.batcher.submit(images)
    except QueueFull as exc:
        raise HTTPException(503, f"the server is busy: {exc}; retry in a second",
                            headers={"Retry-After": "1"}) from exc
    labels = service.classifier.labels
    prediction = result.prediction
    timings = {"preprocess_ms": round(preprocess_ms, 3), "queue_ms": round(result.queue_ms, 3),
               "inference_ms": round(prediction.inference_ms, 3), "batch_size": result.batch_size}
    return {
        "model": name,
        "output_kind": service.classifier.manifest["output"]["kind"],
        "predictions": [
            {"top_k": best_classes(probabilities, labels, k),
             "logits": outputs.tolist() if with_logits else None,
             "timings": timings}
            for outputs, probabilities in zip(prediction.outputs, prediction.probabilities)
        ],
    }


def _check_declared_size(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdecimal() and int(declared) > limit + 64 * 1024:
        raise BadRequest(413, f"the request is {_size(int(declared))}; the limit is {_size(limit)}")


async def _from_upload(request: Request, manifest: dict, settings):
    try:
        form = await request.form(max_files=1, max_fields=8)
    except HTTPException:
        raise
    except Exception as exc:  # noqa: BLE001 - malformed multipart bodies
        raise BadRequest(400, f"malformed multipart body: {exc}") from exc
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise BadRequest(422, "the multipart body needs a 'file' field holding the image")
    data = await upload.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise BadRequest(413, f"the file is over the {_size(settings.max_upload_bytes)} limit")
    start = time.perf_counter()
    try:
        images = await asyncio.to_thread(preprocess_bytes, data, manifest["preprocessing"], settings.max_pixels)
    except ImageError as exc:
        raise BadRequest(exc.status, str(exc)) from exc
    options = {k: v for k, v in form.items() if k in ("top_k", "include_logits") and isinstance(v, str)}
    return images, (time.perf_counter() - start) * 1000, options


async def _from_json(request: Request, input_shape: tuple, limit: int):
    body = await request.body()
    if len(body) > limit:
        raise BadRequest(413, f"the request is over the {_size(limit)} limit")
    if not body:
        raise BadRequest(400, "the request body is empty")
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:  # also too deep, or an integer of over 4300 digits
        raise BadRequest(400, f"the body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict) or "instances" not in payload:
        raise BadRequest(422, 'expected a JSON object {"instances": [...]}')
    instances = payload["instances"]
    expected = [len(instances) if isinstance(instances, list) else "N", *input_shape]
    if not isinstance(instances, list) or not instances:
        raise BadRequest(422, f"'instances' must be a non-empty list of inputs shaped {list(input_shape)}")
    try:
        array = np.asarray(instances)
    except ValueError as exc:  # ragged nesting
        raise BadRequest(422, f"'instances' is not a regular array; expected shape {expected}") from exc
    if array.dtype.kind not in "iuf" or _holds_booleans(instances, array.ndim):
        raise BadRequest(422, "'instances' must hold numbers only (no strings, booleans or nulls)")
    if array.shape[1:] != tuple(input_shape):
        raise BadRequest(422, f"'instances' has shape {list(array.shape)}; the model takes {expected}")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise BadRequest(422, "'instances' holds NaN or infinite values")
    return array, {k: payload[k] for k in ("top_k", "include_logits") if k in payload}


def _holds_booleans(instances: list, ndim: int) -> bool:
    """JSON true/false among numbers: numpy would silently read them as 1 and 0."""
    values = instances
    for _ in range(ndim - 1):
        values = [value for row in values for value in row]
    return any(isinstance(value, bool) for value in values)


def _option(options: dict, key: str, default, kind, valid, wanted: str):
    """``key`` from the body when given there (JSON value or form string), else ``default``."""
    if key not in options:
        return default
    value = options[key]
    if isinstance(value, str):
        text = value.strip().lower()
        if kind is bool and text in ("true", "1", "false", "0"):
            value = text in ("true", "1")
        elif kind is int:
            try:
                value = int(text)
            except ValueError:  # "x", "--5", "²" (str.isdigit() accepts it, int() does not)
                pass
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        value = None
    if kind is bool and not isinstance(value, bool):
        value = None
    if value is None or (isinstance(value, float) and math.isnan(value)) or not valid(value):
        raise BadRequest(422, f"{key} must be {wanted}")
    return value


def _size(n: int) -> str:
    """Bytes for people: 10 MiB, 40 KiB, 512 bytes."""
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"
