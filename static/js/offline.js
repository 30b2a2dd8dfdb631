/**
 * Offline after one visit: registers Belka's service worker (static/sw.js, served at /sw.js
 * for scope /) and hands it the files this page loaded before it was in control, so the
 * page, its code and the model it used are kept (see sw.js for what stays online-only).
 */
const KEEP_TIMEOUT_MS = 60000;

/**
 * Resolves to {ok: true, kept: n} once the service worker stored what this page loaded,
 * plus `fetched` (what the model's worker loaded: TF.js, WASM, the model), or {ok: false,
 * reason} (no service workers here, or registration refused). Never rejects.
 */
export async function keepForOffline(fetched = []) {
  if (!('serviceWorker' in navigator)) return { ok: false, reason: 'this browser has no service workers' };
  try {
    await navigator.serviceWorker.register('/sw.js', { scope: '/' });
    const { active } = await navigator.serviceWorker.ready;
    const loaded = performance.getEntriesByType('resource').map((e) => e.name);
    const urls = [window.location.href, ...loaded, ...fetched]
      .filter((url) => new URL(url).origin === window.location.origin);
    return await new Promise((resolve) => {
      const timer = setTimeout(() => resolve({ ok: false, reason: 'the service worker did not answer' }),
        KEEP_TIMEOUT_MS);
      const channel = new MessageChannel();
      channel.port1.onmessage = (event) => {
        clearTimeout(timer);
        resolve({ ok: true, kept: event.data?.kept ?? 0 });
      };
      active.postMessage({ keep: urls }, [channel.port2]);
    });
  } catch (error) {
    return { ok: false, reason: error?.message ?? String(error) };
  }
}

/**
 * keepForOffline once the page's model runs (`ready` resolved ok), with what the model's
 * worker fetched (`engine`: TF.js, the WASM backend, the model's files).
 */
export async function keepWhenReady(ready, engine) {
  const started = await ready;
  if (!started.ok) return { ok: false, reason: 'no model running' };
  return keepForOffline(await engine.call('resources'));
}
