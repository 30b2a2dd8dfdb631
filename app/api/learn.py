"""The /learn pages' server side (issue 15): the same arithmetic as the browser, in Python
(app/learn.py), so each page can show how far its numbers are from TensorFlow's and numpy's.

- ``POST /api/learn/line``: the exact least-squares line through points;
- ``POST /api/learn/convolve``: a kernel over an image with TensorFlow;
- ``POST /api/learn/pca``: principal components of feature rows with numpy.
"""
from __future__ import annotations

import asyncio
import time
from typing import Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from app import learn
from app.api.schemas import ErrorResponse

router = APIRouter(prefix="/api/learn", tags=["learn"])
ERRORS = {422: {"model": ErrorResponse}}


class LineRequest(BaseModel):
    x: list[float] = Field(description="the points' x values", examples=[[0, 1, 2, 3]])
    y: list[float] = Field(description="their y values, as many", examples=[[1.1, 2.9, 5.2, 6.8]])


class LineResponse(BaseModel):
    a: float = Field(description="slope of the best line")
    b: float = Field(description="its intercept")
    loss: float = Field(description="its mean squared error over the points: the least any line gets")
    n: int
    method: str


class Image(BaseModel):
    shape: list[int] = Field(description="[height, width, channels], channels 1 or 3", examples=[[2, 2, 1]])
    data: list[float] = Field(description="the pixel values row by row (the pages send 0..1)",
                              examples=[[0, 0.5, 0.5, 1]])


class ConvolveRequest(BaseModel):
    image: Image
    kernel: list[list[float]] = Field(description="a square grid, 1x1 to 9x9", examples=[[[0, 1, 0], [1, -4, 1], [0, 1, 0]]])
    stride: int = 1
    padding: Literal["same", "valid"] = "same"
    mode: Literal["grayscale", "per-channel"] = Field(
        "grayscale", description="grayscale: RGB to gray first (0.2989 R + 0.587 G + 0.114 B), then conv2d; "
                                 "per-channel: the kernel on each channel (depthwise_conv2d)")


class ConvolveResponse(BaseModel):
    shape: list[int]
    data: list[float]
    ms: float
    method: str


class PcaRequest(BaseModel):
    features: list[list[float]] = Field(description="one row of features per picture", examples=[[[1, 2], [3, 4], [5, 7]]])
    components: int = 2


class PcaResponse(BaseModel):
    mean: list[float]
    components: list[list[float]] = Field(description="unit rows; each one's sign is arbitrary")
    explained_variance: list[float]
    explained_variance_ratio: list[float]
    total_variance: float
    projected: list[list[float]]
    method: str


def _run(function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except learn.LearnError as exc:
        raise HTTPException(422, str(exc)) from exc


@router.post("/line", response_model=LineResponse, responses=ERRORS)
def line(body: LineRequest):
    """The line y = a x + b with the least mean squared error over the points, exactly (numpy lstsq)."""
    return {**_run(learn.least_squares, body.x, body.y), "method": "numpy.linalg.lstsq"}


@router.post("/convolve", response_model=ConvolveResponse, responses=ERRORS)
async def convolve(body: ConvolveRequest):
    """A kernel over an image with TensorFlow: tf.nn.conv2d (grayscale) or tf.nn.depthwise_conv2d (per channel)."""
    start = time.perf_counter()
    result = await asyncio.to_thread(_run, learn.convolve, body.image.data, body.image.shape, body.kernel,
                                     body.stride, body.padding, body.mode)
    method = "tf.nn.conv2d" if body.mode == "grayscale" else "tf.nn.depthwise_conv2d"
    return {**result, "ms": round((time.perf_counter() - start) * 1000, 3), "method": method}


@router.post("/pca", response_model=PcaResponse, responses=ERRORS)
def pca(body: PcaRequest):
    """Principal components of the rows (centred, numpy SVD in float64)."""
    return {**_run(learn.pca, body.features, body.components), "method": "numpy.linalg.svd"}
