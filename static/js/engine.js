/**
 * The model's side of a page, in a Web Worker (static/js/engine-worker.js): the backend (TF.js's,
 * or ONNX Runtime Web's for a model converted from ONNX), the loaded classifier or detector, preprocessing, Grad-CAM, occlusion and the
 * heatmap's colours. The page (static/js/engine-client.js) only decodes pictures, draws and
 * handles the user; every tensor lives and dies here, so no inference, gradient or occlusion
 * batch ever blocks the page's main thread.
 *
 * Each export of `operations` is one request the page can make (the protocol, with every
 * message's fields and reply, is defined once in static/js/protocol.js), `op(args, {progress})`: it
 * resolves to plain data (typed arrays are transferred, not copied) or throws an error that
 * reaches the page with its name, message and fields (GradientUnsupportedError's backend and
 * kernel, CancelledError...). The page sends one operation at a time, except `cancel`, and a
 * first photo sent right behind the start-up's requests (see `changing`).
 *
 * Only what a page's first answer needs is imported up front: the modules of the detector,
 * Grad-CAM, occlusion, the heatmap's colours and the taught head are imported on first use
 * (`later`), so a cold classify page's worker makes 8 requests fewer before its first answer.
 * `resources` imports them all before it lists what an offline visit needs.
 */
import { activateBackend } from './backend.js';
import { backendInfo, backendsFor } from './backend-choice.js';
import { modelUrl } from './manifest.js';
import { Classifier, loadGraph } from './model.js';
import { OrtClassifier } from './ort-model.js';
import { toModelInput } from './model-input.js';
import { decodeImage } from './preprocess.js';
import { operationQueue } from './serial.js';
import { tf, TFJS_VERSION, withGradients } from './tf.js';

/** The modules imported on first use (a module is fetched and run once; later calls get it). */
const later = {
  detector: () => import('./detector.js'),
  gradcam: () => import('./gradcam.js'),
  head: () => import('./head.js'),
  heatmap: () => import('./heatmap.js'),
  occlusionMap: () => import('./occlusion-map.js'),
  random: () => import('./random.js'),
  customLayers: () => import('./custom-layers.js'), // tf.js withGradients imports it too
};

const state = {
  backend: null,
  model: null, // the Classifier, OrtClassifier or Detector loaded on the active backend
  gradcam: null, // GradCam or GraphGradCam for `model`, made on the first Grad-CAM request
  gradcamGraph: null, // the TF.js graph model Grad-CAM loaded for a model that runs in ONNX Runtime Web
  input: null, // {data: Float32Array, shape} of the last classified image: what explanations explain
  abort: null, // AbortController of a running occlusion map
  removedKernels: new Map(), // test hook `kernel`: kernels taken away, to put back
  loaded: null, // "task name weights" of `model`: a page asking for the same model gets it as it is
  pageSince: 0, // performance.now() when the page now served made its first request (newPage)
  head: null, // the head the /teach page trained on `model`'s features (head.js)
};

function forgetModel() {
  state.abort?.abort();
  state.gradcam?.dispose();
  state.gradcamGraph?.dispose();
  state.model?.dispose();
  state.head?.dispose();
  Object.assign(state, { model: null, gradcam: null, gradcamGraph: null, input: null, loaded: null, head: null });
}

/** The model loaded for `key` (by headStart, or for a page before a reload), or null. */
function alreadyLoaded(key) {
  return state.loaded === key ? state.model : null;
}

/**
 * A new page of the tab talks to this worker (a reload, engine-worker.js): what the last page
 * left is dropped (its picture, its taught head, a running occlusion, kernels a test took
 * away); the backend and the loaded model stay, which is what makes a reload fast.
 */
export function newPage() {
  state.abort?.abort();
  state.head?.dispose();
  Object.assign(state, { input: null, head: null, pageSince: performance.now() });
  for (const config of state.removedKernels.values()) tf.registerKernel(config);
  state.removedKernels.clear();
}

/**
 * Begins what the page will ask for first, before it asks: activates `backend` and loads the
 * page's model (`manifest`, fetched early: a classifier or a detector), so this work runs while
 * the page is still loading its own modules. The page's `backend` and `load...` requests then
 * find it done (the worker answers no request before this settles). Never throws: whatever
 * fails here fails again, and is reported, when the page asks.
 */
export async function headStart({ backend, model, weights = null, manifest }) {
  if (!backend || !model) return;
  try {
    // a detector's module is fetched while the backend starts
    Promise.resolve(manifest).then((m) => m?.task === 'detection' && later.detector()).catch(() => {});
    const known = await manifest;
    await operations.backend({ choice: backend, allowed: backendsFor(known?.formats) });
    const task = known?.task;
    if (task === 'classification') state.model = await loadClassifierHere(model, weights);
    else if (task === 'detection') state.model = await (await later.detector()).Detector.load(model);
    else return;
    state.loaded = modelKey(task, model, task === 'classification' ? weights : null);
  } catch {
    forgetModel();
  }
}

const modelKey = (task, name, weights) => `${task} ${name} ${weights}`;

/**
 * The classifier `name` on the active backend: its TF.js graph model on TF.js's, its ONNX model
 * in ONNX Runtime Web on one of that runtime's (`weights`: manifest.js pageGraph, pageOnnx).
 */
function loadClassifierHere(name, weights) {
  const backend = backendInfo(state.backend);
  return backend?.runtime === 'ort'
    ? OrtClassifier.load(name, { provider: backend.device, weights })
    : Classifier.load(name, { weights });
}

function classifier() {
  if (!(state.model instanceof Classifier || state.model instanceof OrtClassifier)) {
    throw new Error('No classifier is loaded.');
  }
  return state.model;
}

/** The classifier, when it runs in TF.js (what needs its graph: features, Grad-CAM). */
function tfjsClassifier(what) {
  const model = classifier();
  if (model instanceof OrtClassifier) {
    throw new Error(`${what} needs the model's graph in TF.js, and "${model.name}" runs in ONNX Runtime Web ` +
      `on ${state.backend}.`);
  }
  return model;
}

async function detector() {
  const { Detector } = await later.detector();
  if (!(state.model instanceof Detector)) throw new Error('No detector is loaded.');
  return state.model;
}

/**
 * Grad-CAM's `through` for the taught head: where the base's features are (the layers model's
 * features layer, or the graph's features node) and the head's logits on them.
 */
async function taughtScore() {
  const { head, gradcam } = state;
  if (!head) throw new Error('Train first: there is no taught head yet.');
  const features = classifier().manifest.features ?? {};
  const { GraphGradCam } = await later.gradcam();
  const at = gradcam instanceof GraphGradCam ? features.node : features.layer;
  if (!at) throw new Error('The base model names no features layer for Grad-CAM through a taught head.');
  return { at, logits: (x) => head.logits(tf.reshape(x, [x.shape[0], -1])) };
}

/** The tensor of the last classified image (the caller disposes it). */
function lastInput() {
  if (!state.input) throw new Error('Classify an image first.');
  return tf.tensor4d(state.input.data, state.input.shape);
}

/**
 * The requests that change the backend or the model run one after the other (serial.js), and
 * a classification waits for those sent before it: a page sends its first photo right behind
 * its start-up's requests (classify.js), not after their answers came back to it.
 */
const changes = operationQueue();
const changing = (task) => changes.serial(task);

/**
 * The requests, as protocol.js `Operations` defines them (their args and replies).
 * @type {import('./protocol.js').Operations}
 */
export const operations = {
  /** TF.js's version, once the worker runs (a first request that proves it started). */
  start() {
    return { tfjs: TFJS_VERSION };
  },

  /**
   * Activates the backend for `choice` among `allowed` (the backends that run the page's
   * model: backend-choice.js backendsFor; TF.js's when not given), with fallback
   * (static/js/backend.js). A model loaded on another backend is dropped: its weights live
   * there. {backend, failures, changed}.
   */
  backend({ choice, allowed }) {
    return changing(async () => {
      const result = await activateBackend(choice, allowed);
      const changed = result.backend !== state.backend;
      if (changed) forgetModel();
      state.backend = result.backend;
      return { ...result, changed };
    });
  },

  /**
   * Loads the classifier `name` (replacing any model), with the graph model for `weights`
   * (manifest.js pageGraph); with `warm`, runs it once on zeros. {manifest, weights: {folder,
   * dtype}, loadMs, warmupMs (null without warm)}.
   */
  loadClassifier({ name, weights = null, warm = false }) {
    return changing(async () => {
      const key = modelKey('classification', name, weights);
      let loaded = alreadyLoaded(key);
      if (!loaded) {
        forgetModel();
        loaded = await loadClassifierHere(name, weights);
        Object.assign(state, { model: loaded, loaded: key });
      }
      const warmupMs = warm ? await loaded.warmUp() : null;
      return { manifest: loaded.manifest, weights: loaded.weights, loadMs: loaded.loadMs, warmupMs };
    });
  },

  /**
   * Loads the detector `name`; with `warm`, runs it once on a black picture. {manifest,
   * defaults (scoreThreshold, iouThreshold, maxBoxes), loadMs, warmupMs, execution}.
   */
  loadDetector({ name, warm = false }) {
    return changing(async () => {
      const key = modelKey('detection', name, null);
      let loaded = alreadyLoaded(key);
      if (!loaded) {
        forgetModel();
        loaded = await (await later.detector()).Detector.load(name);
        Object.assign(state, { model: loaded, loaded: key });
      }
      const warmupMs = warm ? await loaded.warmUp() : null;
      const { manifest, defaults, loadMs, execution } = loaded;
      return { manifest, defaults, loadMs, warmupMs, execution };
    });
  },

  /** One run on zeros (kernels compiled): its ms. */
  warmUp() {
    if (!state.model) throw new Error('No model is loaded.');
    return state.model.warmUp();
  },

  /**
   * Classifies a picture: {output, probabilities, input, ms}, as Classifier.run plus the model
   * input it became. The input is kept for explanations. `image`: the image file itself (a
   * Blob, decoded here, while the backend or model changes sent before it finish: the model
   * need not wait for the page to decode and draw it) or an ImageBitmap.
   */
  async classify({ image }) {
    const decoding = image instanceof Blob ? decodeImage(image) : Promise.resolve(image);
    decoding.catch(() => {}); // thrown below, once the changes before it are done
    let bitmap;
    let input;
    try {
      await changes.idle();
      bitmap = await decoding;
      const model = classifier();
      input = toModelInput(bitmap, model.preprocessing);
      const { output, probabilities, ms } = await model.run(input);
      const data = await input.data();
      state.input = { data, shape: input.shape };
      return { output, probabilities, ms, input: data.slice() };
    } finally {
      input?.dispose();
      bitmap?.close?.();
    }
  },

  /**
   * The features the classifier's head reads, for a picture (an ImageBitmap): {features:
   * Float32Array (manifest.features.size), ms}; with `views`, also the features of that many
   * augmented views of it (head.js augmentedViews, seeded by `seed`): views [views * size];
   * with `classify`, also the model's class probabilities for the picture (probabilities).
   */
  async features({ image, views = 0, seed = 0, classify = false }) {
    const start = performance.now();
    let values;
    let extra;
    let probabilities;
    try {
      const model = tfjsClassifier('A new head');
      const [{ augmentedViews }, { seededRandom }] = views ? await Promise.all([later.head(), later.random()]) : [{}, {}];
      [values, extra, probabilities] = tf.tidy(() => {
        const x = toModelInput(image, model.preprocessing);
        const own = tf.reshape(model.featuresOf(x), [-1]);
        const classes = classify ? tf.reshape(model.probabilitiesOf(x), [-1]) : null;
        if (!views) return [own, null, classes];
        const augmented = augmentedViews(x, views, model.preprocessing, seededRandom(seed));
        return [own, tf.reshape(model.featuresOf(augmented), [-1]), classes];
      });
      const result = { features: await values.data(), ms: 0 };
      if (extra) result.views = await extra.data(); // [views * size]
      if (probabilities) result.probabilities = await probabilities.data();
      result.ms = performance.now() - start;
      return result;
    } finally {
      tf.dispose([values, extra, probabilities].filter(Boolean));
      image.close?.();
    }
  },

  /**
   * Grad-CAM's layers for the classifier: {layers: [{name, className, shape}],
   * defaultLayer, model: "layers"|"graph", scoreKind}. Loads the layers model on first use.
   */
  async gradcamLayers() {
    const model = classifier();
    const { manifest } = model;
    if (model instanceof OrtClassifier && manifest.explain?.gradcam === 'cam') {
      state.gradcam ??= model.camExplainer(); // the class activation map ONNX Runtime computes
      const cam = state.gradcam;
      return { layers: cam.layers(), defaultLayer: cam.defaultLayer(), model: 'cam', scoreKind: cam.scoreKind };
    }
    if (!manifest.formats?.graph) {
      throw new Error(`Grad-CAM needs the model's gradients, which ONNX Runtime Web does not give, and "${model.name}" ` +
        'has no TF.js model. Occlusion works on any model.');
    }
    const [{ GradCam, GraphGradCam }] = await Promise.all([later.gradcam(), withGradients()]);
    if (!state.gradcam) {
      const scoreKind = manifest.output.kind === 'logits' ? 'logit' : 'probability';
      if (manifest.formats?.layers) {
        state.gradcam = await GradCam.load(modelUrl(model.name, 'layers/model.json'), { scoreKind });
      } else {
        // a model running in ONNX Runtime Web: its TF.js graph model beside it, on TF.js's CPU backend
        const graph = model.graph ?? await loadGraph(model.name);
        if (!model.graph) state.gradcamGraph = graph;
        state.gradcam = new GraphGradCam(graph, manifest, { scoreKind });
      }
    }
    const gradcam = state.gradcam;
    return {
      layers: gradcam.layers(),
      defaultLayer: gradcam.defaultLayer(),
      model: gradcam instanceof GraphGradCam ? 'graph' : 'layers',
      scoreKind: gradcam.scoreKind,
    };
  },

  /**
   * Grad-CAM of the last image: {heatmap, shape, score, ms} (gradcam.js). With `taught`, for
   * a class of the trained head (the last picture `predictTaught` saw): base and head scored as
   * one model, from the base's features (manifest.features) through the head's logits.
   */
  async gradcam({ classIndex, layer, taught = false }) {
    if (!state.gradcam) await operations.gradcamLayers();
    const through = taught ? await taughtScore() : null;
    const input = lastInput();
    try {
      return await state.gradcam.explain(input, classIndex, layer, through);
    } finally {
      input.dispose();
    }
  },

  /**
   * The occlusion map of the last image (occlusion.js): progress(done, total) after every
   * batch; `cancel` stops it between two batches (CancelledError).
   */
  async occlusion({ classIndex, patch, stride, fill }, { progress }) {
    const model = classifier();
    const { occlusionMap } = await later.occlusionMap();
    const input = lastInput();
    state.abort = new AbortController();
    try {
      return await occlusionMap((batch) => model.probabilities(batch), input, classIndex,
        { patch, stride, fill, signal: state.abort.signal, onProgress: progress });
    } finally {
      state.abort = null;
      input.dispose();
    }
  },

  /**
   * Trains a head on samples' features (head.js trainHead: {features, labels, classes, hidden,
   * epochs, learningRate, batchSize, validationSplit, seed}), reporting each epoch; `cancel`
   * stops it. Keeps it for `predictTaught`. {history, split, weightSpecs, data}.
   */
  async train(args, { progress }) {
    const model = tfjsClassifier('A new head');
    const size = model.manifest.features?.size;
    if (!size) {
      throw new Error(`The model "${model.name}" names no features a new head could learn from: convert it ` +
        'again with this version of Belka, or pick another base.');
    }
    const { trainHead } = await later.head();
    state.abort = new AbortController();
    try {
      const { head, history, split, trainingRows } = await trainHead({ ...args, size },
        { signal: state.abort.signal, onEpoch: (entry) => progress(entry) });
      state.head?.dispose();
      state.head = head;
      return { history, split, trainingRows, ...(await head.weights()) };
    } finally {
      state.abort = null;
    }
  },

  /** Puts back a head trained earlier ({weightSpecs, data}: a reloaded /teach page's). */
  async useHead({ weightSpecs, data }) {
    tfjsClassifier('A new head');
    const { Head } = await later.head();
    const head = Head.fromWeights({ weightSpecs, data });
    state.head?.dispose();
    state.head = head;
    return { layers: head.layers.length };
  },

  /**
   * A picture through the base's features and the trained head: {logits, probabilities,
   * input (the model input), ms}.
   */
  async predictTaught({ image }) {
    const model = tfjsClassifier('A new head');
    if (!state.head) throw new Error('Train first: there is no taught head yet.');
    const start = performance.now();
    let input;
    let outputs = [];
    try {
      input = toModelInput(image, model.preprocessing);
      outputs = tf.tidy(() => {
        const logits = tf.reshape(state.head.logits(model.featuresOf(input)), [-1]);
        return [logits, tf.softmax(logits)];
      });
      const [logits, probabilities, data] = await Promise.all([...outputs.map((t) => t.data()), input.data()]);
      state.input = { data, shape: input.shape };
      return { logits, probabilities, input: data.slice(), ms: performance.now() - start };
    } finally {
      tf.dispose([input, ...outputs].filter(Boolean));
      image.close?.();
    }
  },

  /** Stops a running occlusion map (handled at once, not queued behind it). */
  cancel() {
    state.abort?.abort();
    return null;
  },

  /**
   * A heatmap ({heatmap, shape: [h, w]} in [0, 1]) resized bilinearly to width x height
   * (half-pixel centres, as the server) and coloured with jet: ImageData.
   */
  async heatmapImage({ heatmap, shape, width, height }) {
    const { colourise } = await later.heatmap();
    const resized = tf.tidy(() => tf.image.resizeBilinear(tf.tensor3d(heatmap, [...shape, 1]),
      [height, width], false, true));
    try {
      return colourise(await resized.data(), width, height);
    } finally {
      resized.dispose();
    }
  },

  /**
   * Detects objects in a picture (an ImageBitmap: a video frame or a photo): Detector.detect's
   * {detections, width, height, inferenceMs, input?}.
   */
  async detect({ image, options = {} }) {
    try {
      return await (await detector()).detect(image, options);
    } finally {
      image.close?.();
    }
  },

  /** How the detector's graph runs ("execute" or "executeAsync"); sets it when `mode` is given. */
  async execution({ mode }) {
    const model = await detector();
    if (mode) model.execution = mode;
    return model.execution;
  },

  /** {numTensors, modelCalls, backend}: for tests and the debug API. */
  stats() {
    return { numTensors: tf.memory().numTensors, modelCalls: state.model?.calls ?? 0, backend: state.backend };
  },

  /**
   * The URLs this worker fetched (code, WASM, model files): what an offline visit needs, the
   * modules imported on first use included (`later`: imported now, if they were not yet). With
   * `thisPage`, only those fetched since the page now served first asked (none on a reload that
   * found the model loaded), each as {url, transferSize, encodedBodySize, status}: what a
   * benchmark counts as this page's bytes.
   */
  async resources({ thisPage = false } = {}) {
    if (!thisPage) await Promise.all(Object.values(later).map((load) => load()));
    const entries = performance.getEntriesByType('resource');
    if (!thisPage) return entries.map((entry) => entry.name);
    return entries.filter((entry) => entry.startTime >= state.pageSince).map((entry) => ({
      url: entry.name, transferSize: entry.transferSize, encodedBodySize: entry.encodedBodySize,
      status: entry.responseStatus ?? null,
    }));
  },

  /**
   * Test hook: takes the active backend's kernel `name` away (present: false), or puts it
   * back, to check what the page does on a backend that lacks it.
   */
  kernel({ name, present }) {
    const backend = tf.getBackend();
    const key = `${backend}/${name}`;
    if (!present && !state.removedKernels.has(key)) {
      const config = tf.getKernel(name, backend);
      if (!config) throw new Error(`The ${backend} backend has no ${name} kernel.`);
      state.removedKernels.set(key, config);
      tf.unregisterKernel(name, backend);
    } else if (present && state.removedKernels.has(key)) {
      tf.registerKernel(state.removedKernels.get(key));
      state.removedKernels.delete(key);
    }
    return Boolean(tf.getKernel(name, backend));
  },
};
