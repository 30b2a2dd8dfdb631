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
 * The page's code, one room per file:
 *   learn-convolution.js          this file: the start (TF.js's backend, the first sample), the
 *                                 controls' wiring and window.belka
 *   learn-convolution-photo.js    the parts both lessons share: the page's state, the photo
 *                                 (scaled, its grayscale) and drawing pixels on canvases
 *   learn-convolution-kernel.js   the first lesson: your kernel convolved live, its editor and
 *                                 presets, one output pixel by hand, the server's check
 *   learn-convolution-network.js  the second lesson: the classifier's first-layer filters and
 *                                 what they make of the photo
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
import { presetNames } from './kernels.js';
import { startBackend, tf } from './lesson.js';
import { wireModelPicker } from './model-picker.js';
import { showMessage } from './view.js';
import {
  $, BACKEND_NAMES, config, photoFromUser, showSamples, state, usePhoto, useSample,
} from './learn-convolution-photo.js';
import {
  checkServer, checkTimer, explain, inputPayload, kernelChanged, normalise, selectPixel, setKernel,
  setOptions, setSize, settled, showPresets, usePreset, wireZoom,
} from './learn-convolution-kernel.js';
import { firstLayer } from './learn-convolution-network.js';

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
