"""All configuration in one place. Only this module reads the environment (BELKA_*)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    models_dir: Path = field(default_factory=lambda: PROJECT_ROOT / "models")
    # The classifier the page opens with (any classification model in models_dir works).
    default_model: str = "mobilenet-v2"
    # ImageNet classes that count as "squirrel" for the verdict (335: fox squirrel).
    squirrel_classes: tuple[int, ...] = (335,)
    static_dir: Path = PROJECT_ROOT / "static"
    vendor_dir: Path = PROJECT_ROOT / "node_modules" / "@tensorflow"

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        """Settings from BELKA_HOST, BELKA_PORT, BELKA_MODELS_DIR, BELKA_MODEL and
        BELKA_SQUIRREL_CLASSES (comma-separated class indices); non-None overrides win."""
        env = os.environ
        values = {}
        if "BELKA_HOST" in env:
            values["host"] = env["BELKA_HOST"]
        if "BELKA_PORT" in env:
            values["port"] = _int("BELKA_PORT", env["BELKA_PORT"])
        if "BELKA_MODELS_DIR" in env:
            values["models_dir"] = Path(env["BELKA_MODELS_DIR"])
        if "BELKA_MODEL" in env:
            values["default_model"] = env["BELKA_MODEL"]
        if "BELKA_SQUIRREL_CLASSES" in env:
            values["squirrel_classes"] = tuple(
                _int("BELKA_SQUIRREL_CLASSES", v) for v in env["BELKA_SQUIRREL_CLASSES"].split(",") if v.strip())
        values.update({k: v for k, v in overrides.items() if v is not None})
        return replace(cls(), **values)


def _int(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise SystemExit(f"belka: error: {name} must be an integer (got {text!r})") from None
