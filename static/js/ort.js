/**
 * ONNX Runtime Web, the pages' second runtime (for models converted from ONNX: PyTorch's),
 * in the model's worker. Its npm package is served under /vendor like TF.js (no CDN), and
 * each back end loads only its own build, on first use (vendor.js ORT_BUILDS: ort-wasm
 * ort.wasm.min.mjs, 50 KB; ort-webgpu ort.webgpu.min.mjs, 66 KB; each with its binary).
 *
 * WebAssembly threads need SharedArrayBuffer, which a browser gives only to a cross-origin
 * isolated page: there ONNX Runtime Web runs on several threads, elsewhere on one. The worker
 * is already off the page's main thread, so its own proxy worker stays off.
 */
import { ORT_BUILDS, ORT_DIR, vendorUrl } from './vendor.js';

const loads = {};

/**
 * ONNX Runtime Web's module for the execution provider `provider` ("wasm" | "webgpu"),
 * imported and configured once. Rejects with a message that says what to do.
 */
export function ortFor(provider) {
  const build = ORT_BUILDS[provider];
  if (!build) return Promise.reject(new Error(`ONNX Runtime Web has no "${provider}" back end here.`));
  loads[provider] ??= import(vendorUrl(ORT_DIR + build.module)).then((module) => {
    const ort = module.default ?? module;
    ort.env.wasm.wasmPaths = vendorUrl(ORT_DIR);
    ort.env.wasm.numThreads = globalThis.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
    ort.env.wasm.proxy = false;
    ort.env.logLevel = 'error';
    return ort;
  }).catch((error) => {
    delete loads[provider];
    throw new Error(`ONNX Runtime Web did not load (${error.message}). Run \`make setup\` (npm ci) on the server and reload.`);
  });
  return loads[provider];
}

/**
 * null when `provider` can run here, else why not: WebGPU needs navigator.gpu and an adapter
 * (checked before any download).
 */
export async function ortProblem(provider) {
  if (provider === 'webgpu') {
    if (!globalThis.navigator?.gpu) return 'this browser has no WebGPU (navigator.gpu is missing)';
    try {
      if (!(await navigator.gpu.requestAdapter())) return 'no WebGPU adapter';
    } catch (error) {
      return `no WebGPU adapter (${error.message})`;
    }
  }
  try {
    await ortFor(provider);
    return null;
  } catch (error) {
    return error.message;
  }
}
