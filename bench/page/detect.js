// The detect page: ready, then `runs` detectBlob calls on the photo.
async ({runs, timeoutMs}) => {
  const ready = await window.belka.ready;
  if (!ready.ok) return {ready};
  const blob = window.__bench.photo();
  const inference = [], wall = [];
  const deadline = performance.now() + timeoutMs;
  const start = performance.now();
  for (let i = 0; i < runs && performance.now() < deadline; i++) {
    const t = performance.now();
    const r = await window.belka.detectBlob(blob);
    wall.push(performance.now() - t);
    inference.push(r.inferenceMs);
  }
  const end = performance.now();
  return {ready, backend: window.belka.backend(), wall, inference, window: [start, end],
          longtasks: await window.__bench.settled(), numTensors: await window.belka.numTensors()};
}
