"""The converted models load in TF.js in a real browser (the runtime our users have)."""
from __future__ import annotations

import numpy as np
import pytest

from app.convert import verify

LOAD_AND_RUN = """
async ({name, input, shape}) => {
  await tf.setBackend('cpu');
  const x = tf.tensor(input, shape);
  const out = {};
  const layers = await tf.loadLayersModel(`/models/${name}/layers/model.json`);
  const graph = await tf.loadGraphModel(`/models/${name}/graph/model.json`);
  for (const [key, model] of [['layers', layers], ['graph', graph]]) {
    // a graph model with Grad-CAM features has two outputs: the classes are 'output'
    const y = key === 'graph' && model.outputs.length > 1 ? model.execute(x, 'output') : model.predict(x);
    out[key] = Array.from(await y.data());
    y.dispose();
    model.dispose();
  }
  x.dispose();
  return {out, version: tf.version_core, tensors: tf.memory().numTensors};
}
"""


# TF.js as a tutorial's page loads it (the union bundle of every package), and as Belka's pages
# do (static/js/vendor.js: core and the converter, then the layers API and a backend when used)
BUNDLES = {
    "union": ["tfjs/dist/tf.es2017.min.js"],
    "parts": ["tfjs-core/dist/tf-core.es2017.min.js", "tfjs-converter/dist/tf-converter.es2017.min.js",
              "tfjs-layers/dist/tf-layers.es2017.min.js", "tfjs-backend-cpu/dist/tf-backend-cpu.es2017.min.js"],
}


@pytest.mark.parametrize("bundles", list(BUNDLES))
def test_layers_and_graph_models_run_in_chromium(server, page, small_mobilenet, bundles):
    folder, manifest = small_mobilenet["dir"], small_mobilenet["manifest"]
    batch = verify.probe_batch(96, 96, [-1, 1], seed=11)[:2]
    expected = verify.run_saved_model(folder / "saved_model", manifest["signature"], batch)
    page.goto(server + "/healthz")
    for bundle in BUNDLES[bundles]:
        page.add_script_tag(url=f"/vendor/{bundle}")
    result = page.evaluate(LOAD_AND_RUN, {"name": folder.name, "input": batch.ravel().tolist(),
                                          "shape": list(batch.shape)})
    assert result["version"] == "4.22.0"
    assert result["tensors"] == 0  # everything disposed
    for fmt in ("layers", "graph"):
        got = np.array(result["out"][fmt], dtype=np.float32).reshape(expected.shape)
        np.testing.assert_allclose(got, expected, atol=1e-4, err_msg=fmt)
    assert page.errors == []
