/**
 * TensorFlow.js for our modules.
 *
 * The page loads TF.js 4.22 from npm (served under /vendor) with classic <script defer>
 * tags before our module scripts run: tf.es2017.min.js, then the WASM and WebGPU
 * backend bundles, which attach themselves to `window.tf`. (The ES5 bundle tf.min.js
 * cannot run under our Content-Security-Policy: its polyfills call Function().)
 */
import { registerLayers } from './custom-layers.js';

export const tf = window.tf;
if (tf?.serialization) registerLayers(tf); // Keras layers TF.js lacks (Normalization)

/** A readable message when TF.js did not load (blocked, 404...), else null. */
export function tfLoadProblem() {
  if (!tf || typeof tf.loadGraphModel !== 'function') {
    return 'TensorFlow.js did not load (/vendor/tfjs/dist/tf.es2017.min.js). ' +
      'Run `make setup` (npm ci) on the server and reload.';
  }
  return null;
}
