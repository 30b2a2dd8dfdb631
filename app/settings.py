"""All configuration in one place. Only this module reads the environment (BELKA_*)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def default_models_dir() -> Path:
    """The models folder that `belka convert` writes to and `belka serve` serves, unless told
    otherwise: BELKA_MODELS_DIR, else models/ in the current folder."""
    return Path(os.environ.get("BELKA_MODELS_DIR") or "models").absolute()


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    models_dir: Path = field(default_factory=default_models_dir)
    # The classifier the page opens with (any classification model in models_dir works).
    default_model: str = "mobilenet-v2"
    # ImageNet classes that count as "squirrel" for the verdict (335: fox squirrel).
    squirrel_classes: tuple[int, ...] = (335,)
    # The predict API: upload limits and request batching.
    max_upload_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 40_000_000
    batching: bool = True
    batch_max: int = 32
    batch_wait_ms: float = 5.0
    queue_max: int = 256
    # Saving models taught in the page (POST /api/models, app/api/teach.py): on or off, the
    # bearer token a server listening beyond this machine requires, and the head's size limit.
    allow_saves: bool = True
    admin_token: str | None = None
    max_head_bytes: int = 16 * 1024 * 1024
    static_dir: Path = PROJECT_ROOT / "static"
    # How the pages name their URLs: "/" when served by `belka serve`; `belka export-site` renders
    # them for a static site (static_site: no API behind it), at its --base-path (app/site.py).
    base_path: str = "/"
    static_site: bool = False
    node_modules: Path = PROJECT_ROOT / "node_modules"

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        """Settings from BELKA_HOST, BELKA_PORT, BELKA_MODELS_DIR, BELKA_MODEL,
        BELKA_SQUIRREL_CLASSES (comma-separated class indices), BELKA_MAX_UPLOAD_MB,
        BELKA_MAX_MEGAPIXELS, BELKA_BATCHING (1/0), BELKA_BATCH_MAX, BELKA_BATCH_WAIT_MS,
        BELKA_QUEUE_MAX, BELKA_ALLOW_SAVES (1/0) and BELKA_ADMIN_TOKEN; non-None overrides win."""
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
        if "BELKA_MAX_UPLOAD_MB" in env:
            values["max_upload_bytes"] = int(_number("BELKA_MAX_UPLOAD_MB", env["BELKA_MAX_UPLOAD_MB"]) * 1024 * 1024)
        if "BELKA_MAX_MEGAPIXELS" in env:
            values["max_pixels"] = int(_number("BELKA_MAX_MEGAPIXELS", env["BELKA_MAX_MEGAPIXELS"]) * 1e6)
        if "BELKA_BATCHING" in env:
            values["batching"] = env["BELKA_BATCHING"].strip().lower() not in ("0", "false", "no", "off")
        if "BELKA_BATCH_MAX" in env:
            values["batch_max"] = _int("BELKA_BATCH_MAX", env["BELKA_BATCH_MAX"])
        if "BELKA_BATCH_WAIT_MS" in env:
            values["batch_wait_ms"] = _number("BELKA_BATCH_WAIT_MS", env["BELKA_BATCH_WAIT_MS"])
        if "BELKA_QUEUE_MAX" in env:
            values["queue_max"] = _int("BELKA_QUEUE_MAX", env["BELKA_QUEUE_MAX"])
        if "BELKA_ALLOW_SAVES" in env:
            values["allow_saves"] = env["BELKA_ALLOW_SAVES"].strip().lower() not in ("0", "false", "no", "off")
        if env.get("BELKA_ADMIN_TOKEN"):
            values["admin_token"] = env["BELKA_ADMIN_TOKEN"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return replace(cls(), **values)


def _number(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise SystemExit(f"belka: error: {name} must be a number (got {text!r})") from None


def _int(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise SystemExit(f"belka: error: {name} must be an integer (got {text!r})") from None
