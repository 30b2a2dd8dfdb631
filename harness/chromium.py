"""Debian's Chromium as the tests and benchmarks drive it: its path, its flags and the TF.js
backends it runs.

- ``CHROMIUM``: the browser (``BELKA_CHROMIUM`` overrides /usr/bin/chromium);
- ``BASE_ARGS``: flags every launch gets (no sandbox, no background traffic);
- ``SWIFTSHADER_ARGS``: WebGPU and WebGL on the CPU through SwiftShader, so all four TF.js backends
  run on machines without a GPU. Never --disable-gpu: it turns WebGPU off. These flags also make
  Chromium draw and composite every page through SwiftShader's Vulkan, which no user without a
  GPU gets (they get Chromium's software compositor): bench/page_bench.py measures wasm and cpu
  without them;
- ``ARGS``: BASE_ARGS + SWIFTSHADER_ARGS, what the tests launch with;
- ``FAKE_CAMERA_ARGS``: a fake camera, allowed without asking; ``fake_camera_args(clip)`` adds
  the Y4M clip it plays (harness/camera.py writes one);
- ``BACKENDS``: TF.js's backends, ``SWIFTSHADER_BACKENDS`` those that run on SwiftShader here;
- ``args_for(backend)``: the flags for a backend; ``label(backend)``: its name in reports
  ("webgl-swiftshader"); ``launch(playwright, ...)``: a Chromium browser with these flags.
"""
from __future__ import annotations

import os
from pathlib import Path

CHROMIUM = os.environ.get("BELKA_CHROMIUM", "/usr/bin/chromium")
BASE_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run", "--disable-quic"]
SWIFTSHADER_ARGS = ["--enable-unsafe-webgpu", "--use-angle=swiftshader", "--enable-features=Vulkan",
                    "--use-webgpu-adapter=swiftshader"]
ARGS = BASE_ARGS + SWIFTSHADER_ARGS
FAKE_CAMERA_ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]

BACKENDS = ("webgpu", "webgl", "wasm", "cpu")
SWIFTSHADER_BACKENDS = ("webgl", "webgpu", "ort-webgpu")  # no GPU here: Chromium renders these on the CPU


def fake_camera_args(clip: Path | str) -> list[str]:
    """The fake camera's flags, playing ``clip`` (a Y4M file) as its video."""
    return [*FAKE_CAMERA_ARGS, f"--use-file-for-fake-video-capture={clip}"]


def args_for(backend: str, swiftshader: bool = False) -> list[str]:
    """The flags for a page on ``backend``: SwiftShader's for webgl and webgpu (or everywhere with
    ``swiftshader``), else BASE_ARGS, Chromium's own GPU setup as a user's browser has."""
    return ARGS if backend in SWIFTSHADER_BACKENDS or swiftshader else BASE_ARGS


def label(backend: str) -> str:
    """The backend's name in reports: webgl and webgpu say they ran on SwiftShader."""
    return f"{backend}-swiftshader" if backend in SWIFTSHADER_BACKENDS else backend


def launch(playwright, args: list[str] | None = None, **options):
    """Chromium through Playwright (``playwright.chromium.launch``) with ``args`` (default ARGS);
    raises FileNotFoundError when the browser is not installed."""
    if not os.path.exists(CHROMIUM):
        raise FileNotFoundError(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS if args is None else args, **options)
