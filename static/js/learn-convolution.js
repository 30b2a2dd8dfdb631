/**
 * The convolution lesson, /learn/convolution (issue 15): a kernel slid over your photo with
 * TF.js on the page (static/js/lesson.js), live as its cells change; one output pixel's
 * arithmetic by hand; the server's TensorFlow on the same numbers (POST /api/learn/convolve,
 * app/learn.py) to show the page is right; then the first-layer filters of the site's
 * classifier and what they make of the photo.
 *
 * The photo is scaled once, on a canvas, so that its longer side is at most 256 px; those RGB
 * pixels / 255 (float32) are the image both the page and the server convolve. Grayscale mode:
 * tf.image.rgbToGrayscale, then tf.conv2d with the kernel as [k, k, 1, 1]; per-channel mode:
 * tf.depthwiseConv2d with the kernel repeated for the 3 channels ([k, k, 3, 1]). (The WASM
 * backend has no Einsum kernel, which rgbToGrayscale uses: there the same weighted sum is
 * tf.sum(tf.mul(rgb, weights), -1), what rgbToGrayscale computes through einsum elsewhere.)
 *
 * Test and debug API, `window.belka`:
 *   ready              Promise: {ok, backend} once TF.js runs and the first sample is convolved,
 *                      or {ok: false, error}
 *   config             the page config
 *   presets()          the presets' names
 *   usePhoto(blob)     Promise: convolves a picture (a Blob) instead: {width, height}
 *   useSample(i)       Promise: the same with config.samples[i]
 *   setKernel(rows)    Promise: the kernel (k rows of k numbers, k from 1 to 9); once its output
 *                      is drawn, {shape} of the output (output() has the numbers)
 *   usePreset(n, k)    Promise: preset n at size k (3 or 5; default: the current size); {shape}
 *   normalise()        Promise: the Normalise button: true when it divided, false when the sum is 0
 *   kernel()           the kernel as the page holds it
 *   setOptions(o)      Promise: o = {stride: 1|2, padding: 'same'|'valid', mode:
 *                      'grayscale'|'per-channel'} (any of them); {shape} once drawn
 *   options()          {stride, padding, mode}
 *   output()           Promise: the page's output once every change so far is drawn:
 *                      {shape: [h, w, c], data: [...]}
 *   input()            the image as sent to the server: {shape: [H, W, 3], data: RGB 0..1}
 *   gray()             the grayscale image the page convolves: {shape: [H, W, 1], data}
 *   checkServer()      Promise: the server's convolution of the same numbers, compared:
 *                      {maxAbsDiff, ok (within 1e-5 x max(1, largest)), largest (the largest
 *                      |output|), server: {shape, ms, method}}, also shown on the page
 *   explainPixel(r, c, ch)  Promise: the arithmetic of output pixel (r, c) (channel ch in
 *                      per-channel mode), also shown on the page: {neighbourhood, kernel,
 *                      products, sum, output, top, left, row, col, channel}
 *   firstLayer()       Promise: the classifier's first convolution on the photo, once drawn:
 *                      {filters, maps, node, op, filterShape, mapShape} (null without a model)
 *   numTensors()       tf.memory().numTensors on this page
 *   backend()          the active TF.js backend
 */
import { readPageConfig } from './config.js';
import {
  explainPixel as explainArithmetic, hasOwnSize, kernelSum, normaliseKernel, outputSize, presetKernel,
  presetNames, PRESETS, SIZES, sumsToZero, whichPreset,
} from './kernels.js';
import { askServer, loadSample, maxAbsDiff, startBackend, tf } from './lesson.js';
import { weightsFromUrl } from './manifest.js';
import { toModelInput } from './model-input.js';
import { wireModelPicker } from './model-picker.js';
import { Classifier } from './model.js';
import { decodeImage } from './preprocess.js';
import { clearMessage, showMessage } from './view.js';

const config = readPageConfig();
const $ = (id) => document.getElementById(id);

const MAX_SIDE = 256; // the photo's longer side, in pixels, as convolved
const CHECK_DELAY_MS = 700; // the server checks this long after the last change
const PARITY_OK = 1e-5; // a max |difference| up to this (times the largest |output| beyond 1) is float32 rounding
const GRAY_WEIGHTS = [0.2989, 0.587, 0.114]; // tf.image.rgbToGrayscale's (and TensorFlow's)
const MAX_KERNEL = 9; // the server's limit too (app/learn.py)
const BACKEND_NAMES = { wasm: 'WebAssembly', webgl: 'WebGL', webgpu: 'WebGPU', cpu: 'CPU (plain JavaScript)' };

const state = {
  backend: null,
  kernel: presetKernel('sobel-x', 3),
  size: 3, // the size chosen with the 3 x 3 / 5 x 5 buttons (setKernel can set others)
  stride: 1,
  padding: 'same',
  mode: 'grayscale',
  image: null, // {id, title, width, height, rgb, gray (Float32Arrays), pixels (ImageData), bitmap}
  rgb: null, // tensor [1, H, W, 3]: the image, 0..1
  grayTensor: null, // tensor [1, H, W, 1]
  grayMethod: 'tf.image.rgbToGrayscale',
  output: null, // {shape, data, kernel, stride, padding, mode, imageId, ms}
  selected: null, // {row, col}: the output pixel in the zoom
  channel: 0, // which channel the zoom shows in per-channel mode
  imageCount: 0,
};

// ---------------------------------------------------------------- convolving, live

let wanted = 0; // changes asked for
let drawn = 0; // changes drawn
let loop = null; // the render loop, while it runs

/** Something changed: convolve again (once for a burst of changes), then check with the server. */
function refresh() {
  wanted += 1;
  loop ??= renderLoop();
  scheduleCheck();
  return loop;
}

async function renderLoop() {
  try {
    while (drawn < wanted) {
      const version = wanted;
      try {
        await render();
        clearMessage('convolution');
      } catch (error) {
        showMessage('convolution', 'error', 'The convolution failed.', error.message);
      }
      drawn = version;
    }
  } finally {
    loop = null;
  }
}

/** Resolves once every change so far is drawn. */
async function settled() {
  while (loop) await loop;
}

/** The convolution of the current image as a tensor [1, h, w, c] (call inside tf.tidy). */
function convolve(kernel, { stride, padding, mode }) {
  const k = kernel.length;
  const weights = kernel.flat();
  if (mode === 'grayscale') {
    return tf.conv2d(state.grayTensor, tf.tensor4d(weights, [k, k, 1, 1]), stride, padding);
  }
  return tf.depthwiseConv2d(state.rgb, tf.tensor4d(weights.flatMap((w) => [w, w, w]), [k, k, 3, 1]), stride, padding);
}

async function render() {
  const image = state.image;
  if (!image) return;
  const kernel = state.kernel.map((row) => row.slice());
  const options = { stride: state.stride, padding: state.padding, mode: state.mode };
  const [h, w] = outputSize(image.height, image.width, kernel.length, options.stride, options.padding);
  if (h < 1 || w < 1) {
    throw new Error(`A ${kernel.length} x ${kernel.length} kernel does not fit in this ${image.width} x ` +
      `${image.height} photo without padding: choose 'same' padding or a larger photo.`);
  }
  const start = performance.now();
  const result = tf.tidy(() => convolve(kernel, options));
  let data;
  try {
    data = await result.data();
  } finally {
    result.dispose();
  }
  const ms = performance.now() - start;
  state.output = { shape: result.shape.slice(1), data, kernel, ...options, imageId: image.id, ms };
  drawInput();
  drawOutput();
  showZoom();
  $('conv-time').textContent = `${ms.toFixed(1)} ms for the last convolution, read back included`;
}

// ---------------------------------------------------------------- the photo

/** A picture, scaled once to at most MAX_SIDE px: the image both the page and the server convolve. */
async function useBitmap(bitmap, title) {
  const scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
  const width = Math.max(1, Math.round(bitmap.width * scale));
  const height = Math.max(1, Math.round(bitmap.height * scale));
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext('2d', { willReadFrequently: true });
  context.fillStyle = '#fff'; // transparent pixels over white, as everywhere in Belka
  context.fillRect(0, 0, width, height);
  context.imageSmoothingEnabled = true;
  context.imageSmoothingQuality = 'high';
  context.drawImage(bitmap, 0, 0, width, height);
  const pixels = context.getImageData(0, 0, width, height);
  const rgb = new Float32Array(width * height * 3);
  for (let i = 0, o = 0; i < pixels.data.length; i += 4, o += 3) {
    rgb[o] = pixels.data[i] / 255;
    rgb[o + 1] = pixels.data[i + 1] / 255;
    rgb[o + 2] = pixels.data[i + 2] / 255;
  }
  const rgbTensor = tf.tensor4d(rgb, [1, height, width, 3]);
  const grayTensor = tf.tidy(() => grayscale(rgbTensor));
  const gray = await grayTensor.data();
  tf.dispose([state.rgb, state.grayTensor].filter(Boolean));
  state.image?.bitmap.close();
  state.imageCount += 1;
  state.rgb = rgbTensor;
  state.grayTensor = grayTensor;
  state.image = { id: state.imageCount, title, width, height, rgb, gray, pixels, bitmap };
  state.selected = { row: Math.floor(height / 2 / state.stride), col: Math.floor(width / 2 / state.stride) };
  $('photo-status').textContent = `${title}: ${width} × ${height} pixels` +
    (scale < 1 ? ` (scaled down from ${bitmap.width} × ${bitmap.height}).` : '.');
  refresh();
  drawNetwork();
  return { width, height };
}

/** The gray image [1, H, W, 1] of an RGB one (call inside tf.tidy). */
function grayscale(rgb) {
  if (tf.getKernel('Einsum', tf.getBackend())) {
    state.grayMethod = 'tf.image.rgbToGrayscale';
    return tf.image.rgbToGrayscale(rgb);
  }
  // the WASM backend has no Einsum: the same weighted sum of R, G and B, in float32
  state.grayMethod = 'tf.sum(tf.mul(rgb, [0.2989, 0.587, 0.114]), -1)';
  return tf.sum(tf.mul(rgb, tf.tensor1d(GRAY_WEIGHTS)), -1, true);
}

async function usePhoto(blob) {
  const bitmap = await decodeImage(blob);
  markSample(null);
  return useBitmap(bitmap, blob.name ? `"${blob.name}"` : 'Your photo');
}

async function useSample(index) {
  const sample = config.samples?.[index];
  if (!sample) throw new Error(`No sample ${index}: there are ${config.samples?.length ?? 0}.`);
  markSample(index);
  return useBitmap(await loadSample(sample.url), `Sample: ${sample.title}`);
}

/** A picture from the user (file, drop, paste): its problems said on the page, not thrown. */
async function photoFromUser(file) {
  if (!file) return;
  try {
    await usePhoto(file);
    clearMessage('image');
  } catch (error) {
    showMessage('image', 'error', 'That picture did not load.', error.message);
  }
}

function markSample(index) {
  document.querySelectorAll('#samples button').forEach((button) => {
    button.setAttribute('aria-pressed', String(Number(button.dataset.index) === index));
  });
}

function showSamples() {
  const row = $('samples');
  (config.samples ?? []).forEach((sample, index) => {
    const button = document.createElement('button');
    button.type = 'button';
    button.dataset.index = String(index);
    button.title = sample.title;
    button.setAttribute('aria-pressed', 'false');
    const img = document.createElement('img');
    img.src = sample.url;
    img.alt = sample.title;
    img.loading = 'lazy';
    button.append(img);
    button.addEventListener('click', () => {
      useSample(index).catch((error) => showMessage('image', 'error', 'The sample did not load.', error.message));
    });
    row.append(button);
  });
}

// ---------------------------------------------------------------- drawing

const clamp01 = (v) => (v < 0 ? 0 : v > 1 ? 1 : v);

/** Values (`channels` per pixel, 1 or 3) as an RGBA ImageData: clamped to 0..1, |v| first if `absolute`. */
function toImageData(data, width, height, channels, absolute = false) {
  const image = new ImageData(width, height);
  const out = image.data;
  for (let p = 0; p < width * height; p += 1) {
    for (let c = 0; c < 3; c += 1) {
      const v = data[p * channels + (channels === 3 ? c : 0)];
      out[p * 4 + c] = Math.round(clamp01(absolute ? Math.abs(v) : v) * 255);
    }
    out[p * 4 + 3] = 255;
  }
  return image;
}

function putImage(canvas, imageData) {
  if (canvas.width !== imageData.width || canvas.height !== imageData.height) {
    canvas.width = imageData.width;
    canvas.height = imageData.height;
  }
  canvas.getContext('2d').putImageData(imageData, 0, 0);
}

function drawInput() {
  const { image, output } = state;
  if (!image || !output) return;
  const gray = output.mode === 'grayscale';
  putImage($('input-canvas'), gray ? toImageData(image.gray, image.width, image.height, 1) : image.pixels);
  $('input-caption').textContent = gray
    ? `The input in gray, ${image.width} × ${image.height}: 0.2989 red + 0.587 green + 0.114 blue, ` +
      'each pixel a number from 0 (black) to 1 (white).' + (state.grayMethod === 'tf.image.rgbToGrayscale' ? ''
      : ` (${BACKEND_NAMES[state.backend] ?? state.backend} has no kernel for the einsum that ` +
        'tf.image.rgbToGrayscale uses: the page computes the same sum with tf.mul and tf.sum.)')
    : `The input, ${image.width} × ${image.height}: three numbers from 0 to 1 a pixel (red, green, blue).`;
}

function drawOutput() {
  const { output } = state;
  if (!output) return;
  const [h, w, c] = output.shape;
  const absolute = sumsToZero(output.kernel);
  putImage($('output-canvas'), toImageData(output.data, w, h, c, absolute));
  const how = `${output.kernel.length} × ${output.kernel.length} kernel, stride ${output.stride}, ` +
    `'${output.padding}' padding`;
  $('output-caption').textContent = `The output, ${w} × ${h} (${how}). ` + (absolute
    ? 'Its weights add up to 0, so flat areas give 0 and edges give large values, positive or negative: ' +
      'shown as |value|, black for 0, white for 1 or more.'
    : 'Shown as it is: black for 0 or less, white for 1 or more.');
}

// ---------------------------------------------------------------- the kernel editor

function buildGrid() {
  const grid = $('kernel-grid');
  const k = state.kernel.length;
  grid.replaceChildren();
  grid.style.gridTemplateColumns = `repeat(${k}, minmax(0, 4.75rem))`;
  state.kernel.forEach((row, i) => row.forEach((value, j) => {
    const input = document.createElement('input');
    input.type = 'number';
    input.step = 'any';
    input.className = 'number-input kernel-cell';
    input.dataset.row = String(i);
    input.dataset.col = String(j);
    input.setAttribute('aria-label', `Weight, row ${i + 1}, column ${j + 1}`);
    input.value = cellText(value);
    input.addEventListener('input', () => {
      const v = input.value.trim() === '' ? NaN : Number(input.value);
      input.setAttribute('aria-invalid', String(!Number.isFinite(v)));
      if (!Number.isFinite(v)) return;
      state.kernel[i][j] = v;
      kernelChanged(false);
    });
    grid.append(input);
  }));
}

/** A weight as a cell shows it: at most 4 decimals (the kernel keeps the exact number until edited). */
function cellText(v) {
  return String(Number(v.toFixed(4)));
}

/** After any change to the kernel: the grid (unless a cell was typed in), the preset and sum, the output. */
function kernelChanged(rebuild = true) {
  if (rebuild) buildGrid();
  const preset = whichPreset(state.kernel);
  document.querySelectorAll('#presets .chip').forEach((chip) => {
    chip.setAttribute('aria-pressed', String(chip.dataset.preset === preset));
  });
  document.querySelectorAll('[data-size]').forEach((chip) => {
    chip.setAttribute('aria-pressed', String(Number(chip.dataset.size) === state.kernel.length));
  });
  $('preset-about').textContent = preset
    ? PRESETS[preset].about + (state.kernel.length > 3 && !hasOwnSize(preset, state.kernel.length)
      ? ' (Its 3 × 3 kernel, with zeros around.)' : '')
    : 'Your own kernel.';
  const sum = kernelSum(state.kernel);
  $('kernel-sum').textContent = sumsToZero(state.kernel) ? '0' : String(Number(sum.toFixed(6)));
  $('normalise-note').textContent = '';
  return refresh();
}

function setKernel(rows) {
  const k = rows?.length;
  if (!(Number.isInteger(k) && k >= 1 && k <= MAX_KERNEL && rows.every((row) => Array.isArray(row) &&
        row.length === k && row.every((v) => typeof v === 'number' && Number.isFinite(v))))) {
    throw new Error(`A kernel is k rows of k finite numbers, k from 1 to ${MAX_KERNEL}.`);
  }
  state.kernel = rows.map((row) => row.slice());
  if (SIZES.includes(k)) state.size = k;
  return kernelChanged();
}

function usePreset(name, size = state.size) {
  state.size = size;
  state.kernel = presetKernel(name, size);
  return kernelChanged();
}

/** 3 x 3 <-> 5 x 5: a preset at the new size, or your own kernel padded with zeros (or its centre). */
function setSize(size) {
  const preset = whichPreset(state.kernel);
  state.size = size;
  if (preset) return usePreset(preset, size);
  const k = state.kernel.length;
  const offset = (k - size) / 2;
  state.kernel = Array.from({ length: size }, (_, i) => Array.from({ length: size }, (__, j) => {
    const r = i + offset;
    const c = j + offset;
    return r >= 0 && r < k && c >= 0 && c < k ? state.kernel[r][c] : 0;
  }));
  return kernelChanged();
}

function normalise() {
  const divided = normaliseKernel(state.kernel);
  if (!divided) {
    $('normalise-note').textContent = 'These weights add up to 0: there is nothing to divide by. Edge kernels ' +
      'are made that way, so that flat areas give 0.';
    return false;
  }
  const sum = kernelSum(state.kernel);
  state.kernel = divided;
  kernelChanged();
  $('normalise-note').textContent = Math.abs(sum - 1) < 1e-12
    ? 'The weights already add up to 1: the output is as bright as the input.'
    : `Divided every weight by ${Number(sum.toFixed(6))}: they add up to 1 now, so the output is as bright ` +
      'as the input.';
  return true;
}

function showPresets() {
  const row = $('presets');
  for (const name of presetNames()) {
    const chip = document.createElement('button');
    chip.type = 'button';
    chip.className = 'chip';
    chip.dataset.preset = name;
    chip.textContent = PRESETS[name].title;
    chip.setAttribute('aria-pressed', 'false');
    chip.addEventListener('click', () => usePreset(name));
    row.append(chip);
  }
}

function setOptions({ stride, padding, mode } = {}) {
  if (stride !== undefined) {
    if (![1, 2].includes(stride)) throw new Error(`stride: 1 or 2, not ${stride}`);
    if (state.selected && stride !== state.stride) {
      state.selected = { row: Math.floor((state.selected.row * state.stride) / stride),
        col: Math.floor((state.selected.col * state.stride) / stride) };
    }
    state.stride = stride;
    $('stride').value = String(stride);
  }
  if (padding !== undefined) {
    if (!['same', 'valid'].includes(padding)) throw new Error(`padding: 'same' or 'valid', not ${padding}`);
    state.padding = padding;
    $('padding').value = padding;
  }
  if (mode !== undefined) {
    if (!['grayscale', 'per-channel'].includes(mode)) {
      throw new Error(`mode: 'grayscale' or 'per-channel', not ${mode}`);
    }
    state.mode = mode;
    document.querySelectorAll('input[name="mode"]').forEach((radio) => { radio.checked = radio.value === mode; });
  }
  $('zoom-channel').hidden = state.mode !== 'per-channel';
  return refresh();
}

// ---------------------------------------------------------------- one pixel by hand

/** The arithmetic of output pixel (row, col) of the drawn output: kernels.js explainPixel. */
function explain(row, col, channel = 0) {
  const { image, output } = state;
  if (!image || !output || output.imageId !== image.id) throw new Error('No output yet.');
  const perChannel = output.mode === 'per-channel';
  const source = perChannel
    ? { data: image.rgb, height: image.height, width: image.width, channels: 3 }
    : { data: image.gray, height: image.height, width: image.width, channels: 1 };
  return explainArithmetic(source, output.kernel, {
    row, col, channel: perChannel ? channel : 0, stride: output.stride, padding: output.padding, output,
  });
}

const CHANNELS = ['red', 'green', 'blue'];

function fillTable(table, rows, format, padded) {
  table.replaceChildren();
  rows.forEach((row, i) => {
    const tr = document.createElement('tr');
    row.forEach((v, j) => {
      const td = document.createElement('td');
      const outside = padded && padded[i][j] === null;
      td.textContent = outside ? '0' : format(v);
      if (outside) {
        td.className = 'zoom-pad';
        td.title = 'Outside the photo: padding, 0';
      }
      tr.append(td);
    });
    table.append(tr);
  });
}

const fixed = (digits) => (v) => (v === null ? '0' : String(Number(v.toFixed(digits))));

function showZoom() {
  const { output, selected } = state;
  if (!output || !selected) return;
  const [h, w, c] = output.shape;
  selected.row = Math.min(Math.max(selected.row, 0), h - 1);
  selected.col = Math.min(Math.max(selected.col, 0), w - 1);
  let e;
  try {
    e = explain(selected.row, selected.col, state.channel);
  } catch {
    return;
  }
  const perChannel = output.mode === 'per-channel';
  const what = perChannel ? `its ${CHANNELS[e.channel]} values` : 'its gray values';
  $('zoom-intro').textContent = `Output pixel at row ${e.row}, column ${e.col} (of ${h} × ${w}` +
    `${c > 1 ? `, ${CHANNELS[e.channel]}` : ''}): the kernel sits on the input's ${e.kernel.length} × ` +
    `${e.kernel.length} pixels from row ${e.top}, column ${e.left}, ${what} below. ` +
    'Click another pixel, or use the arrow keys on the output.';
  $('zoom-input-caption').textContent = `The input around it (${perChannel ? CHANNELS[e.channel] : 'gray'}` +
    `${e.neighbourhood.flat().includes(null) ? '; grey cells are padding, 0' : ''})`;
  fillTable($('zoom-input'), e.neighbourhood, fixed(3), e.neighbourhood);
  fillTable($('zoom-kernel'), e.kernel, fixed(3));
  fillTable($('zoom-products'), e.products, fixed(4), e.products);
  $('zoom').hidden = false;
  const total = $('zoom-sum');
  total.hidden = false;
  const absolute = sumsToZero(output.kernel);
  total.textContent = `Sum of the products: ${e.sum.toFixed(6)}. TF.js computed ${e.output.toFixed(6)} ` +
    `for that pixel (difference ${Math.abs(e.sum - e.output).toExponential(1)}, float32 rounding)` +
    (absolute ? `; the picture shows |${e.output.toFixed(3)}|, clamped to 0..1.` : '; the picture clamps it to 0..1.');
  placeMarkers(e, output);
}

function placeMarkers(e, output) {
  const { image } = state;
  const [h, w] = output.shape;
  const k = e.kernel.length;
  const inputMarker = $('input-marker');
  inputMarker.hidden = false;
  Object.assign(inputMarker.style, {
    left: `${(e.left / image.width) * 100}%`, top: `${(e.top / image.height) * 100}%`,
    width: `${(k / image.width) * 100}%`, height: `${(k / image.height) * 100}%`,
  });
  const outputMarker = $('output-marker');
  outputMarker.hidden = false;
  Object.assign(outputMarker.style, {
    left: `${((e.col + 0.5) / w) * 100}%`, top: `${((e.row + 0.5) / h) * 100}%`,
  });
}

function selectPixel(row, col) {
  state.selected = { row, col };
  showZoom();
}

function wireZoom() {
  const canvas = $('output-canvas');
  canvas.addEventListener('click', (event) => {
    const output = state.output;
    if (!output) return;
    const rect = canvas.getBoundingClientRect();
    const style = getComputedStyle(canvas); // the picture is inside the border
    const [top, right, bottom, left] = ['Top', 'Right', 'Bottom', 'Left']
      .map((side) => parseFloat(style[`border${side}Width`]));
    const [h, w] = output.shape;
    const row = Math.floor(((event.clientY - rect.top - top) / (rect.height - top - bottom)) * h);
    const col = Math.floor(((event.clientX - rect.left - left) / (rect.width - left - right)) * w);
    selectPixel(Math.min(Math.max(row, 0), h - 1), Math.min(Math.max(col, 0), w - 1));
  });
  canvas.addEventListener('keydown', (event) => {
    const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    const move = moves[event.key];
    if (!move || !state.selected) return;
    event.preventDefault();
    selectPixel(state.selected.row + move[0], state.selected.col + move[1]);
  });
  document.querySelectorAll('[data-channel]').forEach((chip) => {
    chip.addEventListener('click', () => {
      state.channel = Number(chip.dataset.channel);
      document.querySelectorAll('[data-channel]').forEach((other) => {
        other.setAttribute('aria-pressed', String(other === chip));
      });
      showZoom();
    });
  });
}

// ---------------------------------------------------------------- the server's TensorFlow

let checkTimer = null;

function scheduleCheck() {
  clearTimeout(checkTimer);
  if (!state.image) return;
  const parity = $('parity');
  parity.className = 'parity readout';
  parity.textContent = 'Changed: the server checks in a moment…';
  checkTimer = setTimeout(() => {
    checkServer().catch(() => {}); // said on the page by checkServer
  }, CHECK_DELAY_MS);
}

/** The image as the server gets it: the page's own RGB values, 0..1. */
function inputPayload() {
  const { image } = state;
  return { shape: [image.height, image.width, 3], data: Array.from(image.rgb) };
}

async function checkServer() {
  await settled();
  const { output, image } = state;
  if (!output || !image) throw new Error('Nothing to check yet.');
  const parity = $('parity');
  let answer;
  try {
    answer = await askServer('/api/learn/convolve', {
      image: inputPayload(), kernel: output.kernel, stride: output.stride, padding: output.padding, mode: output.mode,
    });
  } catch (error) {
    if (state.output === output) { // (a static copy of the site has no server: said, not an error)
      parity.className = `parity readout${error.name === 'NoServerError' ? '' : ' parity-bad'}`;
      parity.textContent = error.message;
    }
    throw error;
  }
  const sameShape = answer.shape.length === output.shape.length && answer.shape.every((n, i) => n === output.shape[i]);
  const diff = sameShape ? maxAbsDiff(output.data, answer.data) : Infinity;
  // float32 keeps about 7 significant digits: outputs beyond 1 (large weights) round more coarsely
  const largest = answer.data.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  const allowed = PARITY_OK * Math.max(1, largest);
  const ok = diff <= allowed;
  if (state.output === output) { // not changed meanwhile (a newer check is on its way then)
    parity.className = `parity readout ${ok ? 'parity-ok' : 'parity-bad'}`;
    parity.textContent = sameShape
      ? `max |difference| from TensorFlow: ${diff.toExponential(1)} over ${output.data.length} values ` +
        `(${answer.method} on the server, ${answer.ms.toFixed(1)} ms)` +
        (ok ? ': the same numbers, up to float32 rounding' : ': more than float32 rounding explains') +
        (largest > 1
          ? ` (values reach ${Number(largest.toPrecision(3))}, so up to ${allowed.toExponential(1)} is rounding).`
          : '.')
      : `The server's output is ${answer.shape.join(' × ')}, the page's ${output.shape.join(' × ')}.`;
  }
  return { maxAbsDiff: diff, ok, largest, server: { shape: answer.shape, ms: answer.ms, method: answer.method } };
}

// ---------------------------------------------------------------- the network's first layer

let network = null; // Promise: {classifier, node, op, fused, filterShape, filterData}
let networkDrawn = Promise.resolve(null);

/** The graph's first convolution: breadth first from its inputs, the first Conv2D / _FusedConv2D node. */
function firstConvolution(graph) {
  const nodes = graph.artifacts.modelTopology.node;
  const base = (name) => name.replace(/^\^/, '').replace(/:\d+$/, '');
  const consumers = new Map();
  for (const node of nodes) {
    for (const input of node.input ?? []) {
      const from = base(input);
      if (!consumers.has(from)) consumers.set(from, []);
      consumers.get(from).push(node);
    }
  }
  const queue = nodes.filter((node) => node.op === 'Placeholder');
  const seen = new Set(queue.map((node) => node.name));
  while (queue.length) {
    const node = queue.shift();
    if (node.op === 'Conv2D' || node.op === '_FusedConv2D') return node;
    for (const next of consumers.get(node.name) ?? []) {
      if (!seen.has(next.name)) {
        seen.add(next.name);
        queue.push(next);
      }
    }
  }
  throw new Error('The model has no Conv2D node.');
}

function fusedOps(node) {
  const list = node.attr?.fused_ops?.list?.s ?? [];
  return list.map((s) => {
    try {
      return atob(s);
    } catch {
      return s;
    }
  });
}

function loadNetwork() {
  network ??= (async () => {
    const classifier = await Classifier.load(config.model, { weights: weightsFromUrl() });
    const node = firstConvolution(classifier.graph);
    const weightName = node.input[1].replace(/^\^/, '').replace(/:\d+$/, '');
    const weight = classifier.graph.weights[weightName]?.[0];
    if (!weight || weight.rank !== 4) {
      throw new Error(`The first convolution's filter ${weightName} is not in the model's weights.`);
    }
    const filterData = await weight.data(); // the model's own tensor: not disposed here
    return { classifier, node, op: node.op, fused: fusedOps(node), filterShape: weight.shape, filterData };
  })();
  return network;
}

function drawNetwork() {
  if (!config.model || !state.image) return networkDrawn;
  const image = state.image;
  networkDrawn = networkDrawn.catch(() => null).then(async () => {
    if (image !== state.image) return null; // a newer photo's turn
    try {
      const result = await drawFirstLayer(await loadNetwork(), image);
      clearMessage('network');
      return result;
    } catch (error) {
      $('network-status').textContent = `The network's first layer could not be shown: ${error.message}`;
      showMessage('network', 'warning', 'The network part did not load.', error.message);
      return null;
    }
  });
  return networkDrawn;
}

async function drawFirstLayer(net, image) {
  const { classifier, node, filterShape, filterData } = net;
  const maps = tf.tidy(() => classifier.graph.execute(toModelInput(image.bitmap, classifier.preprocessing), node.name));
  let data;
  try {
    data = await maps.data();
  } finally {
    maps.dispose();
  }
  const [, mh, mw, count] = maps.shape;
  const [kh, kw, inChannels, filters] = filterShape;
  const grid = $('filters');
  grid.replaceChildren();
  for (let f = 0; f < filters; f += 1) {
    const figure = document.createElement('figure');
    figure.className = 'filter-item';
    figure.append(filterCanvas(filterData, filterShape, f), mapCanvas(data, mh, mw, count, f));
    const caption = document.createElement('figcaption');
    caption.textContent = String(f + 1);
    figure.append(caption);
    grid.append(figure);
  }
  const [size] = classifier.preprocessing.size;
  const steps = [node.op === '_FusedConv2D' ? 'Conv2D' : node.op, ...net.fused.filter((op) => op !== 'Conv2D')];
  $('network-status').textContent = `${filters} filters of ${kh} × ${kw} × ${inChannels} (left of each pair) and ` +
    `their ${mh} × ${mw} feature maps (right) on the photo as the network sees it (${size} × ${size}, centre ` +
    `crop). Node ${node.name}: ${steps.join(' + ')}` +
    (steps.length > 1 ? ', so the maps are after the layer\'s bias and activation (negatives become 0)' : '') +
    '. Each map is stretched to its own range: white is its largest value.' +
    (classifier.manifest.weights?.trained === false ? ' This model\'s weights are untrained (random), so its ' +
      'filters are noise, not the edge and colour detectors a trained network learns.' : '');
  return {
    filters, maps: count, node: node.name, op: node.op, filterShape: [...filterShape], mapShape: [mh, mw, count],
  };
}

/** Filter f of a [kh, kw, 3, F] weight as a tiny RGB image, its weights stretched to 0..1. */
function filterCanvas(data, [kh, kw, channels, filters], f) {
  const values = [];
  for (let i = 0; i < kh * kw * channels; i += 1) values.push(data[i * filters + f]);
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const scaled = values.map((v) => (hi > lo ? (v - lo) / (hi - lo) : 0.5));
  const canvas = document.createElement('canvas');
  canvas.className = 'filter-canvas';
  canvas.setAttribute('aria-label', `Filter ${f + 1}`);
  putImage(canvas, toImageData(scaled, kw, kh, channels === 3 ? 3 : 1));
  canvas.title = `Filter ${f + 1}: weights from ${lo.toFixed(3)} to ${hi.toFixed(3)}`;
  return canvas;
}

/** Channel f of a [h, w, count] feature map as a grayscale image, stretched to its own range. */
function mapCanvas(data, h, w, count, f) {
  const values = new Float32Array(h * w);
  let lo = Infinity;
  let hi = -Infinity;
  for (let p = 0; p < h * w; p += 1) {
    const v = data[p * count + f];
    values[p] = v;
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  for (let p = 0; p < h * w; p += 1) values[p] = hi > lo ? (values[p] - lo) / (hi - lo) : 0;
  const canvas = document.createElement('canvas');
  canvas.className = 'map-canvas';
  canvas.setAttribute('aria-label', `Feature map ${f + 1}`);
  canvas.title = `Feature map ${f + 1}: values from ${lo.toFixed(3)} to ${hi.toFixed(3)}`;
  putImage(canvas, toImageData(values, w, h, 1));
  return canvas;
}

async function firstLayer() {
  if (!config.model) return null;
  await settled();
  return networkDrawn;
}

// ---------------------------------------------------------------- wiring

function wireControls() {
  document.querySelectorAll('[data-size]').forEach((chip) => {
    chip.addEventListener('click', () => setSize(Number(chip.dataset.size)));
  });
  $('normalise').addEventListener('click', normalise);
  $('stride').addEventListener('change', () => setOptions({ stride: Number($('stride').value) }));
  $('padding').addEventListener('change', () => setOptions({ padding: $('padding').value }));
  document.querySelectorAll('input[name="mode"]').forEach((radio) => {
    radio.addEventListener('change', () => {
      if (radio.checked) setOptions({ mode: radio.value });
    });
  });
  $('check-server').addEventListener('click', () => {
    clearTimeout(checkTimer);
    checkServer().catch(() => {}); // said on the page
  });

  const fileInput = $('file-input');
  fileInput.addEventListener('change', () => {
    photoFromUser(fileInput.files[0]);
    fileInput.value = ''; // the same file again loads it again
  });
  const zone = $('dropzone');
  let depth = 0;
  document.addEventListener('dragenter', (event) => {
    if (!event.dataTransfer?.types.includes('Files')) return;
    depth += 1;
    zone.classList.add('dropzone-active');
  });
  document.addEventListener('dragleave', () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) zone.classList.remove('dropzone-active');
  });
  document.addEventListener('dragover', (event) => event.preventDefault());
  document.addEventListener('drop', (event) => {
    event.preventDefault(); // never navigate to the dropped file
    depth = 0;
    zone.classList.remove('dropzone-active');
    photoFromUser(event.dataTransfer?.files[0]);
  });
  document.addEventListener('paste', (event) => {
    const item = Array.from(event.clipboardData?.items ?? []).find((i) => i.kind === 'file');
    if (!item) return;
    event.preventDefault();
    photoFromUser(item.getAsFile());
  });

  const backendSelect = $('backend-choice');
  backendSelect?.addEventListener('change', () => {
    const url = new URL(window.location.href);
    url.searchParams.set('backend', backendSelect.value);
    window.location.assign(url.href);
  });
  wireZoom();
  wireModelPicker();
}

async function start() {
  showSamples();
  showPresets();
  wireControls();
  kernelChanged();
  const { backend, failures } = await startBackend();
  state.backend = backend;
  const select = $('backend-choice');
  if (select) select.value = backend;
  if (failures.length) {
    showMessage('backend', 'warning', `Running on ${BACKEND_NAMES[backend] ?? backend}.`,
      failures.map((f) => `${f.backend}: ${f.reason}`).join('; '));
  }
  if (config.samples?.length) {
    await useSample(0);
  } else {
    $('photo-status').textContent = 'Choose a photo to start.';
  }
  await settled();
  return { ok: true, backend };
}

const ready = start().catch((error) => {
  showMessage('start', 'error', 'The lesson could not start.', error.message);
  $('photo-status').textContent = error.message;
  return { ok: false, error: error.message };
});

window.belka = {
  ready,
  config,
  presets: presetNames,
  usePhoto,
  useSample,
  setKernel: async (rows) => {
    await setKernel(rows);
    return drawnShape();
  },
  usePreset: async (name, size) => {
    await usePreset(name, size);
    return drawnShape();
  },
  normalise: async () => {
    const divided = normalise();
    await settled();
    return divided;
  },
  kernel: () => state.kernel.map((row) => row.slice()),
  setOptions: async (options) => {
    await setOptions(options);
    return drawnShape();
  },
  options: () => ({ stride: state.stride, padding: state.padding, mode: state.mode }),
  output,
  input: () => (state.image ? inputPayload() : null),
  gray: () => (state.image
    ? { shape: [state.image.height, state.image.width, 1], data: Array.from(state.image.gray) } : null),
  grayMethod: () => state.grayMethod,
  checkServer,
  explainPixel: async (row, col, channel = 0) => {
    await settled();
    const result = explain(row, col, channel);
    state.channel = result.channel;
    document.querySelectorAll('[data-channel]').forEach((chip) => {
      chip.setAttribute('aria-pressed', String(Number(chip.dataset.channel) === result.channel));
    });
    selectPixel(row, col);
    return result;
  },
  firstLayer,
  numTensors: () => tf.memory().numTensors,
  backend: () => tf.getBackend(),
};

async function drawnShape() {
  await settled();
  return state.output ? { shape: state.output.shape } : null;
}

async function output() {
  await settled();
  const { output: out } = state;
  return out ? { shape: out.shape, data: Array.from(out.data) } : null;
}
