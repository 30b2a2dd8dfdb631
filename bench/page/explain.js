// One explanation on Belka's page (cancelled after timeoutMs).
async ({request, timeoutMs}) => {
  const start = performance.now();
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => { window.belka.cancelExplain(); resolve({timedOut: true}); }, timeoutMs);
  });
  const r = await Promise.race([window.belka.explain(request), timeout]);
  clearTimeout(timer);
  if (r?.timedOut) await window.belka.idle();  // the cancelled map ends after its batch
  const end = performance.now();
  return {window: [start, end], longtasks: await window.__bench.settled(), timedOut: Boolean(r?.timedOut),
          cancelled: r === null, error: r?.error ?? null, ms: r?.ms ?? null, source: r?.source ?? null,
          layer: r?.layer ?? null, patch: r?.patch ?? null, stride: r?.stride ?? null,
          images: r?.images ?? null, numTensors: await window.belka.numTensors()};
}
