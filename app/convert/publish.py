"""Atomic writes of a model folder: build it hidden, swap it into place at the end.

Everything is built in a hidden staging folder next to the target
(``models/.<name>.tmp-<pid>-*``) and renamed into place only after the numbers have been
checked. A failure or an interruption (Ctrl-C, SIGTERM) removes the staging folder and leaves
any previous ``models/<name>/`` untouched; staging folders left by a killed process (SIGKILL,
power loss) are removed by the next conversion into the same folder.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from app.convert.errors import BadInput


@contextlib.contextmanager
def staging_folder(out: Path, name: str):
    """The hidden folder a model is built in, next to its target (see the module doc). On any
    failure or interruption it is removed, and the previous model stays as it was."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"--out {out}: cannot create the folder ({exc.strerror})") from exc
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-{os.getpid()}-", dir=out))
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it private; the model folder is not
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def publish(staging: Path, manifest: dict, target: Path) -> None:
    """Write the manifest last, then swap the staging folder into place."""
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    replace_atomically(staging, target)


def replace_atomically(staging: Path, target: Path) -> None:
    """Move ``staging`` to ``target``; an existing target is swapped out, then deleted."""
    if not target.exists():
        os.rename(staging, target)
        return
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    os.rename(target, old)
    os.rename(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def remove_stale_staging(out: Path) -> None:
    """Delete ``.<name>.tmp-<pid>-*`` / ``.<name>.old-<pid>`` folders whose process is gone."""
    for path in out.glob(".*"):
        match = re.match(r"^\..+\.(?:tmp|old)-(\d+)", path.name)
        if match and path.is_dir() and not _alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
