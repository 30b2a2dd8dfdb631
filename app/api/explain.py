"""Explanations on the server, to check the page's against:

- ``GET  /api/models/{name}/layers``: the layers Grad-CAM can use, with their output shapes;
- ``POST /api/models/{name}/explain``: a heatmap of where the model looked for a class,
  by Grad-CAM (gradients of the class score w.r.t. a layer's activations, with
  tf.GradientTape on the layers model's weights) or by occlusion (the drop of the class
  probability under a sliding grey patch).

The image comes as for predict: a multipart ``file`` or one preprocessed tensor as JSON
``instances``. Options (query string or body, the body wins): ``method``, ``class_index``
(default: the model's top-1), ``layer`` (Grad-CAM; default the last layer with a spatial
output), ``patch`` and ``stride`` (occlusion), ``format`` (``json``, or ``png`` for the
overlay picture alone).
"""
from __future__ import annotations

import asyncio
import base64
import time

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.api.deps import ClassifierDep, SettingsDep
from app.api.inputs import BadRequest, option, read_model_input
from app.api.schemas import EXPLAIN_REQUEST_BODY, ErrorResponse, ExplainResponse, LayerInfo
from app.inference import heatmap_image, occlusion
from app.inference.explainer import ExplainError

router = APIRouter(prefix="/api", tags=["explain"])

ERRORS = {status: {"model": ErrorResponse} for status in (400, 404, 413, 415, 422)}
METHODS = ("gradcam", "occlusion")
FORMATS = ("json", "png")
OPTIONS = ("method", "class_index", "layer", "patch", "stride", "format")


@router.get("/models/{name}/layers", response_model=list[LayerInfo], responses=ERRORS)
async def layers(name: str, service: ClassifierDep):
    """The layers Grad-CAM can take a heatmap from (every layer with an [h, w, channels]
    output), in model order; the last one is the default."""
    try:
        found = await service.layers()
    except ExplainError as exc:
        raise BadRequest(422, str(exc)) from exc
    return [{"name": n, "class_name": c, "shape": s} for n, c, s in found]


@router.post("/models/{name}/explain", response_model=ExplainResponse,
             responses={**ERRORS, 200: {"description": "the explanation (JSON), or with format=png the overlay "
                                                       "picture alone",
                                        "content": {"image/png": {"schema": {"type": "string",
                                                                             "format": "binary"}}}}},
             openapi_extra={"requestBody": EXPLAIN_REQUEST_BODY})
async def explain(name: str, request: Request, service: ClassifierDep, settings: SettingsDep,
                  method: str = Query("gradcam", description="gradcam or occlusion"),
                  class_index: int | None = Query(None, ge=0, description="the class to explain; "
                                                  "default the top-1"),
                  layer: str | None = Query(None, description="Grad-CAM: the layer to split at; default "
                                            "the last layer with a spatial output"),
                  patch: int | None = Query(None, ge=1, description="occlusion: the grey square's side "
                                            "in input pixels (default 1/7 of the input)"),
                  stride: int | None = Query(None, ge=1, description="occlusion: its step (default "
                                             "half the patch)"),
                  format: str = Query("json", description="json, or png for the overlay picture alone")):
    """Explain one image (multipart ``file``) or one preprocessed tensor (JSON ``instances``)."""
    manifest = service.manifest
    received = await read_model_input(request, manifest, settings, OPTIONS)
    if len(received.images) != 1:
        raise BadRequest(422, f"explain takes one image; the request holds {len(received.images)}")
    image = received.images[0]
    opts = received.options
    height, width = image.shape[:2]
    num_classes = len(manifest["labels"])
    method = _valid(option(opts, "method", method, str, _any, "a string"), lambda v: v in METHODS,
                    "method must be gradcam or occlusion")
    fmt = _valid(option(opts, "format", format, str, _any, "a string"), lambda v: v in FORMATS,
                 "format must be json or png")
    class_index = _valid(option(opts, "class_index", class_index, int, _any, "an integer"),
                         lambda v: v is None or 0 <= v < num_classes,
                         f"class_index must be from 0 to {num_classes - 1} (the model has {num_classes} classes)")
    layer = _valid(option(opts, "layer", layer, str, _any, "a string"), lambda v: v is None or v != "",
                   "layer must be a layer name (GET /api/models/{name}/layers lists them)")
    patch = _valid(option(opts, "patch", patch, int, _any, "an integer"), lambda v: v is None or v >= 1,
                   "patch must be a positive integer")
    stride = _valid(option(opts, "stride", stride, int, _any, "an integer"), lambda v: v is None or v >= 1,
                    "stride must be a positive integer")
    patch = patch or occlusion.default_params(height, width)[0]
    stride = stride or max(1, patch // 2)  # half the patch, as by default

    if class_index is None:  # the top-1, as the page's default
        class_index = await service.top1(image)
    start = time.perf_counter()
    try:
        if method == "gradcam":
            layer, result = await service.gradcam(image, class_index, layer)
        else:
            result = await service.occlusion(image, class_index, patch, stride)
    except ExplainError as exc:
        raise BadRequest(422, str(exc)) from exc
    total_ms = (time.perf_counter() - start) * 1000

    pixels = heatmap_image.input_pixels(image, manifest["preprocessing"])
    overlay = await asyncio.to_thread(heatmap_image.overlay_png, pixels, result.heatmap)
    if fmt == "png":
        return Response(overlay, media_type="image/png")
    body = {
        "model": name,
        "method": method,
        "class_index": class_index,
        "label": manifest["labels"][class_index],
        "probability": float(result.probabilities[class_index]),
        "heatmap": result.heatmap.tolist(),
        "heatmap_shape": list(result.heatmap.shape),
        "overlay_png": base64.b64encode(overlay).decode(),
        "timings": {"preprocess_ms": round(received.preprocess_ms, 3), "explain_ms": round(result.explain_ms, 3),
                    "total_ms": round(total_ms, 3)},
    }
    if method == "gradcam":
        body["gradcam"] = {"layer": layer, "score_kind": service.score_kind,
                           "score": float(result.outputs[class_index])}
    else:
        occluded = result.occlusion
        body["occlusion"] = {"patch": patch, "stride": stride, "rows": occluded.rows, "cols": occluded.cols,
                             "drops": occluded.drops.tolist(), "baseline_probability": occluded.baseline}
    return body


def _any(value) -> bool:
    return True


def _valid(value, valid, message: str):
    """``value`` when ``valid(value)``, else a 422 with ``message``."""
    if not valid(value):
        raise BadRequest(422, message)
    return value
