/**
 * The page's handle on its model's worker (static/js/engine-worker.js, running
 * static/js/engine.js): `engine.call(op, args)` sends one request and resolves to the
 * worker's answer, or rejects with the worker's error (same name, message and fields, e.g.
 * GradientUnsupportedError's kernel). Pictures go to the worker as ImageBitmaps; answers
 * come back as typed arrays, transferred rather than copied.
 *
 * Where the browser has them, the worker is a SharedWorker of this tab with an extended
 * lifetime ({extendedLifetime: true}): it outlives the page for a moment, so a reload of the
 * tab finds its engine running, the backend started and the model loaded, and answers the
 * first photo at once instead of starting TF.js and the model again (the one thing a
 * dedicated worker cannot keep). It is named by a per-tab id (sessionStorage, which a reload
 * keeps and a new tab does not), held with a Web Lock: a duplicated tab, which copies its
 * sessionStorage, finds the lock taken and takes a new id, so two live pages never share an
 * engine (its state: the last picture, the taught head, is one page's). Elsewhere (no
 * SharedWorker, sessionStorage or Web Locks) it is a dedicated module worker, one per page.
 *
 * The worker's URL is this module's sibling, so it carries the same content-hashed
 * /static/<version>/ prefix (cached for good); the /vendor/<version>/ prefix of TF.js, the
 * URLs of TF.js's parts (the first thing the worker imports), the backend's bundle (run right
 * after them) and the model files the page will ask for first go in its query string.
 */
import { BASE, STATIC_SITE } from './site.js';
import { TF_PARTS, VENDOR, backendFiles, vendorUrl } from './vendor.js';

/**
 * The messages are defined once, in static/js/protocol.js (types only: never fetched).
 * @typedef {import('./protocol.js').Request} Request
 * @typedef {import('./protocol.js').Reply} Reply
 * @typedef {import('./protocol.js').Operations} Operations
 * @typedef {import('./protocol.js').PlainError} PlainError
 * @typedef {import('./protocol.js').WorkerUrl} WorkerUrl
 */

/** A worker's error (`PlainError`) thrown again on the page, with the same name and fields. */
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
 * imports anything; `warm`: the backend whose files to fetch ahead when `backend` is null,
 * "wasm" by default); with `backend`, the backend the page will ask for first, it also
 * starts that backend and loads the model before the page asks (engine.js headStart).
 */
let pageEngine = null;
export function startEngine({ model, weights = null, backend = null, warm = null, version = null, graph = null, first = [] }) {
  pageEngine ??= new Engine({ model, weights, backend, warm, version, graph, first });
  return pageEngine;
}

export class Engine {
  constructor({ model, weights, backend, warm = null, version, graph, first = [] } = {}) {
    // the worker's URL: its query is a `WorkerUrl` (protocol.js)
    const url = new URL('./engine-worker.js', import.meta.url);
    url.searchParams.set('vendor', VENDOR);
    for (const part of TF_PARTS) url.searchParams.append('tf', vendorUrl(part));
    // "auto" (no backend named) measures wasm at least (`warm`: "ort-wasm" for a model only
    // ONNX Runtime Web runs): its bundle is worth running early too
    const early = backend ?? warm ?? 'wasm';
    const [bundle] = backendFiles(early);
    if (bundle) url.searchParams.set('bundle', bundle);
    if (early !== 'wasm') url.searchParams.set('warm', early);
    for (const file of first) url.searchParams.append('first', new URL(file, globalThis.location.href).href);
    url.searchParams.set('base', BASE);
    if (STATIC_SITE) url.searchParams.set('site', 'static');
    if (model) url.searchParams.set('model', model);
    if (weights) url.searchParams.set('weights', weights);
    if (backend) url.searchParams.set('backend', backend);
    if (version) url.searchParams.set('manifest', version);
    if (graph) url.searchParams.set('graph', graph);
    this.pending = new Map(); // id -> {resolve, reject, onProgress}
    this.nextId = 1;
    this.failure = null;
    this.lastAnswer = performance.now();
    this.port = connect(url, this);
  }

  /** Receives `port`'s answers (a dedicated Worker or a SharedWorker's port) and its errors. */
  listen(port) {
    port.onmessage = ({ data }) => this.receive(data);
    port.onmessageerror = () => this.fail("A message from the model's worker could not be read.");
    // a SharedWorker's port says when the worker went (it crashed, or the browser ended it)
    if (port instanceof MessagePort) port.onclose = () => this.fail("The model's worker stopped.");
  }

  /** The worker failed to start (its script did not load) or stopped. */
  failed(event) {
    event.preventDefault?.();
    this.fail(`The model's worker stopped: ${event.message || 'its code did not load'}.`);
  }

  /**
   * Sends `op` with `args` to the worker (a `Request`; protocol.js `Operations` lists each op,
   * its args and its reply); `onProgress(...values)` receives its progress reports; `transfer`
   * lists objects to move rather than copy.
   * @template {keyof Operations} K
   * @param {K} op
   * @returns {Promise<ReturnType<Operations[K]>>}
   */
  call(op, args = {}, { onProgress, transfer = [] } = {}) {
    if (this.failure) return Promise.reject(new EngineError({ message: this.failure }));
    const id = this.nextId;
    this.nextId += 1;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onProgress });
      this.port.then((port) => port.postMessage({ id, op, args }, transfer));
    });
  }

  /** Stops a running occlusion map between two batches (its call rejects with an AbortError). */
  cancel() {
    if (!this.failure) this.port.then((port) => port.postMessage({ id: 0, op: 'cancel' }));
  }

  /** @param {Reply} reply */
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

const TAB_KEY = 'belka-tab';

/**
 * The worker at `url`, as a promise of the port to post to, which `engine` listens to (its
 * answers; its errors through `engine.failed`): this tab's SharedWorker where the browser has
 * one (see the top of this file), else a dedicated module worker.
 */
function connect(url, engine) {
  const tab = tabId();
  if (!tab) return Promise.resolve(dedicated(url, engine));
  // A reload is this tab's own page again: its id is its own (a duplicated tab's first load is
  // not a reload), so the page talks to its worker at once. Any other visit checks the lock
  // first (a few ms, while the worker starts): taken means a duplicated tab, whose page takes an
  // id, and a worker, of its own.
  const first = sharedWorker(url, tab, engine);
  if (performance.getEntriesByType?.('navigation')?.[0]?.type === 'reload') {
    holdTab(tab, { wait: true }); // the page before this one lets it go as it unloads
    return Promise.resolve(first);
  }
  return holdTab(tab).then((held) => {
    if (held) return first;
    first.onmessage = null;
    first.onclose = null;
    first.close();
    const fresh = newTabId();
    if (!fresh) return dedicated(url, engine);
    holdTab(fresh);
    return sharedWorker(url, fresh, engine);
  });
}

/** A dedicated module worker: one per page, gone with it. */
function dedicated(url, engine) {
  const worker = new Worker(url, { type: 'module', name: 'belka-model' });
  engine.listen(worker);
  worker.onerror = (event) => engine.failed(event);
  return worker;
}

/** This tab's SharedWorker for `url` (`tab` names it), kept a moment after the page goes. */
function sharedWorker(url, tab, engine) {
  const worker = new SharedWorker(url, { type: 'module', name: `belka-model ${tab}`, extendedLifetime: true });
  engine.listen(worker.port);
  worker.onerror = (event) => engine.failed(event);
  return worker.port;
}

/** This tab's id (sessionStorage), made on its first page; null without SharedWorker and its helpers. */
function tabId() {
  if (typeof SharedWorker !== 'function' || !globalThis.navigator?.locks) return null;
  try {
    return globalThis.sessionStorage.getItem(TAB_KEY) ?? newTabId();
  } catch {
    return null; // storage refused (privacy settings): a dedicated worker
  }
}

function newTabId() {
  try {
    const id = crypto.randomUUID();
    globalThis.sessionStorage.setItem(TAB_KEY, id);
    return id;
  } catch {
    return null;
  }
}

/**
 * Holds this tab's lock for the page's life: resolves to false when another page holds it;
 * with `wait`, waits for it instead.
 */
function holdTab(tab, { wait = false } = {}) {
  return new Promise((resolve) => {
    navigator.locks.request(`${TAB_KEY} ${tab}`, { ifAvailable: !wait }, (lock) => {
      resolve(Boolean(lock));
      return lock ? new Promise(() => {}) : null; // released when the page goes
    }).catch(() => resolve(false));
  });
}
