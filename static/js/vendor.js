/**
 * Where the npm code lives (TF.js and its backends, served under /vendor) and how to run a
 * classic script, on the page and in the model's worker (static/js/engine-worker.js).
 *
 * The server names the content-hashed /vendor/<version>/ prefix on <html data-vendor>; the
 * page hands it to its worker in the worker's URL (?vendor=...).
 */
const inPage = typeof document !== 'undefined';

function workerParam(name) {
  return new URLSearchParams(globalThis.location?.search ?? '').get(name);
}

export const VENDOR = (inPage ? document.documentElement.dataset.vendor : workerParam('vendor')) || '/vendor/';

/**
 * TF.js in its npm packages' own bundles, not the 1.1 MB union of them all (@tensorflow/tfjs),
 * so a page runs only the code it uses. TF_PARTS are what every TF.js page runs, in this
 * order (each attaches itself to the global `tf` the ones before made): core (tensors, ops,
 * tf.train, tf.io) and the converter (tf.loadGraphModel): 0.54 MB. The layers API
 * (tf.loadLayersModel: Grad-CAM on a layers model) and each backend are loaded on first use
 * (static/js/tf.js useLayers, static/js/backend.js).
 */
export const TF_CORE = 'tfjs-core/dist/tf-core.es2017.min.js';
export const TF_PARTS = [TF_CORE, 'tfjs-converter/dist/tf-converter.es2017.min.js'];
export const TF_LAYERS = 'tfjs-layers/dist/tf-layers.es2017.min.js';

/**
 * Each backend's bundle, loaded the first time that backend is tried (static/js/backend.js);
 * `warm` also names the binary the bundle then fetches (the single-threaded SIMD build:
 * static/js/backend.js configureWasm), so the model's worker can fetch them ahead
 * (static/js/prefetch.js warmCache). The cpu bundle's Multinomial kernel (tf.multinomial)
 * needs a global `seedrandom`, which the union bundle carried and these pages never call.
 */
export const BACKEND_BUNDLES = {
  cpu: { dir: 'tfjs-backend-cpu/dist/', bundle: 'tf-backend-cpu.es2017.min.js', warm: [] },
  webgl: { dir: 'tfjs-backend-webgl/dist/', bundle: 'tf-backend-webgl.es2017.min.js', warm: [] },
  wasm: { dir: 'tfjs-backend-wasm/dist/', bundle: 'tf-backend-wasm.es2017.min.js', warm: ['tfjs-backend-wasm-simd.wasm'] },
  webgpu: { dir: 'tfjs-backend-webgpu/dist/', bundle: 'tf-backend-webgpu.es2017.min.js', warm: [] },
};

/**
 * ONNX Runtime Web (static/js/ort.js): each back end loads only its own build, on first use:
 * the module, and the binary it fetches (the WebGPU kernels live in the asyncify binary).
 */
export const ORT_DIR = 'onnxruntime-web/dist/';
export const ORT_BUILDS = {
  wasm: { module: 'ort.wasm.min.mjs', binary: 'ort-wasm-simd-threaded.wasm' },
  webgpu: { module: 'ort.webgpu.min.mjs', binary: 'ort-wasm-simd-threaded.asyncify.wasm' },
};

/**
 * The URLs of `backend`'s bundle and binaries: for an ONNX Runtime Web backend ("ort-wasm",
 * "ort-webgpu"), TF.js's CPU bundle (which prepares the pictures there) first, then ONNX
 * Runtime's module and binary.
 */
export function backendFiles(backend) {
  const ort = ORT_BUILDS[backend?.startsWith('ort-') ? backend.slice(4) : null];
  if (ort) return [...backendFiles('cpu'), ...[ort.module, ort.binary].map((file) => vendorUrl(ORT_DIR + file))];
  const entry = BACKEND_BUNDLES[backend];
  return entry ? [entry.bundle, ...entry.warm].map((file) => vendorUrl(entry.dir + file)) : [];
}

/** /vendor/<version>/<path> */
export function vendorUrl(path) {
  return `${VENDOR}${path}`;
}

/**
 * Runs a classic (UMD) script once; resolves when it ran. TF.js's bundles attach themselves
 * to globalThis.tf either way: on a page as a <script> element, in a module worker (which has
 * no importScripts) through import(), where the bundle's UMD wrapper falls back to globalThis.
 */
export function loadScript(src) {
  if (!inPage) return import(src);
  return new Promise((resolve, reject) => {
    const script = document.createElement('script');
    script.src = src;
    script.async = false; // scripts added together run in the order they were added
    script.onload = () => resolve();
    script.onerror = () => {
      script.remove();
      reject(new Error(`${src} could not be loaded`));
    };
    document.head.append(script);
  });
}

/**
 * Runs classic scripts in order, each once (TF_PARTS: each needs the ones before it): on a
 * page they download side by side and run in order; in a worker one import after the other
 * (static/js/engine-worker.js has fetched them all already). Rejects with the first failure.
 */
export async function loadScripts(urls) {
  if (inPage) {
    await Promise.all(urls.map(loadScript));
    return;
  }
  for (const url of urls) await import(url);
}
