/**
 * Activating a backend, with fallback, in the model's worker (static/js/engine.js): one of
 * TF.js's, or one of ONNX Runtime Web's (static/js/ort.js; TF.js then runs the pictures'
 * preprocessing on its CPU backend). The user's choice itself (?backend=, remembered in
 * localStorage) is the page's business: static/js/backend-choice.js.
 *
 * Only the backends `allowed` are tried (those that run the page's model: backendsFor; TF.js's
 * by default). "auto" here tries them in BACKEND_LIST's order and keeps the first that
 * initialises (the page's measured "auto", static/js/auto-backend.js, then names one
 * backend); a fixed choice tries that backend (or its counterpart under the allowed runtime)
 * first and falls back in the same order when it cannot start (tf.setBackend returned false,
 * threw, or hung; ONNX Runtime Web did not load or found no adapter).
 *
 * Each backend is a bundle of its own (static/js/vendor.js BACKEND_BUNDLES), loaded from
 * /vendor the first time it is tried: a page on wasm never downloads WebGL's 0.37 MB or
 * WebGPU's 0.32 MB, and the other way round.
 */
import { BACKEND_LIST, backendInfo, counterpartOf } from './backend-choice.js';
import { ortProblem } from './ort.js';
import { tf } from './tf.js';
import { BACKEND_BUNDLES, loadScript, vendorUrl } from './vendor.js';

const INIT_TIMEOUT_MS = 30000;
const WASM_DIR = vendorUrl(BACKEND_BUNDLES.wasm.dir);
/** Backends that live in a bundle of their own, loaded on first use. */
const BUNDLES = Object.fromEntries(Object.entries(BACKEND_BUNDLES).map(
  ([name, { dir, bundle }]) => [name, vendorUrl(dir + bundle)]));
const bundleLoads = {};

/** Loads `name`'s bundle once; null, or why it failed. */
async function loadBundle(name) {
  if (!BUNDLES[name]) return null;
  if (name === 'webgpu' && !navigator.gpu) return null; // no download for a backend that cannot start
  // (the model's worker may have run the bundle already, engine-worker.js: then it is registered)
  bundleLoads[name] ??= name in tf.engine().registryFactory ? Promise.resolve(null)
    : loadScript(BUNDLES[name]).then(() => null, (error) => {
      delete bundleLoads[name];
      return `its code did not load (${error.message})`;
    });
  const problem = await bundleLoads[name];
  if (name === 'wasm' && !problem) configureWasm();
  // Video frames reach WebGPU by copy, not importExternalTexture: with the bundle loaded
  // after start-up, imported frames fail ("A valid external Instance reference no longer
  // exists", Chromium 14x / SwiftShader), and the copy ran the detect loop 3x faster there.
  if (name === 'webgpu' && !problem) tf.env().set('WEBGPU_IMPORT_EXTERNAL_TEXTURE', false);
  return problem;
}

let wasmConfigured = false;

/**
 * Points the WASM backend at its binaries (served from npm under /vendor, no CDN).
 *
 * Threads stay off: TF.js's threaded WASM build starts its workers from blob: URLs,
 * which our CSP (worker-src falls back to script-src 'self') refuses, and then the
 * backend's initialisation never finishes. The single-threaded SIMD build needs
 * no workers. (To allow threads the server would need `worker-src 'self' blob:` and
 * blob: in script-src.)
 */
export function configureWasm() {
  if (wasmConfigured || !tf.wasm) return;
  tf.wasm.setWasmPaths(WASM_DIR);
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
  wasmConfigured = true;
}

/** TF.js's backends: what code that computes with TF.js itself may activate. */
export const TFJS_BACKENDS = BACKEND_LIST.filter((b) => b.runtime === 'tfjs').map((b) => b.name);

/** The backends to try, in order, for a choice among `allowed`. */
export function candidatesFor(choice, allowed = TFJS_BACKENDS) {
  const first = counterpartOf(choice, allowed);
  if (first === 'auto') return allowed;
  return [first, ...allowed.filter((b) => b !== first)];
}

/**
 * Activates the backend for `choice` among `allowed`, falling back as needed. Resolves to
 * {backend, choice, failures: [{backend, reason}]}; throws when none starts.
 */
export async function activateBackend(choice, allowed = TFJS_BACKENDS) {
  const failures = [];
  for (const name of candidatesFor(choice, allowed)) {
    const reason = await trySetBackend(name);
    if (reason == null) return { backend: name, choice, failures };
    failures.push({ backend: name, reason });
  }
  const details = failures.map((f) => `${f.backend}: ${f.reason}`).join('; ');
  throw new Error(`No backend could start (${details}).`);
}

/**
 * An ONNX Runtime Web backend: its build loaded (and a WebGPU adapter found), with TF.js on
 * its CPU backend for the pictures' preprocessing. null when it is ready, else why not.
 */
async function trySetOrt(name) {
  const problem = await ortProblem(backendInfo(name).device);
  if (problem) return problem;
  const cpuProblem = await trySetBackend('cpu');
  return cpuProblem ? `TF.js's CPU backend, which prepares the pictures, did not start (${cpuProblem})` : null;
}

/** null when `name` is now the active backend, else why it is not. */
async function trySetBackend(name) {
  if (backendInfo(name)?.runtime === 'ort') return trySetOrt(name);
  if (tf.getBackend() === name) return null;
  const loadProblem = await loadBundle(name);
  if (loadProblem) return loadProblem;
  if (!(name in tf.engine().registryFactory)) {
    return name === 'webgpu' && !navigator.gpu
      ? 'this browser has no WebGPU (navigator.gpu is missing)'
      : 'not available in this browser';
  }
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => resolve('timeout'), INIT_TIMEOUT_MS);
  });
  try {
    const ok = await Promise.race([tf.setBackend(name), timeout]);
    if (ok === 'timeout') return `did not start within ${INIT_TIMEOUT_MS / 1000} s`;
    if (!ok) return 'it did not start: no usable GPU adapter or context';
    await tf.ready();
    return null;
  } catch (error) {
    return error?.message ?? String(error);
  } finally {
    clearTimeout(timer);
  }
}
