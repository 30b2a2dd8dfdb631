"""Explanations for one classifier: Grad-CAM on its layers model, occlusion on its SavedModel
(or its ONNX model, whose Grad-CAM is its class activation map where it has one).

The layers model (``layers/``, the very files the browser differentiates) is read on
the first Grad-CAM request, not at start-up: most servers never explain anything. A model
with no layers model (manifest ``explain.server`` "saved_model") is explained at its one
Grad-CAM layer by the SavedModel's ``belka_gradcam`` signature: the same maths, on the
weights the page's graph model holds.
Explanations run one at a time per model (they are heavy: a gradient pass, or a few
hundred occluded images), on the caller's thread.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from app import tf_runtime
from app.inference import gradcam, occlusion, preprocess
from app.inference.classifier import Classifier, softmax


def score_kind_of(manifest: dict) -> str:
    """What Grad-CAM differentiates for a model: "logit" (pre-softmax) or "probability"."""
    return "logit" if manifest["output"]["kind"] == "logits" else "probability"


class ExplainError(ValueError):
    """A request the model cannot explain (unknown layer, no layers model, bad patch)."""


@dataclass
class Explanation:
    heatmap: np.ndarray              # [h, w] in [0, 1]
    outputs: np.ndarray              # the model's raw output row for the image
    probabilities: np.ndarray        # softmax of it (or the outputs, for probability models)
    explain_ms: float
    occlusion: occlusion.Occlusion | None = None


class Explainer:
    def __init__(self, classifier: Classifier):
        self.classifier = classifier
        self.manifest = classifier.manifest
        self._layers_model = None
        self._splits: dict[str, object] = {}
        self._lock = threading.Lock()       # one explanation at a time
        self._load_lock = threading.Lock()  # one read of the layers model

    @property
    def has_layers_model(self) -> bool:
        return "layers" in self.manifest["formats"]

    @property
    def uses_saved_model(self) -> bool:
        return not self.has_layers_model and (self.manifest.get("explain") or {}).get("server") == "saved_model"

    @property
    def uses_cam(self) -> bool:
        """A model converted from ONNX with a pooling + linear head: its class activation map
        (app/convert/onnx_cam.py), computed by onnxruntime, is its Grad-CAM."""
        return (self.manifest.get("explain") or {}).get("server") == "cam"

    @property
    def one_layer(self) -> bool:
        return self.uses_saved_model or self.uses_cam

    @property
    def score_kind(self) -> str:
        """What Grad-CAM differentiates: the pre-softmax "logit", or the "probability" for
        models that end in softmax."""
        return score_kind_of(self.manifest)

    def layers(self) -> list[tuple[str, str, list[int]]]:
        """(name, class name, [h, w, channels]) of every layer Grad-CAM can use, in model order."""
        if self.one_layer:
            info = self.manifest["explain"]
            return [(info["layer"], "class activation map" if self.uses_cam else "features", list(info["shape"]))]
        model = self._model()
        return [(name, model.get_layer(name).__class__.__name__, shape)
                for name, shape in gradcam.spatial_layers(model)]

    def default_layer(self) -> str:
        if self.one_layer:
            return self.manifest["explain"]["layer"]
        return gradcam.default_layer(self._model())

    def gradcam(self, image: np.ndarray, class_index: int, layer: str | None) -> tuple[str, Explanation]:
        """(the layer used, the explanation) for one model input [H, W, 3]."""
        if self.uses_saved_model:
            return self._saved_model_gradcam(image, class_index, layer)
        if self.uses_cam:
            return self._cam(image, class_index, layer)
        with self._lock:
            model = self._model()
            layer = layer or gradcam.default_layer(model)
            split = self._splits.get(layer)
            if split is None:
                try:
                    split = gradcam.split_at(model, layer)
                except ValueError as exc:
                    names = [name for name, _ in gradcam.spatial_layers(model)]
                    raise ExplainError(f"{exc}; GET /api/models/{self.classifier.info.name}/layers lists the {len(names)} "
                                       f"layers (e.g. {', '.join(names[-3:])})") from exc
                self._splits[layer] = split
            start = time.perf_counter()
            heatmaps, outputs = gradcam.gradcam(split, image[None], class_index)
            ms = (time.perf_counter() - start) * 1000
        row = outputs[0]
        probabilities = softmax(row[None])[0] if self.classifier.is_logits else row
        return layer, Explanation(heatmaps[0], row, probabilities, ms)

    def _cam(self, image: np.ndarray, class_index: int, layer: str | None):
        info = self.manifest["explain"]
        if layer not in (None, info["layer"]):
            raise ExplainError(f"Grad-CAM is this model's class activation map, at one layer only: "
                               f"{info['layer']!r} (no layer {layer!r})")
        with self._lock:
            start = time.perf_counter()
            maps, outputs = self.classifier.cam(image[None])
            heatmaps = gradcam.normalise(np.maximum(maps[..., class_index], 0))
            ms = (time.perf_counter() - start) * 1000
        row = outputs[0]
        probabilities = softmax(row[None])[0] if self.classifier.is_logits else row
        return info["layer"], Explanation(heatmaps[0], row, probabilities, ms)

    def _saved_model_gradcam(self, image: np.ndarray, class_index: int, layer: str | None):
        info = self.manifest["explain"]
        if layer not in (None, info["layer"]):
            raise ExplainError(f"this model has no TF.js layers model, so Grad-CAM is available at one layer "
                               f"only: {info['layer']!r} (no layer {layer!r})")
        function = self.classifier.signature(info.get("signature", "belka_gradcam"))
        if function is None:
            raise ExplainError("the model's SavedModel has no Grad-CAM signature; convert it again")
        tf = tf_runtime.tensorflow()
        with self._lock:
            start = time.perf_counter()
            result = function(**{self.manifest["signature"]["input"]: tf.constant(image[None], tf.float32),
                                 "class_index": tf.constant(class_index, tf.int32)})
            heatmaps = gradcam.normalise(result["heatmap"].numpy())
            ms = (time.perf_counter() - start) * 1000
        row = result[self.manifest["signature"]["output"]].numpy()[0]
        probabilities = softmax(row[None])[0] if self.classifier.is_logits else row
        return info["layer"], Explanation(heatmaps[0], row, probabilities, ms)

    def occlusion(self, image: np.ndarray, class_index: int, patch: int, stride: int) -> Explanation:
        """The occlusion map of one model input [H, W, 3], with a patch of the value range's middle."""
        fill = preprocess.normalise(np.full(3, 127.5), self.manifest["preprocessing"])  # mid-grey
        try:
            occlusion.check_params(*image.shape[:2], patch, stride)
        except ValueError as exc:
            raise ExplainError(str(exc)) from exc
        with self._lock:
            start = time.perf_counter()
            result = occlusion.occlusion(lambda batch: self.classifier.predict(batch).probabilities,
                                         image, class_index, patch, stride, fill=fill)
            ms = (time.perf_counter() - start) * 1000
        clean = self.classifier.predict(image[None])
        return Explanation(result.heatmap, clean.outputs[0], clean.probabilities[0], ms, result)

    def _model(self):
        if not self.has_layers_model:
            reason = (self.manifest.get("explain") or {}).get("reason") or \
                "it has no TF.js layers model and no Grad-CAM layer"
            raise ExplainError(f"Grad-CAM cannot explain this model ({reason}); use method=occlusion")
        with self._load_lock:
            if self._layers_model is None:
                self._layers_model = gradcam.load_layers_model(self.classifier.info.path)
        return self._layers_model
