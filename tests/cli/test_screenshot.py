"""scripts/screenshot.py makes the README's picture from the running app: a real server, the
classify page with a photo classified and explained (Grad-CAM), saved as a PNG."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def test_the_screenshot_script_shows_a_verdict_and_a_heatmap(small_mobilenet, tmp_path):
    out = tmp_path / "shot.png"
    proc = subprocess.run([sys.executable, "scripts/screenshot.py", "--models", str(small_mobilenet["dir"].parent),
                           "--out", str(out), "--width", "1100", "--height", "1300"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    picture = Image.open(out)
    assert picture.size == (1100, 1300)
    # not a blank page: the photo, the verdict card and the heatmap's colours are there
    colours = picture.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is not None and len(colours) > 100


def test_without_a_models_folder_it_says_what_to_do(tmp_path):
    proc = subprocess.run([sys.executable, "scripts/screenshot.py", "--models", str(tmp_path / "none")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "convert a model first" in proc.stderr
