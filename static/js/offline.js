/**
 * Offline after one visit: registers Belka's service worker (static/sw.js, served at /sw.js
 * for scope /) and hands it the files this page loaded before it was in control, so the
 * page, its code and the model it used are kept (see sw.js for what stays online-only).
 */
import { BASE, siteUrl } from './site.js';
import { TF_LAYERS, vendorUrl } from './vendor.js';

const KEEP_TIMEOUT_MS = 60000;
// The copy reads the model again (7-14 MB) into the service worker's cache: it waits until
// the model's worker has been idle this long, so it never competes with the first photos.
const QUIET_MS = 2000;

/** `promise`, or {ok: false, reason} when it takes longer than `ms`. */
function within(promise, ms, reason) {
  let timer;
  const late = new Promise((resolve) => { timer = setTimeout(() => resolve({ ok: false, reason }), ms); });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/**
 * Resolves to {ok: true, kept: n} once the service worker stored what this page loaded,
 * plus `fetched` (what the model's worker loaded: TF.js, WASM, the model), or {ok: false,
 * reason} (no service workers here, registration refused or blocked, no answer). Never rejects.
 */
export async function keepForOffline(fetched = []) {
  if (!('serviceWorker' in navigator)) return { ok: false, reason: 'this browser has no service workers' };
  try {
    await navigator.serviceWorker.register(siteUrl('sw.js'), { scope: BASE });
    const ready = await within(navigator.serviceWorker.ready, KEEP_TIMEOUT_MS, 'the service worker did not start');
    if (!ready.active) return ready;
    const loaded = performance.getEntriesByType('resource').map((e) => e.name);
    const urls = [window.location.href, ...loaded, ...fetched]
      .filter((url) => new URL(url).origin === window.location.origin);
    const kept = new Promise((resolve) => {
      const channel = new MessageChannel();
      channel.port1.onmessage = (event) => resolve({ ok: true, kept: event.data?.kept ?? 0 });
      ready.active.postMessage({ keep: urls }, [channel.port2]);
    });
    return await within(kept, KEEP_TIMEOUT_MS, 'the service worker did not answer');
  } catch (error) {
    return { ok: false, reason: error?.message ?? String(error) };
  }
}

/**
 * keepForOffline once the page's model runs (`ready` resolved ok) and its worker has been
 * idle for a moment, with what that worker fetched (`engine`: TF.js, the WASM backend, the
 * model's files, and the engine's modules it imports on first use, engine.js `later`) and
 * TF.js's gradients, which the worker loads only when something is first explained or trained
 * (tf.js withGradients). Occlusion then works offline. Grad-CAM on a model with a layers model
 * needs that model too, downloaded on the first Grad-CAM: keepAgain keeps it then.
 */
export async function keepWhenReady(ready, engine) {
  const started = await ready;
  if (!started.ok) return { ok: false, reason: 'no model running' };
  await engine.quiet(QUIET_MS);
  const gradients = new URL(vendorUrl(TF_LAYERS), window.location.href).href;
  return keepForOffline([...await engine.call('resources'), gradients]);
}

/**
 * After `kept` (keepWhenReady's promise, or an earlier keepAgain's), keeps what the model's
 * worker has fetched since: the layers model a first Grad-CAM loaded, so that Grad-CAM works
 * on offline visits too. Same result as keepForOffline; never rejects.
 */
export async function keepAgain(kept, engine) {
  const before = await kept;
  if (!before?.ok) return before;
  try {
    return await keepForOffline(await engine.call('resources'));
  } catch (error) {
    return { ok: false, reason: error?.message ?? String(error) };
  }
}
