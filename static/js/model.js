/**
 * A converted Belka classifier in the browser: its manifest.json (labels,
 * preprocessing, provenance, files) and its TF.js graph model.
 *
 * Served by the app: /models/<name>/manifest.json and /models/<name>/graph/model.json
 * (weight shards content-addressed with ?v=<hash>, so the browser caches them).
 */
import { tf } from './tf.js';
import { since } from './timings.js';

/** Raised when a model's files cannot be fetched or do not make sense. */
export class ModelLoadError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = 'ModelLoadError';
  }
}

/** /models/<name>/<path> */
export function modelUrl(name, path) {
  return `/models/${encodeURIComponent(name)}/${path}`;
}

/** Fetches and checks /models/<name>/manifest.json (a model for `task`). */
export async function loadManifest(name, task = 'classification') {
  const url = modelUrl(name, 'manifest.json');
  let response;
  try {
    response = await fetch(url);
  } catch (cause) {
    throw new ModelLoadError(`Could not reach the server for ${url} (${cause.message}).`, { cause });
  }
  if (!response.ok) {
    throw new ModelLoadError(`${url} answered ${response.status} ${response.statusText}.`);
  }
  let manifest;
  try {
    manifest = await response.json();
  } catch (cause) {
    throw new ModelLoadError(`${url} is not valid JSON.`, { cause });
  }
  const problem = manifestProblem(manifest, task);
  if (problem) throw new ModelLoadError(`${url}: ${problem}.`);
  return manifest;
}

function manifestProblem(m, task) {
  if (m.task !== task) return `task is "${m.task}", not "${task}"`;
  if (!m.formats?.graph) return 'the model has no TF.js graph format';
  const p = m.preprocessing;
  if (!p || !Array.isArray(p.size) || !Array.isArray(p.value_range)) return 'no preprocessing spec';
  if (!Array.isArray(m.labels) || m.labels.length === 0) return 'no labels';
  if (task === 'detection') {
    if (!m.output?.boxes?.node || !m.output?.scores?.node) return 'no boxes and scores outputs';
    if (!m.postprocessing) return 'no postprocessing defaults';
    return null;
  }
  if (!['logits', 'probabilities'].includes(m.output?.kind)) return `unknown output kind "${m.output?.kind}"`;
  return null;
}

/** /models/<name>/graph/model.json as a TF.js GraphModel (weights included). */
export async function loadGraph(name) {
  const url = modelUrl(name, 'graph/model.json');
  try {
    return await tf.loadGraphModel(url);
  } catch (cause) {
    throw new ModelLoadError(`Could not load the graph model ${url}: ${cause.message}`, { cause });
  }
}

/** What the page shows about a model's download: graph files' bytes and weight shards. */
export function downloadFacts(manifest) {
  const graphFiles = manifest.files.filter((f) => f.path.startsWith('graph/'));
  return {
    bytes: graphFiles.reduce((sum, f) => sum + f.bytes, 0),
    shards: graphFiles.filter((f) => f.path.endsWith('.bin')).length,
  };
}

/** A loaded classifier: manifest + graph model. Create it with Classifier.load(name). */
export class Classifier {
  constructor(name, manifest, graph, loadMs) {
    this.name = name;
    this.manifest = manifest;
    this.graph = graph;
    this.loadMs = loadMs;
  }

  /** Fetches the manifest and the graph model (weights included), side by side; measures the time. */
  static async load(name) {
    const start = performance.now();
    const graphLoad = loadGraph(name);
    let manifest;
    try {
      manifest = await loadManifest(name);
    } catch (error) {
      graphLoad.then((graph) => graph.dispose(), () => {});
      throw error;
    }
    return new Classifier(name, manifest, await graphLoad, since(start));
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
    const y = this.graph.outputs.length > 1
      ? this.graph.execute(batch, this.manifest.signature?.output ?? 'output')
      : this.graph.predict(batch);
    if (!(y instanceof tf.Tensor)) throw new Error('The model has more than one output.');
    return y;
  }

  /** Class probabilities [N, classes] for a batch [N, H, W, 3] (call inside tf.tidy). */
  probabilitiesOf(batch) {
    const y = this.outputsOf(batch);
    return this.manifest.output.kind === 'logits' ? tf.softmax(y) : y;
  }

  /** One inference on zeros, so the backend compiles its kernels now; resolves to its ms. */
  async warmUp() {
    const input = tf.zeros([1, ...this.preprocessing.size, 3], 'float32');
    try {
      return (await this.run(input)).ms;
    } finally {
      input.dispose();
    }
  }

  dispose() {
    this.graph.dispose();
  }
}
