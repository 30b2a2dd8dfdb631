"""The README's code blocks run as written: every shell command and the Python example, in a
fresh folder (with this checkout's .venv), in the README's order, against the server the README
starts. The one change: the server's port 8000 becomes a free port (8000 may be taken here).

Commands that cannot run here are listed in NOT_RUN with the reason; a README command that is
in neither list fails the test, so a new command gets run (or a reason) when the README changes.
The JSON blocks are sample answers: the real answers must have the keys they show.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from harness.server import free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

NOT_RUN = {
    "make run": "starts the server for good (its steps run below, one by one)",
    "make test": "this is the test suite itself (CI runs it)",
    ".venv/bin/belka serve --engine ray --replicas 2": "a second server on the same port; "
                                                       "tests/api/test_ray_engine.py runs it on a local Ray instance",
    "python3 -m http.server 8080 --directory site": "serves for good (tests/browser/test_static_site.py "
                                                     "serves an export and runs the pages on it)",
    ".venv/bin/belka convert keras flowers.keras --labels flowers.txt": "needs the user's own model file",
    ".venv/bin/belka convert keras-app EfficientNetB0": "downloads ImageNet weights (no internet here)",
    ".venv/bin/belka convert coco-ssd --source exported/saved_model --labels my_classes.txt":
        "needs the user's own exported detector",
    ".venv/bin/belka convert onnx resnet18.onnx --labels imagenet_classes.txt":
        "needs the PyTorch export above (tests/convert/test_onnx_convert.py and tests/browser/test_onnx_in_page.py "
        "convert real torchvision exports from ../shared/fixtures)",
}
# Python blocks that cannot run here, by their first line, with the reason
PYTHON_NOT_RUN = {
    "import torch, torchvision": "PyTorch is the user's, not a Belka dependency (no torch in .venv)",
}


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), re.S)


def shell_commands() -> list[str]:
    commands = []
    for block in code_blocks("sh"):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def keys_of(sample: str) -> set[str]:
    return set(re.findall(r'"(\w+)":', sample))


def test_the_readme_runs_as_written(tmp_path):
    commands = shell_commands()
    unknown = [c for c in commands if c not in NOT_RUN and not c.startswith((".venv/bin/belka ", "curl "))]
    assert not unknown, f"README commands this test does not know how to run: {unknown}"
    assert set(NOT_RUN) <= set(commands), f"listed but gone from the README: {set(NOT_RUN) - set(commands)}"

    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    from PIL import Image
    from skimage import data

    Image.fromarray(data.chelsea()).save(tmp_path / "cat.jpg")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BELKA_")}  # the defaults, as a user has
    outputs: dict[str, str] = {}
    server = None
    try:
        for command in commands:
            if command in NOT_RUN:
                continue
            command = command.replace("8000", str(port))
            if " serve " in f"{command} ":
                server = subprocess.Popen(shlex.split(command), cwd=tmp_path, env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                wait_for(server, f"http://127.0.0.1:{port}/healthz")
                continue
            proc = subprocess.run(shlex.split(command), cwd=tmp_path, env=env, capture_output=True, text=True,
                                  timeout=600)
            assert proc.returncode == 0, f"{command}\nexit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
            outputs[command] = proc.stdout

        # the curl answers are JSON, and the predict answer has the keys the README's sample shows
        answers = {c: json.loads(out) for c, out in outputs.items() if c.startswith("curl ")}
        predict = next(a for c, a in answers.items() if "/predict" in c)
        samples = code_blocks("json")
        assert samples and keys_of(samples[0]) - {"index", "label", "probability"} <= (
            set(predict) | set(predict["predictions"][0]) | set(predict["predictions"][0]["timings"]))
        assert len(predict["predictions"][0]["top_k"]) == 3
        listed = next(a for c, a in answers.items() if c.endswith("/api/models"))
        assert [m["name"] for m in listed] == ["mobilenet-v2-0.35-96-float16"]

        # the Python example, as written (its port changed)
        python_blocks = code_blocks("python")
        assert set(PYTHON_NOT_RUN) <= {block.splitlines()[0] for block in python_blocks}
        for block in python_blocks:
            if block.splitlines()[0] in PYTHON_NOT_RUN:
                continue
            proc = subprocess.run([sys.executable, "-c", block.replace("8000", str(port))], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=120)
            assert proc.returncode == 0, proc.stderr[-3000:]
            assert "'label'" in proc.stdout and "'probability'" in proc.stdout
    finally:
        if server is not None:
            server.terminate()
            log = server.communicate(timeout=30)[0]
            # the start-up line the README quotes
            assert f"Belka on http://127.0.0.1:{port}/ serving {tmp_path / 'models'}: " \
                   "mobilenet-v2-0.35-96-float16 (classification)" in log, log[-2000:]


def wait_for(proc: subprocess.Popen, url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"the server stopped: {proc.stdout.read()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("the server did not start")
            time.sleep(0.3)
