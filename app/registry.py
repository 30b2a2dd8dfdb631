"""The converted models on disk: models/*/manifest.json read into ModelInfo.

The registry re-reads a manifest only when its file changed, so a model converted
(or re-converted) while the server runs shows up on the next request.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: Path
    manifest: dict

    @property
    def task(self) -> str:
        return self.manifest["task"]

    @property
    def trained(self) -> bool:
        return bool(self.manifest["weights"].get("trained", True))

    @property
    def total_bytes(self) -> int:
        return sum(f["bytes"] for f in self.manifest["files"])


class Registry:
    def __init__(self, models_dir: Path):
        self.models_dir = models_dir
        self._cache: dict[Path, tuple[tuple[int, int], ModelInfo | None]] = {}

    def all(self) -> dict[str, ModelInfo]:
        """Every folder with a readable manifest.json; hidden (staging) folders are skipped."""
        models, cache = {}, {}
        if self.models_dir.is_dir():
            for manifest_path in sorted(self.models_dir.glob("[!.]*/manifest.json")):
                try:
                    stat = manifest_path.stat()
                except OSError:
                    continue
                key = (stat.st_ino, stat.st_mtime_ns)
                cached = self._cache.get(manifest_path)
                info = cached[1] if cached and cached[0] == key else _read(manifest_path)
                cache[manifest_path] = (key, info)
                if info is not None:
                    models[info.name] = info
        self._cache = cache
        return models

    def get(self, name: str) -> ModelInfo | None:
        return self.all().get(name)


def _read(manifest_path: Path) -> ModelInfo | None:
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return ModelInfo(name=manifest_path.parent.name, path=manifest_path.parent, manifest=manifest)


def load_models(models_dir: Path) -> dict[str, ModelInfo]:
    return Registry(models_dir).all()
