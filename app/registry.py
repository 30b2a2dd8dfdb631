"""The converted models on disk: models/*/manifest.json read into ModelInfo.

The registry re-reads a manifest only when its file changed, so a model converted
(or re-converted) while the server runs shows up on the next request.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: Path
    manifest: dict
    # the first 16 hex digits of manifest.json's sha256, of the bytes `manifest` was read from:
    # the pages name the manifest with ?v=<this>, which the server caches for good (the
    # manifest lists every file's hash); "" for a ModelInfo not read from disk
    manifest_version: str = ""

    @property
    def task(self) -> str:
        return self.manifest["task"]

    @property
    def trained(self) -> bool:
        return bool(self.manifest["weights"].get("trained", True))

    @property
    def total_bytes(self) -> int:
        return sum(f["bytes"] for f in self.manifest["files"])

    @property
    def page_download(self) -> dict:
        """What a page downloads to run this model: {folder, bytes, dtype}. The graph model the
        manifest names for pages (``page_weights``: float16 for a float32 classifier), else its
        graph model; the rule of static/js/manifest.js pageGraph (without ?weights=float32). A
        model with only an ONNX model (from PyTorch): that one."""
        page = self.manifest.get("page_weights") or {}
        if page.get("graph"):
            folder, dtype = page["graph"], page.get("dtype")
        elif "graph" not in self.manifest["formats"] and "onnx" in self.manifest["formats"]:
            # ONNX Runtime Web's (static/js/manifest.js pageOnnx): the float16 copy when it passed
            onnx = page.get("onnx") or {"folder": "onnx/", "dtype": "float32"}
            folder, dtype = onnx["folder"], onnx["dtype"]
        else:
            quantization = self.manifest.get("quantization") or "none"
            folder, dtype = "graph/", "float32" if quantization == "none" else quantization
        size = sum(f["bytes"] for f in self.manifest.get("files", []) if f["path"].startswith(folder))
        return {"folder": folder, "bytes": size, "dtype": dtype}

    @property
    def input_size(self) -> tuple[int, int] | None:
        """The picture size the model takes (height, width), from its preprocessing."""
        size = (self.manifest.get("preprocessing") or {}).get("size")
        return (int(size[0]), int(size[1])) if size else None


class Registry:
    def __init__(self, models_dir: Path):
        self.models_dir = models_dir
        self._cache: dict[Path, tuple[tuple[int, int], ModelInfo | None]] = {}

    def all(self) -> dict[str, ModelInfo]:
        """Every folder with a readable manifest.json; hidden (staging) folders are skipped."""
        if not self.models_dir.is_dir():
            self._cache = {}
            return {}
        paths = sorted(self.models_dir.glob("[!.]*/manifest.json"))
        self._cache = {p: v for p, v in self._cache.items() if p in paths}  # forget removed models
        models = (self._load(p) for p in paths)
        return {info.name: info for info in models if info is not None}

    def get(self, name: str) -> ModelInfo | None:
        """One model by folder name (only its manifest is looked at: this is on the request path)."""
        if not name or name.startswith(".") or "/" in name or "\\" in name:
            return None
        return self._load(self.models_dir / name / "manifest.json")

    def _load(self, manifest_path: Path) -> ModelInfo | None:
        """The ModelInfo for a manifest, re-read only when the file changed."""
        try:
            stat = manifest_path.stat()
        except OSError:
            self._cache.pop(manifest_path, None)
            return None
        key = (stat.st_ino, stat.st_mtime_ns)
        cached = self._cache.get(manifest_path)
        if cached is None or cached[0] != key:
            cached = (key, _read(manifest_path))
            self._cache[manifest_path] = cached
        return cached[1]


def _read(manifest_path: Path) -> ModelInfo | None:
    try:
        data = manifest_path.read_bytes()
        manifest = json.loads(data)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return ModelInfo(name=manifest_path.parent.name, path=manifest_path.parent, manifest=manifest,
                     manifest_version=hashlib.sha256(data).hexdigest()[:16])

