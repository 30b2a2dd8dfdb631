"""File helpers: hashing and listing the artifacts a conversion wrote."""
from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def list_files(root: Path) -> list[dict]:
    """Every file under ``root`` (sorted) with its size and sha256, paths relative to root."""
    return [
        {"path": p.relative_to(root).as_posix(), "bytes": p.stat().st_size, "sha256": sha256_of(p)}
        for p in sorted(root.rglob("*")) if p.is_file()
    ]
