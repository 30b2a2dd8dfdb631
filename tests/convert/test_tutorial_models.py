"""The Keras models people actually train (TensorFlow's tutorials, keras.applications), built
in the test with untrained but non-degenerate weights at small sizes, converted by the CLI:

- the five models of issue 11 (augmentation + Rescaling CNN; transfer learning with
  preprocess_input and a MobileNetV2 base called with training=False and a one-logit head;
  EfficientNetB0 with its Normalization; a Keras 2 .h5 with a Lambda; ResNet50): exit 0,
  graph, SavedModel and layers model, each within tolerance of the original in TF.js;
- binary heads (logit and sigmoid) as two classes whose probabilities add up to 1;
- a model whose Lambda is not affine: still converts, without a layers model, says why,
  and the server explains it from the SavedModel;
- `belka convert keras-app NAME` with its family's preprocessing; quantized agreement.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from app import tf_runtime
from app.convert import verify
from app.convert.applications import PRESETS, calibrate_batchnorm
from tests.conftest import convert_in_process, run_belka

SIZE = 48


def _calibrated(model, preset: str = "raw"):
    calibrate_batchnorm(model, PRESETS[preset], seed=0)
    return model


def _flowers(keras):
    """TensorFlow's "Image classification" tutorial model (Keras 3)."""
    return keras.Sequential([
        keras.Input((SIZE, SIZE, 3)),
        keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.1), keras.layers.RandomZoom(0.1),
        keras.layers.Rescaling(1.0 / 255),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Dropout(0.2), keras.layers.Flatten(),
        keras.layers.Dense(16, activation="relu"), keras.layers.Dense(5)])


def _transfer(keras, head_activation=None):
    """TensorFlow's "Transfer learning" tutorial model: cats vs dogs, one output unit (Keras 3)."""
    augmentation = keras.Sequential([keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.2)])
    base = keras.applications.MobileNetV2(input_shape=(SIZE, SIZE, 3), include_top=False, weights=None, alpha=0.35)
    _calibrated(base, "tf")
    base.trainable = False
    inputs = keras.Input((SIZE, SIZE, 3))
    x = augmentation(inputs)
    x = keras.applications.mobilenet_v2.preprocess_input(x)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(1, activation=head_activation)(x)
    return keras.Model(inputs, outputs)


def _lambda_h5(keras2):
    """A Keras 2 model with `Lambda(lambda t: t / 127.5 - 1)` before a MobileNetV2 base."""
    inputs = keras2.Input((SIZE, SIZE, 3))
    x = keras2.layers.Lambda(lambda t: t / 127.5 - 1)(inputs)
    base = keras2.applications.MobileNetV2(input_shape=(SIZE, SIZE, 3), include_top=False, weights=None, alpha=0.35)
    _calibrated(base, "tf")
    x = base(x)
    x = keras2.layers.GlobalAveragePooling2D()(x)
    outputs = keras2.layers.Dense(3, activation="softmax")(x)
    return keras2.Model(inputs, outputs)


def _not_affine(keras):
    """A Lambda that squares its input: no layers model can hold it."""
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Lambda(lambda t: (t / 255.0) ** 2)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


@pytest.fixture(scope="session")
def tutorial_models(tmp_path_factory):
    tf_runtime.tensorflow()
    import keras

    keras2 = tf_runtime.tf_keras()
    folder = tmp_path_factory.mktemp("tutorial_models")
    keras.utils.set_random_seed(3)
    _flowers(keras).save(folder / "flowers.keras")
    _transfer(keras).save(folder / "transfer.keras")
    _transfer(keras, "sigmoid").save(folder / "transfer_sigmoid.keras")
    _calibrated(keras.applications.EfficientNetB0(weights=None, input_shape=(32, 32, 3),
                                                  classifier_activation=None)).save(folder / "efficientnet.keras")
    _calibrated(keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classifier_activation=None),
                "caffe").save(folder / "resnet50.keras")
    _not_affine(keras).save(folder / "squares.keras")
    keras2.utils.set_random_seed(4)
    _lambda_h5(keras2).save(folder / "lambda.h5")
    for name, labels in {"five": ["daisy", "dandelion", "roses", "sunflowers", "tulips"],
                         "two": ["cat", "dog"], "three": ["a", "b", "c"],
                         "imagenet": [f"class {i}" for i in range(1000)]}.items():
        (folder / f"{name}.txt").write_text("\n".join(labels) + "\n")
    return folder


# (model file, labels, extra flags)
ISSUE_CASES = {
    "flowers": ("flowers.keras", "five", []),
    "transfer": ("transfer.keras", "two", ["--value-range", "0,255"]),
    "efficientnet": ("efficientnet.keras", "imagenet", ["--preprocessing", "raw"]),
    "lambda": ("lambda.h5", "three", ["--value-range", "0,255"]),
    "resnet50": ("resnet50.keras", "imagenet", ["--preprocessing", "caffe"]),
}


@pytest.fixture(scope="session")
def converted_cases(tutorial_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("tutorial_converted")
    summaries = {}
    for case, (filename, labels, flags) in ISSUE_CASES.items():
        summaries[case] = convert_in_process("keras", tutorial_models / filename, "--labels",
                                             tutorial_models / f"{labels}.txt", *flags, "--out", out, "--name", case)
    return out, summaries


@pytest.mark.parametrize("case", list(ISSUE_CASES))
def test_the_issue_models_convert_with_a_layers_model(converted_cases, case):
    out, summaries = converted_cases
    summary = summaries[case]
    manifest = json.loads((out / case / "manifest.json").read_text())
    assert summary["formats"] == ["graph", "layers", "saved"], manifest["conversion"]["layers_model"]
    assert manifest["conversion"]["layers_model"] == {"written": True, "reason": None}
    for fmt, report in summary["verification"]["formats"].items():
        assert report["ok"] and report["top1_agreement"] == 1.0, (fmt, report)
        assert report["max_abs_diff"] <= report["threshold"]["max_abs_diff"], (fmt, report)
    # augmentation is the identity at inference: no random op in the graph model
    graph = json.loads((out / case / "graph" / "model.json").read_text())
    ops = {node["op"] for node in graph["modelTopology"]["node"]}
    assert not {op for op in ops if "Random" in op or "Stateless" in op}, ops
    layers = json.loads((out / case / "layers" / "model.json").read_text())
    classes = {layer["class_name"] for layer in layers["modelTopology"]["model_config"]["config"]["layers"]}
    assert not classes & {"RandomFlip", "RandomRotation", "RandomZoom", "Lambda", "TFOpLambda"}, classes


def test_outputs_vary_with_the_input(converted_cases):
    """The test models are not degenerate: their outputs differ from image to image."""
    out, summaries = converted_cases
    tf = tf_runtime.tensorflow()
    for case in ISSUE_CASES:
        manifest = json.loads((out / case / "manifest.json").read_text())
        batch = verify.probe_batch(*manifest["preprocessing"]["size"], manifest["preprocessing"])
        loaded = tf.saved_model.load(str(out / case / "saved_model"))
        outputs = loaded.signatures["serving_default"](input=tf.constant(batch))["output"].numpy()
        assert np.ptp(outputs, axis=0).max() > 1e-3, case


def test_the_transfer_model_is_a_binary_classifier(converted_cases):
    out, _ = converted_cases
    manifest = json.loads((out / "transfer" / "manifest.json").read_text())
    assert manifest["output"]["shape"] == [None, 2]
    assert manifest["output"]["kind"] == "logits"
    assert manifest["output"]["binary"] == {"head": "logit", "negative": "cat", "positive": "dog"}
    assert manifest["explain"]["gradcam"] == "layers"


def test_caffe_and_normalization_presets_in_the_manifest(converted_cases):
    out, _ = converted_cases
    resnet = json.loads((out / "resnet50" / "manifest.json").read_text())["preprocessing"]
    assert resnet["color"] == "bgr" and resnet["mean"] == PRESETS["caffe"]["mean"]
    layers = (out / "efficientnet" / "layers" / "model.json").read_text()
    assert '"class_name": "Normalization"' in layers


def test_a_sigmoid_head_gives_two_probabilities(tutorial_models, tmp_path):
    summary = convert_in_process("keras", tutorial_models / "transfer_sigmoid.keras", "--labels",
                                 tutorial_models / "two.txt", "--value-range", "0,255", "--formats", "graph,saved",
                                 "--out", tmp_path, "--name", "transfer_sigmoid")
    manifest = json.loads((tmp_path / "transfer_sigmoid" / "manifest.json").read_text())
    assert manifest["output"]["kind"] == "probabilities"
    assert manifest["output"]["binary"]["head"] == "sigmoid"
    assert summary["verification"]["formats"]["graph"]["ok"]
    tf = tf_runtime.tensorflow()
    loaded = tf.saved_model.load(str(tmp_path / "transfer_sigmoid" / "saved_model"))
    rows = loaded.signatures["serving_default"](input=tf.constant(verify.probe_batch(SIZE, SIZE, [0, 255])))
    rows = rows["output"].numpy()
    assert rows.shape == (4, 2) and np.allclose(rows.sum(axis=1), 1, atol=1e-6) and (rows >= 0).all()


def test_a_model_without_a_layers_model_still_converts_and_explains(tutorial_models, tmp_path):
    proc = run_belka("convert", "keras", tutorial_models / "squares.keras", "--labels",
                     tutorial_models / "three.txt", "--preprocessing", "torch", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "NO LAYERS MODEL" in proc.stderr and "Lambda" in proc.stderr
    manifest = json.loads((tmp_path / "squares" / "manifest.json").read_text())
    assert "layers" not in manifest["formats"] and not (tmp_path / "squares" / "layers").exists()
    assert "Lambda" in manifest["conversion"]["layers_model"]["reason"]
    explain = manifest["explain"]
    assert explain["gradcam"] == "graph" and explain["server"] == "saved_model"
    assert explain["shape"][:2] == [44, 44], explain  # the second Conv2D, before the pooling
    assert manifest["preprocessing"]["std"] == PRESETS["torch"]["std"]

    from app.inference.classifier import Classifier
    from app.inference.explainer import ExplainError, Explainer
    from app.inference.gradcam import normalise
    from app.registry import ModelInfo

    classifier = Classifier(ModelInfo("squares", tmp_path / "squares", manifest))
    explainer = Explainer(classifier)
    assert [name for name, _, _ in explainer.layers()] == [explain["layer"]]
    image = verify.probe_batch(SIZE, SIZE, manifest["preprocessing"])[3]
    layer, result = explainer.gradcam(image, 1, None)
    assert layer == explain["layer"] and result.heatmap.shape == tuple(explain["shape"][:2])
    assert 0 <= result.heatmap.min() and result.heatmap.max() <= 1
    # the same maths by hand on the original model
    tf = tf_runtime.tensorflow()
    import keras

    model = keras.models.load_model(tutorial_models / "squares.keras", compile=False, safe_mode=False)
    split = keras.Model(model.inputs, [model.get_layer(explain["layer"]).output, model.output])
    with tf.GradientTape() as tape:
        maps, outputs = split(image[None], training=False)
        score = outputs[:, 1]
    weights = tf.reduce_mean(tape.gradient(score, maps), axis=(1, 2), keepdims=True)
    expected = normalise(tf.nn.relu(tf.reduce_sum(maps * weights, axis=-1)).numpy())[0]
    assert np.abs(expected - result.heatmap).max() < 1e-4
    with pytest.raises(ExplainError, match="one layer"):
        explainer.gradcam(image, 1, "conv2d")


def test_keras_app_by_name(tmp_path):
    """MobileNetV3: raw pixels, the normalisation inside; its Keras 3 hard_silu / hard_sigmoid
    activations and keepdims poolings rebuilt from TF.js layers; uint8 agreement reported."""
    proc = run_belka("convert", "keras-app", "mobilenetv3small", "--weights", "none", "--size", "32",
                     "--quantize", "uint8", "--out", tmp_path, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["name"] == "mobilenetv3small-32-uint8"
    assert summary["formats"] == ["graph", "layers", "saved"], proc.stderr[-2000:]
    manifest = json.loads((tmp_path / summary["name"] / "manifest.json").read_text())
    assert manifest["source"]["application"] == "MobileNetV3Small"
    assert manifest["preprocessing"]["preset"] == "raw" and manifest["preprocessing"]["value_range"] == [0, 255]
    assert len(manifest["labels"]) == 1000 and not manifest["weights"]["trained"]
    assert manifest["explain"]["gradcam"] == "layers"
    layers = json.loads((tmp_path / summary["name"] / "layers" / "model.json").read_text())
    configs = layers["modelTopology"]["model_config"]["config"]["layers"]
    assert not [c for c in configs if c["config"].get("activation") in ("hard_silu", "hard_sigmoid")]
    assert not [c for c in configs if c["config"].get("keepdims")]
    for fmt in ("graph", "layers"):
        report = summary["verification"]["formats"][fmt]
        assert report["ok"] and 0 <= report["top1_agreement"] <= 1 and report["max_abs_diff"] > 0, report
    # the graph model runs on the page's wasm backend: its fused ops' biases are rank 1
    graph = json.loads((tmp_path / summary["name"] / "graph" / "model.json").read_text())
    fused = [n for n in graph["modelTopology"]["node"] if n["op"] in ("_FusedConv2D", "FusedDepthwiseConv2dNative")]
    shapes = {w["name"]: w["shape"] for g in graph["weightsManifest"] for w in g["weights"]}
    assert fused and all(len(shapes[n["input"][2]]) == 1 for n in fused if len(n["input"]) > 2)


def test_keras_app_bad_names_and_offline_weights(tmp_path):
    unknown = run_belka("convert", "keras-app", "NotANet", "--out", tmp_path)
    assert unknown.returncode == 2 and "EfficientNetB0" in unknown.stderr
    size = run_belka("convert", "keras-app", "EfficientNetB0", "--size", "64", "--out", tmp_path)
    assert size.returncode == 2 and "224" in size.stderr
    assert not list(tmp_path.iterdir())
