/**
 * The /teach page: your own classes, learned in the browser on top of a converted classifier
 * (issue 14). Pictures become the base model's features in the model's worker (engine.js
 * "features", once per picture); a small head trains there on them (head.js, seeded); then it
 * classifies new pictures, and the server saves base + head as a Belka model (POST /api/models,
 * app/api/teach.py). Pictures (their features and thumbnails) and the trained head are kept in
 * IndexedDB (lesson-store.js): a reload brings them back; Clear forgets them.
 *
 * Test and debug API, `window.belka`:
 *   ready              Promise: {ok, backend} once the base model is loaded, or {ok: false, error}
 *   config, model()    the page config; the base model's name
 *   backend()          the active TF.js backend
 *   classes()          [{name, count}]
 *   addClass(name)     a new class; its index
 *   renameClass(i, n)  renames class i
 *   addSamples(i, bs)  Promise: the pictures (Blobs) added to class i, features computed; the
 *                      number added (pictures that are not images are said and skipped)
 *   train(options)     Promise: trains like the Train button, options overriding the fields
 *                      ({epochs, learningRate, batchSize, hidden, validationSplit, seed}):
 *                      {history: [{epoch, loss, accuracy, valLoss, valAccuracy}], split,
 *                      weightSpecs, data}
 *   confusion()        counts[true][predicted] on the validation pictures of the last training
 *   clear()            Promise: forgets the pictures and the head (here and kept ones)
 *   stored()           Promise: what IndexedDB keeps for this base: {classes, trained} or null
 *   stop()             stops training between two batches
 *   startCamera()      Promise: {ok: true} or {ok: false, error}; stopCamera() releases it
 *   record(i, n)       Promise: n camera frames recorded into class i, as holding the button does
 *   predictBlob(b)     Promise: {logits, probabilities, input, top: [{index, label, probability}],
 *                      gradcam} with the top class's Grad-CAM, as explainTaught gives it
 *   explainTaught(c)   Promise: Grad-CAM of the last picture tried for taught class c, base and
 *                      head as one model: {heatmap, shape, score, layer, classIndex} or {error}
 *   tryLive(n)         Promise: n camera frames through the taught head, as "Live on the camera"
 *                      does until stopped; the last one's result
 *   save(o)            Promise: saves like the Save button, o = {name, replace, token}:
 *                      {status, body} (the server's answer)
 *   numTensors()       Promise: tf.memory().numTensors in the model's worker
 *   worker(op, args)   one request to the model's worker
 *   idle()             Promise: the operations queued so far are done
 */
import { Camera, cameraProblem } from './camera.js';
import { readPageConfig } from './config.js';
import { count, formatPercent } from './format.js';
import { wireModelPicker } from './model-picker.js';
import { clearLesson, loadLesson, saveLesson } from './lesson-store.js';
import { decodeImage, modelRegion } from './preprocess.js';
import { PageKit } from './page-kit.js';
import { operationQueue } from './serial.js';
import { pageWeights, startPageEngine } from './start-worker.js';
import { serverUrl, siteUrl } from './site.js';
import { squareThumbnail } from './thumbnail.js';
import { showMessage } from './view.js';

const config = readPageConfig();
const engine = startPageEngine(config);
const $ = (id) => document.getElementById(id);
const THUMB_PX = 56;
const RECORD_EVERY_MS = 150; // a frame every 150 ms while "Hold to record" is held
const VIEWS = 4; // augmented views per picture, when "Augment" is on
const TRY_PX = 320; // the tried picture's longer side on the page
const camera = new Camera($('camera-video'));

const state = {
  features: 0, // numbers per picture
  preprocessing: null, // the base model's (manifest.preprocessing): what part of a picture it sees
  classes: [{ name: 'squirrel', samples: [] }, { name: 'not squirrel', samples: [] }],
  target: 0, // the class pasted pictures go to
  recording: null, // a token while "Hold to record" is held
  pictures: 0, // pictures added so far: each one's augmentation seed
  live: null, // a token while the camera's frames are tried live
  trained: null, // {history, split, weightSpecs, data, labels}
  training: false,
};

// ---------------------------------------------------------------- start

/**
 * The start-up (page-kit.js): the backend ("auto" here: WebAssembly, which every browser has
 * and which trains a small head fast), the base model loaded (no warm-up: its first picture's
 * features are), then what was kept from the last visit put back.
 */
const kit = new PageKit({
  engine,
  config,
  page: {
    noun: 'model',
    autoBackend: 'wasm',
    warmUpAfterStart: false,
    warnUnknownBackend: false,
    loadRequest: () => ({ op: 'loadClassifier', args: { name: config.model, weights: pageWeights(config) } }),
    loaded: ({ manifest }) => {
      state.features = manifest.features?.size ?? 0;
      state.preprocessing = manifest.preprocessing;
      if (!state.features) throw new Error(`${config.model} names no features to learn from; pick another base.`);
      return manifest;
    },
    render: () => {
      if (kit.backend) setField('backend', kit.backend);
    },
    started: async () => {
      const restored = await restore();
      renderClasses();
      setText('samples-status', restored ? `Restored ${count(restored, 'picture')} from your last visit.`
        : 'Add pictures to each class.');
    },
    report: (kind, error) => {
      if (kind !== 'engine' && kind !== 'start') return; // said once the start-up gives up
      showMessage('model', 'error', 'The base model could not start.', error.message);
      setText('samples-status', 'Not ready.');
    },
  },
});
const serial = (task) => kit.serial(task);

// ---------------------------------------------------------------- kept between visits

/** Puts back the pictures and head kept for this base model; the number of pictures. */
async function restore() {
  const lesson = await loadLesson(config.model);
  if (!lesson || lesson.size !== state.features || !Array.isArray(lesson.classes) || lesson.classes.length < 2) return 0;
  state.classes = await Promise.all(lesson.classes.map(async ({ name, samples }) => ({
    name,
    samples: await Promise.all(samples.map(async ({ features, views, thumb }) => {
      const bitmap = await createImageBitmap(thumb);
      const canvas = squareThumbnail(bitmap, THUMB_PX);
      bitmap.close();
      return { features, views: views ?? null, thumb: canvas, thumbBlob: thumb };
    })),
  })));
  if (lesson.trained) {
    await engine.call('useHead', { weightSpecs: lesson.trained.weightSpecs, data: lesson.trained.data.slice() });
    state.trained = lesson.trained;
    showTrained();
  }
  return state.classes.reduce((n, c) => n + c.samples.length, 0);
}

const keeping = operationQueue(); // the lesson's writes to IndexedDB
/** Keeps the lesson as it is now (one write at a time, in order: serial.js). */
function persist() {
  const lesson = {
    size: state.features,
    classes: state.classes.map(({ name, samples }) => ({
      name, samples: samples.map(({ features, views, thumbBlob }) => ({ features, views, thumb: thumbBlob })),
    })),
    trained: state.trained,
  };
  return keeping.serial(() => saveLesson(config.model, lesson));
}

/** Forgets the pictures and the head, here and in the browser's storage. */
function clearAll() {
  return serial(async () => {
    await keeping.idle();
    await clearLesson(config.model);
    state.classes = [{ name: 'squirrel', samples: [] }, { name: 'not squirrel', samples: [] }];
    state.trained = null;
    state.target = 0;
    renderClasses();
    drawChart([]);
    $('confusion').replaceChildren();
    $('try-result').replaceChildren();
    $('try-figure').hidden = true;
    setText('train-status', '');
    setText('try-status', 'Train first.');
    setText('samples-status', 'Cleared: add pictures to each class.');
  });
}

// ---------------------------------------------------------------- classes and samples

function renderClasses() {
  const list = $('classes');
  list.replaceChildren(...state.classes.map((entry, index) => {
    const box = document.createElement('div');
    box.className = 'teach-class';
    box.dataset.index = String(index);
    const name = document.createElement('input');
    name.className = 'text-input';
    name.value = entry.name;
    name.setAttribute('aria-label', `Class ${index + 1} name`);
    name.addEventListener('change', () => renameClass(index, name.value));
    name.addEventListener('focus', () => { state.target = index; });
    const counter = document.createElement('span');
    counter.className = 'muted';
    counter.textContent = count(entry.samples.length, 'picture');
    const add = document.createElement('label');
    add.className = 'button';
    add.textContent = 'Add pictures…';
    const input = document.createElement('input');
    input.type = 'file';
    input.accept = 'image/*';
    input.multiple = true;
    input.className = 'visually-hidden';
    input.dataset.class = String(index);
    input.addEventListener('change', () => {
      const files = [...input.files];
      input.value = '';
      addSamples(index, files).catch((error) => console.warn(error));
    });
    add.append(input);
    const record = document.createElement('button');
    record.type = 'button';
    record.className = 'button';
    record.textContent = 'Hold to record';
    record.hidden = !camera.active;
    record.dataset.record = String(index);
    // held: recording until the pointer is released anywhere (the list is redrawn meanwhile)
    record.addEventListener('pointerdown', (event) => {
      event.preventDefault();
      recordFrames(index, Infinity).catch((error) => console.warn(error));
    });
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.className = 'button';
    remove.textContent = 'Remove class';
    remove.disabled = state.classes.length <= 2;
    remove.addEventListener('click', () => removeClass(index));
    const head = document.createElement('div');
    head.className = 'teach-class-head';
    head.append(name, counter, add, record, remove);
    const thumbs = document.createElement('div');
    thumbs.className = 'teach-thumbs';
    thumbs.append(...entry.samples.map((sample, k) => {
      const figure = document.createElement('button');
      figure.type = 'button';
      figure.className = 'teach-thumb';
      figure.title = 'Remove this picture';
      figure.setAttribute('aria-label', `Remove picture ${k + 1} of ${entry.name}`);
      figure.append(sample.thumb); // its canvas (moved here on each render)
      figure.addEventListener('click', () => {
        entry.samples.splice(k, 1);
        renderClasses();
        persist();
      });
      return figure;
    }));
    box.append(head, thumbs);
    return box;
  }));
}

function addClass(name = `class ${state.classes.length + 1}`) {
  state.classes.push({ name, samples: [] });
  renderClasses();
  persist();
  return state.classes.length - 1;
}

function renameClass(index, name) {
  const clean = String(name).trim();
  if (clean) state.classes[index].name = clean;
  renderClasses();
  persist();
}

function removeClass(index) {
  if (state.classes.length <= 2) return;
  state.classes.splice(index, 1);
  state.target = Math.min(state.target, state.classes.length - 1);
  renderClasses();
  persist();
}

/** Adds pictures (Blobs, or ImageBitmaps: camera frames) to class `index`: each one's features
 * computed in the worker. */
function addSamples(index, blobs) {
  return serial(async () => {
    let added = 0;
    const entry = state.classes[index];
    for (const [k, blob] of blobs.entries()) {
      setText('samples-status', `Reading picture ${k + 1} of ${blobs.length} for "${entry.name}"…`);
      let bitmap;
      try {
        bitmap = blob instanceof ImageBitmap ? blob : await decodeImage(blob);
      } catch (error) {
        showMessage('samples', 'warning', 'A file was skipped.', error.message);
        continue;
      }
      const thumb = squareThumbnail(bitmap, THUMB_PX);
      const thumbBlob = await new Promise((resolve) => { thumb.toBlob(resolve, 'image/png'); });
      const augment = $('augment').checked;
      state.pictures += 1;
      const { features, views } = await engine.call('features',
        { image: bitmap, views: augment ? VIEWS : 0, seed: state.pictures }, { transfer: [bitmap] });
      entry.samples.push({ features, views: views ?? null, thumb, thumbBlob });
      added += 1;
    }
    renderClasses();
    await persist();
    const total = state.classes.reduce((n, c) => n + c.samples.length, 0);
    setText('samples-status', `${count(total, 'picture')} in ${count(state.classes.length, 'class', 'classes')}.`);
    return added;
  });
}

// ---------------------------------------------------------------- the camera

async function startCamera() {
  try {
    await camera.start();
  } catch (error) {
    const { title, text } = cameraProblem(error);
    showMessage('camera', 'error', title, text);
    return { ok: false, error: text };
  }
  $('camera-video').hidden = false;
  $('camera-start').hidden = true;
  $('camera-stop').hidden = false;
  $('try-live').hidden = false;
  renderClasses(); // the classes get their "Hold to record" buttons
  return { ok: true };
}

function stopCamera() {
  state.recording = null;
  state.live = null;
  camera.stop();
  $('try-live').hidden = true;
  $('camera-video').hidden = true;
  $('camera-start').hidden = false;
  $('camera-stop').hidden = true;
  renderClasses();
}

/**
 * Records camera frames into class `index`, one every RECORD_EVERY_MS, while the button is
 * held (or `limit` frames); the number recorded.
 */
async function recordFrames(index, limit = Infinity) {
  if (!camera.active) throw new Error('Start the camera first.');
  const token = {};
  state.recording = token;
  let recorded = 0;
  while (state.recording === token && recorded < limit && camera.active) {
    const started = performance.now();
    const frame = await createImageBitmap($('camera-video'));
    recorded += await addSamples(index, [frame]);
    setText('samples-status', `Recording into "${state.classes[index].name}": ${count(recorded, 'frame')}…`);
    await new Promise((resolve) => { setTimeout(resolve, Math.max(0, RECORD_EVERY_MS - (performance.now() - started))); });
  }
  if (state.recording === token) state.recording = null;
  return recorded;
}

// ---------------------------------------------------------------- training

function fieldNumber(id) {
  return Number($(id).value);
}

function train(options = {}) {
  return serial(async () => {
    const labels = [];
    const rows = [];
    state.classes.forEach((entry, index) => entry.samples.forEach((s) => { labels.push(index); rows.push(s.features); }));
    const features = new Float32Array(rows.length * state.features);
    rows.forEach((row, i) => features.set(row, i * state.features));
    // the augmented views' features, and the sample each came from
    const viewRows = [];
    const of = [];
    state.classes.flatMap((entry) => entry.samples).forEach((sample, i) => {
      const viewCount = sample.views ? sample.views.length / state.features : 0;
      for (let k = 0; k < viewCount; k += 1) {
        viewRows.push(sample.views.subarray(k * state.features, (k + 1) * state.features));
        of.push(i);
      }
    });
    const views = viewRows.length ? { features: new Float32Array(viewRows.length * state.features), of } : null;
    viewRows.forEach((row, i) => views.features.set(row, i * state.features));
    const settings = {
      epochs: fieldNumber('epochs'), learningRate: fieldNumber('learning-rate'), batchSize: fieldNumber('batch-size'),
      hidden: fieldNumber('hidden'), validationSplit: fieldNumber('validation'), seed: fieldNumber('seed'), ...options,
    };
    const history = [];
    state.training = true;
    $('train').disabled = true;
    $('stop').hidden = false;
    const bar = $('train-progress');
    bar.hidden = false;
    bar.max = settings.epochs;
    bar.value = 0;
    setText('train-status', `Training on ${count(labels.length, 'picture')}` +
      (views ? ` and ${count(of.length, 'augmented view')} of them…` : '…'));
    try {
      const result = await engine.call('train', { features, labels, views, classes: state.classes.length, ...settings }, {
        onProgress: (entry) => {
          history.push(entry);
          bar.value = entry.epoch;
          drawChart(history);
          setText('train-status', epochText(entry, settings.epochs));
        },
      });
      const names = state.classes.map((c) => c.name);
      state.trained = { ...result, labels: names, settings,
        confusion: confusionMatrix(result, result.split.val.map((i) => rows[i]), result.split.val.map((i) => labels[i]),
          names.length) };
      showTrained();
      await persist();
      return { ...result, confusion: state.trained.confusion };
    } catch (error) {
      setText('train-status', error.name === 'AbortError' ? 'Stopped.' : `Training failed: ${error.message}`);
      if (error.name !== 'AbortError') throw error;
      return null;
    } finally {
      state.training = false;
      $('train').disabled = false;
      $('stop').hidden = true;
      bar.hidden = true;
    }
  });
}

function epochText(entry, epochs) {
  const val = entry.valAccuracy == null ? 'no validation pictures'
    : `validation accuracy ${formatPercent(entry.valAccuracy)}, loss ${entry.valLoss.toFixed(3)}`;
  return `Epoch ${entry.epoch} of ${epochs}: accuracy ${formatPercent(entry.accuracy)}, loss ` +
    `${entry.loss.toFixed(3)}; ${val}.`;
}

/** The trained head's chart, last epoch and confusion matrix. */
function showTrained() {
  const { history, settings, confusion, labels } = state.trained;
  drawChart(history);
  setText('train-status', `Done. ${epochText(history[history.length - 1], settings.epochs)}`);
  setText('try-status', 'Choose a picture to try your classes.');
  showConfusion(confusion, labels);
}

/** The head's logits for one row of features (plain JS: weightSpecs and data as saved). */
function headLogits({ weightSpecs, data }, features) {
  let h = features;
  let offset = 0;
  for (let i = 0; i < weightSpecs.length; i += 2) {
    const [inputs, outputs] = weightSpecs[i].shape;
    const kernel = data.subarray(offset, offset + inputs * outputs);
    offset += inputs * outputs;
    const bias = data.subarray(offset, offset + outputs);
    offset += outputs;
    const y = Float32Array.from(bias);
    for (let k = 0; k < inputs; k += 1) {
      const value = h[k];
      if (value !== 0) for (let o = 0; o < outputs; o += 1) y[o] += value * kernel[k * outputs + o];
    }
    h = i + 2 < weightSpecs.length ? y.map((v) => Math.max(0, v)) : y;
  }
  return h;
}

/** counts[true class][predicted class] over the validation pictures. */
function confusionMatrix(head, rows, labels, classes) {
  const counts = Array.from({ length: classes }, () => new Array(classes).fill(0));
  rows.forEach((row, i) => {
    const logits = headLogits(head, row);
    counts[labels[i]][logits.indexOf(Math.max(...logits))] += 1;
  });
  return counts;
}

function showConfusion(counts, labels) {
  const table = $('confusion');
  const total = counts.flat().reduce((a, b) => a + b, 0);
  if (!total) {
    table.replaceChildren();
    return;
  }
  const cell = (tag, text, className) => {
    const element = document.createElement(tag);
    element.textContent = text;
    if (className) element.className = className;
    return element;
  };
  const head = document.createElement('tr');
  head.append(cell('th', 'true \\ predicted'), ...labels.map((label) => cell('th', label)));
  const body = counts.map((row, t) => {
    const tr = document.createElement('tr');
    tr.append(cell('th', labels[t]), ...row.map((n, p) => cell('td', String(n), p === t ? 'right' : (n ? 'wrong' : ''))));
    return tr;
  });
  const caption = cell('caption', `Validation pictures: ${count(total, 'picture')}, ` +
    `${formatPercent(counts.reduce((n, row, t) => n + row[t], 0) / total)} right.`);
  table.replaceChildren(caption, head, ...body);
}

/** Loss (left scale) and accuracy (0 to 1, right) per epoch; dashed: validation. */
function drawChart(history) {
  const canvas = $('train-chart');
  const ctx = canvas.getContext('2d');
  const { width, height } = canvas;
  const pad = 24;
  ctx.clearRect(0, 0, width, height);
  ctx.strokeStyle = '#e8ded3';
  ctx.strokeRect(pad, 8, width - 2 * pad, height - pad - 8);
  if (!history.length) return;
  const maxLoss = Math.max(...history.flatMap((h) => [h.loss, h.valLoss ?? 0]), 1e-6);
  const x = (epoch) => pad + ((epoch - 1) / Math.max(1, history.length - 1)) * (width - 2 * pad);
  const y = (value, top) => 8 + (1 - value / top) * (height - pad - 8);
  const line = (key, top, colour, dashed) => {
    const points = history.filter((h) => h[key] != null);
    if (!points.length) return;
    ctx.beginPath();
    ctx.setLineDash(dashed ? [5, 4] : []);
    ctx.strokeStyle = colour;
    ctx.lineWidth = 2;
    points.forEach((h, i) => (i ? ctx.lineTo(x(h.epoch), y(h[key], top)) : ctx.moveTo(x(h.epoch), y(h[key], top))));
    ctx.stroke();
  };
  line('loss', maxLoss, '#a14f14', false);
  line('valLoss', maxLoss, '#a14f14', true);
  line('accuracy', 1, '#2e7d32', false);
  line('valAccuracy', 1, '#2e7d32', true);
  ctx.setLineDash([]);
  ctx.fillStyle = '#7a6a60';
  ctx.font = '11px system-ui, sans-serif';
  ctx.fillText('loss (brown), accuracy (green); dashed: validation', pad, height - 6);
}

// ---------------------------------------------------------------- trying and saving

/** A chosen picture through the base and the head, with Grad-CAM for the top class. */
function predictBlob(blob) {
  return serial(async () => {
    if (!state.trained) throw new Error('Train first.');
    const bitmap = await decodeImage(blob);
    drawTryPhoto(bitmap);
    const result = await predict(bitmap, 'Looks like', { pick: true });
    return { ...result, gradcam: await gradcamTaught(result.top[0].index) };
  });
}

/**
 * A picture (an ImageBitmap, moved to the worker) through the base and the head, shown; with
 * `pick`, each class is a button that shows where the model looked for it.
 */
async function predict(bitmap, verb, { pick = false } = {}) {
  const result = await engine.call('predictTaught', { image: bitmap }, { transfer: [bitmap] });
  const top = [...result.probabilities].map((probability, index) => ({
    index, label: state.trained.labels[index], probability,
  })).sort((a, b) => b.probability - a.probability);
  $('try-result').replaceChildren(...top.map((c) => {
    const item = document.createElement('li');
    const text = `${c.label}: ${formatPercent(c.probability)}`;
    if (!pick) {
      item.textContent = text;
      return item;
    }
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'chip';
    button.dataset.class = String(c.index);
    button.textContent = text;
    button.title = `Where it looked for "${c.label}"`;
    button.addEventListener('click', () => explainTaught(c.index).catch((error) => setText('try-status', error.message)));
    item.append(button);
    return item;
  }));
  setText('try-status', `${verb} "${top[0].label}".`);
  return { ...result, top };
}

/** Draws what the base model sees of a tried picture (its crop) under the heatmap. */
function drawTryPhoto(bitmap) {
  const region = modelRegion(bitmap.height, bitmap.width, state.preprocessing);
  const scale = Math.min(TRY_PX / Math.max(region.width, region.height), 4);
  const photo = $('try-photo');
  const heat = $('try-heat');
  photo.width = heat.width = Math.max(1, Math.round(region.width * scale));
  photo.height = heat.height = Math.max(1, Math.round(region.height * scale));
  photo.getContext('2d').drawImage(bitmap, region.left, region.top, region.width, region.height,
    0, 0, photo.width, photo.height);
  heat.getContext('2d').clearRect(0, 0, heat.width, heat.height);
  $('try-figure').hidden = false;
  setText('try-caption', '');
}

/**
 * Grad-CAM of the last chosen picture for taught class `classIndex`: the base's last spatial
 * layer, differentiated through the base's features and the taught head (engine.js "gradcam"
 * with `taught`), drawn over the picture. {heatmap, shape, score, layer, classIndex}, or
 * {error} when this backend cannot compute the gradient (said under the picture).
 */
function explainTaught(classIndex) {
  return serial(() => gradcamTaught(classIndex));
}

async function gradcamTaught(classIndex) {
  const label = state.trained.labels[classIndex];
  if (label == null) throw new Error(`There is no class ${classIndex}.`);
  document.querySelectorAll('#try-result .chip').forEach((chip) => {
    chip.setAttribute('aria-pressed', String(chip.dataset.class === String(classIndex)));
  });
  try {
    const { defaultLayer: layer } = await engine.call('gradcamLayers');
    const result = await engine.call('gradcam', { classIndex, layer, taught: true });
    const heat = $('try-heat');
    const image = await engine.call('heatmapImage', { heatmap: result.heatmap, shape: result.shape,
      width: heat.width, height: heat.height });
    heat.getContext('2d').putImageData(image, 0, 0);
    setText('try-caption', `Where it looked for "${label}" (Grad-CAM at ${layer}, through your head).`);
    return { ...result, layer, classIndex };
  } catch (error) {
    $('try-heat').getContext('2d').clearRect(0, 0, $('try-heat').width, $('try-heat').height);
    const hint = error.name === 'GradientUnsupportedError' ? ' Switch the backend to webgl or cpu to see it.' : '';
    setText('try-caption', `No Grad-CAM for "${label}": ${error.message}${hint}`);
    return { error: error.message };
  }
}

/**
 * Live: the camera's frames through the taught head, one after the other, until stopped (or
 * `frames` of them); the last result. Not queued behind other work: it stops when the camera
 * does, or when training starts.
 */
async function tryLive(frames = Infinity) {
  if (!state.trained) throw new Error('Train first.');
  if (!camera.active) throw new Error('Start the camera first.');
  const token = {};
  state.live = token;
  $('try-live').textContent = 'Stop live';
  $('try-figure').hidden = true;
  let last = null;
  try {
    for (let done = 0; done < frames && state.live === token && camera.active && !state.training; done += 1) {
      last = await predict(await createImageBitmap($('camera-video')), 'Live: looks like');
    }
  } finally {
    if (state.live === token) state.live = null;
    $('try-live').textContent = 'Live on the camera';
  }
  return last;
}

async function save({ name = $('save-name')?.value, replace = $('save-replace')?.checked,
  token = $('save-token')?.value } = {}) {
  if (!state.trained) throw new Error('Train first.');
  const { weightSpecs, data, labels, settings } = state.trained;
  const form = new FormData();
  form.append('name', String(name ?? '').trim());
  form.append('base', config.model);
  form.append('labels', JSON.stringify(labels));
  form.append('head', JSON.stringify({ weightSpecs }));
  form.append('settings', JSON.stringify(settings));
  form.append('replace', replace ? 'true' : 'false');
  form.append('weights', new Blob([data], { type: 'application/octet-stream' }), 'weights.bin');
  setText('save-status', `Saving "${name}": the server converts and checks it (a minute or so)…`);
  const headers = token ? { authorization: `Bearer ${token}` } : {};
  const response = await fetch(serverUrl('api/models', 'Saving a model'), { method: 'POST', body: form, headers });
  const body = await response.json().catch(() => ({}));
  if (response.ok) {
    setText('save-status', `Saved as "${body.model}": it is in the model picker on every page now.`);
    const model = encodeURIComponent(body.model);
    $('save-open').href = siteUrl(`?model=${model}`);
    $('save-download').href = siteUrl(`api/models/${model}/download`);
    $('save-links').hidden = false;
  } else {
    if (response.status === 401 || (response.status === 403 && /token/.test(body.error?.message ?? ''))) {
      const row = $('token-row');
      if (row) row.hidden = false;
    }
    setText('save-status', `Not saved (${response.status}): ${body.error?.message ?? response.statusText}`);
  }
  return { status: response.status, body };
}

// ---------------------------------------------------------------- wiring

function setText(id, text) {
  const element = $(id);
  if (element) element.textContent = text;
}

function setField(name, text) {
  const element = document.querySelector(`[data-field="${name}"]`);
  if (element) element.textContent = text;
}

function wire() {
  $('add-class').addEventListener('click', () => addClass());
  $('clear').addEventListener('click', () => clearAll().catch((error) => console.warn(error)));
  for (const end of ['pointerup', 'pointercancel']) document.addEventListener(end, () => { state.recording = null; });
  $('camera-start').addEventListener('click', () => startCamera());
  $('camera-stop').addEventListener('click', () => stopCamera());
  $('train').addEventListener('click', () => train().catch((error) => console.warn(error)));
  $('stop').addEventListener('click', () => engine.cancel());
  $('try-live').addEventListener('click', () => {
    if (state.live) state.live = null;
    else tryLive().catch((error) => setText('try-status', error.message));
  });
  $('try-input').addEventListener('change', () => {
    const file = $('try-input').files[0];
    $('try-input').value = '';
    if (file) predictBlob(file).catch((error) => setText('try-status', error.message));
  });
  $('save')?.addEventListener('click', () => save().catch((error) => setText('save-status', error.message)));
  document.addEventListener('paste', (event) => {
    const files = [...(event.clipboardData?.items ?? [])].filter((i) => i.kind === 'file').map((i) => i.getAsFile());
    if (!files.length || event.target?.tagName === 'INPUT') return;
    event.preventDefault();
    addSamples(state.target, files).catch((error) => console.warn(error));
  });
  wireModelPicker();
}

wire();
kit.begin();
window.belka = kit.api({
  classes: () => state.classes.map((c) => ({ name: c.name, count: c.samples.length })),
  addClass,
  renameClass,
  addSamples,
  train,
  confusion: () => state.trained?.confusion ?? null,
  clear: clearAll,
  stored: () => loadLesson(config.model).then((lesson) => lesson && {
    classes: lesson.classes.map((c) => ({ name: c.name, count: c.samples.length })), trained: Boolean(lesson.trained),
  }),
  stop: () => engine.cancel(),
  startCamera,
  stopCamera,
  record: (index, frames) => recordFrames(index, frames),
  predictBlob,
  explainTaught,
  tryLive: (frames) => tryLive(frames),
  save,
});
