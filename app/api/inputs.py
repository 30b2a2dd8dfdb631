"""Reading a model input from a request, shared by predict and explain.

Four request forms:
- ``multipart/form-data`` with ``file``: the server decodes and preprocesses the
  image as the manifest says (app/inference/preprocess.py);
- ``application/json`` ``{"instances": [[H][W][3] numbers, ...]}``: inputs that are
  already preprocessed, e.g. exactly what the browser fed its model;
- ``application/octet-stream``: the same tensor as raw little-endian float32 values
  (``Float32Array`` bytes in JS, ``array.astype('<f4').tobytes()`` in numpy), shaped by
  the ``X-Shape`` header (``1,224,224,3``; without it: N images of the model's size);
- ``application/x-npy``: the same tensor as a ``.npy`` file (``numpy.save``), [N, H, W, 3]
  or one [H, W, 3], any numeric dtype.
The binary forms cost a fraction of JSON's parsing (150k floats: a few ms against ~100).

Options (``top_k``, ``class_index``...) may also come in the body: form fields or JSON
keys, next to the image (binary bodies take them from the query string only).
``option()`` reads one, with the query value as the default.
Bad input raises BadRequest (a 4xx with a message for the client), never a 500.
"""
from __future__ import annotations

import asyncio
import io
import json
import math
import time
from dataclasses import dataclass, field

import numpy as np
from fastapi import HTTPException, Request
from starlette.datastructures import UploadFile

from app.inference.preprocess import ImageError, decode, from_model_layout, to_model_input


class BadRequest(HTTPException):
    """A 4xx with a message for the client."""


@dataclass
class ModelInput:
    images: np.ndarray                 # float32 [N, H, W, 3] (tensors sent NCHW are turned so)
    preprocess_ms: float               # 0 for tensors sent as instances
    options: dict = field(default_factory=dict)  # option values found in the body
    picture_size: tuple[int, int] | None = None  # an upload's (height, width), upright


async def read_model_input(request: Request, manifest: dict, settings, option_names: tuple[str, ...]) -> ModelInput:
    """The request's images (multipart file or JSON instances) and the body's options."""
    check_declared_size(request, settings.max_upload_bytes)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        return await _from_upload(request, manifest, settings, option_names)
    input_shape = tuple(manifest["input"]["shape"][1:])  # the model's own layout (NCHW for PyTorch)
    layout = manifest["input"].get("layout")
    if content_type == "application/json":
        found = await _from_json(request, input_shape, settings.max_upload_bytes, option_names)
        found.images = from_model_layout(found.images, layout)
        return found
    if content_type in BINARY_TYPES:
        body = await _body(request, settings.max_upload_bytes)
        if content_type == "application/octet-stream":
            array = _from_float32_bytes(body, request.headers.get("x-shape"), input_shape)
        else:
            array = _from_npy(body, input_shape)
        return ModelInput(from_model_layout(checked_tensor(array, input_shape, "the tensor"), layout), 0.0)
    raise BadRequest(415, "send multipart/form-data with a 'file' field, application/json with 'instances', "
                          "or a float32 tensor as application/octet-stream (X-Shape header) or application/x-npy")


BINARY_TYPES = ("application/octet-stream", "application/x-npy")


def check_declared_size(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdecimal() and int(declared) > limit + 64 * 1024:
        raise BadRequest(413, f"the request is {size_text(int(declared))}; the limit is {size_text(limit)}")


async def _from_upload(request: Request, manifest: dict, settings, option_names) -> ModelInput:
    try:
        form = await request.form(max_files=1, max_fields=16)
    except HTTPException:
        raise
    except Exception as exc:  # noqa: BLE001 - malformed multipart bodies
        raise BadRequest(400, f"malformed multipart body: {exc}") from exc
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise BadRequest(422, "the multipart body needs a 'file' field holding the image")
    data = await upload.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise BadRequest(413, f"the file is over the {size_text(settings.max_upload_bytes)} limit")
    start = time.perf_counter()
    try:
        picture = await asyncio.to_thread(decode, data, settings.max_pixels)
        images = await asyncio.to_thread(to_model_input, picture, manifest["preprocessing"])
    except ImageError as exc:
        raise BadRequest(exc.status, str(exc)) from exc
    options = {k: v for k, v in form.items() if k in option_names and isinstance(v, str)}
    return ModelInput(images, (time.perf_counter() - start) * 1000, options, (picture.height, picture.width))


async def _body(request: Request, limit: int) -> bytes:
    body = await request.body()
    if len(body) > limit:
        raise BadRequest(413, f"the request is over the {size_text(limit)} limit")
    if not body:
        raise BadRequest(400, "the request body is empty")
    return body


async def _from_json(request: Request, input_shape: tuple, limit: int, option_names) -> ModelInput:
    body = await _body(request, limit)
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
    array = checked_tensor(array, input_shape, "'instances'")
    return ModelInput(array, 0.0, {k: payload[k] for k in option_names if k in payload})


def checked_tensor(array: np.ndarray, input_shape: tuple, what: str) -> np.ndarray:
    """``array`` as float32 [N, *input_shape], N >= 1, finite; BadRequest (422) otherwise."""
    if array.ndim == len(input_shape) + 1 and array.shape[0] == 0:
        raise BadRequest(422, f"{what} holds no inputs; each must be shaped {list(input_shape)}")
    if array.shape[1:] != tuple(input_shape):
        expected = [array.shape[0] if array.ndim else "N", *input_shape]
        raise BadRequest(422, f"{what} has shape {list(array.shape)}; the model takes {expected}")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise BadRequest(422, f"{what} holds NaN or infinite values")
    return array


def _from_float32_bytes(body: bytes, shape_header: str | None, input_shape: tuple) -> np.ndarray:
    """Raw little-endian float32 values, shaped by ``X-Shape`` ("N,H,W,C") or the model's input."""
    per_image = int(np.prod(input_shape)) * 4
    if len(body) % 4:
        raise BadRequest(422, f"the body is {len(body)} bytes, not a whole number of float32 values (4 bytes each)")
    if shape_header is None:
        if len(body) % per_image:
            raise BadRequest(422, f"the body holds {len(body) // 4} float32 values, not a whole number of "
                                  f"inputs shaped {list(input_shape)}; send the X-Shape header (e.g. "
                                  f"{','.join(map(str, (1, *input_shape)))})")
        shape = (len(body) // per_image, *input_shape)
    else:
        try:
            shape = tuple(int(part) for part in shape_header.split(","))
        except ValueError:
            shape = ()
        if not shape or any(n < 0 for n in shape):
            raise BadRequest(422, f"X-Shape must be comma-separated sizes such as "
                                  f"{','.join(map(str, (1, *input_shape)))}, not {shape_header[:40]!r}")
        if math.prod(shape) * 4 != len(body):
            raise BadRequest(422, f"X-Shape {list(shape)} needs {math.prod(shape) * 4} bytes of float32; "
                                  f"the body has {len(body)}")
    return np.frombuffer(body, dtype="<f4").reshape(shape)


def _from_npy(body: bytes, input_shape: tuple) -> np.ndarray:
    """A .npy file's array ([N, H, W, C], or one [H, W, C]); no pickles, numbers only."""
    try:
        array = np.load(io.BytesIO(body), allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - numpy raises ValueError, EOFError, OSError... on bad files
        raise BadRequest(400, f"the body is not a .npy file: {exc}") from exc
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "iuf":
        raise BadRequest(422, f"the .npy array must hold numbers (it holds {getattr(array, 'dtype', '?')})")
    if array.ndim == len(input_shape):
        array = array[None]
    return array


def _holds_booleans(instances: list, ndim: int) -> bool:
    """JSON true/false among numbers: numpy would silently read them as 1 and 0."""
    values = instances
    for _ in range(ndim - 1):
        values = [value for row in values for value in row]
    return any(isinstance(value, bool) for value in values)


def option(options: dict, key: str, default, kind, valid, wanted: str):
    """``key`` from the body when given there (JSON value or form string), else ``default``
    (the query value). ``kind`` is int, float, bool or str; ``valid`` checks the value."""
    if key not in options:
        return default
    value = options[key]
    if isinstance(value, str):
        text = value.strip()
        if kind is bool and text.lower() in ("true", "1", "false", "0"):
            value = text.lower() in ("true", "1")
        elif kind is int:
            try:
                value = int(text)
            except ValueError:  # "x", "--5", "²" (str.isdigit() accepts it, int() does not)
                pass
        elif kind is float:
            try:
                value = float(text)
            except ValueError:
                pass
        elif kind is str:
            value = text
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        value = None
    elif kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        value = None
    elif kind in (bool, str) and not isinstance(value, kind):
        value = None
    if value is None or (isinstance(value, float) and math.isnan(value)) or not valid(value):
        raise BadRequest(422, f"{key} must be {wanted}")
    return value


def size_text(n: int) -> str:
    """Bytes for people: 10 MiB, 40 KiB, 512 bytes."""
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"
