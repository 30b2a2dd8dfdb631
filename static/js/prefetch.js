/**
 * A model's files fetched early, side by side with TF.js's own start-up, in the model's
 * worker: the worker starts the files the page named before it imports anything, this module
 * takes them over (it imports nothing, so it is in one round trip) and fetches the weight
 * shards each model.json names as soon as that is in; the loaders (manifest.js, model.js)
 * take the responses when they get there, instead of fetching one after another only once
 * TF.js and the backend are ready. manifest.js prefetchModel starts what the page did not name.
 *
 * Each early response is used once; a later load of the same file (after a backend switch)
 * fetches it as usual, from the browser's cache.
 */
const early = new Map(); // absolute URL -> Promise<Response>

const absolute = (url) => new URL(url, globalThis.location.href).href;
const isGraph = (url) => new URL(url).pathname.endsWith('/model.json');

/** Keeps an early response for `key`; a model.json's weight shards follow as soon as it is in. */
function keep(key, response) {
  early.set(key, response);
  if (isGraph(key)) prefetchShards(key);
}

/** Starts fetching `url` (once). */
export function prefetch(url) {
  const key = absolute(url);
  if (!early.has(key)) keep(key, fetch(key));
  return early.get(key);
}

/** Takes over fetches begun before this module ran (absolute URL -> Promise<Response>). */
export function adoptEarly(responses) {
  for (const [url, response] of responses) {
    const key = absolute(url);
    if (!early.has(key)) keep(key, response);
  }
}

function prefetchShards(graph) {
  early.get(graph)
    .then((response) => (response.ok ? response.clone().json() : null)) // the loader reads the original
    .then((model) => {
      for (const group of model?.weightsManifest ?? []) {
        for (const path of group.paths) prefetch(new URL(path, graph).href).catch(() => {});
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
