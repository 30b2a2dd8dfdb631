"""The server's loaded models: one Classifier + Batcher (+ Explainer) per classification model, loaded
once (at start-up for the models present then, on first use for models converted later)
and reloaded when the model's manifest changes."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

from app.inference.batching import Batcher
from app.inference.classifier import Classifier
from app.inference.detection import Detector
from app.inference.explainer import Explainer
from app.registry import ModelInfo, Registry
from app.settings import Settings


@dataclass
class ModelService:
    info: ModelInfo
    classifier: Classifier
    batcher: Batcher
    explainer: Explainer


class Services:
    def __init__(self, registry: Registry, settings: Settings):
        self.registry = registry
        self.settings = settings
        self._loaded: dict[str, ModelService] = {}
        self._detectors: dict[str, Detector] = {}
        self._lock = asyncio.Lock()

    def _make(self, info: ModelInfo) -> ModelService:
        classifier = Classifier(info)
        s = self.settings
        batcher = Batcher(classifier.predict, max_batch=s.batch_max if s.batching else 1,
                          max_wait_ms=s.batch_wait_ms, max_queue=s.queue_max)
        return ModelService(info, classifier, batcher, Explainer(classifier))

    def load_all(self) -> None:
        """Load every classifier now (start-up), so the first request does not pay for it."""
        for info in self.registry.all().values():
            if info.task == "classification" and "saved" in info.manifest["formats"]:
                self._loaded[info.name] = self._make(info)
            elif info.task == "detection" and "saved" in info.manifest["formats"]:
                self._detectors[info.name] = Detector(info)

    async def get(self, name: str) -> ModelService | None:
        """The service for ``name``; None when there is no such classifier with a SavedModel."""
        info = self.registry.get(name)
        if info is None or info.task != "classification" or "saved" not in info.manifest["formats"]:
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

    async def detector(self, name: str) -> Detector | None:
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
        return detector

    async def close(self) -> None:
        for service in self._loaded.values():
            await service.batcher.close()
