/**
 * Where this copy of Belka lives, and whether a server is behind it.
 *
 * The server names both on <html>: data-base (the site's base path, "/" unless the pages were
 * exported for a sub-path: `belka export-site --base-path /demo/`) and data-site ("server", or
 * "static" for an exported site on a plain file host). The page hands them to its model
 * worker in the worker's URL (?base=...&site=...), as it does /vendor's prefix.
 */
const inPage = typeof document !== 'undefined';

function workerParam(name) {
  return new URLSearchParams(globalThis.location?.search ?? '').get(name);
}

/** The site's base path, always ending in "/". */
export const BASE = (inPage ? document.documentElement.dataset.base : workerParam('base')) || '/';

/** True on an exported static site: no REST API, no server explanations, no saving. */
export const STATIC_SITE = (inPage ? document.documentElement.dataset.site : workerParam('site')) === 'static';

/** `path` (e.g. "models/x/manifest.json", with or without a leading "/") under the base path. */
export function siteUrl(path) {
  return BASE + String(path).replace(/^\/+/, '');
}

/** What a static copy says when asked for something only Belka's server does. */
export class NoServerError extends Error {
  constructor(what) {
    super(`${what} needs Belka's server (\`belka serve\`): this copy of the page is a static site, ` +
      'which runs the models in your browser only.');
    this.name = 'NoServerError';
  }
}

/** Throws NoServerError on a static site; else the URL of the server's `path` (e.g. "api/models"). */
export function serverUrl(path, what) {
  if (STATIC_SITE) throw new NoServerError(what);
  return siteUrl(path);
}
