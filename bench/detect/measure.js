// bench/detect_bench.py: Warm-up, then the timed run, all in the page: segments in alternating graph execution modes,
// each from one frame's end to another's (polled once per animation frame, which is as often
// as the page's loop can take a frame: at a frame's end the poll runs before the loop takes
// the next frame, so the mode switch falls between frames), every frame's inferenceMs and
// numTensors. The camera is stopped at the last frame's end.
async ({warmupMs, warmupFrames, segmentMs, minFrames, maxFrameMs, modes}) => {
  const b = window.belka;
  // one requestAnimationFrame outstanding at a time, registered as soon as the last one ran (so it
  // runs before the page loop's, which is registered when a frame ends); at most 1 s, in case
  // animation frames stall (SwiftShader's WebGPU busy)
  let pending = null;
  const animationFrame = () => Promise.race([
    pending ??= new Promise((resolve) => requestAnimationFrame(() => { pending = null; resolve(); })),
    new Promise((resolve) => setTimeout(resolve, 1000))]);
  const pageMode = await b.execution();
  const began = performance.now();
  let seen = b.frames(), done = 0, lastEnd = null, frameMs = null;
  while (true) {
    await animationFrame();
    const now = performance.now();
    const frames = b.frames();
    if (frames === seen) {
      // after the first frame (which may set things up), one over maxFrameMs is enough to skip
      if (lastEnd !== null && now - lastEnd > maxFrameMs) {
        frameMs = now - lastEnd;
        break;
      }
      if (now - began >= Math.max(2 * maxFrameMs, 60000)) break;
      continue;
    }
    if (lastEnd !== null) frameMs = (now - lastEnd) / (frames - seen);
    lastEnd = now;
    seen = frames;
    done += 1;
    const waited = now - began;
    if (done < 2) continue;
    if (waited >= warmupMs && frames >= warmupFrames) break;
    if (waited >= Math.max(warmupMs, 30000)) break;
  }
  const warmup = {ms: performance.now() - began, frames: b.frames(), frameMs};
  if (frameMs === null || frameMs > maxFrameMs) {
    b.stopCamera();
    const why = frameMs === null ? `no frame in ${(warmup.ms / 1000).toFixed(0)} s of warm-up`
      : `a frame took at least ${(frameMs / 1000).toFixed(1)} s (--max-frame-s ${maxFrameMs / 1000})`;
    return {warmup, pageMode, skipped: why};
  }
  // here a frame has just ended: the page's loop takes the next one after this animation frame
  const tensorsStart = await b.numTensors();
  let tensorsMin = tensorsStart, tensorsMax = tensorsStart;
  const segments = [];
  for (const mode of modes) {
    await b.execution(mode);
    const start = performance.now();
    const framesStart = b.frames();
    const atEnds = [await b.numTensors()];
    const inference = [];
    let count = framesStart, elapsedMs = 0;
    while (true) {
      await animationFrame();
      const n = await b.numTensors();
      tensorsMin = Math.min(tensorsMin, n);
      tensorsMax = Math.max(tensorsMax, n);
      const now = performance.now();
      const frames = b.frames();
      if (frames === count) {
        if (now - start > Math.max(segmentMs, minFrames * maxFrameMs) + 120000) break;  // stuck
        continue;
      }
      count = frames;
      elapsedMs = now - start;
      inference.push(b.lastResult().inferenceMs);
      atEnds.push(n);
      if (elapsedMs >= segmentMs && frames - framesStart >= minFrames) break;
    }
    segments.push({mode, frames: count - framesStart, elapsedMs, inference,
                   tensorsAtEnds: [Math.min(...atEnds), Math.max(...atEnds)]});
  }
  const field = document.querySelector('[data-field=fps]');
  const fpsShown = field ? field.textContent.trim() : null;
  const tensorsEnd = await b.numTensors();
  b.stopCamera();
  await b.execution(pageMode);
  return {warmup, pageMode, segments, tensorsStart, tensorsEnd, tensorsMin, tensorsMax, fpsShown,
          maxInFlight: b.maxInFlight()};
}
