"""Running an ONNX model in both runtimes that will run it: onnxruntime in Python (the server's)
and ONNX Runtime Web in Node (the page's, ort_runner.mjs), for the conversion's check.

An operator ONNX Runtime Web has no kernel for is a VerificationFailed (exit 3) naming it: the
page could not run the model, so nothing is written.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from app.convert import node_runner
from app.convert.errors import BelkaError, VerificationFailed

RUNNER = Path(__file__).with_name("ort_runner.mjs")
NODE_TIMEOUT_S = 600


def run_python(model_path: Path, batch: np.ndarray) -> np.ndarray:
    """The model's first output for ``batch`` in onnxruntime (CPU), one call per image when the
    graph fixes a batch of one."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    graph_input = session.get_inputs()[0]
    fetch = [session.get_outputs()[0].name]  # not the class activation map Belka may add (onnx_cam.py)
    if graph_input.shape[0] == 1:
        rows = [session.run(fetch, {graph_input.name: batch[i:i + 1]})[0] for i in range(len(batch))]
        return np.concatenate(rows)
    return session.run(fetch, {graph_input.name: batch})[0]


def run_web(models: dict[str, Path], batch: np.ndarray, external_data: list[str] | None = None,
            one_at_a_time: bool = False) -> tuple[dict[str, np.ndarray], dict]:
    """{format: first output} for each of ``models`` ({format: model.onnx path}) in ONNX Runtime Web
    (WebAssembly, Node), and the runtime's facts {"ort_version", "backend", "load_ms"}."""
    with node_runner.workspace("the ONNX model in ONNX Runtime Web", batch) as (tmp, probe):
        request = {"input": probe,
                   "models": [{"format": fmt, "path": str(Path(path).resolve()),
                               "external_data": list(external_data or [])} for fmt, path in models.items()],
                   "out_dir": str(tmp), "batch": "each" if one_at_a_time else "whole"}
        code, reply = node_runner.run(RUNNER, request, tmp, "ONNX Runtime Web", NODE_TIMEOUT_S)
        if code != 0 or "error" in reply:
            message = reply.get("error", "")
            if "ERR_MODULE_NOT_FOUND" in message or ("Cannot find" in message and "onnxruntime-web" in message):
                raise BelkaError("ONNX Runtime Web is not installed next to Belka: run `npm ci` (or `make setup`) "
                                 "in the Belka folder")
            if reply.get("operator"):
                raise VerificationFailed(f"ONNX Runtime Web has no kernel for the operator {reply['operator']} of the model; "
                               f"the browser cannot run it ({message[:300]})")
            raise VerificationFailed(f"ONNX Runtime Web could not run the model: {message[:800]}")
        outputs = {r["format"]: np.fromfile(r["path"], np.float32).reshape(r["shape"]) for r in reply["results"]}
        runtime = {"ort_version": reply["ort_version"], "backend": reply["backend"],
                   "load_ms": {r["format"]: round(r["load_ms"], 1) for r in reply["results"]}}
        return outputs, runtime
