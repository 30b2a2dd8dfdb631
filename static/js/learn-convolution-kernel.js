/**
 * The convolution page's first lesson (learn-convolution.js says how its files fit together):
 * the kernel convolved over the photo with TF.js, live (one render for a burst of changes; every
 * tensor tidied or disposed); the kernel editor, its presets, sizes and options; one output
 * pixel's arithmetic by hand (the zoom); and the server's TensorFlow on the same numbers
 * (POST /api/learn/convolve), compared.
 */
import {
  explainPixel as explainArithmetic, hasOwnSize, kernelSum, normaliseKernel, outputSize, presetKernel,
  presetNames, PRESETS, SIZES, sumsToZero, whichPreset,
} from './kernels.js';
import { askServer, maxAbsDiff, tf } from './lesson.js';
import { clearMessage, showMessage } from './view.js';
import { $, CHECK_DELAY_MS, MAX_KERNEL, PARITY_OK, drawInput, drawOutput, state } from './learn-convolution-photo.js';

// ---------------------------------------------------------------- convolving, live

export let wanted = 0; // changes asked for
export let drawn = 0; // changes drawn
export let loop = null; // the render loop, while it runs

/** Something changed: convolve again (once for a burst of changes), then check with the server. */
export function refresh() {
  wanted += 1;
  loop ??= renderLoop();
  scheduleCheck();
  return loop;
}

export async function renderLoop() {
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
export async function settled() {
  while (loop) await loop;
}

/** The convolution of the current image as a tensor [1, h, w, c] (call inside tf.tidy). */
export function convolve(kernel, { stride, padding, mode }) {
  const k = kernel.length;
  const weights = kernel.flat();
  if (mode === 'grayscale') {
    return tf.conv2d(state.grayTensor, tf.tensor4d(weights, [k, k, 1, 1]), stride, padding);
  }
  return tf.depthwiseConv2d(state.rgb, tf.tensor4d(weights.flatMap((w) => [w, w, w]), [k, k, 3, 1]), stride, padding);
}

export async function render() {
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

// ---------------------------------------------------------------- the kernel editor

export function buildGrid() {
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
export function cellText(v) {
  return String(Number(v.toFixed(4)));
}

/** After any change to the kernel: the grid (unless a cell was typed in), the preset and sum, the output. */
export function kernelChanged(rebuild = true) {
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

export function setKernel(rows) {
  const k = rows?.length;
  if (!(Number.isInteger(k) && k >= 1 && k <= MAX_KERNEL && rows.every((row) => Array.isArray(row) &&
        row.length === k && row.every((v) => typeof v === 'number' && Number.isFinite(v))))) {
    throw new Error(`A kernel is k rows of k finite numbers, k from 1 to ${MAX_KERNEL}.`);
  }
  state.kernel = rows.map((row) => row.slice());
  if (SIZES.includes(k)) state.size = k;
  return kernelChanged();
}

export function usePreset(name, size = state.size) {
  state.size = size;
  state.kernel = presetKernel(name, size);
  return kernelChanged();
}

/** 3 x 3 <-> 5 x 5: a preset at the new size, or your own kernel padded with zeros (or its centre). */
export function setSize(size) {
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

export function normalise() {
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

export function showPresets() {
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

export function setOptions({ stride, padding, mode } = {}) {
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
export function explain(row, col, channel = 0) {
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

export const CHANNELS = ['red', 'green', 'blue'];

export function fillTable(table, rows, format, padded) {
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

export const fixed = (digits) => (v) => (v === null ? '0' : String(Number(v.toFixed(digits))));

export function showZoom() {
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

export function placeMarkers(e, output) {
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

export function selectPixel(row, col) {
  state.selected = { row, col };
  showZoom();
}

export function wireZoom() {
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

export let checkTimer = null;

export function scheduleCheck() {
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
export function inputPayload() {
  const { image } = state;
  return { shape: [image.height, image.width, 3], data: Array.from(image.rgb) };
}

export async function checkServer() {
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
