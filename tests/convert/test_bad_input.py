"""Bad input: a clear one-line error, exit code 2, no traceback, nothing written."""
from __future__ import annotations

import h5py
import pytest

from app import tf_runtime
from tests.conftest import ROOT, run_belka


def assert_rejected(proc, *fragments, out=None):
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr
    if out is not None:
        assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    keras2 = tf_runtime.tf_keras()
    model = keras2.Sequential([keras2.Input((8, 8, 3)), keras2.layers.Flatten(), keras2.layers.Dense(3)])
    model.save(folder / "three_classes.h5")
    model.save_weights(str(folder / "weights_only.h5"))
    data = (folder / "three_classes.h5").read_bytes()
    (folder / "truncated.h5").write_bytes(data[: len(data) // 3])
    (folder / "notes.keras").write_text("this is not a model")
    (folder / "two.txt").write_text("cat\ndog\n")
    (folder / "three.txt").write_text("cat\ndog\nsquirrel\n")
    (folder / "not_a_saved_model").mkdir()
    flat = keras2.Sequential([keras2.Input((12,)), keras2.layers.Dense(3)])
    flat.save(folder / "not_an_image_model.h5")
    return folder


@pytest.mark.parametrize("model, labels, fragments", [
    ("nope.keras", "three.txt", ["no such file"]),
    (".", "three.txt", ["is a folder", "belka convert saved-model"]),
    ("notes.keras", "three.txt", ["not a Keras model file"]),
    ("truncated.h5", "three.txt", ["damaged HDF5 file"]),
    ("weights_only.h5", "three.txt", ["holds only weights"]),
    ("three_classes.h5", "two.txt", ["outputs 3 classes but the labels file has 2 labels"]),
    ("three_classes.h5", "none.txt", ["--labels", "no such file"]),
    ("not_an_image_model.h5", "three.txt", ["one RGB image input"]),
])
def test_bad_keras_input(files, tmp_path, model, labels, fragments):
    proc = run_belka("convert", "keras", files / model, "--labels", files / labels, "--out", tmp_path / "out")
    assert_rejected(proc, *fragments, out=tmp_path / "out")


def test_weights_only_file_really_has_no_model(files):
    with h5py.File(files / "weights_only.h5") as h5:
        assert "model_config" not in h5.attrs


def test_folder_that_is_not_a_saved_model(files, tmp_path):
    proc = run_belka("convert", "saved-model", files / "not_a_saved_model", "--labels", files / "three.txt",
                     "--out", tmp_path / "out")
    assert_rejected(proc, "not a SavedModel folder", out=tmp_path / "out")


def test_out_is_a_file(files, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (blocker, blocker / "models"):
        proc = run_belka("convert", "keras", files / "three_classes.h5", "--labels", files / "three.txt",
                         "--out", out)
        assert_rejected(proc, "is a file, not a folder")
    assert blocker.read_text() == "x"


def test_unwritable_out(files, tmp_path):
    proc = run_belka("convert", "keras", files / "three_classes.h5", "--labels", files / "three.txt",
                     "--out", "/proc/belka-models")
    assert_rejected(proc, "--out")


@pytest.mark.parametrize("flags, fragment", [
    (["--alpha", "0.6"], "invalid choice: 0.6"),
    (["--size", "100"], "invalid choice: 100"),
    (["--size", "big"], "invalid int value"),
    (["--quantize", "int4"], "invalid choice: 'int4'"),
    (["--formats", "graph,tflite"], "--formats: unknown tflite"),
    (["--formats", ","], "--formats: unknown (empty)"),
    (["--name", "../escape"], "--name '../escape'"),
    (["--weights", "missing.h5"], "--weights missing.h5: no such file"),
    (["--colour", "red"], "unrecognized arguments"),
])
def test_bad_flag_values(tmp_path, flags, fragment):
    proc = run_belka("convert", "mobilenet-v2", "--out", tmp_path / "out", *flags)
    assert_rejected(proc, fragment, out=tmp_path / "out")


def test_bad_value_range(files, tmp_path):
    proc = run_belka("convert", "keras", files / "three_classes.h5", "--labels", files / "three.txt",
                     "--value-range", "1,0", "--out", tmp_path / "out")
    assert_rejected(proc, "LO must be smaller than HI", out=tmp_path / "out")


def test_verify_on_a_folder_without_manifest(tmp_path):
    proc = run_belka("verify", tmp_path)
    assert_rejected(proc, "not a Belka model folder")


def test_script_wrapper_is_the_same_command(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "convert.py"), "mobilenet-v2",
                           "--alpha", "2", "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert_rejected(proc, "invalid choice", out=tmp_path / "out")
    helped = subprocess.run([sys.executable, str(ROOT / "scripts" / "convert.py"), "--help"],
                            capture_output=True, text=True)
    assert helped.returncode == 0 and "mobilenet-v2" in helped.stdout
