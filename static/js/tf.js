/**
 * TensorFlow.js for our modules: the global `tf` of TF.js 4.22's ES2017 bundles from npm
 * (served under /vendor: core and the converter, static/js/vendor.js TF_PARTS), run by this
 * module itself (top-level await) unless they already ran. So a module that imports `tf` from
 * here can be fetched side by side with the bundles: the model's worker
 * (static/js/engine-worker.js) imports its whole engine at once, and only its evaluation
 * waits for TF.js. No backend runs until one is activated (static/js/backend.js loads its
 * bundle). The model pages never import this module: their TF.js runs in the worker. The
 * /learn lessons do (static/js/lesson.js): their tensors are a few hundred numbers or one
 * photo, and every one of them is there to be looked at on the page.
 * (The ES5 bundles cannot run under our Content-Security-Policy: their polyfills call
 * Function().)
 */
import { loadScript, loadScripts, TF_LAYERS, TF_PARTS, vendorUrl } from './vendor.js';

const SETUP_HINT = 'Run `make setup` (npm ci) on the server and reload.';

if (typeof globalThis.tf?.loadGraphModel !== 'function') {
  const urls = TF_PARTS.map(vendorUrl);
  try {
    await loadScripts(urls);
  } catch (error) {
    throw new Error(`TensorFlow.js did not load (${error.message}). ${SETUP_HINT}`);
  }
  if (typeof globalThis.tf?.loadGraphModel !== 'function') {
    throw new Error(`TensorFlow.js did not load (${urls.join(', ')} ran but defined no tf.loadGraphModel). ${SETUP_HINT}`);
  }
}

export const tf = globalThis.tf;

/** TF.js's version ("4.22.0"). */
export const TFJS_VERSION = tf.version_core ?? tf.version?.tfjs;

let gradients = null;

/**
 * TF.js's gradients and its layers API, loaded on first use (tfjs-layers' bundle, 0.33 MB: it
 * registers core's gradient functions, which core's own bundle leaves out, and has
 * tf.loadLayersModel), with the Keras layers TF.js lacks registered (custom-layers.js:
 * Normalization). Whatever differentiates (Grad-CAM, training a head, the gradient-descent
 * lesson) or loads a layers model awaits this first; without it tf.grad throws "gradient
 * function not found". Resolves to `tf`; rejects with a clear message when the bundle does
 * not load (and tries again next time).
 */
export function withGradients() {
  gradients ??= Promise.all([
    typeof tf.loadLayersModel === 'function' ? null : loadScript(vendorUrl(TF_LAYERS)),
    import('./custom-layers.js'),
  ])
    .then(([, { registerLayers }]) => {
      if (typeof tf.loadLayersModel !== 'function') throw new Error(`${vendorUrl(TF_LAYERS)} ran but defined no tf.loadLayersModel`);
      registerLayers(tf);
      return tf;
    })
    .catch((error) => {
      gradients = null;
      throw new Error(`TensorFlow.js's gradients did not load (${error.message}). ${SETUP_HINT}`);
    });
  return gradients;
}
