/**
 * A converted Belka classifier, run where TF.js is (the model's worker): its manifest.json
 * (static/js/manifest.js) and its TF.js graph model.
 *
 * Served by the app: /models/<name>/manifest.json and /models/<name>/graph/model.json
 * (weight shards content-addressed with ?v=<hash>, so the browser caches them).
 */
import { loadManifest, ModelLoadError, modelUrl, pageGraph } from './manifest.js';
import { fetchEarly } from './prefetch.js';
import { tf } from './tf.js';
import { since } from './timings.js';

/** /models/<name>/<folder>model.json (folder "graph/" by default) as a TF.js GraphModel. */
export async function loadGraph(name, folder = 'graph/') {
  const url = modelUrl(name, `${folder}model.json`);
  try {
    return await tf.loadGraphModel(url, { fetchFunc: fetchEarly });
  } catch (cause) {
    throw new ModelLoadError(`Could not load the graph model ${url}: ${cause.message}`, { cause });
  }
}

/**
 * One run of a classifier (model.js's or ort-model.js's: its `run` and `preprocessing`) on a
 * zero picture: its ms. A warm-up (the backend compiles its kernels on a first run) and a probe.
 */
export async function runOnZeros(classifier) {
  const input = tf.zeros([1, ...classifier.preprocessing.size, 3], 'float32');
  try {
    return (await classifier.run(input)).ms;
  } finally {
    input.dispose();
  }
}

/** A loaded classifier: manifest + graph model. Create it with Classifier.load(name). */
export class Classifier {
  constructor(name, manifest, graph, loadMs, weights = pageGraph(manifest, 'float32')) {
    this.name = name;
    this.manifest = manifest;
    this.graph = graph;
    this.loadMs = loadMs;
    this.weights = weights; // the graph model loaded: {folder, dtype} (manifest.js pageGraph)
    this.calls = 0; // how many times the graph ran (warm-ups and occlusion batches included)
  }

  /**
   * Fetches the manifest, then the graph model it names for pages (float16 weights by
   * default, `weights` "float32" for the graph as converted: manifest.js pageGraph);
   * measures the time. (The worker has usually fetched both already: prefetch.js.)
   */
  static async load(name, { weights = null } = {}) {
    const start = performance.now();
    const manifest = await loadManifest(name);
    const graph = pageGraph(manifest, weights);
    return new Classifier(name, manifest, await loadGraph(name, graph.folder), since(start), graph);
  }

  get preprocessing() {
    return this.manifest.preprocessing;
  }

  get labels() {
    return this.manifest.labels;
  }

  /**
   * Runs the model on a float32 [1, H, W, 3] tensor (not disposed here). Resolves to
   * {output, probabilities, ms}: the raw output row (logits or probabilities, as
   * manifest.output.kind says), the probabilities (softmax of logits), and the time
   * from predict to having the numbers in JavaScript.
   */
  async run(input) {
    const start = performance.now();
    const [output, probabilities] = tf.tidy(() => {
      const row = tf.reshape(this.outputsOf(input), [-1]);
      return [row, this.manifest.output.kind === 'logits' ? tf.softmax(row) : row];
    });
    try {
      const [outputData, probabilityData] = await Promise.all([output.data(), probabilities.data()]);
      return { output: outputData, probabilities: probabilityData, ms: since(start) };
    } finally {
      tf.dispose([output, probabilities]);
    }
  }

  /**
   * The model's raw output [N, classes] for a batch [N, H, W, 3] (call inside tf.tidy). A graph
   * model with Grad-CAM features has two outputs; only the classes' is computed.
   */
  outputsOf(batch) {
    this.calls += 1;
    const y = this.graph.outputs.length > 1
      ? this.graph.execute(batch, this.manifest.signature?.output ?? 'output')
      : this.graph.predict(batch);
    if (!(y instanceof tf.Tensor)) throw new Error('The model has more than one output.');
    return y;
  }

  /**
   * The features the model's head reads (manifest.features: e.g. the pooled [N, 1280] of
   * MobileNetV2) for a batch [N, H, W, 3] (call inside tf.tidy): what a new head learns from.
   */
  featuresOf(batch) {
    const node = this.manifest.features?.node;
    if (!node) {
      throw new Error(`The model "${this.name}" has no dense head whose features a new one could learn from ` +
        '(its manifest names none: convert it again with this version of Belka).');
    }
    return this.graph.execute(batch, node);
  }

  /** Class probabilities [N, classes] for a batch [N, H, W, 3] (call inside tf.tidy). */
  probabilitiesOf(batch) {
    const y = this.outputsOf(batch);
    return this.manifest.output.kind === 'logits' ? tf.softmax(y) : y;
  }

  /**
   * Class probabilities [N, classes] for a batch [N, H, W, 3] (not disposed here): resolves to
   * a new tensor (as OrtClassifier's, whose runtime only answers asynchronously).
   */
  async probabilities(batch) {
    return tf.tidy(() => this.probabilitiesOf(batch));
  }

  /** One inference on zeros, so the backend compiles its kernels now; resolves to its ms. */
  warmUp() {
    return runOnZeros(this);
  }

  dispose() {
    this.graph.dispose();
  }
}
