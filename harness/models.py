"""Converted models that the tests, the benchmarks and the scripts share, each built once.

A conversion is the slowest thing a test waits for (MobileNetV2 0.35/96: about a minute; the zoo
SSD: several), and many tests need the same model only to have a model. ``convert`` runs `belka
convert ARGS --json --quiet` once per distinct conversion and keeps the result in a cache folder;
every later call with the same conversion copies the cached model folder into the ``--out`` it
was given. Both pytest-xdist workers share the cache: a lock per conversion makes the second one
wait for the first instead of converting too.

A conversion whose source the caller builds first (a small Keras model, a detector exported
like the Object Detection API) goes through ``convert_built``: the source is built only when the
conversion is not cached yet, into the cache entry, and the key holds the code of the function
that builds it instead of the bytes it wrote (a saved ``.keras`` file records when it was saved,
so the same model saved twice differs).

The cache key is everything the conversion's result depends on:

- the arguments, where each one that names an existing file or folder stands for its name and
  its contents; the code of the build function, if any;
- Belka's own code and data (app/), this harness (harness/), the pinned packages
  (constraints.txt), TF.js (package-lock.json) and the Python version.

``--out`` is not part of the key: it only says where the copy goes. Tests of the conversion
itself (tests/convert) run `belka convert` directly, never through here.

The cache lives in ``.cache/conversions/`` in the repository (git-ignored; `make clean` removes
it) unless ``BELKA_TEST_CACHE`` names another folder; ``BELKA_TEST_CACHE=off`` converts every
time.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
# What a conversion's result depends on, besides its arguments.
CODE = ("app", "harness", "constraints.txt", "package-lock.json")
CODE_SUFFIXES = (".py", ".mjs", ".json", ".txt")


class ConversionFailed(RuntimeError):
    """`belka convert` exited with an error; the message holds its exit status and output."""


def run_belka(*args, env: dict | None = None, timeout: float = 900,
              cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`belka ARGS...` as a user runs it, in a child process (text mode). ``env`` adds to this
    process's environment; a value of None removes that variable."""
    full_env = {key: value for key, value in {**os.environ, **(env or {})}.items() if value is not None}
    return subprocess.run([sys.executable, "-m", "app.cli", *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def convert_uncached(*args, timeout: float = 900, **kwargs) -> dict:
    """`belka convert ARGS --json --quiet`; its JSON summary, or ConversionFailed."""
    proc = run_belka("convert", *args, "--json", "--quiet", timeout=timeout, **kwargs)
    if proc.returncode != 0:
        raise ConversionFailed(f"exit {proc.returncode}\nstdout:{proc.stdout[-2000:]}\n"
                               f"stderr:{proc.stderr[-4000:]}")
    return json.loads(proc.stdout)


def convert(*args, timeout: float = 900) -> dict:
    """``convert_uncached(*args)`` through the cache (see the module doc): the model folder is
    written into ``--out`` as the conversion would write it; returns the summary, its ``path``
    the folder in ``--out``."""
    return convert_built(None, *args, timeout=timeout)


def convert_built(build: Callable[[Path], list] | None, *args, timeout: float = 900) -> dict:
    """``convert`` of a source that ``build(folder)`` writes into ``folder`` (an empty folder of the
    cache entry), returning the conversion's first arguments (e.g. ["keras", folder / "m.keras"]);
    ``args`` follow them. The summary's ``built`` is that folder (read-only by convention: other
    tests and the other worker use it too)."""
    args = [str(a) for a in args]
    out, rest = _split_out(args)
    cache = cache_folder()
    if cache is None:
        cache = Path(tempfile.mkdtemp(prefix="belka-conversion-"))
    recipe = [f"build:{hashlib.sha256(inspect.getsource(build).encode()).hexdigest()}"] if build else []
    entry = cache / conversion_key(recipe + rest)
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / f"{entry.name}.lock"):
        if not (entry / "summary.json").is_file():
            _fill(entry, build, rest, timeout)
        summary = json.loads((entry / "summary.json").read_text())
    target = out / Path(summary["path"]).name
    if target.exists():
        shutil.rmtree(target)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(entry / "out" / target.name, target, symlinks=True)
    return {**summary, "path": str(target), "built": entry / "built"}


def _fill(entry: Path, build, args: list[str], timeout: float) -> None:
    """Builds the source (if any) into ``entry/built`` and converts it into ``entry/out``, under
    the entry's lock; ``summary.json`` is written last, so an entry without it is incomplete
    (a conversion that failed or was killed) and is made again."""
    shutil.rmtree(entry, ignore_errors=True)
    (entry / "built").mkdir(parents=True)
    try:
        first = [str(a) for a in build(entry / "built")] if build else []
        summary = convert_uncached(*first, *args, "--out", entry / "out", timeout=timeout)
        (entry / "summary.json").write_text(json.dumps(summary))
    except BaseException:
        shutil.rmtree(entry, ignore_errors=True)
        raise


def cache_folder() -> Path | None:
    where = os.environ.get("BELKA_TEST_CACHE", "")
    if where.lower() in ("off", "0", "no"):
        return None
    return Path(where) if where else ROOT / ".cache" / "conversions"


def conversion_key(args: list[str]) -> str:
    """The hash of the arguments (files and folders by name and contents) and of code_fingerprint()."""
    digest = hashlib.sha256(code_fingerprint().encode())
    for arg in args:
        path = Path(arg)
        if arg and path.exists():
            digest.update(f"path:{path.name}:{tree_hash(path)}".encode())
        else:
            digest.update(f"arg:{arg}".encode())
        digest.update(b"\0")
    return digest.hexdigest()[:24]


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """One hash of Belka's code and data, the pinned packages, TF.js's lock file and Python's version."""
    digest = hashlib.sha256(sys.version.encode())
    for name in CODE:
        digest.update(tree_hash(ROOT / name, CODE_SUFFIXES).encode())
    return digest.hexdigest()


def tree_hash(path: Path, suffixes: tuple[str, ...] | None = None) -> str:
    """sha256 of a file, or of every file under a folder (relative paths and contents, sorted;
    only ``suffixes`` when given; caches and bytecode left out)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and (suffixes is None or p.suffix in suffixes))
    for file in files:
        digest.update(file.relative_to(path).as_posix().encode() if file != path else b"")
        digest.update(b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def _split_out(args: list[str]) -> tuple[Path, list[str]]:
    """(the --out folder, the other arguments); ``--out`` is required here."""
    for i, arg in enumerate(args):
        if arg == "--out" and i + 1 < len(args):
            return Path(args[i + 1]), args[:i] + args[i + 2:]
        if arg.startswith("--out="):
            return Path(arg.split("=", 1)[1]), args[:i] + args[i + 1:]
    raise ValueError("harness.models.convert needs --out (where the model folder is copied to)")


@contextlib.contextmanager
def _locked(path: Path):
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# -- the small models the tests build ------------------------------------------------------------

TINY_LABELS = ["red", "green", "blue"]
SMALL_MOBILENET = ("mobilenet-v2", "--weights", "none", "--alpha", "0.35", "--size", "96")


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


def build_tiny_keras(folder: Path) -> list:
    """tiny_classifier saved as ``folder/tiny.keras`` (Keras 3) with ``folder/labels.txt``: the
    first arguments of its `belka convert`."""
    from app import tf_runtime

    tf_runtime.tensorflow()
    import keras

    tiny_classifier(keras).save(folder / "tiny.keras")
    (folder / "labels.txt").write_text("\n".join(TINY_LABELS) + "\n")
    return ["keras", folder / "tiny.keras", "--labels", folder / "labels.txt"]


def build_small_detector(folder: Path) -> list:
    """An untrained (seeded) SSD-style detector, 64 px, 8x8 anchors, two classes ("square",
    "circle"), exported like the Object Detection API into ``folder/squares`` (harness/detectors.py),
    with ``folder/labels.txt``: the first arguments of its `belka convert`."""
    from harness.detectors import build_head, export_detector

    export_detector(build_head(64, 8, 2), folder / "squares", 64, 8)
    (folder / "labels.txt").write_text("square\ncircle\n")
    return ["coco-ssd", "--source", folder / "squares", "--size", "64x64", "--labels", folder / "labels.txt"]
