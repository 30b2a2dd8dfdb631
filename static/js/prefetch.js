/**
 * A model's files fetched early, side by side with TF.js's own start-up, in the model's
 * worker: the worker starts them as soon as it runs (before TF.js core is even compiled),
 * and the loaders (manifest.js, model.js) take the responses when they get there, instead
 * of fetching one after another only once TF.js and the backend are ready.
 *
 * Each early response is used once; a later load of the same file (after a backend switch)
 * fetches it as usual, from the browser's cache.
 */
import { manifestUrl, modelUrl, pageGraph } from './manifest.js';

const early = new Map(); // absolute URL -> Promise<Response>

const absolute = (url) => new URL(url, globalThis.location.href).href;

function start(url) {
  const key = absolute(url);
  if (!early.has(key)) early.set(key, fetch(key));
  return early.get(key);
}

/**
 * Starts fetching /models/<name>/manifest.json (manifest.js manifestUrl), and the model.json
 * of the graph model it names for pages (pageGraph, `weights` as the page asks): at once
 * when the page named that folder (`graph`, from its config), else once the manifest is in;
 * then every weight shard that names. Resolves to the manifest, or null when it could not
 * be read: failures are left for the loaders to report.
 */
export function prefetchModel(name, weights = null, graph = null) {
  const graphUrl = (folder) => absolute(modelUrl(name, `${folder}model.json`));
  if (graph) prefetchGraph(graphUrl(graph));
  return start(manifestUrl(name))
    .then((response) => (response.ok ? response.clone().json() : null)) // the loader reads the original
    .then((manifest) => {
      if (manifest) prefetchGraph(graphUrl(pageGraph(manifest, weights).folder));
      return manifest;
    })
    .catch(() => null);
}

const graphsStarted = new Set();

function prefetchGraph(graph) {
  if (graphsStarted.has(graph)) return;
  graphsStarted.add(graph);
  start(graph)
    .then((response) => (response.ok ? response.clone().json() : null))
    .then((model) => {
      for (const group of model?.weightsManifest ?? []) {
        for (const path of group.paths) start(new URL(path, graph).href).catch(() => {});
      }
    })
    .catch(() => {});
}

/**
 * Fetches `urls` into the browser's HTTP cache, bodies read and dropped: for files that a
 * library fetches itself later (a backend's bundle and binary), from the cache then. Only
 * for content-hashed URLs (cached for good), else the later fetch revalidates anyway.
 */
export function warmCache(urls) {
  for (const url of urls) fetch(url).then((response) => response.arrayBuffer()).catch(() => {});
}

/** fetch(), answered by an early response for the same URL when there is one (GET only). */
export function fetchEarly(url, init) {
  const key = absolute(typeof url === 'string' ? url : url.url);
  const response = (init?.method ?? 'GET') === 'GET' ? early.get(key) : undefined;
  if (!response) return fetch(url, init);
  early.delete(key);
  return response;
}
