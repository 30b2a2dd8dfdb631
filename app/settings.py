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

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        """Settings from BELKA_HOST / BELKA_PORT / BELKA_MODELS_DIR; non-None overrides win."""
        env = os.environ
        settings = cls(
            host=env.get("BELKA_HOST", cls.host),
            port=int(env.get("BELKA_PORT", cls.port)),
            models_dir=Path(env.get("BELKA_MODELS_DIR", PROJECT_ROOT / "models")),
        )
        return replace(settings, **{k: v for k, v in overrides.items() if v is not None})
