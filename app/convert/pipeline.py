"""One conversion, start to finish: load -> SavedModel -> graph -> layers -> verify -> manifest.

Atomic: everything is built in a hidden staging folder next to the target
(``models/.<name>.tmp-<pid>-*``) and renamed into place only after the numbers
have been checked. A failure or an interruption (Ctrl-C, SIGTERM) removes the
staging folder and leaves any previous ``models/<name>/`` untouched; staging
folders left by a killed process (SIGKILL, power loss) are removed by the next
conversion into the same folder.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from app import __version__, tf_runtime
from app.convert import export, verify
from app.convert.errors import BadInput
from app.convert.files import list_files
from app.convert.progress import Progress
from app.convert.sources import SourceModel

FORMATS = ("graph", "layers", "saved")
FORMAT_DIRS = {"graph": "graph", "layers": "layers", "saved": "saved_model"}
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MANIFEST_VERSION = 1
STEPS = 6


@dataclass
class Request:
    name: str
    out: Path
    formats: tuple[str, ...]
    quantize: str = "none"


def check_request(request: Request, source_kind: str) -> None:
    """Reject bad flags before any work starts (nothing is written on failure)."""
    if not NAME_PATTERN.match(request.name):
        raise BadInput(f"--name {request.name!r}: use letters, digits, '.', '_' and '-' (max 64)")
    unknown = [f for f in request.formats if f not in FORMATS]
    if unknown or not request.formats:
        raise BadInput(f"--formats: unknown {','.join(unknown) or '(empty)'}; choose from {','.join(FORMATS)}")
    if request.quantize not in export.QUANTIZATIONS:
        raise BadInput(f"--quantize must be one of {', '.join(export.QUANTIZATIONS)}")
    if source_kind == "saved-model" and "layers" in request.formats:
        raise BadInput("a SavedModel holds a TensorFlow graph, not Keras layers, so no TF.js layers "
                       "model can be made from it; use --formats graph,saved, or convert the Keras "
                       "model file with `belka convert keras`")
    out = request.out
    existing = next(p for p in (out, *out.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise BadInput(f"--out {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BadInput(f"--out {out}: {existing} is not writable")
    target = out / request.name
    if target.exists() and not target.is_dir():
        raise BadInput(f"{target} exists and is not a model folder")


def convert(load_source: Callable[[], SourceModel], request: Request, source_kind: str,
            progress: Progress | None = None) -> dict:
    """Run the conversion; return the summary (also written into the manifest)."""
    progress = progress or Progress(STEPS, enabled=False)
    check_request(request, source_kind)
    started = time.perf_counter()
    if request.out.is_dir():
        remove_stale_staging(request.out)
    with progress.step("Loading the source model"), tf_runtime.quiet_stdout():
        source = load_source()  # Keras prints download progress: keep stdout for --json
    if not source.weights.get("trained", True):
        progress.warn("UNTRAINED WEIGHTS: this model's predictions are meaningless (random but "
                      "deterministic). Fine for trying the app; the manifest and the page say so.")
    for note in source.notes:
        progress.note(note)

    with staging_folder(request) as staging:
        saved_dir = staging / FORMAT_DIRS["saved"]
        # Grad-CAM features in the graph model and the SavedModel only when no layers model will
        # do Grad-CAM (they cost an export of the gradient; the graph model keeps one output)
        graph_gradcam = source.split is not None and (source.keras_model is None or "layers" not in request.formats)
        with progress.step("Exporting the TensorFlow SavedModel (used by the server)"):
            export.write_saved_model(source, saved_dir, graph_gradcam)
        with progress.step("Converting to a TF.js graph model" if "graph" in request.formats
                           else "Skipping the graph model (not in --formats)"):
            if "graph" in request.formats:
                _write_graph(saved_dir, staging, request)
        layers_reason = None
        with progress.step("Writing the TF.js layers model" if "layers" in request.formats
                           else "Skipping the layers model (not in --formats)"):
            if "layers" in request.formats:
                layers_reason = _write_layers(source, staging / "layers", request.quantize)
        with progress.step("Checking the numbers in TF.js (Node) and TensorFlow"):
            verification, reference, layers_reason = _verify(source, staging, request, layers_reason)
            if layers_reason and source.split is not None and not graph_gradcam:
                progress.note("no layers model: exporting the SavedModel and the graph model again, "
                              "with the Grad-CAM features")
                shutil.rmtree(saved_dir)
                shutil.rmtree(staging / "graph", ignore_errors=True)
                export.write_saved_model(source, saved_dir, True)
                if "graph" in request.formats:
                    _write_graph(saved_dir, staging, request)
                verification, reference, layers_reason = _verify(source, staging, request, layers_reason)
            for fmt, report in verification["formats"].items():
                progress.note(f"{fmt}: max |diff| {report['max_abs_diff']:.2e}, top-1 agreement "
                              f"{report['top1_agreement']:.0%}")
            float16 = verification.get("float16")
            if float16 and not float16["ok"]:
                progress.note(f"the page downloads float32 weights: float16 ones change the numbers "
                              f"too much ({verify.describe(float16)})")
            if layers_reason and "layers" in request.formats:
                progress.warn(f"NO LAYERS MODEL: {layers_reason}. {LAYERS_LOSS}")
        if "saved" not in request.formats:
            shutil.rmtree(saved_dir)
        with progress.step(f"Writing the manifest and moving into {request.out / request.name}"):
            manifest = build_manifest(source, request, staging, verification, output_kind(reference),
                                      layers_reason)
            manifest["conversion"]["steps"] = progress.steps
            manifest["conversion"]["seconds"] = round(time.perf_counter() - started, 3)
            publish(staging, manifest, request.out / request.name)
    return summary(manifest, request.out / request.name)


@contextlib.contextmanager
def staging_folder(request: Request):
    """The hidden folder a model is built in, next to its target (see the module doc). On any
    failure or interruption it is removed, and the previous model stays as it was."""
    try:
        request.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"--out {request.out}: cannot create the folder ({exc.strerror})") from exc
    staging = Path(tempfile.mkdtemp(prefix=f".{request.name}.tmp-{os.getpid()}-", dir=request.out))
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it private; the model folder is not
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def publish(staging: Path, manifest: dict, target: Path) -> None:
    """Write the manifest last, then swap the staging folder into place."""
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    replace_atomically(staging, target)


def _write_graph(saved_dir: Path, staging: Path, request: Request) -> None:
    """graph/ and, for a float32 conversion, graph-float16/ (the page's default download)."""
    export.write_graph_model(saved_dir, staging / "graph", request.quantize)
    shutil.rmtree(staging / export.FLOAT16_GRAPH_DIR, ignore_errors=True)
    if request.quantize == "none":
        export.write_float16_graph(staging / "graph", staging / export.FLOAT16_GRAPH_DIR)


def _write_layers(source: SourceModel, out: Path, quantize: str) -> str | None:
    """Write the layers model when the source has a rebuild; else return why there is none."""
    if source.keras_model is None:
        return source.layers_unavailable or "the source has no Keras layers"
    export.write_layers_model(source, out, quantize)
    return None


def _verify(source: SourceModel, staging: Path, request: Request, layers_reason: str | None):
    """(verification, reference outputs, why there is no layers model). The SavedModel and the
    graph model must match the original (else VerificationFailed); a layers model that TF.js
    cannot load or that computes other numbers is removed, with the reason."""
    height, width, _ = source.input_shape
    batch = verify.probe_batch(height, width, source.preprocessing)
    reference = source.reference(batch)
    outputs = {"saved": verify.run_saved_model(staging / FORMAT_DIRS["saved"], source.signature, batch)}
    quantize = {"saved": "none"}
    runtime = {}
    float16 = None
    if "graph" in request.formats:
        float16_dir = staging / export.FLOAT16_GRAPH_DIR
        graphs = ["graph", export.FLOAT16_GRAPH_DIR] if float16_dir.is_dir() else ["graph"]
        tfjs_outputs, runtime = verify.run_tfjs(staging, graphs, batch, output_key=source.signature["output"])
        if float16_dir.is_dir():
            float16 = _check_float16(reference, tfjs_outputs.pop(export.FLOAT16_GRAPH_DIR), float16_dir)
        outputs.update(tfjs_outputs)
        quantize["graph"] = request.quantize
    reports = verify.check(reference, outputs, quantize)
    if "layers" in request.formats and layers_reason is None:
        layers_reason, report, layers_runtime = _check_layers(staging, batch, reference, request.quantize)
        if report is not None:
            reports["layers"] = report
            runtime = runtime or layers_runtime
            runtime.setdefault("load_ms", {}).update(layers_runtime.get("load_ms", {}))
        else:
            shutil.rmtree(staging / "layers", ignore_errors=True)
    verification = {"reference": "original model",
                    "probe": {"count": int(batch.shape[0]), "seed": verify.PROBE_SEED},
                    "formats": reports, "runtime": runtime}
    if float16:
        verification["float16"] = float16
    return verification, reference, layers_reason


def _check_float16(reference, outputs, float16_dir: Path) -> dict:
    """The float16 graph's numbers against the original, with the gate of --quantize float16;
    the folder is removed (the page then loads float32) when they fail it."""
    report = verify.compare(reference, outputs, "float16")
    if not report["ok"]:
        shutil.rmtree(float16_dir)
    return report


def page_weights(request: Request, verification: dict) -> dict:
    """Which graph model the classify page downloads: {"graph": folder, "dtype", "reason"}.
    float16 (graph-float16/) when it passed its check, else the graph model as converted.
    (bench/float16_bench.py: MobileNetV2 with float16 weights agrees with float32 on the
    top-5 of every test photo, and is half the download.)"""
    float16 = verification.get("float16")
    if float16 and float16["ok"]:
        return {"graph": export.FLOAT16_GRAPH_DIR + "/", "dtype": "float16", "reason": None}
    dtype = "float32" if request.quantize == "none" else request.quantize
    reason = (f"converted with --quantize {request.quantize}" if request.quantize != "none" else
              f"float16 weights change its numbers too much ({verify.describe(float16)})" if float16 else
              "no float16 copy")
    return {"graph": "graph/", "dtype": dtype, "reason": reason}


def _check_layers(staging: Path, batch, reference, quantize: str):
    """(reason or None, report or None, runtime) for the layers model in TF.js."""
    try:
        outputs, runtime = verify.run_tfjs(staging, ["layers"], batch)
    except verify.VerificationFailed as exc:
        message = str(exc).removeprefix("TF.js could not run the converted model: ")
        return f"TF.js cannot load it ({_first_sentence(message)})", None, {}
    report = verify.compare(reference, outputs["layers"], quantize)
    if not report["ok"]:
        return (f"in TF.js it computes other numbers than the original ({verify.describe(report)})",
                None, runtime)
    return None, report, runtime


def _first_sentence(text: str) -> str:
    return " ".join(text.split()).split(". ")[0][:200]


def build_manifest(source: SourceModel, request: Request, staging: Path, verification: dict,
                   output_kind: str, layers_reason: str | None = None) -> dict:
    height, width, channels = source.input_shape
    files = list_files(staging)
    written = [f for f in FORMATS if f in request.formats and (staging / FORMAT_DIRS[f]).is_dir()]
    output = {"shape": [None, source.num_classes], "dtype": "float32", "kind": output_kind}
    if source.binary:
        output["binary"] = {"head": source.binary, "negative": source.labels[0], "positive": source.labels[1]}
    return {
        "manifest_version": MANIFEST_VERSION,
        "name": request.name,
        "task": "classification",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": source.source,
        "weights": source.weights,
        "input": {"shape": [None, height, width, channels], "dtype": "float32"},
        "output": output,
        "signature": source.signature,
        "preprocessing": source.preprocessing,
        "labels": source.labels,
        "formats": {f: FORMAT_DIRS[f] + "/" for f in written},
        "page_weights": page_weights(request, verification) if "graph" in written else None,
        "explain": explain_info(source, staging, written),
        "features": features_info(source, staging, written),
        "quantization": request.quantize,
        "files": files,
        "verification": verification,
        "conversion": {"notes": source.notes,
                       "layers_model": {"written": "layers" in written,
                                        "reason": None if "layers" in written else
                                        (layers_reason or "not in --formats")}},
        "versions": _versions(),
    }


LAYERS_LOSS = ("The graph model and the SavedModel are complete; without a layers model, Grad-CAM "
               "in the page runs on the graph model at one layer only (no layer choice)")


def explain_info(source: SourceModel, staging: Path, written: list[str]) -> dict:
    """How Grad-CAM works for this model, in the page and on the server."""
    if "layers" in written:
        return {"gradcam": "layers", "server": "layers"}
    node = export.features_node(staging / "graph") if "graph" in written else None
    if source.explain is None or node is None:
        return {"gradcam": None, "server": None,
                "reason": "the model has no layer with an [h, w, channels] output that its output depends on alone"}
    return {"gradcam": "graph", "server": "saved_model", "layer": source.explain["layer"],
            "shape": source.explain["shape"],
            "graph": {"features": node, "output": source.signature["output"]},
            "signature": export.GRADCAM_SIGNATURE}


def features_info(source: SourceModel, staging: Path, written: list[str]) -> dict | None:
    """Where the features the classifier's head reads come from (export.pooled_features): the
    graph model's node, their size, and the layers model's layer of that name when it has one
    (node names carry their Keras layer's: ".../global_average_pooling2d/Mean", Keras 3's
    ".../pool_1/Mean" for a layer "pool"). None without a
    graph model or a dense head."""
    if "graph" not in written:
        return None
    found = export.pooled_features(staging / "graph", source.signature["output"])
    if found is None:
        return None
    layer = None
    if "layers" in written:
        topology = json.loads((staging / "layers" / "model.json").read_text())["modelTopology"]
        config = topology.get("model_config", topology)["config"]
        names = {entry["config"]["name"] for entry in config.get("layers", [])}
        # Keras 3 scopes ops as "<layer>_1": the name without that suffix when only it matches
        candidates = (name for part in reversed(found["node"].split("/")[:-1])
                      for name in (part, re.sub(r"_\d+$", "", part)))
        layer = next((name for name in candidates if name in names), None)
    return {**found, "layer": layer}


def output_kind(outputs) -> str:
    """"probabilities" when the model already applies softmax (rows are distributions),
    else "logits" (readers apply softmax)."""
    sums = outputs.sum(axis=1)
    is_distribution = bool((outputs >= 0).all() and abs(sums - 1).max() < 1e-3)
    return "probabilities" if is_distribution else "logits"


def _versions() -> dict:
    import importlib.metadata as md

    def version(pkg: str) -> str | None:
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return None

    tf = tf_runtime.tensorflow()
    return {"belka": __version__, "python": platform.python_version(), "tensorflow": tf.__version__,
            "tensorflowjs": version("tensorflowjs"), "tf_keras": version("tf_keras"),
            "keras": version("keras"), "numpy": version("numpy")}


def summary(manifest: dict, path: Path) -> dict:
    sizes: dict[str, int] = {}
    for entry in manifest["files"]:
        top = entry["path"].split("/", 1)[0]
        sizes[top] = sizes.get(top, 0) + entry["bytes"]
    return {
        "name": manifest["name"], "path": str(path), "task": manifest["task"],
        "formats": list(manifest["formats"]), "quantization": manifest["quantization"],
        "page_weights": manifest.get("page_weights"), "weights": manifest["weights"], "bytes": sizes,
        "verification": manifest["verification"], "steps": manifest["conversion"]["steps"],
        "seconds": manifest["conversion"]["seconds"], "notes": manifest["conversion"]["notes"],
    }


def replace_atomically(staging: Path, target: Path) -> None:
    """Move ``staging`` to ``target``; an existing target is swapped out, then deleted."""
    if not target.exists():
        os.rename(staging, target)
        return
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    os.rename(target, old)
    os.rename(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def remove_stale_staging(out: Path) -> None:
    """Delete ``.<name>.tmp-<pid>-*`` / ``.<name>.old-<pid>`` folders whose process is gone."""
    for path in out.glob(".*"):
        match = re.match(r"^\..+\.(?:tmp|old)-(\d+)", path.name)
        if match and path.is_dir() and not _alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
