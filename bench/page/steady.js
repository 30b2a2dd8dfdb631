// `runs` classifications of the photo, one after the other: wall time of each call and its inferenceMs.
async ({runs, timeoutMs}) => {
  const api = window.belka ?? window.bare;
  const blob = window.__bench.photo();
  const wall = [], inference = [];
  const deadline = performance.now() + timeoutMs;
  const start = performance.now();
  let top5 = null;
  for (let i = 0; i < runs && performance.now() < deadline; i++) {
    const t = performance.now();
    const r = await api.classifyBlob(blob);
    wall.push(performance.now() - t);
    inference.push(r.inferenceMs);
    top5 = r.top5.map((c) => c.index);
  }
  const end = performance.now();
  return {wall, inference, top5, window: [start, end], longtasks: await window.__bench.settled(),
          numTensors: await api.numTensors()};
}
