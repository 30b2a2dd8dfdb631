"""POST /api/models/{name}/detect: objects in an image, found by a converted detector.

The image comes as for predict: a multipart ``file`` (decoded and resized to the model's
input as its manifest says) or one preprocessed tensor as JSON ``instances``. The
detector's raw boxes and scores go through the same post-processing as in the page
(app/inference/detection.py); ``score_threshold``, ``iou_threshold`` and ``max_boxes``
(query string or body, the body wins) default to the manifest's.
"""
from __future__ import annotations

import time

from fastapi import APIRouter, Query, Request

from app.api.deps import DetectorDep, SettingsDep
from app.api.inputs import BadRequest, option, read_model_input
from app.api.schemas import DETECT_REQUEST_BODY, DetectResponse, ErrorResponse
from app.inference.detection import postprocess

router = APIRouter(prefix="/api", tags=["detect"])

ERRORS = {status: {"model": ErrorResponse} for status in (400, 404, 413, 415, 422)}
OPTIONS = ("score_threshold", "iou_threshold", "max_boxes")


def _fraction(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1


@router.post("/models/{name}/detect", response_model=DetectResponse, responses=ERRORS,
             openapi_extra={"requestBody": DETECT_REQUEST_BODY})
async def detect(name: str, request: Request, detector: DetectorDep, settings: SettingsDep,
                 score_threshold: float | None = Query(None, ge=0, le=1, description="drop weaker boxes "
                                                       "(default: the manifest's, 0.5)"),
                 iou_threshold: float | None = Query(None, ge=0, le=1, description="non-max suppression "
                                                     "overlap (default: the manifest's, 0.5)"),
                 max_boxes: int | None = Query(None, ge=1, le=100, description="at most this many boxes "
                                               "(default: the manifest's, 20)")):
    """Detect objects in one image (multipart ``file``) or one preprocessed tensor (JSON ``instances``)."""
    manifest = detector.manifest
    received = await read_model_input(request, manifest, settings, OPTIONS)
    if len(received.images) != 1:
        raise BadRequest(422, f"detect takes one image; the request holds {len(received.images)}")
    defaults = manifest["postprocessing"]
    opts = received.options
    score = option(opts, "score_threshold", score_threshold, float, _fraction, "a number from 0 to 1")
    iou = option(opts, "iou_threshold", iou_threshold, float, _fraction, "a number from 0 to 1")
    most = option(opts, "max_boxes", max_boxes, int, lambda v: 1 <= v <= 100, "an integer from 1 to 100")
    height, width = received.picture_size or tuple(manifest["input"]["shape"][1:3])  # a tensor: its own size
    raw = await detector.run(received.images[0])
    start = time.perf_counter()
    found = postprocess(raw, manifest["labels"], manifest["class_ids"], width, height,
                        defaults["score_threshold"] if score is None else score,
                        defaults["iou_threshold"] if iou is None else iou,
                        defaults["max_boxes"] if most is None else most)
    return {
        "model": name,
        "image": {"width": width, "height": height},
        "detections": found,
        "timings": {"preprocess_ms": round(received.preprocess_ms, 3), "inference_ms": round(raw.inference_ms, 3),
                    "postprocess_ms": round((time.perf_counter() - start) * 1000, 3)},
    }

