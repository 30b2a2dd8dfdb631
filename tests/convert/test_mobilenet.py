"""`belka convert mobilenet-v2`: artifacts, manifest, verification, and the TF.js runtime."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from app.convert import verify
from app.convert.files import sha256_of
from tests.conftest import convert_in_process, convert_ok, run_belka


def test_writes_all_formats_and_a_complete_manifest(small_mobilenet):
    folder, manifest = small_mobilenet["dir"], small_mobilenet["manifest"]
    assert folder.name == "mobilenet-v2-0.35-96"
    assert (folder / "graph" / "model.json").is_file()
    assert (folder / "layers" / "model.json").is_file()
    assert (folder / "saved_model" / "saved_model.pb").is_file()
    assert manifest["task"] == "classification"
    assert manifest["input"] == {"shape": [None, 96, 96, 3], "dtype": "float32"}
    assert manifest["output"]["shape"] == [None, 1000]
    assert manifest["output"]["kind"] == "logits"
    assert manifest["preprocessing"]["size"] == [96, 96]
    assert manifest["preprocessing"]["crop"] == "center"
    assert manifest["preprocessing"]["value_range"] == [-1.0, 1.0]
    assert len(manifest["labels"]) == 1000
    assert manifest["labels"][335].startswith("fox squirrel")
    assert manifest["weights"]["provenance"] == "none"
    assert manifest["weights"]["trained"] is False
    assert manifest["source"]["alpha"] == 0.35
    assert set(manifest["formats"]) == {"graph", "layers", "saved"}
    for key in ("tensorflow", "tensorflowjs", "tf_keras", "belka"):
        assert manifest["versions"][key]
    assert manifest["verification"]["runtime"]["tfjs_version"] == "4.22.0"


def test_manifest_lists_every_file_with_size_and_sha256(small_mobilenet):
    folder, manifest = small_mobilenet["dir"], small_mobilenet["manifest"]
    on_disk = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                     if p.is_file() and p.name != "manifest.json")
    assert sorted(f["path"] for f in manifest["files"]) == on_disk
    for entry in manifest["files"]:
        path = folder / entry["path"]
        assert path.stat().st_size == entry["bytes"]
        assert sha256_of(path) == entry["sha256"]
    assert any(f["path"].startswith("graph/group1-shard") for f in manifest["files"])


def test_every_format_matches_the_original_within_1e4(small_mobilenet):
    reports = small_mobilenet["verification"]["formats"]
    assert set(reports) == {"saved", "graph", "layers"}
    for fmt, report in reports.items():
        assert report["ok"], fmt
        assert report["max_abs_diff"] <= 1e-4, fmt
        assert report["top5_identical"], fmt


def test_the_page_gets_float16_weights_checked_like_quantize_float16(small_mobilenet):
    """A float32 conversion also writes graph-float16/, the page's default download: the same
    graph with float16 weights, half the bytes, gated like --quantize float16 (5% relative)."""
    manifest, sizes = small_mobilenet["manifest"], small_mobilenet["bytes"]
    assert manifest["page_weights"] == {"graph": "graph-float16/", "dtype": "float16", "reason": None}
    report = manifest["verification"]["float16"]
    assert report["ok"] and report["max_rel_diff"] <= 0.05 and report["max_abs_diff"] > 0
    assert report["top1_agreement"] == 1.0, report
    assert 0.45 < sizes["graph-float16"] / sizes["graph"] < 0.55, sizes
    folder = small_mobilenet["dir"]
    float16 = json.loads((folder / "graph-float16" / "model.json").read_text())
    float32 = json.loads((folder / "graph" / "model.json").read_text())
    assert float16["modelTopology"] == float32["modelTopology"]
    floats = [w for g in float16["weightsManifest"] for w in g["weights"] if w["dtype"] == "float32"]
    assert floats and {w.get("quantization", {}).get("dtype") for w in floats} == {"float16"}
    # the graph the server's numbers are checked against stays float32
    assert manifest["verification"]["formats"]["graph"]["max_abs_diff"] <= 1e-4


def test_untrained_weights_are_not_degenerate(small_mobilenet):
    """Keras's untrained MobileNetV2 outputs 1/1000 everywhere; ours must give varied logits."""
    folder, manifest = small_mobilenet["dir"], small_mobilenet["manifest"]
    batch = verify.probe_batch(96, 96, [-1, 1])
    logits = verify.run_saved_model(folder / "saved_model", manifest["signature"], batch)
    assert logits.shape == (4, 1000)
    assert logits.std(axis=1).min() > 0.1  # varied across classes
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert probabilities.max() > 2 / 1000  # not the flat 0.001 of the degenerate model
    assert len(set(logits.argmax(axis=1))) >= 2 or np.abs(logits[0] - logits[1]).max() > 0.1


def test_layers_json_is_the_keras2_form_tfjs_reads(small_mobilenet):
    topology = json.loads((small_mobilenet["dir"] / "layers" / "model.json").read_text())["modelTopology"]
    text = json.dumps(topology)
    assert '"batch_input_shape"' in text
    assert '"batch_shape"' not in text
    assert "DTypePolicy" not in text


def test_layers_and_graph_models_load_and_run_in_tfjs(small_mobilenet):
    """tf.loadLayersModel / tf.loadGraphModel in @tensorflow/tfjs 4.22 (Node), on the wasm
    backend the conversion checks with and on the pure-JS cpu backend."""
    folder, manifest = small_mobilenet["dir"], small_mobilenet["manifest"]
    batch = verify.probe_batch(96, 96, [-1, 1], seed=7)  # not the conversion's probe
    expected = verify.run_saved_model(folder / "saved_model", manifest["signature"], batch)
    for backend in ("wasm", "cpu"):
        outputs, runtime = verify.run_tfjs(folder, ["layers", "graph"], batch, backend=backend)
        assert runtime["backend"] == backend and runtime["tfjs_version"] == "4.22.0"
        for fmt in ("layers", "graph"):
            assert outputs[fmt].shape == (4, 1000)
            np.testing.assert_allclose(outputs[fmt], expected, atol=1e-4, err_msg=f"{fmt} on {backend}")


def test_verify_command_passes_then_catches_tampering(small_mobilenet, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(small_mobilenet["dir"], copy)
    ok = run_belka("verify", copy, "--json")
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert set(report["formats"]) == {"graph", "layers"}
    assert all(r["max_abs_diff"] <= 1e-4 for r in report["formats"].values())

    shard = next((copy / "graph").glob("group1-shard1of*"))
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF
    shard.write_bytes(bytes(data))
    bad = run_belka("verify", copy)
    assert bad.returncode == 3
    assert "changed since conversion" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_verify_catches_wrong_numbers_even_with_matching_hashes(small_mobilenet, tmp_path):
    """Swap the weights of the graph model and re-hash: the numbers must give it away."""
    copy = tmp_path / "copy"
    shutil.copytree(small_mobilenet["dir"], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    model_json = json.loads((copy / "graph" / "model.json").read_text())
    # Shift 1000 weight values: the file stays valid and loadable, the logits change.
    shard = copy / "graph" / model_json["weightsManifest"][0]["paths"][-1]
    data = np.frombuffer(shard.read_bytes(), dtype=np.float32).copy()
    data[-1000:] += 1.0
    shard.write_bytes(data.tobytes())
    for entry in manifest["files"]:
        entry["sha256"] = sha256_of(copy / entry["path"])
    (copy / "manifest.json").write_text(json.dumps(manifest))
    proc = run_belka("verify", copy)
    assert proc.returncode == 3, proc.stderr
    assert "graph" in proc.stderr and "does not compute" in proc.stderr


def test_progress_lines_and_json_summary(tmp_path):
    # no --out (nor BELKA_MODELS_DIR): models/ in the current folder, which `belka serve` serves;
    # TF-DF's welcome banner not switched off (as for a user; tests/conftest.py switches it off)
    env = {"BELKA_MODELS_DIR": None, "TFDF_DISABLE_WELCOME_MESSAGE": None}
    proc = run_belka("convert", "mobilenet-v2", "--weights", "none", "--alpha", "0.35", "--size", "96",
                     "--formats", "graph,saved", "--name", "tiny", "--json", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)  # stdout holds the JSON and nothing else
    assert summary["name"] == "tiny" and summary["formats"] == ["graph", "saved"]
    assert summary["path"] == str(tmp_path / "models" / "tiny")
    tmp_path = tmp_path / "models"
    assert not (tmp_path / "tiny" / "layers").exists()
    assert "[1/7] Loading the source model" in proc.stderr
    assert "[6/7] Checking the numbers" in proc.stderr
    assert "[5/7] Skipping the ONNX model (not in --formats)" in proc.stderr
    assert "done in" in proc.stderr
    assert "UNTRAINED" in proc.stderr
    assert "ydf" not in proc.stderr  # no third-party banner (TF-DF's, printed when tensorflowjs is imported)
    assert [s["ok"] for s in summary["steps"]] == [True] * 7


def test_quantized_float16_and_uint8_are_smaller_and_checked(tmp_path):
    sizes = {}
    for quantize in ("float16", "uint8"):
        summary = convert_in_process("mobilenet-v2", "--weights", "none", "--alpha", "0.35", "--size", "96",
                                     "--quantize", quantize, "--formats", "graph,saved", "--out", tmp_path)
        assert summary["name"] == f"mobilenet-v2-0.35-96-{quantize}"
        report = summary["verification"]["formats"]["graph"]
        assert report["ok"] and "max_rel_diff" in report["threshold"]
        assert 0 < report["max_abs_diff"]  # quantization really happened
        assert summary["verification"]["formats"]["saved"]["max_abs_diff"] <= 1e-4  # server stays float32
        sizes[quantize] = summary["bytes"]["graph"]
        # no float16 copy of a quantized graph: the page downloads the graph as converted
        assert summary["page_weights"] == {"graph": "graph/", "dtype": quantize,
                                           "reason": f"converted with --quantize {quantize}"}
        assert "graph-float16" not in summary["bytes"] and "float16" not in summary["verification"]
        weights = json.loads((tmp_path / summary["name"] / "graph" / "model.json").read_text())["weightsManifest"]
        dtypes = {w.get("quantization", {}).get("dtype") for group in weights for w in group["weights"]}
        assert quantize in dtypes
    assert sizes["uint8"] < sizes["float16"]


def test_weights_from_a_file(tmp_path):
    from app.convert import mobilenet

    model, _ = mobilenet.build(0.35, 96, "none", seed=3)
    weights = tmp_path / "mine.weights.h5"
    model.save_weights(str(weights))
    summary = convert_in_process("mobilenet-v2", "--weights", weights, "--alpha", "0.35", "--size", "96",
                                 "--formats", "graph,saved", "--out", tmp_path / "out")
    assert summary["weights"] == {"provenance": "file", "trained": True, "file": "mine.weights.h5",
                                  "sha256": sha256_of(weights)}
    wrong = run_belka("convert", "mobilenet-v2", "--weights", weights, "--alpha", "0.5", "--size", "96",
                      "--out", tmp_path / "out2")
    assert wrong.returncode == 2
    assert "not a weights file for this MobileNetV2" in wrong.stderr
    assert not (tmp_path / "out2").exists()


def test_none_weights_are_deterministic():
    from app.convert import mobilenet

    first, _ = mobilenet.build(0.35, 96, "none", seed=0)
    second, _ = mobilenet.build(0.35, 96, "none", seed=0)
    other, _ = mobilenet.build(0.35, 96, "none", seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(first.get_weights(), second.get_weights()))
    assert not all(np.array_equal(a, b) for a, b in zip(first.get_weights(), other.get_weights()))


def test_imagenet_offline_fails_with_one_clear_paragraph(tmp_path):
    """No network here; the proxy makes sure of it even on a machine that has one."""
    dead_proxy = "http://127.0.0.1:9"
    env = {"HOME": str(tmp_path / "home"), "KERAS_HOME": str(tmp_path / "keras"),
           "https_proxy": dead_proxy, "HTTPS_PROXY": dead_proxy, "http_proxy": dead_proxy,
           "HTTP_PROXY": dead_proxy}
    proc = run_belka("convert", "mobilenet-v2", "--weights", "imagenet", "--alpha", "0.35", "--size", "96",
                     "--out", tmp_path / "out", env=env, timeout=300)
    assert proc.returncode == 4, proc.stderr
    assert "Traceback" not in proc.stderr
    message = proc.stderr[proc.stderr.index("belka: error:"):]
    assert "--weights FILE" in message and "--weights none" in message
    assert len(message.strip().splitlines()) == 1  # one paragraph
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_full_size_224_conversion(tmp_path):
    summary = convert_ok("mobilenet-v2", "--weights", "none", "--out", tmp_path)
    assert summary["name"] == "mobilenet-v2"
    manifest = json.loads((tmp_path / "mobilenet-v2" / "manifest.json").read_text())
    assert manifest["input"]["shape"] == [None, 224, 224, 3]
    assert manifest["source"] == {"kind": "mobilenet-v2", "alpha": 1.0, "size": 224,
                                  "builder": manifest["source"]["builder"]}
    for fmt, report in summary["verification"]["formats"].items():
        assert report["max_abs_diff"] <= 1e-4, fmt
    # About 14 MB of float32 weights, in 4 MB shards.
    assert 13e6 < summary["bytes"]["graph"] < 16e6
    assert len(list((tmp_path / "mobilenet-v2" / "graph").glob("group1-shard*"))) == 4
