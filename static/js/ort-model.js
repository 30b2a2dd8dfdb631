/**
 * A Belka classifier converted from ONNX, run by ONNX Runtime Web (static/js/ort.js) in the
 * model's worker: its manifest.json and onnx/model.onnx. It answers the engine
 * (static/js/engine.js) as model.js's Classifier does, except for what needs the model's
 * graph in TF.js (features for /teach, Grad-CAM): ONNX Runtime's calls are asynchronous, so
 * it has probabilities() (a promise of a tensor) and no probabilitiesOf().
 *
 * The picture's preprocessing stays in TF.js (model-input.js on TF.js's CPU backend, the same
 * code and numbers as for a TF.js model); the input [N, H, W, 3] is put in the model's layout
 * (manifest.input.layout: "NCHW" for PyTorch's models) and handed over as a float32 array.
 */
import { loadManifest, ModelLoadError, modelUrl, pageOnnx } from './manifest.js';
import { runOnZeros } from './model.js';
import { ortFor } from './ort.js';
import { fetchEarly } from './prefetch.js';
import { tf } from './tf.js';
import { since } from './timings.js';

/** A loaded ONNX classifier. Create it with OrtClassifier.load(name, {provider}). */
export class OrtClassifier {
  constructor(name, manifest, session, provider, loadMs, weights) {
    this.name = name;
    this.manifest = manifest;
    this.session = session;
    this.provider = provider; // "wasm" | "webgpu"
    this.loadMs = loadMs;
    this.weights = weights; // {folder, dtype}: what the page shows about the download
    this.calls = 0; // how many times the model ran (warm-ups and occlusion batches included)
    const batch = manifest.source?.batch; // "dynamic", or the graph's fixed batch size
    this.batch = Number.isInteger(batch) && batch > 0 ? batch : null; // null: any batch size
    this.inputName = manifest.input.name ?? session.inputNames[0];
    this.outputName = manifest.output.name ?? session.outputNames[0];
  }

  /**
   * Fetches the manifest and the ONNX model (its float16 copy by default, `weights` "float32" for
   * the model as converted: manifest.js pageOnnx), and starts a session on `provider`.
   */
  static async load(name, { provider = 'wasm', weights = null } = {}) {
    const start = performance.now();
    const manifest = await loadManifest(name);
    if (!manifest.formats?.onnx) throw new ModelLoadError(`The model "${name}" has no ONNX model for ONNX Runtime Web.`);
    const ort = await ortFor(provider);
    const { file, folder, dtype } = pageOnnx(manifest, weights);
    const url = modelUrl(name, file);
    let bytes;
    try {
      const response = await fetchEarly(url);
      if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
      bytes = new Uint8Array(await response.arrayBuffer());
    } catch (cause) {
      throw new ModelLoadError(`Could not load the ONNX model ${url}: ${cause.message}`, { cause });
    }
    let session;
    try {
      session = await ort.InferenceSession.create(bytes, {
        executionProviders: [provider], graphOptimizationLevel: 'all',
      });
    } catch (cause) {
      throw new ModelLoadError(`ONNX Runtime Web (${provider}) cannot run ${url}: ${cause.message}`, { cause });
    }
    return new OrtClassifier(name, manifest, session, provider, since(start), { folder, dtype });
  }

  get preprocessing() {
    return this.manifest.preprocessing;
  }

  get labels() {
    return this.manifest.labels;
  }

  /**
   * The model's raw output [N, classes] (a new tensor: the caller disposes it) for a batch
   * [N, H, W, 3] (not disposed here).
   */
  async outputsOf(batch) {
    const [{ data, dims }] = await this.fetch(batch, [this.outputName]);
    return tf.tensor2d(data, [dims[0], dims[dims.length - 1]]);
  }

  /** Class probabilities [N, classes] for a batch [N, H, W, 3]: resolves to a new tensor. */
  async probabilities(batch) {
    const y = await this.outputsOf(batch);
    if (this.manifest.output.kind !== 'logits') return y;
    try {
      return tf.softmax(y);
    } finally {
      y.dispose();
    }
  }

  /**
   * Runs the model on a float32 [1, H, W, 3] tensor (not disposed here): {output,
   * probabilities, ms}, as Classifier.run.
   */
  async run(input) {
    const start = performance.now();
    const y = await this.outputsOf(input);
    const [output, probabilities] = tf.tidy(() => {
      const row = tf.reshape(y, [-1]);
      return [row, this.manifest.output.kind === 'logits' ? tf.softmax(row) : row];
    });
    y.dispose();
    try {
      const [outputData, probabilityData] = await Promise.all([output.data(), probabilities.data()]);
      return { output: outputData, probabilities: probabilityData, ms: since(start) };
    } finally {
      tf.dispose([output, probabilities]);
    }
  }

  /**
   * The session's outputs `names` for a batch [N, H, W, 3] (not disposed here) as Float32Arrays
   * with their dims, one image at a time when the model's batch is fixed at 1: [{data, dims}].
   */
  async fetch(batch, names) {
    const ort = await ortFor(this.provider);
    const nchw = this.manifest.input.layout === 'NCHW';
    const modelInput = nchw ? tf.transpose(batch, [0, 3, 1, 2]) : batch;
    let data;
    try {
      data = await modelInput.data();
    } finally {
      if (modelInput !== batch) modelInput.dispose();
    }
    const shape = nchw ? [batch.shape[0], batch.shape[3], batch.shape[1], batch.shape[2]] : batch.shape;
    const step = this.batch == null ? shape[0] : this.batch;
    const per = data.length / shape[0];
    const parts = names.map(() => []);
    const dims = [];
    for (let i = 0; i < shape[0]; i += step) {
      const images = Math.min(step, shape[0] - i);
      const input = new ort.Tensor('float32', data.subarray(i * per, (i + images) * per), [images, ...shape.slice(1)]);
      this.calls += 1;
      const outputs = await this.session.run({ [this.inputName]: input }, names);
      try {
        names.forEach((name, k) => {
          const output = outputs[name];
          dims[k] = [shape[0], ...output.dims.slice(1)];
          parts[k].push(output.data instanceof Float32Array ? output.data.slice() : Float32Array.from(output.data));
        });
      } finally {
        input.dispose?.();
        Object.values(outputs).forEach((t) => t.dispose?.());
      }
    }
    return parts.map((rows, k) => {
      const values = new Float32Array(rows.reduce((n, r) => n + r.length, 0));
      rows.reduce((offset, r) => { values.set(r, offset); return offset + r.length; }, 0);
      return { data: values, dims: dims[k] };
    });
  }

  /** The features of a taught head's base: ONNX models have none the page can train on. */
  featuresOf() {
    throw new Error(`The model "${this.name}" runs in ONNX Runtime Web, and /teach trains a head on TF.js ` +
      'features only: pick a TF.js base.');
  }

  /**
   * Grad-CAM for a model whose head is pooling + one linear layer: its class activation map,
   * which the converter added as an output (manifest.explain: {gradcam: "cam", output, layer,
   * shape}; app/convert/onnx_cam.py). Same interface as gradcam.js's GradCam.
   */
  camExplainer() {
    const info = this.manifest.explain ?? {};
    if (info.gradcam !== 'cam') throw new Error(`Grad-CAM cannot explain "${this.name}": ${info.reason ?? 'no class activation map'}.`);
    return new OrtCam(this, info);
  }

  /** One inference on zeros, so the back end compiles its kernels now; resolves to its ms. */
  warmUp() {
    return runOnZeros(this);
  }

  dispose() {
    this.session.release().catch(() => {});
  }
}

/** Grad-CAM as the class activation map an OrtClassifier's model outputs (camExplainer). */
class OrtCam {
  constructor(classifier, info) {
    this.classifier = classifier;
    this.layer = info.layer;
    this.shape = info.shape;
    this.output = info.output;
    this.scoreKind = 'logit';
  }

  layers() {
    return [{ name: this.layer, className: 'class activation map', shape: this.shape }];
  }

  defaultLayer() {
    return this.layer;
  }

  /**
   * {heatmap: Float32Array (h * w) in [0, 1], shape: [h, w], score: the class's logit, ms} for
   * `input` [1, H, W, 3]: ReLU of the class's map, divided by its maximum (all zeros when that
   * is not positive), as Grad-CAM's.
   */
  async explain(input, classIndex, layer, through = null) {
    if (through) throw new Error('A taught head learns from TF.js features: pick a TF.js base.');
    if (layer && layer !== this.layer) {
      throw new Error(`Grad-CAM is this model's class activation map, at one layer only: "${this.layer}".`);
    }
    const start = performance.now();
    const [logits, cam] = await this.classifier.fetch(input, [this.classifier.outputName, this.output]);
    const [, h, w, classes] = cam.dims;
    const heatmap = new Float32Array(h * w);
    let peak = 0;
    for (let i = 0; i < h * w; i += 1) {
      heatmap[i] = Math.max(0, cam.data[i * classes + classIndex]);
      peak = Math.max(peak, heatmap[i]);
    }
    for (let i = 0; i < heatmap.length; i += 1) heatmap[i] = peak > 0 ? heatmap[i] / peak : 0;
    return { heatmap, shape: [h, w], score: logits.data[classIndex], ms: since(start) };
  }

  dispose() {
    this.classifier = null;
  }
}
