"""A converted classifier on the server: its SavedModel, loaded once, and its manifest."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from app import tf_runtime
from app.registry import ModelInfo


@dataclass
class Prediction:
    outputs: np.ndarray          # the model's raw output rows (logits or probabilities)
    probabilities: np.ndarray    # softmax of the logits (or the outputs themselves)
    inference_ms: float          # the model call, shared by every image of the batch


class Classifier:
    """Runs ``saved_model/`` (float32 images [N, H, W, 3] in, [N, classes] out)."""

    def __init__(self, info: ModelInfo):
        tf = tf_runtime.tensorflow()
        self.info = info
        self.manifest = info.manifest
        signature = self.manifest["signature"]
        loaded = tf.saved_model.load(str(info.path / "saved_model"))
        self._loaded = loaded  # keeps the variables alive
        self._fn = loaded.signatures["serving_default"]
        self._input, self._output = signature["input"], signature["output"]
        self.input_shape = tuple(self.manifest["input"]["shape"][1:])
        self.is_logits = self.manifest["output"]["kind"] == "logits"
        self._tf = tf

    def signature(self, name: str):
        """Another signature of the SavedModel (e.g. ``belka_gradcam``), or None."""
        return self._loaded.signatures.get(name)

    @property
    def labels(self) -> list[str]:
        return self.manifest["labels"]

    def predict(self, batch: np.ndarray) -> Prediction:
        """One model call for the whole batch (thread-safe: TF functions may run concurrently)."""
        start = time.perf_counter()
        outputs = self._fn(**{self._input: self._tf.constant(batch, dtype=self._tf.float32)})[self._output].numpy()
        inference_ms = (time.perf_counter() - start) * 1000
        return Prediction(outputs, softmax(outputs) if self.is_logits else outputs, inference_ms)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def top_k(probabilities: np.ndarray, labels: list[str], k: int) -> list[dict]:
    """The k most probable classes, most probable first (ties: lower index first)."""
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [{"index": int(i), "label": labels[i], "probability": float(probabilities[i])} for i in order]
