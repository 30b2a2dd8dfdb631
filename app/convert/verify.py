"""Check converted models numerically in the runtimes that will really run them.

The graph and layers models are run in TF.js itself (Node, ``@tensorflow/tfjs`` on the
wasm backend the pages default to, files read from disk by tfjs_runner.mjs); the SavedModel in
TensorFlow. All of them get the same fixed probe batch and are compared with a
reference: the original model at conversion time, the SavedModel later
(``belka verify``, recheck.py).

Thresholds (documented in the README):
- float32: every output value within ``FLOAT32_TOLERANCE`` (1e-4) of the reference, times the
  largest |reference value| when that is above 1: float32 rounding grows with the numbers'
  size (a calibrated untrained ResNet50 has logits near 300, and TensorFlow's own SavedModel
  of it differs from the Keras model by 2.5e-4 there: 8e-7 of the value).
- quantized weights: the maximum difference divided by the spread (max - min)
  of the reference outputs must stay under ``QUANTIZED_MAX_RELATIVE``: 5% for
  float16, 30% for uint8 (measured on MobileNetV2 with seeded untrained
  weights: float16 0.3-1.2%, uint8 5-17%). Top-1 agreement is reported, not
  gated: on untrained weights the top logits are so close that uint8 rounding
  reorders them (50% agreement measured) while the model is fine.
- detectors, float32: raw boxes and scores within ``DETECTOR_TOLERANCE`` (1e-3) of the
  original, and the detections after post-processing the same: each one matched by a
  detection of the same class with IoU >= ``DETECTION_MIN_IOU`` (0.99) and a score within
  ``DETECTION_SCORE_TOLERANCE`` (1e-3). A detection may go unmatched only where the raw
  tolerance makes the post-processing itself a coin toss: its score that close to the score
  threshold, to another class's score at its anchor, to the last of ``max_boxes``, or to an
  overlapping box's that suppression ranks it against. Measured on the zoo's SSD MobileNet V2
  architecture and a TF1-style export (float32 rounding through ~100 layers, then sigmoid):
  scores differ by up to 1.7e-4 and boxes by up to 2e-5 between TensorFlow, the cut graph
  and TF.js, so 1e-4 is too tight for these models while a wrong model differs by 1e-1.
  Quantized detectors are gated on the raw tensors' relative difference, as classifiers are;
  their detection agreement is reported.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

from app import tf_runtime
from app.convert import node_runner
from app.convert.errors import BelkaError, VerificationFailed

FLOAT32_TOLERANCE = 1e-4
QUANTIZED_MAX_RELATIVE = {"float16": 0.05, "uint8": 0.30}
DETECTOR_TOLERANCE = 1e-3
DETECTION_MIN_IOU = 0.99
DETECTION_SCORE_TOLERANCE = 1e-3
PROBE_SEED = 1234
PROBE_COUNT = 4
RUNNER = Path(__file__).resolve().parent / "tfjs_runner.mjs"
TFJS_FORMATS = ("graph", "layers")
NODE_TIMEOUT_S = 1800


def probe_batch(height: int, width: int, spec, seed: int = PROBE_SEED) -> np.ndarray:
    """A fixed batch of 4 images in pixel space 0..255, normalised to the model's value range:
    two noise images, a colour gradient and a blocky pattern (not all noise, so real
    image statistics are represented too)."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, size=(2, height, width, 3))
    yy, xx = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
    gradient = np.stack([255 * xx, 255 * yy, 255 * (1 - xx) * yy], axis=-1)
    blocks = np.kron(rng.uniform(0, 255, size=(8, 8, 3)),
                     np.ones((-(-height // 8), -(-width // 8), 1)))[:height, :width]
    pixels = np.concatenate([noise, gradient[None], blocks[None]]).astype(np.float32)
    from app.inference.preprocess import normalise

    if not isinstance(spec, dict):  # a value range [lo, hi]
        spec = {"value_range": list(spec)}
    return normalise(pixels, spec)


def detector_probe(height: int, width: int, value_range) -> tuple[np.ndarray, np.ndarray]:
    """(pictures, model inputs) for checking a detector: three of the probe images (noise, the
    gradient, the blocks) as whole pixel values 0..255, which the original model takes as
    uint8, and the same pictures scaled to the model's value range, as the page feeds them."""
    pixels = np.round(probe_batch(height, width, [0, 255])[[0, 2, 3]])
    lo, hi = value_range
    return pixels, (lo + pixels * ((hi - lo) / 255.0)).astype(np.float32)


def run_tfjs(model_dir: Path, formats, batch: np.ndarray, output_names: list[str] | None = None,
             execute: str = "executeAsync", output_key: str | None = None,
             backend: str = "wasm") -> tuple[dict, dict]:
    """Run ``model_dir/<format>/`` for each format in TF.js; return ({format: outputs}, runtime info).

    With ``output_names`` (graph node names, e.g. a detector's boxes and scores) each image runs
    alone through ``execute`` ("execute" or "executeAsync", as the page will) and a format's
    outputs are {name: array}; else the model's one output, as an array."""
    with node_runner.workspace("the TF.js models", batch) as (tmp, probe):
        request = {
            "input": probe,
            "models": [{"format": f, "dir": str((model_dir / f).resolve()),
                        **({"outputs": output_names, "execute": execute} if output_names else {}),
                        **({"output": output_key} if output_key else {})}
                       for f in formats],
            "out_dir": str(tmp),
            "backend": backend,
        }
        code, reply = node_runner.run(RUNNER, request, tmp, "TF.js", NODE_TIMEOUT_S)
        if code != 0 or "error" in reply:
            message = reply.get("error", "")
            if "Cannot find module" in message or "ERR_MODULE_NOT_FOUND" in message:
                raise BelkaError("TF.js is not installed next to Belka: run `npm ci` in the Belka "
                                 f"folder (Node said: {message[:200]})")
            raise VerificationFailed(f"TF.js could not run the converted model: {message}")
        outputs = {}
        for result in reply["results"]:
            if "outputs" in result:
                outputs[result["format"]] = {o["name"]: _read(o) for o in result["outputs"]}
            else:
                outputs[result["format"]] = _read(result)
        runtime = {"tfjs_version": reply["tfjs_version"], "backend": reply["backend"],
                   "node_version": subprocess.run([shutil.which("node"), "--version"], capture_output=True,
                                                  text=True).stdout.strip(),
                   "load_ms": {r["format"]: round(r["load_ms"], 1) for r in reply["results"]}}
        return outputs, runtime


def _read(written: dict) -> np.ndarray:
    """An output the runner wrote: float32 (or int32) values of the given shape."""
    dtype = np.int32 if written.get("dtype") == "int32" else np.float32
    return np.fromfile(written["file"], dtype=dtype).reshape(written["shape"])


def run_saved_model(saved_model_dir: Path, signature: dict, batch: np.ndarray) -> np.ndarray:
    tf = tf_runtime.tensorflow()
    loaded = tf.saved_model.load(str(saved_model_dir))
    fn = loaded.signatures["serving_default"]
    return fn(**{signature["input"]: tf.constant(batch)})[signature["output"]].numpy()


def compare(reference: np.ndarray, candidate: np.ndarray, quantize: str) -> dict:
    """Numbers that say how far ``candidate`` is from ``reference`` and whether that passes."""
    if candidate.shape != reference.shape:
        return {"ok": False, "reason": f"output shape {list(candidate.shape)} != {list(reference.shape)}"}
    diff = np.abs(candidate.astype(np.float64) - reference.astype(np.float64))
    spread = float(reference.max() - reference.min()) or 1.0
    top1 = float(np.mean(candidate.argmax(1) == reference.argmax(1)))
    report = {
        "max_abs_diff": float(diff.max()),
        "max_rel_diff": float(diff.max() / spread),
        "top1_agreement": top1,
        "top5_identical": bool(np.array_equal(np.argsort(-candidate, 1)[:, :5],
                                              np.argsort(-reference, 1)[:, :5])),
    }
    if quantize == "none":
        allowed = FLOAT32_TOLERANCE * max(1.0, float(np.abs(reference).max()))
        report["threshold"] = {"max_abs_diff": allowed}
        report["ok"] = report["max_abs_diff"] <= allowed
    else:
        report["threshold"] = {"max_rel_diff": QUANTIZED_MAX_RELATIVE[quantize]}
        report["ok"] = report["max_rel_diff"] <= QUANTIZED_MAX_RELATIVE[quantize]
    return report


def check(reference: np.ndarray, outputs: dict, quantize: dict) -> dict:
    """Compare each format's outputs; raise VerificationFailed listing every failure."""
    reports = {fmt: compare(reference, out, quantize[fmt]) for fmt, out in outputs.items()}
    failures = [f"{fmt}: {describe(r)}" for fmt, r in reports.items() if not r["ok"]]
    if failures:
        raise VerificationFailed("the converted model does not compute what the original computes: "
                                 + "; ".join(failures))
    return reports


def check_detector(reference: dict, outputs: dict, quantize: dict, labels: list, postprocessing: dict) -> dict:
    """Compare each format's raw boxes and scores, then its detections, with the reference
    (see the module doc); raise VerificationFailed listing every failure."""
    reports = {}
    failures = []
    for fmt, out in outputs.items():
        report = {key: _compare_raw(reference[key], out[key], quantize[fmt]) for key in ("boxes", "scores")}
        failures += [f"{fmt} {key}: {r['reason']}" for key, r in report.items() if not r["ok"]]
        gated = quantize[fmt] == "none"  # quantized: reported, the raw relative difference is the gate
        if all(r["ok"] or r["reason"].startswith("max") for r in report.values()):  # shapes agree
            report["detections"] = {**compare_detections(reference, out, labels, postprocessing), "gated": gated}
            if gated and not report["detections"]["ok"]:
                failures.append(f"{fmt} detections: {report['detections']['reason']}")
        report["ok"] = report["boxes"]["ok"] and report["scores"]["ok"] and \
            (not gated or report.get("detections", {}).get("ok", False))
        reports[fmt] = report
    if failures:
        raise VerificationFailed("the converted detector does not compute what the original computes: "
                                 + "; ".join(failures))
    return reports


def _compare_raw(reference: np.ndarray, candidate: np.ndarray, quantize: str) -> dict:
    if candidate.shape != reference.shape:
        return {"ok": False, "reason": f"shape {list(candidate.shape)} != {list(reference.shape)}"}
    diff = float(np.abs(candidate.astype(np.float64) - reference).max())
    spread = float(reference.max() - reference.min()) or 1.0
    if quantize == "none":
        ok, limit = diff <= DETECTOR_TOLERANCE, {"max_abs_diff": DETECTOR_TOLERANCE}
    else:
        ok, limit = diff / spread <= QUANTIZED_MAX_RELATIVE[quantize], {"max_rel_diff": QUANTIZED_MAX_RELATIVE[quantize]}
    report = {"ok": ok, "max_abs_diff": diff, "max_rel_diff": diff / spread, "threshold": limit}
    if not ok:
        report["reason"] = f"max difference {diff:.3g} (relative {diff / spread:.3g}), allowed {limit}"
    return report


def compare_detections(reference: dict, candidate: dict, labels: list, postprocessing: dict) -> dict:
    """The detections of both raw outputs ({"boxes": [N, A, 4], "scores": [N, A, 1 + C]}) after
    the server's post-processing, matched image by image (see the module doc)."""
    from app.inference.detection import select

    settings = (postprocessing["score_threshold"], postprocessing["iou_threshold"], postprocessing["max_boxes"])
    total = matched = excused = 0
    worst_iou, worst_score = 1.0, 0.0
    problems = []
    for k in range(reference["boxes"].shape[0]):
        sides = []
        for raw in (reference, candidate):
            boxes, scores = raw["boxes"][k], raw["scores"][k]
            keep, best, best_score = select(boxes, scores, labels, *settings)
            sides.append({"boxes": boxes, "scores": scores, "keep": [int(i) for i in keep], "best": best,
                          "best_score": best_score})
        ref, cand = sides
        total += len(ref["keep"])
        unmatched = list(cand["keep"])
        leftover = []
        for i in ref["keep"]:
            match = _match(i, ref, cand, unmatched)
            if match is None:
                leftover.append((i, ref, cand))
                continue
            j, overlap = match
            unmatched.remove(j)
            matched += 1
            worst_iou = min(worst_iou, overlap)
            worst_score = max(worst_score, abs(float(ref["best_score"][i]) - float(cand["best_score"][j])))
        leftover += [(j, cand, ref) for j in unmatched]
        for i, own, other in leftover:
            if _coin_toss(i, own, other, settings):
                excused += 1
            else:
                which = "original" if own is ref else "converted model"
                problems.append(f"image {k}: the {which}'s detection at anchor {i} (score "
                                f"{float(own['best_score'][i]):.4f}) has no counterpart")
    report = {"ok": not problems, "detections": total, "matched": matched, "borderline": excused,
              "min_iou": worst_iou, "max_score_diff": worst_score,
              "threshold": {"min_iou": DETECTION_MIN_IOU, "max_score_diff": DETECTION_SCORE_TOLERANCE}}
    if problems:
        report["reason"] = "; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
    return report


def _match(i: int, ref: dict, cand: dict, candidates: list[int]):
    """The candidate detection that stands for reference detection ``i``: same class, IoU at
    least DETECTION_MIN_IOU, score within DETECTION_SCORE_TOLERANCE; (its anchor, IoU) or None."""
    best = None
    for j in candidates:
        if cand["best"][j] != ref["best"][i]:
            continue
        if abs(float(cand["best_score"][j]) - float(ref["best_score"][i])) > DETECTION_SCORE_TOLERANCE:
            continue
        overlap = iou(ref["boxes"][i], cand["boxes"][j])
        if overlap >= DETECTION_MIN_IOU and (best is None or overlap > best[1]):
            best = (j, overlap)
    return best


def _coin_toss(i: int, own: dict, other: dict, settings) -> bool:
    """Whether detection ``i`` of one side may be missing from the other because a difference
    within DETECTOR_TOLERANCE decides it: a score at the threshold, a class tie at the anchor,
    the last places of max_boxes, or a suppression against a box of nearly the same score."""
    score_threshold, iou_threshold, max_boxes = settings
    tol = DETECTOR_TOLERANCE
    score = float(own["best_score"][i])
    if abs(score - score_threshold) <= tol:
        return True
    named = other["scores"][i, 1:]
    if named[own["best"][i]] >= float(other["best_score"][i]) - tol and own["best"][i] != other["best"][i]:
        return True
    if len(own["keep"]) == max_boxes and score <= float(own["best_score"][own["keep"][-1]]) + tol:
        return True
    if len(other["keep"]) == max_boxes and score <= float(other["best_score"][other["keep"][-1]]) + tol:
        return True
    for j in set(own["keep"]) | set(other["keep"]):
        if j != i and iou(own["boxes"][i], own["boxes"][j]) > iou_threshold - 0.01 and \
                abs(float(other["best_score"][j]) - score) <= 2 * tol:
            return True
    return False


def iou(a, b) -> float:
    """Intersection over union of two boxes (ymin, xmin, ymax, xmax)."""
    ya, xa = max(a[0], b[0]), max(a[1], b[1])
    yb, xb = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, yb - ya) * max(0.0, xb - xa)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def describe_detector_report(fmt: str, report: dict) -> str:
    """One line for a detector format's check."""
    line = (f"{fmt}: max |diff| boxes {report['boxes']['max_abs_diff']:.2e}, "
            f"scores {report['scores']['max_abs_diff']:.2e}")
    d = report.get("detections")
    if d:
        line += f"; detections {d['matched']}/{d['detections']} identical"
        if d["borderline"]:
            line += f", {d['borderline']} borderline"
        if d["matched"]:
            line += f" (min IoU {d['min_iou']:.4f}, max score diff {d['max_score_diff']:.1e})"
    return line


def describe(report: dict) -> str:
    if "reason" in report:
        return report["reason"]
    return (f"max difference {report['max_abs_diff']:.3g} (relative {report['max_rel_diff']:.3g}), "
            f"top-1 agreement {report['top1_agreement']:.0%}, allowed {report['threshold']}")
