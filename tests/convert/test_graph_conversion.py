"""The TF.js graph conversion gives the same graph on every machine: where TensorFlow runs
with oneDNN (x86 CPUs with AVX-512 VNNI/BF16 or AMX), Grappler would fuse ops TF.js cannot
run (MobileNetV3's hard-swish into one _FusedConv2D), so the conversion runs in a child
process with oneDNN off (app/convert/export.py write_graph_model), unless the process runs
TensorFlow with oneDNN off already, as `belka convert` does. The tests run the path this
machine takes and force the child's, whatever this machine's CPU."""
from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from app import tf_runtime
from app.convert import export, tfjs_graph
from app.convert.errors import BadInput

# the activations TF.js 4.22 runs fused into a convolution or a matmul (fused_util.ts)
TFJS_FUSED_ACTIVATIONS = {"relu", "relu6", "elu", "prelu", "leakyrelu", "sigmoid"}


def _save(tmp_path, name, model):
    """A SavedModel of ``model`` with a serving_default signature (input -> output)."""
    tf = tf_runtime.tensorflow()

    @tf.function(input_signature=[tf.TensorSpec([None, 16, 16, 3], tf.float32, name="input")])
    def serve(x):
        return {"output": model(x, training=False)}

    folder = tmp_path / name
    tf.saved_model.save(model, str(folder), signatures={"serving_default": serve})
    return folder


@pytest.fixture(scope="module")
def hard_swish_model(tmp_path_factory):
    """A convolution with a bias and a hard-swish activation (MobileNetV3's), as a SavedModel:
    with oneDNN on, Grappler fuses the three into one _FusedConv2D [BiasAdd, _FusedHardSwish]."""
    tf_runtime.tensorflow()
    import keras

    keras.utils.set_random_seed(5)
    model = keras.Sequential([
        keras.Input((16, 16, 3)),
        keras.layers.Conv2D(8, 3, activation="hard_silu", bias_initializer="random_normal"),
        keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    return _save(tmp_path_factory.mktemp("hard_swish"), "saved", model)


def _fused_activations(graph_dir) -> dict[str, list[str]]:
    """{fused node: its fused ops after the first (BiasAdd), lower case}."""
    nodes = json.loads((graph_dir / "model.json").read_text())["modelTopology"]["node"]
    return {node["name"]: [base64.b64decode(op).decode().lower().lstrip("_")
                           for op in node["attr"]["fused_ops"]["list"].get("s", [])[1:]]
            for node in nodes if node["op"] in export.FUSED_OPS}


@pytest.mark.parametrize("force_child", [False, True], ids=["as-this-machine-converts", "in-the-child"])
def test_the_graph_fuses_only_what_tfjs_runs(hard_swish_model, tmp_path, monkeypatch, force_child):
    if force_child:
        monkeypatch.setattr(tf_runtime, "onednn_enabled", lambda: True)
    export.write_graph_model(hard_swish_model, tmp_path / "graph", "none")
    fused = _fused_activations(tmp_path / "graph")
    assert fused, "the convolution and its bias were not fused at all"
    for name, activations in fused.items():
        assert set(activations) <= TFJS_FUSED_ACTIVATIONS, (name, activations)


@pytest.mark.parametrize("in_child", [False, True], ids=["in-this-process", "in-the-child"])
def test_ops_tfjs_lacks_are_named_on_either_path(tmp_path, monkeypatch, in_child):
    tf = tf_runtime.tensorflow()

    class Bessel(tf.Module):
        def __call__(self, x, training=False):
            return tf.reduce_mean(tf.math.special.bessel_i0e(x), axis=[1, 2])

    saved = _save(tmp_path, "bessel", Bessel())
    monkeypatch.setattr(tf_runtime, "onednn_enabled", lambda: in_child)
    with pytest.raises(BadInput, match=r"TF.js has no kernel for these ops of the model: BesselI0e;"):
        export.write_graph_model(saved, tmp_path / "graph", "none")


def _onednn_after_conversion_process(env: dict) -> str:
    code = ("import os; from app import tf_runtime; tf_runtime.conversion_process(); "
            "print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'), tf_runtime.onednn_enabled())")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          check=True)
    return proc.stdout.split()


def test_belka_convert_runs_its_tensorflow_without_onednn():
    """`belka convert` turns oneDNN off before TensorFlow is imported, so the graph conversion
    runs in its own process (no child importing TensorFlow again); a value the user set stays."""
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    assert _onednn_after_conversion_process(env) == ["0", "False"]
    assert _onednn_after_conversion_process({**env, "TF_ENABLE_ONEDNN_OPTS": "1"})[0] == "1"


@pytest.mark.parametrize("command, called", [(["convert", "keras", "missing.keras", "--labels", "l.txt"], True),
                                             (["verify", "missing-folder"], False)])
def test_only_conversions_turn_onednn_off(monkeypatch, command, called):
    from app import cli

    calls = []
    monkeypatch.setattr(tf_runtime, "conversion_process", lambda: calls.append(1))
    assert cli.main(command) == 2
    assert bool(calls) == called


def test_the_child_is_kept_for_the_next_conversion_and_replaced_when_gone(hard_swish_model, tmp_path,
                                                                          monkeypatch):
    """A server converts (a taught model's save) in one child that it keeps: the second conversion
    starts no TensorFlow; a child that died is replaced; a failure inside it is said, and the
    child goes on."""
    monkeypatch.setattr(tf_runtime, "onednn_enabled", lambda: True)
    export.write_graph_model(hard_swish_model, tmp_path / "first", "none")
    child = tfjs_graph.CHILD.pid
    assert child is not None
    export.write_graph_model(hard_swish_model, tmp_path / "second", "none")
    assert tfjs_graph.CHILD.pid == child
    assert _fused_activations(tmp_path / "second") == _fused_activations(tmp_path / "first")

    with pytest.raises(RuntimeError, match=r"(?s)child process with oneDNN off\) failed:\n.*SavedModel file does not exist"):
        tfjs_graph.CHILD.convert(tmp_path / "no-such-model", tmp_path / "third", "serving_default")
    assert tfjs_graph.CHILD.pid == child

    os.kill(child, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while tfjs_graph.CHILD.pid == child and time.monotonic() < deadline:
        time.sleep(0.05)
    export.write_graph_model(hard_swish_model, tmp_path / "fourth", "none")
    assert tfjs_graph.CHILD.pid not in (None, child)
    tfjs_graph.CHILD.stop()
    assert tfjs_graph.CHILD.pid is None
