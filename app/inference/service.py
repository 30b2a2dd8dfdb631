"""The server's loaded models: one Classifier + Batcher (+ Explainer) per classification model, loaded
once (at start-up for the models present then, on first use for models converted later)
and reloaded when the model's manifest changes.

The API routes talk to a model only through the methods of app/inference/engine.py's
protocols (Engine, Classifier, Detector), which Services, ModelService and DetectorService
implement here; app/ray_engine.py implements them on Ray Serve deployments (``belka serve
--engine ray``), so both engines answer every request the same way."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from app.inference.batching import Batcher, BatchResult
from app.inference import classifier as classifiers
from app.inference import engine
from app.inference.detection import Detector, RawDetections
from app.inference.explainer import Explainer, Explanation
from app.registry import ModelInfo, Registry
from app.settings import Settings


@dataclass
class ModelService(engine.Classifier):
    """One classifier in this process: requests are batched by our Batcher, explanations run
    on a thread (one at a time per model, see Explainer)."""
    info: ModelInfo
    classifier: classifiers.Classifier | classifiers.OnnxClassifier
    batcher: Batcher
    explainer: Explainer

    @property
    def manifest(self) -> dict:
        return self.classifier.manifest

    @property
    def max_queue(self) -> int:
        """The most images one request may hold (more could never be queued)."""
        return self.batcher.max_queue

    @property
    def score_kind(self) -> str:
        return self.explainer.score_kind

    def incoming(self):
        """Marks a request as being received, so a batch about to run may wait for it."""
        return self.batcher.incoming()

    async def predict(self, images: np.ndarray) -> BatchResult:
        """The model's outputs for images [N, H, W, 3]; QueueFull when too many are waiting."""
        return await self.batcher.submit(images)

    async def top1(self, image: np.ndarray) -> int:
        prediction = await asyncio.to_thread(self.classifier.predict, image[None])
        return int(prediction.outputs[0].argmax())

    async def layers(self) -> list[tuple[str, str, list[int]]]:
        return await asyncio.to_thread(self.explainer.layers)

    async def gradcam(self, image: np.ndarray, class_index: int, layer: str | None) -> tuple[str, Explanation]:
        return await asyncio.to_thread(self.explainer.gradcam, image, class_index, layer)

    async def occlusion(self, image: np.ndarray, class_index: int, patch: int, stride: int) -> Explanation:
        return await asyncio.to_thread(self.explainer.occlusion, image, class_index, patch, stride)


@dataclass
class DetectorService(engine.Detector):
    """One detector in this process."""
    detector: Detector

    @property
    def manifest(self) -> dict:
        return self.detector.manifest

    async def run(self, image: np.ndarray) -> RawDetections:
        return await asyncio.to_thread(self.detector.run, image)


class Services(engine.Engine):
    """The models in this process (the uvicorn engine, `belka serve`)."""

    def __init__(self, registry: Registry, settings: Settings):
        self.registry = registry
        self.settings = settings
        self._loaded: dict[str, ModelService] = {}
        self._detectors: dict[str, Detector] = {}
        self._lock = asyncio.Lock()

    def _make(self, info: ModelInfo) -> ModelService:
        classifier = classifiers.load(info)
        s = self.settings
        batcher = Batcher(classifier.predict, max_batch=s.batch_max if s.batching else 1,
                          max_wait_ms=s.batch_wait_ms, max_queue=s.queue_max)
        return ModelService(info, classifier, batcher, Explainer(classifier))

    def load_all(self) -> None:
        """Load every model now (start-up), so the first request does not pay for it."""
        for name in self.registry.all():
            self.load(name)

    def load(self, name: str) -> None:
        """Load one model now, if it is a classifier (a SavedModel or an ONNX model) or a detector
        with a SavedModel."""
        info = self.registry.get(name)
        if info is None or not classifiers.runnable(info):
            return
        if info.task == "classification":
            self._loaded[info.name] = self._make(info)
        elif info.task == "detection" and "saved" in info.manifest["formats"]:
            self._detectors[info.name] = Detector(info)

    async def get(self, name: str) -> ModelService | None:
        """The service for ``name``; None when there is no such classifier the server can run."""
        info = self.registry.get(name)
        if info is None or info.task != "classification" or not classifiers.runnable(info):
            return None
        service = self._loaded.get(name)
        if service is not None and service.info.manifest is info.manifest:
            return service
        async with self._lock:
            service = self._loaded.get(name)
            if service is None or service.info.manifest is not info.manifest:
                old = service
                service = await asyncio.to_thread(self._make, info)
                self._loaded[name] = service
                if old is not None:
                    await old.batcher.close()
        return service

    async def detector(self, name: str) -> DetectorService | None:
        """The detector ``name`` (loaded again when its manifest changed); None when there is no
        such detector with a SavedModel."""
        info = self.registry.get(name)
        if info is None or info.task != "detection" or "saved" not in info.manifest["formats"]:
            return None
        detector = self._detectors.get(name)
        if detector is None or detector.manifest is not info.manifest:
            async with self._lock:
                detector = self._detectors.get(name)
                if detector is None or detector.manifest is not info.manifest:
                    detector = await asyncio.to_thread(Detector, info)
                    self._detectors[name] = detector
        return DetectorService(detector)

    async def close(self) -> None:
        for service in self._loaded.values():
            await service.batcher.close()
