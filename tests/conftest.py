"""Shared fixtures: the `belka` CLI as a subprocess (or a conversion in process) and small models
built once per session."""
from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import pytest

from harness import models

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")


# `make test` runs two pytest workers (pytest-xdist, `-n 2 --dist loadgroup`): most of the suite
# uses one core at a time (a conversion, a page on wasm, a request), and this machine has two.
# Each test file goes to one worker, whole, so its module-scoped fixtures are built once; the
# files are shared out so that both workers take about as long, by the time each file took in a
# measured run (tests/durations.json, refreshed with `python scripts/test_durations.py
# JUNIT.xml`; a file not in it counts as DEFAULT_FILE_SECONDS). Within a worker the files run in
# the usual order. Session-scoped models are built once for both (harness/models.py).
DURATIONS = ROOT / "tests" / "durations.json"
DEFAULT_FILE_SECONDS = 20.0


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
    files = list(dict.fromkeys(item.path.relative_to(ROOT).as_posix() for item in items))
    known = json.loads(DURATIONS.read_text()) if DURATIONS.is_file() else {}
    group_of = balanced_groups({f: known.get(f, DEFAULT_FILE_SECONDS) for f in files}, workers)
    for item in items:
        item.add_marker(pytest.mark.xdist_group(group_of[item.path.relative_to(ROOT).as_posix()]))


def balanced_groups(seconds: dict[str, float], count: int) -> dict[str, str]:
    """{file: group name} for ``count`` groups of about equal total time: the longest file first,
    each to the group with the least time so far (longest processing time first)."""
    totals = [0.0] * max(count, 1)
    group_of = {}
    for name in sorted(seconds, key=lambda f: (-seconds[f], f)):
        lightest = totals.index(min(totals))
        totals[lightest] += seconds[name]
        group_of[name] = f"worker-{lightest}"
    return group_of


def run_belka(*args, env: dict | None = None, timeout: float = 900, cwd: Path = ROOT):
    """Run `belka ARGS...` the way a user does; return the CompletedProcess (text mode).
    ``env`` adds to this process's environment; a value of None removes that variable."""
    return models.run_belka(*args, env=env, timeout=timeout, cwd=cwd)


def convert_ok(*args, **kwargs) -> dict:
    """Run a conversion with --json --quiet, assert success, return the JSON summary."""
    proc = run_belka("convert", *args, "--json", "--quiet", **kwargs)
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:{proc.stdout[-2000:]}\nstderr:{proc.stderr[-4000:]}"
    return json.loads(proc.stdout)


def convert_shared(*args, timeout: float = 900) -> dict:
    """A model that tests need only to have (not to test its conversion): `belka convert ARGS`
    once for the whole run, both workers included, copied into ``--out`` (harness/models.py).
    A function as the first argument builds the source first (models.convert_built)."""
    build = args[0] if args and callable(args[0]) else None
    try:
        return models.convert_built(build, *args[1 if build else 0:], timeout=timeout)
    except models.ConversionFailed as exc:
        pytest.fail(f"the conversion of a shared test model failed: {exc}")


def convert_in_process(*args) -> dict:
    """`belka convert ARGS --json --quiet` in this process, for tests of what a conversion
    writes rather than of the command (no TensorFlow start-up per model; convert_ok runs the
    command): asserts exit 0, returns the JSON summary. TensorFlow is imported first, as the
    server's is, so this process keeps oneDNN (`belka convert` itself turns it off before its
    import: tf_runtime.conversion_process) and the TF.js step runs in export's child process."""
    from app import tf_runtime
    from app.cli import main

    tf_runtime.tensorflow()

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
    summary = convert_shared(*models.SMALL_MOBILENET, "--out", models_dir)
    summary["dir"] = Path(summary["path"])
    summary["manifest"] = json.loads((summary["dir"] / "manifest.json").read_text())
    return summary


TINY_LABELS = models.TINY_LABELS


@pytest.fixture(scope="session")
def tiny_graph_only(tmp_path_factory) -> dict:
    """The tiny classifier (harness/models.py) converted with --formats graph,saved: a classifier
    without a TF.js layers model (Grad-CAM on its graph, a SavedModel on the server). {"dir",
    "manifest", "keras": the .keras file it was converted from}."""
    summary = convert_shared(models.build_tiny_keras, "--formats", "graph,saved",
                             "--out", tmp_path_factory.mktemp("tiny") / "models", "--name", "tiny")
    summary["dir"] = Path(summary["path"])
    summary["manifest"] = json.loads((summary["dir"] / "manifest.json").read_text())
    summary["keras"] = summary["built"] / "tiny.keras"
    return summary


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes, to prove a folder was left untouched."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def small_detector(tmp_path_factory) -> dict:
    """An untrained (seeded) SSD-style detector, 64 px, 8x8 anchors, two classes ("square",
    "circle"), exported like the Object Detection API (harness/models.py) and converted with
    `belka convert coco-ssd --source DIR`. {"source": the folder with squares/ and labels.txt,
    "dir", "manifest"}."""
    out = tmp_path_factory.mktemp("detector-out")
    summary = convert_shared(models.build_small_detector, "--out", out)
    summary["source"] = summary["built"]
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
    summary = convert_shared("coco-ssd", "--source", ZOO_FIXTURE / "saved_model", "--out", out, timeout=1500)
    summary["source"] = ZOO_FIXTURE
    summary["dir"] = Path(summary["path"])
    summary["manifest"] = json.loads((summary["dir"] / "manifest.json").read_text())
    return summary
