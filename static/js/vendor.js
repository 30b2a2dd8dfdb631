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

/** TF.js core, which has the webgl and cpu backends (wasm and webgpu are bundles of their own). */
export const TF_CORE = 'tfjs/dist/tf.es2017.min.js';

/**
 * The backends that live in a bundle of their own (TF.js core has webgl and cpu), loaded on
 * first use (static/js/backend.js); `warm` also names the binary the bundle then fetches
 * (the single-threaded SIMD build: static/js/backend.js configureWasm), so the model's
 * worker can fetch them ahead (static/js/prefetch.js warmCache).
 */
export const BACKEND_BUNDLES = {
  wasm: { dir: 'tfjs-backend-wasm/dist/', bundle: 'tf-backend-wasm.es2017.min.js', warm: ['tfjs-backend-wasm-simd.wasm'] },
  webgpu: { dir: 'tfjs-backend-webgpu/dist/', bundle: 'tf-backend-webgpu.es2017.min.js', warm: [] },
};

/** The URLs of `backend`'s bundle and binaries (none for the backends in TF.js core). */
export function backendFiles(backend) {
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
    script.onload = () => resolve();
    script.onerror = () => {
      script.remove();
      reject(new Error(`${src} could not be loaded`));
    };
    document.head.append(script);
  });
}
