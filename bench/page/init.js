// Installed before any page script of every document (bench/page_round.py): long tasks, the photo
// (__PHOTO__: its JPEG as base64), and the first answer of a photo handed in at DOMContentLoaded
// (the earliest moment window.belka / window.bare exist: both pages set them while their module
// runs, which is before DOMContentLoaded).
(() => {
  const bench = {longtasks: [], readyAt: null};
  window.__bench = bench;
  try {
    const observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) bench.longtasks.push([e.startTime, e.duration]);
    });
    observer.observe({type: 'longtask', buffered: true});
    bench.longtaskSupported = PerformanceObserver.supportedEntryTypes.includes('longtask');
    bench.flush = () => {
      for (const e of observer.takeRecords()) bench.longtasks.push([e.startTime, e.duration]);
      return bench.longtasks;
    };
  } catch (error) {
    bench.longtaskSupported = false;
    bench.longtaskError = String(error);
    bench.flush = () => bench.longtasks;
  }
  // A long task's entry is queued once that task has ended (a caller resuming at the end of the
  // task it measures is still inside it): wait a moment before reading them.
  bench.settled = () => new Promise((resolve) => { setTimeout(() => resolve(bench.flush()), 100); });
  // the photo, decoded once here (about a millisecond) and handed to both pages as the same Blob
  const binary = atob('__PHOTO__');
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  const photo = new Blob([bytes], {type: 'image/jpeg'});
  bench.photo = () => photo;
  let settle;
  bench.first = new Promise((resolve) => { settle = resolve; });
  document.addEventListener('DOMContentLoaded', () => {
    const api = window.belka ?? window.bare;
    if (!api || typeof api.classifyBlob !== 'function') {
      settle({skipped: 'this page has no classifyBlob'});
      return;
    }
    api.ready.then(() => { bench.readyAt = performance.now(); });
    const givenAt = performance.now();
    api.classifyBlob(photo).then(
      (r) => settle({at: performance.now(), givenAt, result: r && {
        top5: r.top5.map((c) => c.index), inferenceMs: r.inferenceMs, totalMs: r.totalMs}}),
      (error) => settle({givenAt, error: String(error?.message ?? error)}));
  }, {once: true});
})();
