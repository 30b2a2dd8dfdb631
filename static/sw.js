/**
 * Belka's service worker (scope /): after one visit, the pages work with the network off.
 *
 * What it keeps, and how it answers:
 * - code and styles under a content version (/static/<version>/..., /vendor/<version>/...):
 *   from the cache first (they never change); when a new version is stored, the files of
 *   the other versions are dropped;
 * - weight shards named by their hash (/models/<name>/graph/<shard>.bin?v=<hash>): cache
 *   first, for the same reason; when a new model.json comes in, the shards it no longer
 *   names are dropped, so a re-converted model replaces the old files;
 * - a manifest named by its hash (/models/<name>/manifest.json?v=<hash>, as the pages name
 *   it): cache first; storing one drops that manifest's other versions;
 * - pages, model.json and an unversioned manifest.json: from the network first, so a new
 *   release or model shows at once; the stored copy only when the network fails.
 * - never: the REST API (/api/...: predictions and explanations need the server), /docs,
 *   anything but GET. Those stay online-only.
 *
 * Paths are read relative to the worker's scope: "/" on `belka serve`, the base path on a site
 * exported for a sub-path (`belka export-site --base-path /demo/`), where there is no API at all.
 *
 * A first visit's files are loaded before this worker controls the page; the page then
 * sends it the list of what it loaded (a "keep" message, static/js/offline.js) and they
 * are stored from the browser's HTTP cache.
 */
const CODE = 'belka-code-v1';
const MODELS = 'belka-models-v1';
const PAGES = 'belka-pages-v1';
const CACHES = [CODE, MODELS, PAGES];
const VERSIONED = /^\/(static|vendor)\/([0-9a-f]{16})\//;
const SHARD = /^\/models\/([^/]+)\/([^/]+)\/[^/]+\.bin$/;
const MANIFEST = /^\/models\/[^/]+\/manifest\.json$/;
const BASE = new URL(self.registration.scope).pathname; // ends with "/"

/** A URL's path under the scope, as "/..." ("/static/...", "/models/..."), or null outside it. */
function local(url) {
  return url.pathname.startsWith(BASE) ? `/${url.pathname.slice(BASE.length)}` : null;
}

self.addEventListener('install', () => self.skipWaiting());

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name.startsWith('belka-') && !CACHES.includes(name)) await caches.delete(name);
    }
    await self.clients.claim();
  })());
});

/** Which cache a URL belongs in and how it is answered, or null: not ours to keep. */
function route(url) {
  const path = url.origin === self.location.origin ? local(url) : null;
  if (path === null) return null;
  if (path.startsWith('/api/') || ['/docs', '/openapi.json', '/healthz', '/sw.js'].includes(path)) return null;
  if (VERSIONED.test(path)) return { cache: CODE, strategy: 'cache-first' };
  if ((SHARD.test(path) || MANIFEST.test(path)) && url.searchParams.has('v')) return { cache: MODELS, strategy: 'cache-first' };
  if (path.startsWith('/models/')) return { cache: MODELS, strategy: 'network-first' };
  return { cache: PAGES, strategy: 'network-first' }; // the pages, and unversioned files (favicon.ico)
}

self.addEventListener('fetch', (event) => {
  const { request } = event;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  const how = route(url);
  if (!how) return;
  // The response goes back as soon as it is there: storing a copy, and dropping what it
  // replaces, happens after it (the worker is kept alive for that: waitUntil).
  const later = (work) => event.waitUntil(work.catch(() => {}));
  event.respondWith(how.strategy === 'cache-first'
    ? cacheFirst(how.cache, request, url, later) : networkFirst(how.cache, request, url, later));
});

async function cacheFirst(cacheName, request, url, later) {
  const cache = await caches.open(cacheName);
  const hit = await cache.match(request);
  if (hit) return hit;
  const response = await fetch(request);
  if (response.ok) later(store(cache, url, response.clone()));
  return response;
}

async function networkFirst(cacheName, request, url, later) {
  const cache = await caches.open(cacheName);
  try {
    const response = await fetch(request);
    if (response.ok) later(store(cache, url, response.clone()));
    return response;
  } catch (error) {
    const hit = await cache.match(request, { ignoreVary: true });
    if (hit) return hit;
    throw error;
  }
}

/** Stores a response, then drops what it replaces (other code versions, unnamed shards). */
async function store(cache, url, response) {
  await cache.put(url.href, response.clone());
  const path = local(url) ?? '';
  const versioned = path.match(VERSIONED);
  if (versioned) {
    const [, root, version] = versioned;
    for (const request of await cache.keys()) {
      const match = (local(new URL(request.url)) ?? '').match(VERSIONED);
      if (match && match[1] === root && match[2] !== version) await cache.delete(request);
    }
    return;
  }
  if (MANIFEST.test(path) && url.searchParams.has('v')) {
    for (const request of await cache.keys()) {
      const cached = new URL(request.url);
      if (cached.pathname === url.pathname && cached.searchParams.has('v') && cached.href !== url.href) {
        await cache.delete(request);
      }
    }
    return;
  }
  if (path.endsWith('/model.json') && path.startsWith('/models/')) {
    const folder = url.pathname.slice(0, url.pathname.lastIndexOf('/') + 1);
    let named;
    try {
      const model = await response.json();
      named = new Set(model.weightsManifest.flatMap((group) => group.paths)
        .map((path) => new URL(path, url).href));
    } catch {
      return;
    }
    for (const request of await cache.keys()) {
      const cached = new URL(request.url);
      if (cached.pathname.startsWith(folder) && SHARD.test(local(cached) ?? '') && !named.has(cached.href)) {
        await cache.delete(request);
      }
    }
  }
}

/** {keep: [urls]} from a page: store what it loaded before this worker controlled it. */
self.addEventListener('message', (event) => {
  const urls = event.data?.keep;
  if (!Array.isArray(urls)) return;
  event.waitUntil((async () => {
    for (const href of urls) {
      const url = new URL(href, self.location.origin);
      const how = route(url);
      if (!how) continue;
      const cache = await caches.open(how.cache);
      if (await cache.match(url.href)) continue;
      try {
        const response = await fetch(url.href); // mostly from the HTTP cache
        if (response.ok) await store(cache, url, response);
      } catch {
        /* offline already: nothing to keep */
      }
    }
    event.ports[0]?.postMessage({ kept: urls.length });
  })());
});
