// The first answer of this document (see init.js), with the page's facts. Argument: timeoutMs.
async (timeoutMs) => {
  const bench = window.__bench;
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => resolve({error: `no answer within ${timeoutMs / 1000} s`}), timeoutMs);
  });
  const first = await Promise.race([bench.first, timeout]);
  clearTimeout(timer);
  const api = window.belka ?? window.bare;
  // (Belka's ready settles right after the first answer when the photo was the warm-up)
  const notReady = new Promise((resolve) => { setTimeout(() => resolve({ok: false, error: 'not ready'}), 5000); });
  const ready = api ? await Promise.race([api.ready, notReady]) : null;
  const nav = performance.getEntriesByType('navigation')[0];
  return {
    ...first, ready, readyAt: bench.readyAt, backend: api?.backend() ?? null,
    timings: api?.timings() ?? null, longtasks: await bench.settled(), longtaskSupported: bench.longtaskSupported,
    tfjs: window.tf?.version?.tfjs ?? (await api?.worker?.('start'))?.tfjs ?? null, crossOriginIsolated: self.crossOriginIsolated,
    domContentLoaded: nav?.domContentLoadedEventStart ?? null, responseEnd: nav?.responseEnd ?? null,
    numTensors: (await api?.numTensors?.()) ?? null,
  };
}
