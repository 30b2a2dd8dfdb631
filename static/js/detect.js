/**
 * The detect page, "what's in the room?": the webcam (or a photo or video file) through a
 * converted detector (detector.js), boxes drawn on a canvas over the picture. The detector
 * runs in the model's worker (static/js/engine.js): each frame goes there as an ImageBitmap
 * and comes back as boxes, so the page only draws.
 *
 * Frames are processed back to back: the next frame is taken only when the last one's
 * boxes are drawn, so there is never more than one frame in flight and nothing queues up.
 * The loop waits while the tab is hidden. Stopping releases the camera.
 *
 * The start-up (backend choice, auto, load, warm-up), backend switches and the common part of
 * `window.belka` are the page kit's (static/js/page-kit.js); this file holds the detect page's
 * own: the frame loop, its sources (camera, photo, video) and the boxes drawn.
 *
 * Test and debug API, `window.belka`:
 *   offline          Promise, once ready: {ok, kept} when the service worker has stored this
 *                    page, its code and its model for offline visits (static/sw.js)
 *   ready            Promise: {ok: true, backend} once the detector is loaded and warmed up
 *                    (by the first picture or frame when one came first, else on a black
 *                    picture), or {ok: false, error} (it never rejects)
 *   config           {model, models}
 *   model()          the detector this page runs (picked: ?model=, remembered, or the default)
 *   backend()        the active TF.js backend
 *   choice()         the user's choice ("auto" or a backend name)
 *   autoReason()     why "auto" chose its backend, or null when the choice is fixed
 *   setBackend(c)    Promise: switch like the <select> does
 *   startCamera()    Promise: {ok: true} or {ok: false, error} (the message the page shows)
 *   stopCamera()     stops the loop and releases the camera
 *   cameraActive()   whether a camera track is live
 *   detectBlob(b)    Promise: detect in an image Blob like a picked file: {detections: [{bbox,
 *                    box, classId, label, score}], width, height, inferenceMs, input: [...]
 *                    (the flattened float32 model input), backend}
 *   setOptions(o)    {scoreThreshold, maxBoxes}, like the sliders
 *   frames()         how many frames the loop has processed
 *   lastResult()     the latest frame's {frame, detections, width, height, inferenceMs}
 *   maxInFlight()    the most frames ever being processed at once (1 by design)
 *   inFlight()       how many frames are being processed now (0 once a stopped loop's last frame is done)
 *   traceFrames(n)   Promise: the next n frames the loop processes, each {frame, detections,
 *                    width, height, input: [...]} (the model input that frame became)
 *   numTensors()     Promise: tf.memory().numTensors in the model's worker
 *   worker(op, args) Promise: one request to the model's worker (static/js/engine.js)
 *   idle()           Promise: the operations queued so far are done
 *   execution(m)     Promise: how the detector's graph runs: "execute" (the default for graphs
 *                    without control flow) or "executeAsync"; with no argument, the current one
 */
import { Camera, cameraProblem } from './camera.js';
import { readPageConfig } from './config.js';
import { count, formatMs } from './format.js';
import { decodeImage } from './preprocess.js';
import { PageKit } from './page-kit.js';
import { RecentMedian } from './timings.js';
import { showMessage, clearMessage, showBackendNote } from './view.js';
import { wireModelPicker } from './model-picker.js';
import { keepWhenReady } from './offline.js';
import { startPageEngine } from './start-worker.js';

const config = readPageConfig();
// the model's worker (started already by start-worker.js: TF.js loads there meanwhile)
const engine = startPageEngine(config);
const $ = (id) => document.getElementById(id);
const video = $('video');
const camera = new Camera(video);

// the page's own state; the backend, the loaded detector and its warm-up are the kit's
const state = {
  options: { scoreThreshold: 0.5, maxBoxes: 20 },
  loop: 0, // the running loop's id; 0 when stopped
  frames: 0,
  inFlight: 0,
  maxInFlight: 0,
  inference: new RecentMedian(20),
  frameTimes: [],
  last: null,
  objectUrl: null,
  trace: null, // {count, frames, resolve} while traceFrames() collects
};

// ---------------------------------------------------------------- start, backend

/**
 * The start-up, backend choice, auto, load, warm-up and switching (page-kit.js); the loaded
 * detector (kit.model) is the worker's answer {manifest, defaults, loadMs, execution}. The
 * detector warms up as it loads (loadDetector's `warm`), or its first picture or frame does.
 */
const kit = new PageKit({
  engine,
  config,
  page: {
    noun: 'detector',
    task: 'detection',
    readyText: 'Ready: start the camera, or pick a photo or a video.',
    status: setStatus,
    loadRequest: (warm) => ({ op: 'loadDetector', args: { name: config.model, warm } }),
    warmsInLoad: true,
    loaded: (detector) => {
      if (state.frames === 0) {
        state.options = { scoreThreshold: detector.defaults.scoreThreshold, maxBoxes: detector.defaults.maxBoxes };
        syncSliders();
      }
      const [height, width] = detector.manifest.preprocessing.size;
      setField('input', `${width}×${height} px, ${count(detector.manifest.labels.filter((l) => l != null).length, 'class', 'classes')}`);
      return detector;
    },
    backendShown: (choice, result) => {
      showBackendNote(choice !== 'auto' && result.backend !== choice
        ? `${choice} is unavailable; using ${result.backend}.` : null);
    },
    render: () => {
      $('backend-select').value = kit.choice;
      setField('backend', kit.backend ?? '—');
    },
    busy: () => state.loop !== 0, // the loop's first frame is the warm-up
    changeBackend,
  },
});
const serial = (task) => kit.serial(task);

/** Switches backend (the <select>, or belka.setBackend); a running loop goes on on the new one. */
async function changeBackend(choice) {
  const switching = kit.switchTo(choice); // throws at once for an unknown backend
  const wasRunning = state.loop !== 0;
  pauseLoop();
  await switching;
  if (wasRunning) runLoop();
}

// ---------------------------------------------------------------- the loop

function pauseLoop() {
  state.loop = 0;
}

const nextFrame = () => new Promise((resolve) => { requestAnimationFrame(() => resolve()); });
const visible = () => new Promise((resolve) => {
  const onChange = () => {
    if (!document.hidden) {
      document.removeEventListener('visibilitychange', onChange);
      resolve();
    }
  };
  document.addEventListener('visibilitychange', onChange);
});

/** Processes video frames one after another until stopped (or replaced by another loop). */
async function runLoop() {
  const id = performance.now() + Math.random();
  state.loop = id;
  while (state.loop === id) {
    if (document.hidden) {
      setStatus('Paused while the tab is hidden.');
      await visible();
      continue;
    }
    if (video.readyState < 2 || !kit.model) {
      await nextFrame();
      continue;
    }
    try {
      await detectFrame(video);
    } catch (error) {
      if (error.name === 'InvalidStateError') { // a frame the browser cannot hand over yet: the next one
        await nextFrame();
        continue;
      }
      if (state.loop === id) pauseLoop();
      reportDetectionError(error);
      return;
    }
    await nextFrame();
  }
}

function reportDetectionError(error) {
  showMessage('detect', 'error', `Detection failed on the ${kit.backend} backend.`,
    `${error.message} Pick another backend, or reload the page.`);
  setStatus('Stopped after an error.');
  console.warn(error);
}

/** One frame: detect, draw, count. */
async function detectFrame(source) {
  state.inFlight += 1;
  state.maxInFlight = Math.max(state.maxInFlight, state.inFlight);
  try {
    const tracing = state.trace != null;
    // a copy of the frame, moved to the worker. A video whose frame is not decoded yet (just
    // started, or looping back to its start) throws InvalidStateError ("The image source is not
    // usable"): runLoop then tries the next frame instead of stopping.
    const frame = await createImageBitmap(source);
    const result = await engine.call('detect', { image: frame, options: { ...state.options, keepInput: tracing } },
      { transfer: [frame] });
    state.frames += 1;
    kit.warm = true;
    if (tracing && state.trace) {
      state.trace.frames.push({ frame: state.frames, ...result });
      if (state.trace.frames.length >= state.trace.count) {
        state.trace.resolve(state.trace.frames);
        state.trace = null;
      }
    }
    state.last = { frame: state.frames, ...result };
    state.inference.add(result.inferenceMs);
    const now = performance.now();
    state.frameTimes.push(now);
    while (state.frameTimes.length > 1 && now - state.frameTimes[0] > 2000) state.frameTimes.shift();
    drawBoxes(result);
    showStats();
    if (state.loop) setStatus(`Live: ${foundText(result.detections)}.`);
    return result;
  } finally {
    state.inFlight -= 1;
  }
}

// ---------------------------------------------------------------- sources

async function startCamera() {
  stopSources();
  setStatus('Starting the camera…');
  try {
    await camera.start();
  } catch (error) {
    const { title, text } = cameraProblem(error);
    showMessage('camera', 'error', title, text);
    setStatus('Camera not available.');
    return { ok: false, error: text };
  }
  clearMessage('camera');
  showStage('video');
  $('camera-start').hidden = true;
  $('camera-stop').hidden = false;
  setStatus('Live: looking for objects…');
  runLoop();
  return { ok: true };
}

function stopSources() {
  pauseLoop();
  camera.stop();
  video.pause();
  video.removeAttribute('src');
  if (state.objectUrl) URL.revokeObjectURL(state.objectUrl);
  state.objectUrl = null;
  $('camera-start').hidden = false;
  $('camera-stop').hidden = true;
}

function stopCamera() {
  stopSources();
  clearOverlay();
  showStage(null);
  setStatus('Camera stopped (released).');
}

async function detectFile(file) {
  if (!kit.model) return null;
  stopSources();
  if (file.type.startsWith('video/')) {
    state.objectUrl = URL.createObjectURL(file);
    video.src = state.objectUrl;
    video.loop = true;
    try {
      await video.play();
    } catch (error) {
      showMessage('image', 'error', 'That video cannot be played here.', error.message);
      return null;
    }
    clearMessage('image');
    showStage('video');
    runLoop();
    return null;
  }
  let bitmap;
  try {
    bitmap = await decodeImage(file);
  } catch (error) {
    showMessage('image', 'error', 'That file is not an image or video we can read.', error.message);
    return null;
  }
  clearMessage('image');
  try {
    const canvas = $('frame-canvas');
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
    canvas.getContext('2d').drawImage(bitmap, 0, 0);
    showStage('image');
    let result;
    try {
      // the worker gets its own copy of the picture (ImageBitmaps clone cheaply)
      result = await engine.call('detect', { image: bitmap, options: { ...state.options, keepInput: true } });
    } catch (error) {
      reportDetectionError(error);
      return null;
    }
    kit.warm = true;
    state.last = { frame: state.frames, ...result };
    drawBoxes(result);
    setStatus(`${foundText(result.detections)} in ${formatMs(result.inferenceMs)} on ${kit.backend}.`);
    return { ...result, backend: kit.backend };
  } finally {
    bitmap.close();
  }
}

// ---------------------------------------------------------------- drawing

function showStage(kind) {
  $('stage-empty').hidden = kind != null;
  video.hidden = kind !== 'video';
  $('frame-canvas').hidden = kind !== 'image';
}

function clearOverlay() {
  const overlay = $('overlay');
  overlay.getContext('2d').clearRect(0, 0, overlay.width, overlay.height);
  $('detections').replaceChildren();
}

const COLORS = ['#ff7a1a', '#2ec4b6', '#e71d36', '#7b2cbf', '#3a86ff', '#8ac926'];

function drawBoxes({ detections, width, height }) {
  const overlay = $('overlay');
  if (overlay.width !== width || overlay.height !== height) {
    overlay.width = width;
    overlay.height = height;
  }
  const ctx = overlay.getContext('2d');
  ctx.clearRect(0, 0, width, height);
  const line = Math.max(2, Math.round(width / 320));
  ctx.lineWidth = line;
  ctx.font = `${Math.max(12, Math.round(width / 40))}px system-ui, sans-serif`;
  ctx.textBaseline = 'top';
  for (const d of detections) {
    const [x, y, w, h] = d.bbox;
    const color = COLORS[d.classId % COLORS.length];
    ctx.strokeStyle = color;
    ctx.strokeRect(x, y, w, h);
    const text = `${d.label} ${Math.round(d.score * 100)}%`;
    const textWidth = ctx.measureText(text).width + 8;
    const textHeight = Math.max(12, Math.round(width / 40)) + 6;
    const ty = y >= textHeight ? y - textHeight : y;
    ctx.fillStyle = color;
    ctx.fillRect(x - line / 2, ty, textWidth, textHeight);
    ctx.fillStyle = '#fff';
    ctx.fillText(text, x + 4, ty + 3);
  }
  $('detections').replaceChildren(...detections.map((d) => {
    const item = document.createElement('li');
    item.textContent = d.label;
    const score = document.createElement('span');
    score.textContent = `${Math.round(d.score * 100)}%`;
    item.append(score);
    return item;
  }));
}

/** "nothing above 50%", "1 object: cup", "3 objects: person, person, cup". */
function foundText(detections) {
  if (!detections.length) return `nothing found above ${Math.round(state.options.scoreThreshold * 100)}%`;
  return `${count(detections.length, 'object')}: ${detections.map((d) => d.label).join(', ')}`;
}

function showStats() {
  const times = state.frameTimes;
  const fps = times.length > 1 ? ((times.length - 1) * 1000) / (times[times.length - 1] - times[0]) : null;
  setField('fps', fps == null ? '—' : fps.toFixed(1));
  setField('inference', `${formatMs(state.inference.median())} (median of ${state.inference.count})`);
}

function setField(name, text) {
  const element = document.querySelector(`[data-field="${name}"]`);
  if (element) element.textContent = text;
}

function setStatus(text) {
  $('status').textContent = text;
}

function syncSliders() {
  $('threshold').value = String(state.options.scoreThreshold);
  $('threshold-value').textContent = state.options.scoreThreshold.toFixed(2);
  $('max-boxes').value = String(state.options.maxBoxes);
  $('max-boxes-value').textContent = String(state.options.maxBoxes);
}

function setOptions({ scoreThreshold, maxBoxes }) {
  if (scoreThreshold != null) state.options.scoreThreshold = Number(scoreThreshold);
  if (maxBoxes != null) state.options.maxBoxes = Math.round(Number(maxBoxes));
  syncSliders();
}

// ---------------------------------------------------------------- wiring

function wire() {
  $('camera-start').addEventListener('click', () => { serial(startCamera); });
  $('camera-stop').addEventListener('click', () => { stopCamera(); });
  const fileInput = $('file-input');
  fileInput.addEventListener('change', () => {
    const file = fileInput.files[0];
    fileInput.value = '';
    if (file) serial(() => detectFile(file)).catch((error) => console.warn(error));
  });
  $('threshold').addEventListener('input', (e) => setOptions({ scoreThreshold: e.target.value }));
  $('max-boxes').addEventListener('input', (e) => setOptions({ maxBoxes: e.target.value }));
  $('backend-select').addEventListener('change', (e) => {
    serial(() => changeBackend(e.target.value)).catch((error) => console.warn(error));
  });
  window.addEventListener('pagehide', () => camera.stop());
}

/** window.belka: the kit's common part (ready, backend(), setBackend()...) and this page's own. */
function exposeApi() {
  window.belka = kit.api({
    offline: keepWhenReady(kit.ready, engine),
    startCamera: () => serial(startCamera),
    stopCamera: () => stopCamera(),
    cameraActive: () => camera.active,
    detectBlob: (blob) => serial(() => detectFile(blob)),
    setOptions,
    frames: () => state.frames,
    lastResult: () => (state.last ? { ...state.last, input: undefined } : null),
    maxInFlight: () => state.maxInFlight,
    inFlight: () => state.inFlight,
    execution: (mode) => (kit.model ? engine.call('execution', { mode }) : Promise.resolve(null)),
    traceFrames: (count) => new Promise((resolve) => { state.trace = { count, frames: [], resolve }; }),
  });
}

wire();
wireModelPicker();
kit.begin();
exposeApi();
