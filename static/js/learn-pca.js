/**
 * /learn/pca: photos as the classifier's features, placed in 2D by PCA (issue 15). Each photo
 * goes through the model in its worker (engine.js "features", with the class probabilities for
 * its colour); PCA runs on this page with TF.js (pca.js); the server's numpy computes the same
 * components (POST /api/learn/pca) and the page says how far apart they are (up to sign).
 *
 * Test and debug API, `window.belka`:
 *   ready            Promise: {ok, backend} once the model is loaded, or {ok: false, error}
 *   addPhotos(bs)    Promise: the photos (Blobs) added, each one's features computed, then the map
 *                    redrawn; the number added (files that are not images are said and skipped)
 *   useSamples()     Promise: the sample photos added (config.samples)
 *   clear()          forgets the photos
 *   features()       the photos' features: [[...], ...]
 *   labels()         each photo's top class: [{index, label, probability}]
 *   result()         the last PCA: {mean, components, explainedVariance, ratio, totalVariance,
 *                    projected, ms} (plain arrays), or null
 *   server()         Promise: the server's PCA of the same features and how far the page's is from
 *                    it: {answer, maxComponentDiff, maxVarianceRelDiff}
 *   setAxes(x, y)    which components go across and up (0-based)
 *   numTensors()     Promise: {page, worker}: tf.memory().numTensors here and in the model's worker
 *   idle()           Promise: the work queued so far is done
 */
import { initialChoice } from './backend-choice.js';
import { readPageConfig } from './config.js';
import { count, formatPercent } from './format.js';
import { askServer, startBackend, tf } from './lesson.js';
import { wireModelPicker } from './model-picker.js';
import { pca } from './pca.js';
import { decodeImage } from './preprocess.js';
import { operationQueue } from './serial.js';
import { pageWeights, startPageEngine } from './start-worker.js';
import { squareThumbnail } from './thumbnail.js';
import { showMessage } from './view.js';

const config = readPageConfig();
const engine = startPageEngine(config);
const $ = (id) => document.getElementById(id);
const MAX_COMPONENTS = 10;
const THUMB_PX = 48;
const PALETTE = ['#c0392b', '#2471a3', '#229954', '#d68910', '#7d3c98', '#17a589', '#ba4a00', '#2e4053'];
const OTHER = '#9e9e9e';

const state = {
  labels: [], // the model's class names
  photos: [], // [{title, thumb: canvas, features: Float32Array, top: {index, label, probability}}]
  result: null, // the last PCA (pca.js)
  axes: [0, 1],
  serverCheck: null, // the last server comparison
};
const { serial, idle } = operationQueue();

async function start() {
  try {
    await engine.call('start');
    // the same backend here (PCA) and in the model's worker (features)
    const { choice } = initialChoice();
    const [, worker] = await Promise.all([startBackend(),
      engine.call('backend', { choice: choice === 'auto' ? 'wasm' : choice })]);
    const { manifest } = await engine.call('loadClassifier', { name: config.model, weights: pageWeights(config) });
    if (!manifest.features?.size) throw new Error(`${config.model} names no features; pick another model.`);
    state.labels = manifest.labels;
    setText('pca-status', 'Add photos, or use the sample photos.');
    return { ok: true, backend: worker.backend };
  } catch (error) {
    showMessage('model', 'error', 'The model could not start.', error.message);
    setText('pca-status', 'Not ready.');
    return { ok: false, error: error.message };
  }
}

function addPhotos(blobs) {
  return serial(async () => {
    let added = 0;
    for (const [k, blob] of blobs.entries()) {
      setText('pca-status', `Reading photo ${k + 1} of ${blobs.length}…`);
      let bitmap;
      try {
        bitmap = await decodeImage(blob);
      } catch (error) {
        showMessage('photos', 'warning', 'A file was skipped.', error.message);
        continue;
      }
      const thumb = squareThumbnail(bitmap, THUMB_PX);
      const { features, probabilities } = await engine.call('features', { image: bitmap, classify: true },
        { transfer: [bitmap] });
      let best = 0;
      probabilities.forEach((p, i) => { if (p > probabilities[best]) best = i; });
      const title = blob.name || `photo ${state.photos.length + 1}`;
      state.photos.push({ title, thumb, features, top: { index: best, label: state.labels[best], probability: probabilities[best] } });
      added += 1;
    }
    await project();
    return added;
  });
}

async function useSamples() {
  const blobs = await Promise.all(config.samples.map(async ({ url, title }) => {
    const response = await fetch(url);
    if (!response.ok) throw new Error(`The sample photo ${url} did not load (${response.status}).`);
    return new File([await response.blob()], title, { type: response.headers.get('content-type') ?? 'image/jpeg' });
  }));
  return addPhotos(blobs);
}

function clear() {
  return serial(async () => {
    state.photos = [];
    state.result = null;
    state.serverCheck = null;
    await project();
  });
}

// ---------------------------------------------------------------- PCA and the server's

async function project() {
  renderThumbs();
  const n = state.photos.length;
  if (n < 3) {
    state.result = null;
    drawPlot();
    drawVariance();
    setText('pca-parity', '');
    setText('pca-status', n ? `${count(n, 'photo')}: add at least 3 to see a map.` : 'Add photos, or use the sample photos.');
    return;
  }
  setText('pca-status', `PCA of ${count(n, 'photo')}…`);
  state.result = await pca(state.photos.map((p) => p.features), MAX_COMPONENTS);
  const k = state.result.components.length;
  state.axes = state.axes.map((axis, i) => Math.min(axis, k - 1 - (i === 0 && k > 1 ? 1 : 0)));
  if (state.axes[0] === state.axes[1] && k > 1) state.axes = [0, 1];
  fillAxes(k);
  drawPlot();
  drawVariance();
  setText('pca-status', `${count(n, 'photo')} placed by their first two principal components (PCA in ` +
    `${state.result.ms.toFixed(0)} ms here).`);
  await checkServer().catch((error) => setText('pca-parity', error.message));
}

/** The server's PCA of the same features, and the largest difference from the page's (up to sign). */
async function checkServer() {
  const result = state.result;
  if (!result) return null;
  const features = state.photos.map((p) => Array.from(p.features));
  const k = result.components.length;
  setText('pca-parity', 'Asking the server (numpy) for the same components…');
  const answer = await askServer('/api/learn/pca', { features, components: k });
  let maxComponentDiff = 0;
  result.components.forEach((mine, i) => {
    const theirs = answer.components[i];
    let same = 0;
    let flipped = 0;
    for (let j = 0; j < mine.length; j += 1) {
      same = Math.max(same, Math.abs(mine[j] - theirs[j]));
      flipped = Math.max(flipped, Math.abs(mine[j] + theirs[j]));
    }
    maxComponentDiff = Math.max(maxComponentDiff, Math.min(same, flipped));
  });
  const maxVarianceRelDiff = Math.max(...result.explainedVariance.map((v, i) =>
    Math.abs(v - answer.explained_variance[i]) / Math.max(Math.abs(answer.explained_variance[i]), 1e-12)));
  state.serverCheck = { answer, maxComponentDiff, maxVarianceRelDiff };
  const ok = maxComponentDiff < 1e-4;
  const element = $('pca-parity');
  element.className = `parity ${ok ? 'parity-ok' : 'parity-bad'}`;
  element.textContent = `numpy on the server (${answer.method}) finds the same ${count(k, 'component')} up to sign: ` +
    `largest difference ${maxComponentDiff.toExponential(1)}${ok ? '' : ' (more than 1e-4: the two disagree)'}.`;
  return state.serverCheck;
}

// ---------------------------------------------------------------- drawing

function colourOf(photo) {
  const classes = classOrder();
  const at = classes.indexOf(photo.top.label);
  return at >= 0 && at < PALETTE.length ? PALETTE[at] : OTHER;
}

/** The predicted classes, most frequent first. */
function classOrder() {
  const counts = new Map();
  state.photos.forEach((p) => counts.set(p.top.label, (counts.get(p.top.label) ?? 0) + 1));
  return [...counts.entries()].sort((a, b) => b[1] - a[1]).map(([label]) => label);
}

function renderThumbs() {
  $('pca-thumbs').replaceChildren(...state.photos.map((photo) => {
    photo.thumb.style.borderColor = colourOf(photo);
    photo.thumb.title = `${photo.title}: ${photo.top.label} (${formatPercent(photo.top.probability)})`;
    return photo.thumb;
  }));
  const classes = classOrder();
  $('pca-legend').replaceChildren(...classes.slice(0, PALETTE.length).map((label, i) => {
    const item = document.createElement('li');
    item.style.setProperty('--swatch', PALETTE[i]);
    item.textContent = label;
    return item;
  }), ...(classes.length > PALETTE.length ? [Object.assign(document.createElement('li'), {
    textContent: `${classes.length - PALETTE.length} more classes (grey)`,
  })] : []));
  $('pca-legend').querySelectorAll('li').forEach((item, i) => {
    if (i >= PALETTE.length) item.style.setProperty('--swatch', OTHER);
  });
}

function fillAxes(k) {
  for (const [id, axis] of [['axis-x', 0], ['axis-y', 1]]) {
    const select = $(id);
    select.replaceChildren(...Array.from({ length: k }, (_, i) => new Option(
      `PC${i + 1} (${formatPercent(state.result.ratio[i])})`, String(i), false, i === state.axes[axis])));
  }
}

function drawPlot() {
  const canvas = $('pca-plot');
  const ctx = canvas.getContext('2d');
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  const result = state.result;
  if (!result) return;
  const [ax, ay] = state.axes;
  const xs = result.projected.map((p) => p[ax] ?? 0);
  const ys = result.projected.map((p) => p[ay] ?? 0);
  const pad = 40;
  const half = THUMB_PX / 2;
  const span = (values) => {
    const lo = Math.min(...values);
    const hi = Math.max(...values);
    return hi > lo ? [lo, hi] : [lo - 1, hi + 1];
  };
  const [x0, x1] = span(xs);
  const [y0, y1] = span(ys);
  const px = (x) => pad + half + ((x - x0) / (x1 - x0)) * (width - 2 * pad - THUMB_PX);
  const py = (y) => height - pad - half - ((y - y0) / (y1 - y0)) * (height - 2 * pad - THUMB_PX);
  ctx.strokeStyle = '#d7c3b0';
  ctx.lineWidth = 1;
  if (x0 < 0 && x1 > 0) { ctx.beginPath(); ctx.moveTo(px(0), pad / 2); ctx.lineTo(px(0), height - pad / 2); ctx.stroke(); }
  if (y0 < 0 && y1 > 0) { ctx.beginPath(); ctx.moveTo(pad / 2, py(0)); ctx.lineTo(width - pad / 2, py(0)); ctx.stroke(); }
  ctx.fillStyle = '#7a6a60';
  ctx.font = '12px system-ui, sans-serif';
  ctx.fillText(`PC${ax + 1} →`, width - pad - 40, height - 10);
  ctx.save();
  ctx.translate(14, pad + 40);
  ctx.rotate(-Math.PI / 2);
  ctx.fillText(`PC${ay + 1} →`, 0, 0);
  ctx.restore();
  state.photos.forEach((photo, i) => {
    const cx = px(xs[i]);
    const cy = py(ys[i]);
    ctx.fillStyle = colourOf(photo);
    ctx.fillRect(cx - half - 3, cy - half - 3, THUMB_PX + 6, THUMB_PX + 6);
    ctx.drawImage(photo.thumb, cx - half, cy - half, THUMB_PX, THUMB_PX);
  });
}

function drawVariance() {
  const canvas = $('pca-variance');
  const ctx = canvas.getContext('2d');
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  const result = state.result;
  if (!result) {
    setText('pca-variance-text', '');
    return;
  }
  const k = result.ratio.length;
  const pad = 22;
  const bar = (width - 2 * pad) / k;
  ctx.font = '11px system-ui, sans-serif';
  result.ratio.forEach((ratio, i) => {
    const h = ratio * (height - 2 * pad);
    ctx.fillStyle = state.axes.includes(i) ? '#c8641e' : '#d7c3b0';
    ctx.fillRect(pad + i * bar + 2, height - pad - h, bar - 4, h);
    ctx.fillStyle = '#7a6a60';
    ctx.fillText(`${i + 1}`, pad + i * bar + bar / 2 - 3, height - 6);
  });
  const shown = result.ratio[state.axes[0]] + (result.ratio[state.axes[1]] ?? 0);
  const cumulative = result.ratio.reduce((sum, r) => sum + r, 0);
  setText('pca-variance-text', result.ratio.map((r, i) => `PC${i + 1} ${formatPercent(r)}`).join(' · ') +
    `. The map shows ${formatPercent(shown)} of the spread; these ${k} directions ${formatPercent(cumulative)}.`);
}

function setText(id, text) {
  const element = $(id);
  if (element) element.textContent = text;
}

function setAxes(x, y) {
  state.axes = [x, y];
  if (state.result) fillAxes(state.result.components.length);
  drawPlot();
  drawVariance();
}

function wire() {
  $('pca-input').addEventListener('change', () => {
    const files = [...$('pca-input').files];
    $('pca-input').value = '';
    if (files.length) addPhotos(files).catch((error) => setText('pca-status', error.message));
  });
  const drop = $('pca-drop');
  drop.addEventListener('dragover', (event) => { event.preventDefault(); drop.classList.add('dropzone-active'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('dropzone-active'));
  drop.addEventListener('drop', (event) => {
    event.preventDefault();
    drop.classList.remove('dropzone-active');
    const files = [...(event.dataTransfer?.files ?? [])];
    if (files.length) addPhotos(files).catch((error) => setText('pca-status', error.message));
  });
  $('pca-samples').addEventListener('click', () => useSamples().catch((error) => setText('pca-status', error.message)));
  $('pca-clear').addEventListener('click', () => clear());
  $('axis-x').addEventListener('change', () => setAxes(Number($('axis-x').value), state.axes[1]));
  $('axis-y').addEventListener('change', () => setAxes(state.axes[0], Number($('axis-y').value)));
  wireModelPicker();
}

wire();
const ready = serial(start);
const plain = (result) => result && {
  ...result,
  mean: Array.from(result.mean),
  components: result.components.map((c) => Array.from(c)),
};
window.belka = {
  ready,
  addPhotos,
  useSamples,
  clear,
  features: () => state.photos.map((p) => Array.from(p.features)),
  labels: () => state.photos.map((p) => p.top),
  result: () => plain(state.result),
  server: () => serial(checkServer),
  setAxes,
  numTensors: async () => ({ page: tf.memory().numTensors, worker: (await engine.call('stats')).numTensors }),
  idle,
};
