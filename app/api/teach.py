"""POST /api/models: save a classifier taught in the page (/teach) as a Belka model.

A multipart form: ``name`` (the new model's), ``base`` (the classifier whose features the head
was trained on), ``labels`` (a JSON list of class names), ``head`` (the head's TF.js
``weightSpecs``, JSON), ``weights`` (a file: their float32 values), optionally ``settings``
(the training settings, JSON, recorded in the manifest) and ``replace`` (true to replace a
model of that name). The server builds and converts the model (app/teach.py), verified like
any conversion; it is in /api/models and the pages' pickers once this answers 201.

Writes are guarded:
- ``BELKA_ALLOW_SAVES=0`` turns saving off (403);
- with ``BELKA_ADMIN_TOKEN`` set, every save needs ``Authorization: Bearer <token>`` (401
  without, 403 with another); without one, only a server listening on this machine alone
  (127.0.0.1, ::1, localhost) accepts saves;
- a request from another site's page (its ``Origin`` is not this server) is refused (403):
  a multipart POST needs no CORS preflight, so any page could send one to a local server;
- names are checked, an existing model is replaced only with ``replace=true`` (else 409), the
  head's bytes are limited (413), one save runs at a time, and a failed save leaves nothing.
"""
from __future__ import annotations

import asyncio
import hmac
import ipaddress
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from app import teach
from app.api.deps import RegistryDep, SettingsDep, info_of
from app.api.schemas import ErrorResponse
from app.registry import ModelInfo

router = APIRouter(prefix="/api", tags=["teach"])

ERRORS = {status: {"model": ErrorResponse} for status in (401, 403, 404, 409, 413, 415, 422)}
LOCAL_NAMES = {"localhost"}
_saving = asyncio.Lock()


def listens_locally(host: str) -> bool:
    if host in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def check_allowed(request: Request, settings: SettingsDep) -> None:
    """A dependency of the saving route: 403 (or 401) unless this request may save a model."""
    if not settings.allow_saves:
        raise HTTPException(403, "saving models is turned off on this server (BELKA_ALLOW_SAVES=0)")
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host"):
        raise HTTPException(403, f"a save from another site's page ({origin}) is refused")
    if settings.admin_token:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(401, "saving needs this server's admin token: send "
                                     "'Authorization: Bearer <BELKA_ADMIN_TOKEN>'",
                                headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(token.encode(), settings.admin_token.encode()):
            raise HTTPException(403, "the admin token is not this server's")
    elif not listens_locally(settings.host):
        raise HTTPException(403, f"this server listens on {settings.host}, beyond this machine: it accepts "
                                 "saves only with a token (start it with BELKA_ADMIN_TOKEN set, and send the "
                                 "token as a bearer header)")


@router.post("/models", status_code=201, responses=ERRORS, dependencies=[Depends(check_allowed)])
async def save_taught_model(request: Request, settings: SettingsDep, registry: RegistryDep):
    """Save a classifier taught in the page (a head on a converted classifier's features)."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "multipart/form-data":
        raise HTTPException(415, "send a multipart/form-data form (name, base, labels, head, weights)")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_head_bytes + (1 << 20):
        raise HTTPException(413, f"the head is over {settings.max_head_bytes // (1 << 20)} MB")
    async with request.form(max_files=1, max_fields=16) as form:
        try:
            name = teach.check_name(str(form.get("name") or ""))
            labels = teach.check_labels(teach.parse_json(form.get("labels"), "labels"))
            specs = teach.parse_json(form.get("head"), "head")
            training = teach.parse_json(form.get("settings"), "settings", default={})
            replace = str(form.get("replace") or "false").lower() in ("1", "true", "yes")
            weights = form.get("weights")
            if not isinstance(weights, UploadFile):
                raise teach.TeachError(422, "weights: send the head's weights as a file field")
            data = await weights.read(settings.max_head_bytes + 1)
            if len(data) > settings.max_head_bytes:
                raise teach.TeachError(413, f"the head is over {settings.max_head_bytes // (1 << 20)} MB")
            base_name = str(form.get("base") or "")
            base = registry.get(base_name)
            features = teach.check_base(base, base_name)
            head = teach.read_head(specs.get("weightSpecs") if isinstance(specs, dict) else specs, data,
                                   int(features["size"]), len(labels))
            if not isinstance(training, dict):
                raise teach.TeachError(422, "settings: a JSON object")
        except teach.TeachError as exc:
            raise HTTPException(exc.status, str(exc)) from exc
    async with _saving:
        if registry.get(name) is not None and not replace:
            raise HTTPException(409, f"a model {name!r} exists; send replace=true to replace it")
        try:
            summary = await asyncio.to_thread(teach.save, settings.models_dir, name, base, labels, head, training)
        except teach.TeachError as exc:
            raise HTTPException(exc.status, str(exc)) from exc
    return {"model": name, "manifest_url": f"/models/{name}/manifest.json", "base": base.name,
            "labels": labels, "verification": summary.get("verification"), "bytes": summary.get("bytes")}


@router.get("/models/{name}/download", responses={404: {"model": ErrorResponse}},
            response_class=Response)
async def download(name: str, info: Annotated[ModelInfo, Depends(info_of("classification"))]) -> Response:
    """A converted classifier as one zip, for use outside Belka: its TF.js graph and layers models,
    a Keras file made from the layers model, its labels and manifest."""
    data = await asyncio.to_thread(teach.download_zip, info)
    return Response(data, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{name}.zip"'})
