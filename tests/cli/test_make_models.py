"""`make run`'s model step offline: the Makefile turns a failed download (exit 4) into its own
banner, without first printing the CLI's error line (written for someone running the command by
hand, it read like an instruction); any other failure still shows the CLI's error and stops.

The real Makefile runs in a scratch folder with a stand-in `.venv/bin/belka` (a shell script),
so no conversion runs and nothing is downloaded."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FAKE_BELKA = """#!/bin/bash
# a stand-in for the CLI: the download fails (exit 4) unless --weights none; FAKE_STATUS: another failure
echo "[1/6] Loading the source model ..." >&2
case "$*" in
  *"--weights none"*) mkdir -p models/mobilenet-v2 && echo '{}' > models/mobilenet-v2/manifest.json; exit 0 ;;
  *) if [ -n "$FAKE_STATUS" ]; then echo "belka: error: the TF.js graph model does not match" >&2; exit "$FAKE_STATUS"; fi
     echo "belka: error: Could not download the weights (no network). Either put a file ... or ..." >&2
     exit 4 ;;
esac
"""


@pytest.fixture
def scratch(tmp_path) -> Path:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    for name in ("Makefile", "pyproject.toml", "constraints.txt", "package.json", "package-lock.json"):
        shutil.copy(ROOT / name, tmp_path / name)
    belka = tmp_path / ".venv" / "bin" / "belka"
    belka.parent.mkdir(parents=True)
    belka.write_text(FAKE_BELKA)
    belka.chmod(belka.stat().st_mode | stat.S_IEXEC)
    # set up already (newer than what they were installed from)
    for stamp in (tmp_path / ".venv" / ".belka-installed", tmp_path / "node_modules" / ".belka-installed"):
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.touch()
    return tmp_path


def make_models(folder: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "models"], cwd=folder, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **env})


def test_offline_the_banner_says_it_and_no_cli_error_comes_first(scratch):
    proc = make_models(scratch)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "belka: error" not in output
    assert "!!! No internet for the ImageNet weights" in output
    assert "(No internet for the COCO SSD detector" in output
    assert (scratch / "models" / "mobilenet-v2" / "manifest.json").is_file()


def test_any_other_failure_still_shows_the_error_and_stops(scratch):
    proc = make_models(scratch, FAKE_STATUS="3")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "belka: error: the TF.js graph model does not match" in output
    assert "!!! No internet" not in output
