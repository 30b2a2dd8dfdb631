/**
 * Grad-CAM in the browser: `GradCam` on the model's TF.js *layers* model (any layer with a
 * spatial output), `GraphGradCam` on its *graph* model when there is no layers model (one
 * layer only, the one the converter exported as the graph's "features" output).
 *
 * For an input image, a class c and a layer L:
 *   1. split the model at L: run the layers up to L ("the head") once, keeping L's
 *      activations A [1, h, w, channels] and whatever later layers need from before L
 *      (MobileNetV2's residual connections skip over L);
 *   2. the tail, every layer after L applied again with `layer.apply` to A, is a
 *      function of A; its output for class c is the score: the pre-softmax logit for
 *      Belka's models (manifest output.kind "logits"), the probability for a model that
 *      ends in softmax;
 *   3. gradients of the score w.r.t. A (tf.valueAndGrad); channel weights = their
 *      spatial mean;
 *   4. heatmap = ReLU(sum over channels of weight * A), divided by its maximum (all
 *      zeros when nothing pushes the class up): [h, w] in [0, 1], at L's resolution.
 *
 * Every layer runs in inference mode ({training: false}): BatchNorm uses its moving
 * statistics, as the graph model and the server do. The server computes the same with
 * tf.GradientTape (app/inference/gradcam.py), and the tests compare the two.
 *
 * GraphGradCam (manifest.explain.gradcam "graph"): a GraphModel has no layers to split, but
 * it can be run from any node: A = graph.execute(input, <features node>) (the feature maps
 * of manifest.explain.layer), and the score is graph.execute({<features node>: a}, output),
 * which tf.valueAndGrad differentiates like any other TF.js ops (the graph's weights are
 * constants). Steps 3 and 4 as above; the server does the same with the SavedModel's
 * "belka_gradcam" signature.
 *
 * A taught head (the /teach page, static/js/head.js) scores through the base: `explain`'s
 * `through` ({at, logits}) stops the model at its features (`at`: the layer, or the graph
 * node, of manifest.features) and takes the class score from `logits(features)`. Base and
 * head are then one model, as the saved model will be on the server.
 *
 * Backends: gradients need backward kernels. TF.js 4.22's wasm backend lacks
 * Conv2DBackpropFilter (the gradient of a fused convolution computes the filter's
 * gradient too) and DepthwiseConv2dNativeBackpropInput, so on wasm a model can only be
 * explained at layers after its last convolution (MobileNetV2: out_relu); webgl, webgpu
 * and cpu have them all. `explain` then throws GradientUnsupportedError naming the kernel.
 */
import { tf, withGradients } from './tf.js';
import { since } from './timings.js';

/** Raised when the backend lacks a kernel that the gradient needs (see `explain`). */
export class GradientUnsupportedError extends Error {
  constructor(message, { backend, kernel }) {
    super(message);
    this.name = 'GradientUnsupportedError';
    this.backend = backend;
    this.kernel = kernel;
  }
}

/** The functional graph under a LayersModel (a Sequential keeps its own inside `.model`). */
function functionalModel(model) {
  return model instanceof tf.Sequential ? model.model : model;
}

/**
 * The model's layers as a graph: [{layer, inputs: [{name, tensorIndex}]}] in an order
 * where every layer comes after the layers it reads from.
 */
function describe(model) {
  const nodes = functionalModel(model).layers.map((layer) => {
    if (layer.inboundNodes.length !== 1) {
      throw new Error(`Layer "${layer.name}" is used ${layer.inboundNodes.length} times in the model; ` +
        'Grad-CAM here needs every layer to be used once.');
    }
    const node = layer.inboundNodes[0];
    return {
      layer,
      inputs: node.inboundLayers.map((source, k) => ({ name: source.name, tensorIndex: node.tensorIndices[k] })),
    };
  });
  const done = new Set();
  const ordered = [];
  let pending = nodes;
  while (pending.length) {
    const ready = pending.filter((n) => n.inputs.every((i) => done.has(i.name)));
    if (!ready.length) throw new Error('The model graph has a cycle or a missing layer.');
    ready.forEach((n) => { done.add(n.layer.name); ordered.push(n); });
    pending = pending.filter((n) => !done.has(n.layer.name));
  }
  return ordered;
}

/** The tensor that `ref` ({name, tensorIndex}) points at in `values` (layer name -> outputs). */
function pick(values, ref) {
  const out = values.get(ref.name);
  return Array.isArray(out) ? out[ref.tensorIndex] : out;
}

/** Runs `node`'s layer on the values of its inputs, in inference mode. */
function applyNode(node, values) {
  const inputs = node.inputs.map((ref) => pick(values, ref));
  return node.layer.apply(inputs.length === 1 ? inputs[0] : inputs, { training: false });
}

/** Grad-CAM for one loaded layers model. Create it with GradCam.load(url). */
export class GradCam {
  constructor(model, { scoreKind = 'logit' } = {}) {
    this.model = model;
    this.scoreKind = scoreKind;
    this.nodes = describe(model);
    const output = functionalModel(model).outputs;
    if (output.length !== 1) throw new Error('Grad-CAM needs a model with one output.');
    this.output = { name: output[0].sourceLayer.name, tensorIndex: output[0].tensorIndex };
    this.plans = new Map();
  }

  /**
   * Loads a TF.js layers model. `scoreKind` says what its output is: "logit" (Grad-CAM
   * differentiates the pre-softmax logit) or "probability".
   */
  static async load(url, { scoreKind } = {}) {
    const model = await (await withGradients()).loadLayersModel(url);
    return new GradCam(model, { scoreKind });
  }

  /**
   * The layers a heatmap can be taken from: every layer with an [h, w, channels]
   * output, input excluded, in model order: [{name, className, shape: [h, w, c]}].
   */
  layers() {
    return this.nodes
      .filter((n) => n.inputs.length > 0)
      .map((n) => ({ name: n.layer.name, className: n.layer.getClassName(), shape: n.layer.outputShape }))
      .filter((l) => Array.isArray(l.shape) && l.shape.length === 4 && !Array.isArray(l.shape[0]))
      .map((l) => ({ ...l, shape: l.shape.slice(1) }));
  }

  /** The last layer with a spatial output (MobileNetV2: out_relu, the last conv block). */
  defaultLayer() {
    const layers = this.layers();
    if (!layers.length) throw new Error('The model has no layer with a spatial (h, w, channels) output.');
    return layers[layers.length - 1].name;
  }

  /**
   * Which layers run before the split (`head`) and after it (`tail`, up to the layer `output`,
   * the model's output by default), for layer `name`.
   */
  plan(name, output = this.output.name) {
    const key = `${name} -> ${output}`;
    if (this.plans.has(key)) return this.plans.get(key);
    if (!this.layers().some((l) => l.name === name)) {
      throw new Error(`The model has no layer "${name}" with a spatial output.`);
    }
    const tail = new Set();
    for (const node of this.nodes) {
      if (node.inputs.some((i) => i.name === name || tail.has(i.name))) tail.add(node.layer.name);
    }
    if (!tail.has(output)) throw new Error(`The layer "${output}" does not depend on layer "${name}".`);
    // Only what leads to `output`: a taught head's features layer comes before the model's end.
    const leads = new Set([output]);
    for (const node of [...this.nodes].reverse()) {
      if (leads.has(node.layer.name)) node.inputs.forEach((i) => leads.add(i.name));
    }
    [...tail].filter((layer) => !leads.has(layer)).forEach((layer) => tail.delete(layer));
    // The head: the split layer and every earlier layer the tail reads from, with their ancestors.
    const needed = new Set([name]);
    for (const node of this.nodes) {
      if (tail.has(node.layer.name)) node.inputs.forEach((i) => { if (!tail.has(i.name)) needed.add(i.name); });
    }
    for (const node of [...this.nodes].reverse()) {
      if (needed.has(node.layer.name)) node.inputs.forEach((i) => needed.add(i.name));
    }
    const plan = {
      head: this.nodes.filter((n) => needed.has(n.layer.name)),
      tail: this.nodes.filter((n) => tail.has(n.layer.name)),
    };
    this.plans.set(key, plan);
    return plan;
  }

  /**
   * The Grad-CAM heatmap of `input` (float32 [1, H, W, 3], not disposed here) for class
   * `classIndex` at layer `layerName`. Resolves to {heatmap: Float32Array (h * w, row by
   * row), shape: [h, w], score (the differentiated logit or probability), ms}. With
   * `through` ({at: a layer name, logits: features => [1, classes]}), the score is a taught
   * head's logit on layer `at`'s output. Throws GradientUnsupportedError when the backend
   * lacks a backward kernel.
   */
  async explain(input, classIndex, layerName, through = null) {
    const start = performance.now();
    const outputRef = through ? { name: through.at, tensorIndex: 0 } : this.output;
    const { head, tail } = this.plan(layerName, outputRef.name);
    const inputName = this.nodes[0].layer.name;
    let heat;
    let score;
    try {
      [heat, score] = tf.tidy(() => {
        const values = new Map();
        for (const node of head) {
          values.set(node.layer.name, node.inputs.length ? applyNode(node, values) : input);
        }
        if (!values.has(inputName)) values.set(inputName, input);
        const activations = values.get(layerName);
        const classScore = (a) => {
          const local = new Map(values);
          local.set(layerName, a);
          for (const node of tail) local.set(node.layer.name, applyNode(node, local));
          const picked = pick(local, outputRef);
          const output = through ? through.logits(picked) : picked;
          return tf.squeeze(tf.slice(output, [0, classIndex], [1, 1]));
        };
        const { value, grad } = tf.valueAndGrad(classScore)(activations);
        return [camOf(activations, grad), value];
      });
    } catch (error) {
      releaseFailedTape();
      throw unsupported(error) ?? error;
    }
    return read(heat, score, start);
  }

  dispose() {
    this.model.dispose();
  }
}

/**
 * Grad-CAM on a classifier's TF.js graph model, at the one layer the converter exported
 * (manifest.explain: {gradcam: "graph", layer, shape, graph: {features, output}}). Same
 * interface as GradCam. The graph model belongs to the classifier: dispose() leaves it.
 */
export class GraphGradCam {
  /**
   * `graph`: the loaded tf.GraphModel; `manifest`: the model's manifest. `scoreKind`:
   * "logit" or "probability" (default from manifest.output.kind).
   */
  constructor(graph, manifest, { scoreKind } = {}) {
    const info = manifest.explain;
    if (info?.gradcam !== 'graph' || !info.graph?.features || !info.layer) {
      throw new Error('The manifest names no Grad-CAM features node in the graph model ' +
        '(explain.gradcam is not "graph").');
    }
    this.graph = graph;
    this.layer = info.layer;
    this.shape = info.shape;
    this.featuresNode = info.graph.features;
    this.outputNode = info.graph.output ?? manifest.signature?.output ?? 'output';
    this.scoreKind = scoreKind ?? (manifest.output?.kind === 'logits' ? 'logit' : 'probability');
  }

  /** The one layer: [{name, className: "graph features", shape: [h, w, c]}]. */
  layers() {
    return [{ name: this.layer, className: 'graph features', shape: this.shape }];
  }

  defaultLayer() {
    return this.layer;
  }

  /**
   * As GradCam.explain; `layerName` must be the graph's layer (or left out); `through.at` is
   * a node of the graph (manifest.features.node). Throws GradientUnsupportedError when the
   * backend lacks a backward kernel.
   */
  async explain(input, classIndex, layerName = this.layer, through = null) {
    const start = performance.now();
    if (layerName != null && layerName !== this.layer) {
      throw new Error(`Without a layers model, Grad-CAM runs at one layer only: "${this.layer}" ` +
        `(not "${layerName}").`);
    }
    let heat;
    let score;
    try {
      [heat, score] = tf.tidy(() => {
        const activations = this.graph.execute(input, this.featuresNode);
        const classScore = (a) => {
          const output = through
            ? through.logits(this.graph.execute({ [this.featuresNode]: a }, through.at))
            : this.graph.execute({ [this.featuresNode]: a }, this.outputNode);
          return tf.squeeze(tf.slice(output, [0, classIndex], [1, 1]));
        };
        const { value, grad } = tf.valueAndGrad(classScore)(activations);
        return [camOf(activations, grad), value];
      });
    } catch (error) {
      releaseFailedTape();
      throw unsupported(error) ?? error;
    }
    return read(heat, score, start);
  }

  /** Nothing of its own to free: the graph model is the classifier's. */
  dispose() {
    this.graph = null;
  }
}

/**
 * Steps 3 and 4: ReLU(sum over channels of mean_spatial(grad) * A), divided by its maximum
 * (all zeros when that is not positive). [1, h, w, c] -> [h, w]. Call inside tf.tidy.
 */
function camOf(activations, grad) {
  const weights = tf.mean(grad, [1, 2], true); // [1, 1, 1, channels]
  const cam = tf.squeeze(tf.relu(tf.sum(tf.mul(activations, weights), -1)), [0]); // [h, w]
  const peak = tf.max(cam);
  return tf.where(tf.greater(peak, 0), tf.div(cam, tf.maximum(peak, 1e-30)), tf.zerosLike(cam));
}

/** {heatmap, shape, score, ms} from the heatmap and score tensors, which it disposes. */
async function read(heat, score, start) {
  try {
    const [heatmap, scoreData] = await Promise.all([heat.data(), score.data()]);
    return { heatmap, shape: heat.shape, score: scoreData[0], ms: since(start) };
  } finally {
    tf.dispose([heat, score]);
  }
}

/**
 * TF.js 4.22's engine.gradients frees the tensors it kept for the backward pass (its tape's
 * `saved`) only when that pass succeeds: after a failure (a missing kernel) they would stay
 * allocated for good. Frees them, unless a gradient computation is still running.
 */
function releaseFailedTape() {
  const state = tf.engine().state;
  if (state.gradientDepth !== 0 || !state.activeTape) return;
  state.activeTape.forEach((node) => node.saved?.forEach((tensor) => tensor.dispose()));
  state.activeTape = null;
}

/** A GradientUnsupportedError for TF.js's "Kernel 'X' not registered for backend 'y'", else null. */
function unsupported(error) {
  const match = /Kernel '(\w+)' not registered for backend '(\w+)'/.exec(error?.message ?? '');
  if (!match) return null;
  const [, kernel, backend] = match;
  return new GradientUnsupportedError(
    `The ${backend} backend cannot compute this gradient: TF.js ${backend} has no ${kernel} kernel.`,
    { backend, kernel });
}
