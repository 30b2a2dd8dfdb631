"""The fake camera's clip: a white square moving on a circle over grey noise, which the square
detector (harness/detectors.py ``train_square_detector``) finds, written as Y4M for Chromium's
``--use-file-for-fake-video-capture`` (harness/chromium.py ``fake_camera_args``).

- ``SIZE``: the square detector's input (64 px); ``CLIP``: the clip's frames (128 px);
  ``SIDE``: the square in the clip (32 px: 16 px at the model's size, as trained);
- ``clip_frame(k, rng)``: frame k and where its square is; ``write_y4m(path, frames)``: the clip;
  ``write_clip(path)``: the 40-frame clip the tests and bench/detect_bench.py play.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

SIZE = 64          # the detector's input
CLIP = 128         # the fake camera's frames
SIDE = 32          # the square in the clip (16 px at the model's size, as trained)
FRAMES = 40        # one turn of the circle


def clip_frame(k: int, rng) -> tuple[np.ndarray, tuple[int, int]]:
    """Frame k of the clip: grey noise with the white square on a circle; (frame, (top, left))."""
    angle = 2 * np.pi * k / FRAMES
    top = int(round((CLIP - SIDE) / 2 + 40 * np.sin(angle)))
    left = int(round((CLIP - SIDE) / 2 + 40 * np.cos(angle)))
    frame = rng.integers(0, 100, (CLIP, CLIP)).astype(np.uint8)
    frame[top:top + SIDE, left:left + SIDE] = 255
    return frame, (top, left)


def write_y4m(path: Path, frames: list[np.ndarray], fps: int = 10) -> None:
    """Grey frames as a Y4M clip (4:2:0, neutral chroma) for --use-file-for-fake-video-capture."""
    height, width = frames[0].shape
    chroma = np.full((height // 2) * (width // 2), 128, np.uint8).tobytes()
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            f.write(b"FRAME\n" + frame.tobytes() + chroma + chroma)


def write_clip(path: Path, fps: int = 10, seed: int = 7) -> Path:
    """The moving square's clip (FRAMES frames of noise seeded with ``seed``) at ``path``."""
    rng = np.random.default_rng(seed)
    write_y4m(path, [clip_frame(k, rng)[0] for k in range(FRAMES)], fps=fps)
    return path
