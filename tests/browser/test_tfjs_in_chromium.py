"""The converted models load in TF.js in a real browser (the runtime our users have)."""
from __future__ import annotations

import numpy as np

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
  return {out, version: tf.version.tfjs, tensors: tf.memory().numTensors};
}
"""


def test_layers_and_graph_models_run_in_chromium(server, page, small_mobilenet):
    folder, manifest = small_mobilenet["dir"], small_mobilenet["manifest"]
    batch = verify.probe_batch(96, 96, [-1, 1], seed=11)[:2]
    expected = verify.run_saved_model(folder / "saved_model", manifest["signature"], batch)
    page.goto(server + "/healthz")
    page.add_script_tag(url="/vendor/tfjs/dist/tf.es2017.min.js")
    result = page.evaluate(LOAD_AND_RUN, {"name": folder.name, "input": batch.ravel().tolist(),
                                          "shape": list(batch.shape)})
    assert result["version"] == "4.22.0"
    assert result["tensors"] == 0  # everything disposed
    for fmt in ("layers", "graph"):
        got = np.array(result["out"][fmt], dtype=np.float32).reshape(expected.shape)
        np.testing.assert_allclose(got, expected, atol=1e-4, err_msg=fmt)
    assert page.errors == []
