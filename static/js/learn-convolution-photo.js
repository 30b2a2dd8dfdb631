/**
 * What the convolution page's two lessons share (learn-convolution.js says how its files fit
 * together): the page config and state (the kernel, the options, the image and its tensors,
 * the last output), the photo (a picture scaled once to at most MAX_SIDE px, its grayscale,
 * the samples) and drawing numbers as pixels on canvases (the input and the output).
 */
import { readPageConfig } from './config.js';
import { presetKernel, sumsToZero } from './kernels.js';
import { loadSample, tf } from './lesson.js';
import { decodeImage } from './preprocess.js';
import { clearMessage, showMessage } from './view.js';
import { refresh } from './learn-convolution-kernel.js';
import { drawNetwork } from './learn-convolution-network.js';

export const config = readPageConfig();
export const $ = (id) => document.getElementById(id);

export const MAX_SIDE = 256; // the photo's longer side, in pixels, as convolved
export const CHECK_DELAY_MS = 700; // the server checks this long after the last change
export const PARITY_OK = 1e-5; // a max |difference| up to this (times the largest |output| beyond 1) is float32 rounding
export const GRAY_WEIGHTS = [0.2989, 0.587, 0.114]; // tf.image.rgbToGrayscale's (and TensorFlow's)
export const MAX_KERNEL = 9; // the server's limit too (app/learn.py)
export const BACKEND_NAMES = { wasm: 'WebAssembly', webgl: 'WebGL', webgpu: 'WebGPU', cpu: 'CPU (plain JavaScript)' };

export const state = {
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

// ---------------------------------------------------------------- the photo

/** A picture, scaled once to at most MAX_SIDE px: the image both the page and the server convolve. */
export async function useBitmap(bitmap, title) {
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
export function grayscale(rgb) {
  if (tf.getKernel('Einsum', tf.getBackend())) {
    state.grayMethod = 'tf.image.rgbToGrayscale';
    return tf.image.rgbToGrayscale(rgb);
  }
  // the WASM backend has no Einsum: the same weighted sum of R, G and B, in float32
  state.grayMethod = 'tf.sum(tf.mul(rgb, [0.2989, 0.587, 0.114]), -1)';
  return tf.sum(tf.mul(rgb, tf.tensor1d(GRAY_WEIGHTS)), -1, true);
}

export async function usePhoto(blob) {
  const bitmap = await decodeImage(blob);
  markSample(null);
  return useBitmap(bitmap, blob.name ? `"${blob.name}"` : 'Your photo');
}

export async function useSample(index) {
  const sample = config.samples?.[index];
  if (!sample) throw new Error(`No sample ${index}: there are ${config.samples?.length ?? 0}.`);
  markSample(index);
  return useBitmap(await loadSample(sample.url), `Sample: ${sample.title}`);
}

/** A picture from the user (file, drop, paste): its problems said on the page, not thrown. */
export async function photoFromUser(file) {
  if (!file) return;
  try {
    await usePhoto(file);
    clearMessage('image');
  } catch (error) {
    showMessage('image', 'error', 'That picture did not load.', error.message);
  }
}

export function markSample(index) {
  document.querySelectorAll('#samples button').forEach((button) => {
    button.setAttribute('aria-pressed', String(Number(button.dataset.index) === index));
  });
}

export function showSamples() {
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

export const clamp01 = (v) => (v < 0 ? 0 : v > 1 ? 1 : v);

/** Values (`channels` per pixel, 1 or 3) as an RGBA ImageData: clamped to 0..1, |v| first if `absolute`. */
export function toImageData(data, width, height, channels, absolute = false) {
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

export function putImage(canvas, imageData) {
  if (canvas.width !== imageData.width || canvas.height !== imageData.height) {
    canvas.width = imageData.width;
    canvas.height = imageData.height;
  }
  canvas.getContext('2d').putImageData(imageData, 0, 0);
}

export function drawInput() {
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

export function drawOutput() {
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
