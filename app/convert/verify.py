"""Check converted models numerically in the runtimes that will really run them.

The graph and layers models are run in TF.js itself (Node, ``@tensorflow/tfjs``
CPU backend, files read from disk by tfjs_runner.mjs); the SavedModel in
TensorFlow. All of them get the same fixed probe batch and are compared with a
reference: the original model at conversion time, the SavedModel later
(``belka verify``).

Thresholds (documented in the README):
- float32: every output value within ``FLOAT32_TOLERANCE`` (1e-4) of the reference.
- quantized weights: the maximum difference divided by the spread (max - min)
  of the reference outputs must stay under ``QUANTIZED_MAX_RELATIVE``: 5% for
  float16, 30% for uint8 (measured on MobileNetV2 with seeded untrained
  weights: float16 0.3-1.2%, uint8 5-17%). Top-1 agreement is reported, not
  gated: on untrained weights the top logits are so close that uint8 rounding
  reorders them (50% agreement measured) while the model is fine.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from app import tf_runtime
from app.convert.errors import BadInput, BelkaError, VerificationFailed
from app.convert.files import sha256_of

FLOAT32_TOLERANCE = 1e-4
QUANTIZED_MAX_RELATIVE = {"float16": 0.05, "uint8": 0.30}
PROBE_SEED = 1234
PROBE_COUNT = 4
RUNNER = Path(__file__).resolve().parent / "tfjs_runner.mjs"
TFJS_FORMATS = ("graph", "layers")
NODE_TIMEOUT_S = 1800


def probe_batch(height: int, width: int, value_range, seed: int = PROBE_SEED) -> np.ndarray:
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
    lo, hi = value_range
    return (lo + pixels * (hi - lo) / 255.0).astype(np.float32)


def run_tfjs(model_dir: Path, formats, batch: np.ndarray, output_names: list[str] | None = None) -> tuple[dict, dict]:
    """Run ``model_dir/<format>/`` for each format in TF.js; return ({format: outputs}, runtime info).

    With ``output_names`` (graph node names, e.g. a detector's boxes and scores) each image runs
    alone and a format's outputs are {name: array}; else the model's one output, as an array."""
    node = shutil.which("node")
    if node is None:
        raise BelkaError("Node.js is needed to check the TF.js models (`node` is not on PATH); "
                         "install Node 18+ and run `npm ci` in the Belka folder.")
    with tempfile.TemporaryDirectory(prefix="belka-tfjs-") as tmp:
        tmp = Path(tmp)
        (tmp / "input.bin").write_bytes(np.ascontiguousarray(batch, dtype=np.float32).tobytes())
        request = {
            "input": {"path": str(tmp / "input.bin"), "shape": list(batch.shape), "dtype": "float32"},
            "models": [{"format": f, "dir": str((model_dir / f).resolve()),
                        **({"outputs": output_names} if output_names else {})} for f in formats],
            "out_dir": str(tmp),
        }
        (tmp / "request.json").write_text(json.dumps(request))
        try:
            proc = subprocess.run([node, str(RUNNER), str(tmp / "request.json")],
                                  capture_output=True, text=True, timeout=NODE_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise VerificationFailed(f"TF.js took more than {NODE_TIMEOUT_S} s to run the model") from exc
        last = (proc.stdout.strip().splitlines() or [""])[-1]
        try:
            reply = json.loads(last)
        except json.JSONDecodeError:
            reply = {"error": (proc.stderr.strip() or last or "no output")[-800:]}
        if proc.returncode != 0 or "error" in reply:
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
                   "node_version": subprocess.run([node, "--version"], capture_output=True,
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
        report["threshold"] = {"max_abs_diff": FLOAT32_TOLERANCE}
        report["ok"] = report["max_abs_diff"] <= FLOAT32_TOLERANCE
    else:
        report["threshold"] = {"max_rel_diff": QUANTIZED_MAX_RELATIVE[quantize]}
        report["ok"] = report["max_rel_diff"] <= QUANTIZED_MAX_RELATIVE[quantize]
    return report


def check(reference: np.ndarray, outputs: dict, quantize: dict) -> dict:
    """Compare each format's outputs; raise VerificationFailed listing every failure."""
    reports = {fmt: compare(reference, out, quantize[fmt]) for fmt, out in outputs.items()}
    failures = [f"{fmt}: {_describe(r)}" for fmt, r in reports.items() if not r["ok"]]
    if failures:
        raise VerificationFailed("the converted model does not compute what the original computes: "
                                 + "; ".join(failures))
    return reports


def _describe(report: dict) -> str:
    if "reason" in report:
        return report["reason"]
    return (f"max difference {report['max_abs_diff']:.3g} (relative {report['max_rel_diff']:.3g}), "
            f"top-1 agreement {report['top1_agreement']:.0%}, allowed {report['threshold']}")


def verify_model_dir(model_dir: Path) -> dict:
    """`belka verify`: check file hashes against the manifest, then TF.js against the SavedModel."""
    manifest_path = model_dir / "manifest.json"
    if not manifest_path.is_file():
        raise BadInput(f"{model_dir} is not a Belka model folder (no manifest.json)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise BadInput(f"{manifest_path} is not valid JSON ({exc})") from exc
    for entry in manifest["files"]:
        path = model_dir / entry["path"]
        if not path.is_file():
            raise VerificationFailed(f"{entry['path']} is missing")
        if path.stat().st_size != entry["bytes"] or sha256_of(path) != entry["sha256"]:
            raise VerificationFailed(f"{entry['path']} changed since conversion (sha256 differs)")
    if "saved" not in manifest["formats"]:
        raise BadInput(f"{model_dir} has no saved_model/ to compare against (converted with --formats "
                       f"{','.join(manifest['formats'])})")
    size = manifest["preprocessing"]["size"]
    batch = probe_batch(size[0], size[1], manifest["preprocessing"]["value_range"])
    reference = run_saved_model(model_dir / "saved_model", manifest["signature"], batch)
    formats = [f for f in TFJS_FORMATS if f in manifest["formats"]]
    outputs, runtime = run_tfjs(model_dir, formats, batch)
    quantize = {f: manifest["quantization"] for f in formats}
    return {"reference": "saved_model", "formats": check(reference, outputs, quantize),
            "runtime": runtime, "files_checked": len(manifest["files"])}
