"""What the user asked a conversion for, and its check before any work starts.

Every caller (the `belka convert` subcommands, app/teach.py) fills one Request; the pipeline
checks it against the task and the source kind before loading anything, so a bad flag costs
nothing and writes nothing.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from app.convert import formats
from app.convert.errors import BadInput

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass
class Request:
    name: str
    out: Path
    formats: tuple[str, ...]
    quantize: str = "none"


def check_request(request: Request, task: str, source_kind: str) -> None:
    """Reject bad flags before any work starts (nothing is written on failure)."""
    formats.check_task(request.formats, task)
    if not NAME_PATTERN.match(request.name):
        raise BadInput(f"--name {request.name!r}: use letters, digits, '.', '_' and '-' (max 64)")
    formats.check_known(request.formats)
    if request.quantize not in formats.QUANTIZATIONS:
        raise BadInput(f"--quantize must be one of {', '.join(formats.QUANTIZATIONS)}")
    formats.check_source(request.formats, source_kind, task)
    out = request.out
    existing = next(p for p in (out, *out.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise BadInput(f"--out {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BadInput(f"--out {out}: {existing} is not writable")
    target = out / request.name
    if target.exists() and not target.is_dir():
        raise BadInput(f"{target} exists and is not a model folder")
