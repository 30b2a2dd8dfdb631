"""What the API routes need from an engine, the thing that runs the models: ``Engine`` and the
two kinds of model it hands out, ``Classifier`` and ``Detector``.

Two engines implement it: app/inference/service.py's ``Services`` (this process: our Batcher,
TensorFlow on threads) and app/ray_engine.py's ``RayServices`` (`belka serve --engine ray`: each
model in its own Ray Serve replicas). The routes (app/api/) see only these methods, through
app/api/deps.py, so both engines answer every request the same way; tests/unit/test_engine.py
checks that both have them, with the same parameters.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

import numpy as np

from app.inference.batching import BatchResult
from app.inference.detection import RawDetections
from app.inference.explainer import Explanation
from app.registry import Registry
from app.settings import Settings


class Classifier(Protocol):
    """One classification model, ready to run."""

    max_queue: int  # the most images one request may hold (more could never be queued)

    @property
    def manifest(self) -> dict:
        """The model's manifest.json (labels, input, preprocessing, output kind)."""
        ...

    @property
    def score_kind(self) -> str:
        """What Grad-CAM differentiates: "logit" or "probability" (the model's last outputs)."""
        ...

    def incoming(self) -> AbstractContextManager:
        """Marks a request as being received, so a batch about to run may wait for it."""
        ...

    async def predict(self, images: np.ndarray) -> BatchResult:
        """The model's outputs for images [N, H, W, 3]; QueueFull when too many are waiting."""
        ...

    async def top1(self, image: np.ndarray) -> int:
        """The index of the best class for one image [H, W, 3]."""
        ...

    async def layers(self) -> list[tuple[str, str, list[int]]]:
        """(name, class name, output shape) of each layer Grad-CAM can use; ExplainError when none."""
        ...

    async def gradcam(self, image: np.ndarray, class_index: int, layer: str | None) -> tuple[str, Explanation]:
        """Grad-CAM of ``class_index`` at ``layer`` (None: the last spatial one): (the layer, the heatmap)."""
        ...

    async def occlusion(self, image: np.ndarray, class_index: int, patch: int, stride: int) -> Explanation:
        """The drop of ``class_index``'s probability under a grey patch slid with ``stride``."""
        ...


class Detector(Protocol):
    """One detection model, ready to run."""

    @property
    def manifest(self) -> dict:
        """The model's manifest.json (labels, class ids, input, post-processing defaults)."""
        ...

    async def run(self, image: np.ndarray) -> RawDetections:
        """The raw boxes and scores for one image [H, W, 3], before non-max suppression."""
        ...


class Engine(Protocol):
    """The models of one server: what create_app's ``engine`` makes from the registry and settings."""

    registry: Registry
    settings: Settings

    def load_all(self) -> None:
        """Gets every model ready at start-up, so the first request does not pay for it."""
        ...

    async def get(self, name: str) -> Classifier | None:
        """The classifier ``name``, reloaded when its manifest changed; None when there is none."""
        ...

    async def detector(self, name: str) -> Detector | None:
        """The detector ``name``, reloaded when its manifest changed; None when there is none."""
        ...

    async def close(self) -> None:
        """Stops what the engine runs (batchers, connections) when the server stops."""
        ...
