/**
 * A bare TF.js image classifier: the reference bench/page_bench.py measures Belka's classify
 * page against. It does what any page needs to classify a photo with the same converted model,
 * and nothing else (no preview, no explanations, no panels, no warm-up, no backend fallback):
 *
 *   1. index.html loads TF.js core and, for wasm and webgpu, that backend's bundle with
 *      <script defer> tags, from the same /vendor URLs Belka's app gives its own pages;
 *   2. start the backend named by ?backend= (default wasm; the WASM binaries from /vendor,
 *      single-threaded SIMD as on Belka's page, whose CSP refuses the threaded build's blob:
 *      workers);
 *   3. load /models/<?model=>/graph/model.json with tf.loadGraphModel, while the model's
 *      manifest.json (labels, value range, output kind) downloads alongside;
 *   4. per photo: decode (createImageBitmap, the options Belka uses), centre square crop,
 *      bilinear resize to the model's size (half-pixel centres), values to the manifest's
 *      value range ([-1, 1] for MobileNetV2), predict, softmax, top-5, shown as a list.
 *
 * The preprocessing is the same arithmetic as static/js/preprocess.js, so both pages feed the
 * model the same numbers and their top-5 agree (the benchmark checks it).
 *
 * Benchmark API, `window.bare` (the same shape as the parts of `window.belka` the benchmark uses):
 *   ready            Promise: {ok: true, backend} once the model is loaded, or {ok: false, error}
 *                    (it never rejects)
 *   backend()        the active TF.js backend, or null before the model is loaded
 *   classifyBlob(b)  Promise: classify an image Blob (waits for `ready` first) ->
 *                    {top5: [{index, label, probability}], inferenceMs, totalMs, backend};
 *                    inferenceMs: predict to probabilities in JavaScript; totalMs: Blob to top-5
 *   timings()        {backendMs, loadMs, readyMs}: backend start, model load, and ready since
 *                    navigation start
 *   numTensors()     tf.memory().numTensors (every tensor is disposed: it stays flat)
 */
const tf = window.tf;
const params = new URLSearchParams(window.location.search);
const MODEL = params.get('model') ?? 'mobilenet-v2';
const BACKEND = params.get('backend') ?? 'wasm';
const VENDOR = document.documentElement.dataset.vendor || '/vendor/';
const WASM_DIR = `${VENDOR}tfjs-backend-wasm/dist/`;
const TOP_K = 5;

const timings = { backendMs: null, loadMs: null, readyMs: null };
let model = null;
let manifest = null;

const $ = (id) => document.getElementById(id);

/** Backend, then the graph model (the manifest downloads meanwhile). */
async function start() {
  const manifestLoaded = fetch(`/models/${encodeURIComponent(MODEL)}/manifest.json`).then((response) => {
    if (!response.ok) throw new Error(`manifest.json answered ${response.status}`);
    return response.json();
  });
  manifestLoaded.catch(() => {}); // reported below, after the backend and the model
  if (BACKEND === 'wasm') {
    tf.wasm.setWasmPaths(WASM_DIR);
    tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
  }
  let began = performance.now();
  if (!(await tf.setBackend(BACKEND))) throw new Error(`the ${BACKEND} backend did not start`);
  await tf.ready();
  timings.backendMs = performance.now() - began;
  began = performance.now();
  model = await tf.loadGraphModel(`/models/${encodeURIComponent(MODEL)}/graph/model.json`);
  manifest = await manifestLoaded;
  timings.loadMs = performance.now() - began;
  timings.readyMs = performance.now();
  $('status').textContent = `Ready on ${tf.getBackend()}.`;
  return { ok: true, backend: tf.getBackend() };
}

const ready = start().catch((error) => {
  $('status').textContent = `Not ready: ${error.message}`;
  return { ok: false, error: error.message };
});

/** float32 [1, H, W, 3] model input for a decoded picture (caller disposes). */
function toInput(bitmap) {
  const { size: [height, width], value_range: [lo, hi] } = manifest.preprocessing;
  return tf.tidy(() => {
    const pixels = tf.browser.fromPixels(bitmap, 3); // int32 [h, w, 3], 0..255
    const [h, w] = pixels.shape;
    const side = Math.min(h, w);
    const square = tf.slice(pixels, [Math.floor((h - side) / 2), Math.floor((w - side) / 2), 0], [side, side, 3]);
    const resized = tf.image.resizeBilinear(tf.cast(square, 'float32'), [height, width], false, true);
    return tf.expandDims(tf.add(tf.mul(resized, (hi - lo) / 255), lo), 0);
  });
}

/** The model's class scores for `input` as probabilities, [classes] (call inside tf.tidy). */
function probabilitiesOf(input) {
  const output = model.outputs.length > 1
    ? model.execute(input, manifest.signature?.output ?? 'output') // a graph with Grad-CAM features
    : model.predict(input);
  const row = tf.reshape(output, [-1]);
  return manifest.output.kind === 'logits' ? tf.softmax(row) : row;
}

/** The k most probable classes, most probable first. */
function topK(probabilities, k) {
  const best = [];
  probabilities.forEach((p, index) => {
    if (best.length < k || p > best[best.length - 1].probability) {
      best.push({ index, label: manifest.labels[index], probability: p });
      best.sort((a, b) => b.probability - a.probability);
      if (best.length > k) best.pop();
    }
  });
  return best;
}

async function classifyBlob(blob) {
  const status = await ready;
  if (!status.ok) throw new Error(status.error);
  const started = performance.now();
  const bitmap = await createImageBitmap(blob, {
    imageOrientation: 'from-image', colorSpaceConversion: 'none', premultiplyAlpha: 'none',
  });
  let input;
  let probabilities;
  try {
    input = toInput(bitmap);
    const predicted = performance.now();
    probabilities = tf.tidy(() => probabilitiesOf(input));
    const data = await probabilities.data();
    const inferenceMs = performance.now() - predicted;
    const top5 = topK(data, TOP_K);
    $('top5').replaceChildren(...top5.map(({ label, probability }) => {
      const item = document.createElement('li');
      item.textContent = `${label} ${(probability * 100).toFixed(1)}%`;
      return item;
    }));
    return { top5, inferenceMs, totalMs: performance.now() - started, backend: tf.getBackend() };
  } finally {
    bitmap.close();
    input?.dispose();
    probabilities?.dispose();
  }
}

window.bare = {
  ready,
  backend: () => (model ? tf.getBackend() : null),
  classifyBlob,
  timings: () => ({ ...timings }),
  numTensors: () => tf.memory().numTensors,
};
