"""Shared fixtures: the `belka` CLI as a subprocess (or a conversion in process) and small models
built once per session."""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")


# `make test` runs two pytest workers (pytest-xdist, `-n 2 --dist loadgroup`): most of the suite
# uses one core at a time (a conversion, a page on wasm, a request), and this machine has two.
# The browser tests are one group, the rest the other; a group
# runs in one worker, file by file in order, so module- and session-scoped fixtures see the same
# sequence as in a plain `pytest` run.
@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items):
    for item in items:
        path = item.path.relative_to(ROOT).as_posix()
        item.add_marker(pytest.mark.xdist_group("browser" if path.startswith("tests/browser/") else "python"))


def run_belka(*args, env: dict | None = None, timeout: float = 900, cwd: Path = ROOT):
    """Run `belka ARGS...` the way a user does; return the CompletedProcess (text mode).
    ``env`` adds to this process's environment; a value of None removes that variable."""
    full_env = {key: value for key, value in {**os.environ, **(env or {})}.items() if value is not None}
    return subprocess.run([sys.executable, "-m", "app.cli", *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def convert_ok(*args, **kwargs) -> dict:
    """Run a conversion with --json --quiet, assert success, return the JSON summary."""
    proc = run_belka("convert", *args, "--json", "--quiet", **kwargs)
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:{proc.stdout[-2000:]}\nstderr:{proc.stderr[-4000:]}"
    return json.loads(proc.stdout)


def convert_in_process(*args) -> dict:
    """`belka convert ARGS --json --quiet` in this process, for tests of what a conversion
    writes rather than of the command (no TensorFlow start-up per model; convert_ok runs the
    command): asserts exit 0, returns the JSON summary."""
    from app.cli import main

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["convert", *map(str, args), "--json", "--quiet"])
    assert code == 0, f"exit {code}\nstdout:{stdout.getvalue()[-2000:]}"
    return json.loads(stdout.getvalue())


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def small_mobilenet(models_dir) -> dict:
    """MobileNetV2 alpha 0.35 / 96 px, seeded untrained weights, all three formats, verified."""
    summary = convert_ok("mobilenet-v2", "--weights", "none", "--alpha", "0.35", "--size", "96",
                         "--out", models_dir)
    summary["dir"] = Path(summary["path"])
    summary["manifest"] = json.loads((summary["dir"] / "manifest.json").read_text())
    return summary


TINY_LABELS = ["red", "green", "blue"]


def tiny_classifier(keras):
    """A 32 px Keras classifier of our own: two convolutions ("features" is the last), pooling,
    a dense head. Seeded, untrained."""
    keras.utils.set_random_seed(5)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv")(x)
    x = keras.layers.Conv2D(12, 3, padding="same", activation="relu", name="features")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(len(TINY_LABELS), name="logits")(x)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="session")
def tiny_graph_only(tmp_path_factory) -> dict:
    """tiny_classifier converted with --formats graph,saved: a classifier without a TF.js layers
    model (Grad-CAM on its graph, a SavedModel on the server). {"dir", "manifest", "keras": the
    .keras file it was converted from}."""
    from app import tf_runtime

    tf_runtime.tensorflow()
    import keras

    work = tmp_path_factory.mktemp("tiny")
    tiny_classifier(keras).save(work / "tiny.keras")
    (work / "labels.txt").write_text("\n".join(TINY_LABELS) + "\n")
    summary = convert_ok("keras", work / "tiny.keras", "--labels", work / "labels.txt", "--formats", "graph,saved",
                         "--out", work / "models", "--name", "tiny")
    summary["dir"] = Path(summary["path"])
    summary["manifest"] = json.loads((summary["dir"] / "manifest.json").read_text())
    summary["keras"] = work / "tiny.keras"
    return summary


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes, to prove a folder was left untouched."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def small_detector(tmp_path_factory) -> dict:
    """An untrained (seeded) SSD-style detector, 64 px, 8x8 anchors, two classes ("square",
    "circle"), exported like the Object Detection API (tests/detectors.py) and converted with
    `belka convert coco-ssd --source DIR`."""
    from harness.detectors import build_head, export_detector

    folder = tmp_path_factory.mktemp("detector")
    export_detector(build_head(64, 8, 2), folder / "squares", 64, 8)
    (folder / "labels.txt").write_text("square\ncircle\n")
    out = tmp_path_factory.mktemp("detector-out")
    summary = convert_ok("coco-ssd", "--source", folder / "squares", "--size", "64x64",
                         "--labels", folder / "labels.txt", "--out", out)
    summary["source"] = folder
    summary["dir"] = out / "squares"
    summary["manifest"] = json.loads((summary["dir"] / "manifest.json").read_text())
    return summary


ZOO_FIXTURE = ROOT.parent / "shared" / "fixtures" / "zoo-ssd-mobilenet-v2-random"


@pytest.fixture(scope="session")
def zoo_detector(tmp_path_factory) -> dict:
    """The TF2 zoo's ssd_mobilenet_v2_320x320_coco17_tpu-8 architecture with random weights
    (../shared/fixtures, too big for the repo), converted with `belka convert coco-ssd --source
    DIR` and its defaults. Skipped where that folder is absent, as in a user's clone."""
    if not (ZOO_FIXTURE / "saved_model" / "saved_model.pb").is_file():
        pytest.skip(f"the real-architecture detector is not here ({ZOO_FIXTURE} is absent, as in a user's "
                    "clone): it lives in the developers' shared folder")
    out = tmp_path_factory.mktemp("zoo-out")
    summary = convert_ok("coco-ssd", "--source", ZOO_FIXTURE / "saved_model", "--out", out, timeout=1500)
    summary["source"] = ZOO_FIXTURE
    summary["dir"] = Path(summary["path"])
    summary["manifest"] = json.loads((summary["dir"] / "manifest.json").read_text())
    return summary
