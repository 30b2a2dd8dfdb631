/**
 * TensorFlow.js for our modules: the global `tf` of TF.js 4.22's ES2017 bundle from npm
 * (served under /vendor). The models run in a worker (static/js/engine-worker.js), which
 * runs the bundle before it imports any module that needs it; the pages themselves do not
 * load TF.js. (The ES5 bundle tf.min.js cannot run under our Content-Security-Policy: its
 * polyfills call Function().)
 */
import { registerLayers } from './custom-layers.js';

export const tf = globalThis.tf;
if (tf?.serialization) registerLayers(tf); // Keras layers TF.js lacks (Normalization)
