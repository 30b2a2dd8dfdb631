/**
 * TensorFlow.js for our modules: the global `tf` of TF.js 4.22's ES2017 bundle from npm
 * (served under /vendor), run by this module itself (top-level await) unless it already ran.
 * So a module that imports `tf` from here can be fetched side by side with the bundle: the
 * model's worker (static/js/engine-worker.js) imports its whole engine at once, and only its
 * evaluation waits for TF.js. The model pages never import this module: their TF.js runs in
 * the worker. The /learn lessons do (static/js/lesson.js): their tensors are a few hundred
 * numbers or one photo, and every one of them is there to be looked at on the page.
 * (The ES5 bundle tf.min.js cannot run under our Content-Security-Policy: its polyfills call
 * Function().)
 */
import { registerLayers } from './custom-layers.js';
import { loadScript, TF_CORE, vendorUrl } from './vendor.js';

if (typeof globalThis.tf?.loadGraphModel !== 'function') {
  try {
    await loadScript(vendorUrl(TF_CORE));
  } catch (error) {
    throw new Error(`TensorFlow.js did not load (${vendorUrl(TF_CORE)}: ${error.message}). ` +
      'Run `make setup` (npm ci) on the server and reload.');
  }
  if (typeof globalThis.tf?.loadGraphModel !== 'function') {
    throw new Error(`TensorFlow.js did not load (${vendorUrl(TF_CORE)} ran but defined no tf). ` +
      'Run `make setup` (npm ci) on the server and reload.');
  }
}

export const tf = globalThis.tf;
if (tf.serialization) registerLayers(tf); // Keras layers TF.js lacks (Normalization)
