/**
 * The model's worker (a module worker the page starts, static/js/engine-client.js): runs
 * TF.js's core bundle, then the engine (static/js/engine.js), and answers the page's
 * requests {id, op, args} with {id, value} or {id, error}, plus {id, progress} on the way.
 * A "cancel" request is handled as soon as it arrives, even while an occlusion map runs.
 */
import { prefetchModel } from './prefetch.js';
import { loadScript, TF_CORE, vendorUrl } from './vendor.js';

// the page's model downloads while TF.js loads and compiles (?model=NAME&weights=... in this
// worker's URL)
const params = new URLSearchParams(self.location.search);
if (params.get('model')) prefetchModel(params.get('model'), params.get('weights'));

const engine = loadScript(vendorUrl(TF_CORE)).then(
  () => {
    if (typeof globalThis.tf?.loadGraphModel !== 'function') throw new Error('tf is missing');
    return import('./engine.js');
  },
  (error) => {
    throw new Error(`TensorFlow.js did not load (${vendorUrl(TF_CORE)}: ${error.message}). ` +
      'Run `make setup` (npm ci) on the server and reload.');
  },
);

/** An error as plain data: its name, message and own fields (kernel, backend...). */
function plainError(error) {
  if (!(error instanceof Error)) return { name: 'Error', message: String(error) };
  const fields = Object.fromEntries(Object.entries(error).filter(([, v]) => typeof v !== 'object' || v === null));
  return { ...fields, name: error.name, message: error.message };
}

/** The buffers to transfer rather than copy: typed arrays and ImageData, one level down. */
function transferables(value) {
  if (value == null || typeof value !== 'object') return [];
  const buffers = new Set();
  for (const item of [value, ...Object.values(value)]) {
    if (ArrayBuffer.isView(item)) buffers.add(item.buffer);
    else if (typeof ImageData !== 'undefined' && item instanceof ImageData) buffers.add(item.data.buffer);
  }
  return [...buffers].filter((buffer) => buffer instanceof ArrayBuffer);
}

self.onmessage = async ({ data: { id, op, args } }) => {
  try {
    const { operations } = await engine;
    if (!Object.hasOwn(operations, op)) throw new Error(`Unknown operation "${op}".`);
    const progress = (...values) => self.postMessage({ id, progress: values });
    const value = await operations[op](args ?? {}, { progress });
    self.postMessage({ id, value }, transferables(value));
  } catch (error) {
    self.postMessage({ id, error: plainError(error) });
  }
};
