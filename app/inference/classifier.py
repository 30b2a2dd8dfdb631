"""A converted classifier on the server, loaded once with its manifest: its ONNX model in
onnxruntime (``OnnxClassifier``) when it has one (a model converted from ONNX, or a TensorFlow
model whose ONNX form passed its check: on CPU onnxruntime runs MobileNetV2 several times
faster than TensorFlow), else its SavedModel in TensorFlow (``Classifier``); ``load`` picks.
Both take float32 images [N, H, W, 3] and give [N, classes]. TensorFlow stays the reference:
the SavedModel's other signatures (Grad-CAM's) are loaded from it when first asked for."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from app import tf_runtime
from app.inference.preprocess import to_model_layout
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


class OnnxClassifier:
    """Runs ``onnx/model.onnx`` in onnxruntime (CPU): images [N, H, W, 3] are put in the model's
    layout (NCHW for a PyTorch export); a model with a fixed batch of one runs image by image."""

    def __init__(self, info: ModelInfo):
        import onnxruntime

        self.info = info
        self.manifest = info.manifest
        path = info.path / self.manifest["formats"]["onnx"] / "model.onnx"
        self._session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        graph_input = self._session.get_inputs()[0]
        self._input = graph_input.name
        self._fetch = [self._session.get_outputs()[0].name]  # the classes (not a class activation map)
        self._one_at_a_time = graph_input.shape[0] == 1
        self._layout = self.manifest["input"].get("layout")
        height, width = self.manifest["preprocessing"]["size"]
        self.input_shape = (height, width, 3)
        self.is_logits = self.manifest["output"]["kind"] == "logits"
        self._tensorflow: Classifier | None = None  # the SavedModel, for its other signatures
        self._tensorflow_lock = threading.Lock()

    def signature(self, name: str):
        """A signature of the model's SavedModel (Grad-CAM's), loaded in TensorFlow on first use;
        None for a model without one (converted from ONNX)."""
        if "saved" not in self.manifest["formats"]:
            return None
        with self._tensorflow_lock:
            if self._tensorflow is None:
                self._tensorflow = Classifier(self.info)
        return self._tensorflow.signature(name)

    @property
    def labels(self) -> list[str]:
        return self.manifest["labels"]

    def predict(self, batch: np.ndarray) -> Prediction:
        """One call for the whole batch (onnxruntime sessions may run concurrently)."""
        start = time.perf_counter()
        inputs = to_model_layout(batch, self._layout)
        if self._one_at_a_time:
            outputs = np.concatenate([self._session.run(self._fetch, {self._input: inputs[i:i + 1]})[0]
                                      for i in range(len(inputs))])
        else:
            outputs = self._session.run(self._fetch, {self._input: inputs})[0]
        inference_ms = (time.perf_counter() - start) * 1000
        return Prediction(outputs, softmax(outputs) if self.is_logits else outputs, inference_ms)

    def cam(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the class activation maps [N, h, w, classes], the outputs [N, classes]) for images
        [N, H, W, 3], from the ``belka_cam`` output the converter added (app/convert/onnx_cam.py)."""
        inputs = to_model_layout(batch, self._layout)
        fetch = [*self._fetch, self.manifest["explain"]["output"]]
        step = 1 if self._one_at_a_time else len(inputs)
        runs = [self._session.run(fetch, {self._input: inputs[i:i + step]}) for i in range(0, len(inputs), step)]
        return np.concatenate([r[1] for r in runs]), np.concatenate([r[0] for r in runs])


def runnable(info: ModelInfo) -> bool:
    """Whether the server can run the model: it has a SavedModel or an ONNX model."""
    return "saved" in info.manifest["formats"] or "onnx" in info.manifest["formats"]


def load(info: ModelInfo) -> Classifier | OnnxClassifier:
    """The classifier for ``info``: its ONNX model in onnxruntime when it has one (checked against
    the original at conversion), else its SavedModel in TensorFlow."""
    return OnnxClassifier(info) if "onnx" in info.manifest["formats"] else Classifier(info)


def runtime_of(info: ModelInfo) -> str:
    """Which runtime the server runs ``info`` in ("onnxruntime" or "tensorflow"): ``load``'s rule."""
    return "onnxruntime" if "onnx" in info.manifest["formats"] else "tensorflow"


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def top_k(probabilities: np.ndarray, labels: list[str], k: int) -> list[dict]:
    """The k most probable classes, most probable first (ties: lower index first)."""
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [{"index": int(i), "label": labels[i], "probability": float(probabilities[i])} for i in order]
