"""`belka verify MODEL_DIR`: a converted model checked again, long after its conversion.

The file hashes against the manifest, then the TF.js models (Node) against the model's own
SavedModel on the probe inputs, with the thresholds of the conversion (app/convert/verify.py).
"""
from __future__ import annotations

import json
from pathlib import Path

from app.convert import detector
from app.convert.errors import BadInput, VerificationFailed
from app.convert.files import sha256_of
from app.convert.verify import (TFJS_FORMATS, check, check_detector, detector_probe, probe_batch, run_saved_model,
                                run_tfjs)


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
    if manifest.get("task") == "detection":
        return verify_detector_dir(model_dir, manifest)
    size = manifest["preprocessing"]["size"]
    batch = probe_batch(size[0], size[1], manifest["preprocessing"])
    reference = run_saved_model(model_dir / "saved_model", manifest["signature"], batch)
    formats = [f for f in TFJS_FORMATS if f in manifest["formats"]]
    outputs, runtime = run_tfjs(model_dir, formats, batch, output_key=manifest["signature"]["output"])
    quantize = {f: manifest["quantization"] for f in formats}
    return {"reference": "saved_model", "formats": check(reference, outputs, quantize),
            "runtime": runtime, "files_checked": len(manifest["files"])}


def verify_detector_dir(model_dir: Path, manifest: dict) -> dict:
    """A detector: its graph model in TF.js against its SavedModel, image by image, on the probe
    pictures; raw tensors and detections (check_detector)."""
    height, width = manifest["preprocessing"]["size"]
    _, inputs = detector_probe(height, width, manifest["preprocessing"]["value_range"])
    reference = detector.run_saved(model_dir / "saved_model", inputs)
    outputs, runtime = {}, {}
    if "graph" in manifest["formats"]:
        names = [manifest["output"]["boxes"]["node"], manifest["output"]["scores"]["node"]]
        tfjs, runtime = run_tfjs(model_dir, ["graph"], inputs, output_names=names,
                                 execute=manifest.get("graph_execution") or "executeAsync")
        outputs["graph"] = {"boxes": tfjs["graph"][names[0]], "scores": tfjs["graph"][names[1]]}
    reports = check_detector(reference, outputs, {"graph": manifest["quantization"]}, manifest["labels"],
                             manifest["postprocessing"])
    return {"reference": "saved_model", "task": "detection", "formats": reports, "runtime": runtime,
            "files_checked": len(manifest["files"])}
