/**
 * The page's handle on its model's worker (static/js/engine-worker.js, running
 * static/js/engine.js): `engine.call(op, args)` sends one request and resolves to the
 * worker's answer, or rejects with the worker's error (same name, message and fields, e.g.
 * GradientUnsupportedError's kernel). Pictures go to the worker as ImageBitmaps; answers
 * come back as typed arrays, transferred rather than copied.
 *
 * The worker's URL is this module's sibling, so it carries the same content-hashed
 * /static/<version>/ prefix (cached for good); the /vendor/<version>/ prefix of TF.js, TF.js
 * core's own URL (the first thing the worker imports), the backend's bundle (run right after
 * it) and the model files the page will ask for first go in its query string.
 */
import { BASE, STATIC_SITE } from './site.js';
import { TF_CORE, VENDOR, backendFiles, vendorUrl } from './vendor.js';

export class EngineError extends Error {
  constructor({ name, message, ...fields }) {
    super(message);
    this.name = name ?? 'Error';
    Object.assign(this, fields);
  }
}

/**
 * The page's one model worker, started on the first call: `model` names the model it will
 * load (`weights` the precision the page asked for, manifest.js pageGraph; `version` its
 * manifest's version and `graph` the folder of the graph model the page will load, both from
 * the page's config), so it fetches that model's files at once, while TF.js starts
 * (static/js/prefetch.js; `first`: the URLs of those the page knows, fetched before the worker
 * imports anything); with `backend`, the backend the page will ask for first, it also
 * starts that backend and loads the model before the page asks (engine.js headStart).
 */
let shared = null;
export function startEngine({ model, weights = null, backend = null, version = null, graph = null, first = [] }) {
  shared ??= new Engine({ model, weights, backend, version, graph, first });
  return shared;
}

export class Engine {
  constructor({ model, weights, backend, version, graph, first = [] } = {}) {
    const url = new URL('./engine-worker.js', import.meta.url);
    url.searchParams.set('vendor', VENDOR);
    url.searchParams.set('tf', vendorUrl(TF_CORE));
    // "auto" (no backend named) measures wasm at least: its bundle is worth running early too
    const [bundle] = backendFiles(backend ?? 'wasm');
    if (bundle) url.searchParams.set('bundle', bundle);
    for (const file of first) url.searchParams.append('first', new URL(file, globalThis.location.href).href);
    url.searchParams.set('base', BASE);
    if (STATIC_SITE) url.searchParams.set('site', 'static');
    if (model) url.searchParams.set('model', model);
    if (weights) url.searchParams.set('weights', weights);
    if (backend) url.searchParams.set('backend', backend);
    if (version) url.searchParams.set('manifest', version);
    if (graph) url.searchParams.set('graph', graph);
    this.worker = new Worker(url, { type: 'module', name: 'belka-model' });
    this.pending = new Map(); // id -> {resolve, reject, onProgress}
    this.nextId = 1;
    this.failure = null;
    this.lastAnswer = performance.now();
    this.worker.onmessage = ({ data }) => this.receive(data);
    this.worker.onerror = (event) => {
      event.preventDefault();
      this.fail(`The model's worker stopped: ${event.message || 'its code did not load'}.`);
    };
    this.worker.onmessageerror = () => this.fail("A message from the model's worker could not be read.");
  }

  /**
   * Sends `op` with `args` to the worker; `onProgress(...values)` receives its progress
   * reports; `transfer` lists objects to move rather than copy.
   */
  call(op, args = {}, { onProgress, transfer = [] } = {}) {
    if (this.failure) return Promise.reject(new EngineError({ message: this.failure }));
    const id = this.nextId;
    this.nextId += 1;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onProgress });
      this.worker.postMessage({ id, op, args }, transfer);
    });
  }

  /** Stops a running occlusion map between two batches (its call rejects with an AbortError). */
  cancel() {
    if (!this.failure) this.worker.postMessage({ id: 0, op: 'cancel' });
  }

  receive({ id, value, error, progress }) {
    const request = this.pending.get(id);
    if (!request) return;
    if (progress) {
      request.onProgress?.(...progress);
      return;
    }
    this.pending.delete(id);
    this.lastAnswer = performance.now();
    if (error) request.reject(new EngineError(error));
    else request.resolve(value);
  }

  /** Resolves once no request has been in flight for `ms` milliseconds. */
  async quiet(ms) {
    for (;;) {
      const idleFor = this.pending.size ? 0 : performance.now() - this.lastAnswer;
      if (idleFor >= ms) return;
      await new Promise((resolve) => { setTimeout(resolve, ms - idleFor); });
    }
  }

  fail(message) {
    this.failure = message;
    this.pending.forEach(({ reject }) => reject(new EngineError({ message })));
    this.pending.clear();
  }
}
