/**
 * The model's worker (a module worker the page starts, static/js/engine-client.js: this
 * tab's SharedWorker, or a dedicated worker where there is none): runs
 * the engine (static/js/engine.js, which runs TF.js's core bundle first: tf.js) and answers
 * the page's requests {id, op, args} with {id, value} or {id, error}, plus {id, progress} on
 * the way. A "cancel" request is handled as soon as it arrives, even while an occlusion map
 * runs.
 *
 * Its URL says what the page will ask for first (?model=NAME&weights=...&backend=B, the
 * backend only when the user's choice names one; &manifest=VERSION&graph=FOLDER/ from the
 * page's config), where TF.js's parts and the backend's bundle are (&tf=URL, repeated, in
 * the order they run, &bundle=URL), and
 * the model files the page knows it will need (&first=URL, repeated), so before any request
 * arrives it fetches the model's files, the backend's bundle and the engine's modules side by
 * side with TF.js, then activates the backend and loads the model (engine.js headStart).
 *
 * The messages and the URL's query are defined in static/js/protocol.js (`Request`, `Reply`,
 * `WorkerUrl`): JSDoc types only, named below with import() types, which cost nothing at run time.
 *
 * This module imports nothing statically: a worker fetches each level of a module graph one
 * round trip after the other (there is no modulepreload in workers), and a static import
 * would hold back TF.js, the engine and the model's files until this module's own imports
 * were in. Everything starts at once instead.
 */
/**
 * @typedef {import('./protocol.js').Request} Request
 * @typedef {import('./protocol.js').Reply} Reply
 * @typedef {import('./protocol.js').PlainError} PlainError
 */

/** The query of this worker's URL: a `WorkerUrl` (protocol.js). */
const params = new URLSearchParams(self.location.search);

/** `value` as an absolute URL when it is on this worker's own origin, else null. */
function ownUrl(value) {
  try {
    const url = new URL(value, self.location.href);
    return url.origin === self.location.origin ? url.href : null;
  } catch {
    return null;
  }
}

// The model files the page named, fetched before anything else; prefetch.js (which imports
// nothing: it is in at once) takes them over and fetches the weight shards a model.json names
const firstFiles = new Map(params.getAll('first').map(ownUrl).filter(Boolean).map((url) => [url, fetch(url)]));
for (const response of firstFiles.values()) response.catch(() => {}); // failures: the loaders report them
import('./prefetch.js').then(({ adoptEarly }) => adoptEarly(firstFiles)).catch(() => {});

// TF.js's parts (core, then the converter) and the backend's bundle (static/js/backend.js
// then finds it registered): all fetched at once; core runs first, then the others, which
// need only core. A fetch here fills the HTTP cache, from which the import of the same URL is
// answered; the engine's tf.js imports these same URLs (vendor.js TF_PARTS) and reports a
// failure there, as backend.js does for the bundle.
const [tfCore, ...onCore] = params.getAll('tf').map(ownUrl).filter(Boolean);
const bundle = ownUrl(params.get('bundle'));
if (bundle) onCore.push(bundle);
for (const url of onCore) fetch(url).then((response) => response.arrayBuffer()).catch(() => {});
if (tfCore) import(tfCore).then(() => Promise.all(onCore.map((url) => import(url)))).catch(() => {});
const engineModule = import('./engine.js'); // fetched now; it runs once TF.js has

const early = Promise.all([
  import('./backend-choice.js'), import('./manifest.js'), import('./prefetch.js'), import('./vendor.js'),
]).then(([{ BACKENDS }, { prefetchModel, useManifestVersion }, { warmCache }, { backendFiles }]) => {
  const hint = {
    model: params.get('model'),
    weights: params.get('weights'),
    backend: BACKENDS.includes(params.get('backend')) ? params.get('backend') : null,
    graph: /^[\w.-]+\/$/.test(params.get('graph') ?? '') ? params.get('graph') : null, // a folder of the model's
  };
  useManifestVersion(hint.model, params.get('manifest'));
  const warm = hint.backend ?? (BACKENDS.includes(params.get('warm')) ? params.get('warm') : 'wasm');
  const runtime = warm.startsWith('ort-') ? 'ort' : null;
  const manifest = hint.model ? prefetchModel(hint.model, hint.weights, hint.graph, runtime) : null;
  // the binaries the backend's bundle fetches itself ("auto" measures wasm at least), into the
  // HTTP cache ahead of it (the bundle, imported above, is fetched already)
  warmCache(backendFiles(warm).filter((url) => url !== params.get('bundle')));
  return { hint, manifest };
});

const engine = Promise.all([engineModule, early]).then(async ([module, { hint, manifest }]) => {
  await module.headStart({ ...hint, manifest });
  return module;
});

/** An error as plain data (a `PlainError`): its name, message and own fields (kernel, backend...). */
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

/**
 * Answers the requests that arrive on `port`: the worker itself (a dedicated worker) or a
 * page's port (a SharedWorker: engine-client.js). A request from another port than the last
 * one is a new page of the tab (a reload): the engine forgets what the last page left (its
 * picture, its taught head, a running occlusion), and keeps the backend and the model.
 */
let lastPort = null;
function serve(port) {
  /** Each `Request` gets one `Reply`: {id, value} or {id, error}, after any {id, progress}. */
  port.onmessage = async (/** @type {MessageEvent<Request>} */ { data: { id, op, args } }) => {
    try {
      const module = await engine;
      if (port !== lastPort) {
        if (lastPort) module.newPage();
        lastPort = port;
      }
      const { operations } = module;
      if (!Object.hasOwn(operations, op)) throw new Error(`Unknown operation "${op}".`);
      const progress = (...values) => port.postMessage({ id, progress: values });
      const value = await operations[op](args ?? {}, { progress });
      port.postMessage({ id, value }, transferables(value));
    } catch (error) {
      port.postMessage({ id, error: plainError(error) });
    }
  };
}

if ('onconnect' in self) self.onconnect = ({ ports: [port] }) => serve(port);
else serve(self);
