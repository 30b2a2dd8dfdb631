"""What bench/load_bench.py sends: the model (MobileNetV2 converted with the real CLI), scikit-image's
photos as JPEGs (multipart uploads) and, for the tensor payloads, the model inputs the server
would make from them as JSON, raw float32 or .npy bodies (``tensor_bodies``, ``TENSOR_HEADERS``)."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle_left", "immunohistochemistry")


def convert(out: Path) -> dict:
    """MobileNetV2 1.0/224 through the real CLI; returns its JSON summary."""
    cmd = [sys.executable, "-m", "app.cli", "convert", "mobilenet-v2", "--weights", "none",
           "--formats", "graph,saved", "--out", str(out), "--json", "--quiet"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        sys.exit(f"belka convert failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    summary = json.loads(proc.stdout)
    summary["bench_wall_seconds"] = round(time.perf_counter() - started, 1)
    return summary


def jpeg_photos(short_side: int = 256) -> dict[str, bytes]:
    """A few scikit-image photos as JPEG bytes, scaled to ``short_side`` px on the short side."""
    import skimage.data
    from PIL import Image

    photos = {}
    for name in PHOTOS:
        try:
            if name.startswith("motorcycle_"):
                image = skimage.data.stereo_motorcycle()[0 if name.endswith("left") else 1]
            else:
                image = getattr(skimage.data, name)()
        except Exception as exc:  # noqa: BLE001 - missing in this version or needs a download
            print(f"skipping photo {name}: {type(exc).__name__}", file=sys.stderr)
            continue
        pil = Image.fromarray(np.asarray(image[..., :3], dtype=np.uint8)).convert("RGB")
        scale = short_side / min(pil.size)
        pil = pil.resize((round(pil.width * scale), round(pil.height * scale)), Image.BILINEAR)
        buffer = io.BytesIO()
        pil.save(buffer, format="JPEG", quality=90)
        photos[name] = buffer.getvalue()
    if not photos:
        sys.exit("no scikit-image photo could be loaded")
    return photos


def tensor_bodies(photos: dict[str, bytes], manifest: dict, kind: str) -> list[bytes]:
    """The same photos preprocessed exactly as the server would, as request bodies of ``kind``:
    json ({"instances": [...]}), float32 (raw bytes) or npy (a .npy file)."""
    from app.inference.preprocess import preprocess_bytes  # imports TensorFlow: only for tensor payloads

    bodies = []
    for data in photos.values():
        tensor = preprocess_bytes(data, manifest["preprocessing"], 40_000_000).astype("<f4")
        if kind == "json":
            bodies.append(json.dumps({"instances": tensor.tolist()}).encode())
        elif kind == "float32":
            bodies.append(tensor.tobytes())
        else:
            buffer = io.BytesIO()
            np.save(buffer, tensor, allow_pickle=False)
            bodies.append(buffer.getvalue())
    return bodies


TENSOR_HEADERS = {"json": {"content-type": "application/json"},
                  "float32": {"content-type": "application/octet-stream"},
                  "npy": {"content-type": "application/x-npy"}}
