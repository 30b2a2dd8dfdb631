"""The converted models on disk: models/*/manifest.json read into ModelInfo."""
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


def load_models(models_dir: Path) -> dict[str, ModelInfo]:
    """Every folder with a readable manifest.json; hidden (staging) folders are skipped."""
    models = {}
    if not models_dir.is_dir():
        return models
    for manifest_path in sorted(models_dir.glob("*/manifest.json")):
        folder = manifest_path.parent
        if folder.name.startswith("."):
            continue
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        models[folder.name] = ModelInfo(name=folder.name, path=folder, manifest=manifest)
    return models
