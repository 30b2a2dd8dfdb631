/**
 * Image preprocessing, driven by the manifest's "preprocessing" spec:
 *   {"size": [H, W], "crop": "center"|"none", "resize": "bilinear", "color": "rgb"|"bgr",
 *    "value_range": [lo, hi], "mean": [m0, m1, m2] (optional), "std": [s0, s1, s2]
 *    (optional), "exif_orientation": true}
 *
 * The exact convention (the Python side, app/inference/preprocess.py, implements the same,
 * so both feed the model the same numbers):
 *   1. decode, EXIF orientation applied, no colour-space conversion (ICC profiles are
 *      ignored, as Pillow does by default); transparent pixels composited over WHITE
 *      (the server does the same: app/inference/preprocess.py);
 *   2. RGB pixels 0..255 (tf.browser.fromPixels, 3 channels);
 *   3. crop "center": the largest centred square, side = min(h, w),
 *      top = floor((h - side) / 2), left = floor((w - side) / 2); "none": keep all
 *      (the resize then squashes);
 *   4. resize to [H, W] bilinear with half-pixel centres and no corner alignment
 *      (tf.image.resizeBilinear(x, [H, W], false, true), which is TF's
 *      tf.image.resize(..., "bilinear") and OpenCV's INTER_LINEAR, without antialiasing);
 *   5. values p -> lo + p * (hi - lo) / 255, float32; then, in this order and only when
 *      the spec says so: the channels reversed for "color": "bgr" (Caffe's order), the
 *      per-channel "mean" subtracted, divided by the per-channel "std" (mean and std are
 *      in the model's channel order, i.e. after the reversal). keras.applications'
 *      "tf" mode is value_range [-1, 1]; "torch" is [0, 1] with ImageNet mean and std;
 *      "caffe" is [0, 255], bgr, with the ImageNet mean in BGR order;
 *   6. a batch of one: [1, H, W, 3].
 * `inputToImageData` undoes step 5 (to show what the model sees) and `pixelToModel` applies
 * it to one pixel (occlusion's grey patch: the model value of a 127.5 grey pixel).
 */
import { tf } from './tf.js';

/** Raised when a file cannot be decoded as an image. */
export class ImageDecodeError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = 'ImageDecodeError';
  }
}

/**
 * Decodes an image file (File or Blob) into an ImageBitmap, upright (EXIF
 * orientation applied). The caller closes it (bitmap.close()).
 */
export async function decodeImage(blob) {
  const name = blob.name ? `"${blob.name}"` : 'The file';
  if (blob.size === 0) throw new ImageDecodeError(`${name} is empty.`);
  try {
    return await createImageBitmap(blob, {
      imageOrientation: 'from-image',
      colorSpaceConversion: 'none',
      premultiplyAlpha: 'none',
    });
  } catch (cause) {
    const type = blob.type ? ` (${blob.type})` : '';
    throw new ImageDecodeError(
      `${name}${type} could not be decoded as an image. ` +
      'Use a PNG, JPEG, WebP, GIF or BMP picture.', { cause });
  }
}

/** The centred square {top, left, side} that crop "center" keeps of an h x w image. */
export function centerSquare(height, width) {
  const side = Math.min(height, width);
  return { top: Math.floor((height - side) / 2), left: Math.floor((width - side) / 2), side };
}

/** The region {top, left, height, width} of an image that the model sees, per the spec. */
export function modelRegion(height, width, spec) {
  if (spec.crop === 'center') {
    const { top, left, side } = centerSquare(height, width);
    return { top, left, height: side, width: side };
  }
  if (spec.crop === 'none' || spec.crop == null) return { top: 0, left: 0, height, width };
  throw new Error(`Unsupported preprocessing crop "${spec.crop}" in the model's manifest.`);
}

function checkSpec(spec) {
  if (spec.resize !== 'bilinear') {
    throw new Error(`Unsupported preprocessing resize "${spec.resize}" in the model's manifest.`);
  }
  if (!['rgb', 'bgr'].includes(spec.color ?? 'rgb')) {
    throw new Error(`Unsupported preprocessing color "${spec.color}" in the model's manifest.`);
  }
  for (const key of ['mean', 'std']) {
    const value = spec[key];
    if (value != null && !(Array.isArray(value) && value.length === 3 && value.every(Number.isFinite))) {
      throw new Error(`The preprocessing "${key}" in the model's manifest must be 3 numbers, ` +
        `not ${JSON.stringify(value)}.`);
    }
  }
  if (spec.std != null && spec.std.some((s) => s === 0)) {
    throw new Error('The preprocessing "std" in the model\'s manifest has a zero.');
  }
}

/**
 * Step 5 on a float32 tensor of pixel values 0..255 (RGB, channels last): scale to the value
 * range, then bgr, mean and std as the spec says. Same operations, same order, in float32,
 * as the server's normalise (app/inference/preprocess.py). Call inside tf.tidy.
 */
function normaliseTensor(pixels, spec) {
  const [lo, hi] = spec.value_range;
  let x = tf.add(tf.mul(pixels, (hi - lo) / 255), lo);
  if (spec.color === 'bgr') x = tf.reverse(x, -1);
  if (spec.mean != null) x = tf.sub(x, tf.tensor1d(spec.mean, 'float32'));
  if (spec.std != null) x = tf.div(x, tf.tensor1d(spec.std, 'float32'));
  return x;
}

/**
 * The model's values (3 numbers, in the model's channel order) of one pixel: `pixel` is a
 * grey level 0..255 or [r, g, b]. Float32 arithmetic step by step (Math.fround), as the
 * server's normalise, so the numbers are the same bits. Occlusion's grey patch is
 * pixelToModel(127.5, spec).
 */
export function pixelToModel(pixel, spec) {
  checkSpec(spec);
  const f = Math.fround;
  const [lo, hi] = spec.value_range;
  const rgb = Array.isArray(pixel) ? pixel : [pixel, pixel, pixel];
  let x = rgb.map((p) => f(f(f(p) * f((hi - lo) / 255)) + f(lo)));
  if (spec.color === 'bgr') x = x.reverse();
  if (spec.mean != null) x = x.map((v, c) => f(v - f(spec.mean[c])));
  if (spec.std != null) x = x.map((v, c) => f(v / f(spec.std[c])));
  return x;
}

/**
 * The pixels of an image drawn over an opaque white background, as ImageData: how
 * transparent pictures are flattened, on both sides (the server composites the same way).
 */
export function opaquePixels(source) {
  const width = source.width ?? source.videoWidth;
  const height = source.height ?? source.videoHeight;
  const canvas = new OffscreenCanvas(width, height);
  // a canvas read back once: keep it in memory, not on the GPU (GPU readback of a photo
  // cost ~135 ms in Chromium, the CPU canvas a few ms)
  const context = canvas.getContext('2d', { willReadFrequently: true });
  context.fillStyle = '#ffffff';
  context.fillRect(0, 0, width, height);
  context.drawImage(source, 0, 0);
  return context.getImageData(0, 0, width, height);
}

/**
 * The model input for an image: float32 [1, H, W, 3], computed inside tf.tidy so no
 * intermediate tensor survives. `source` is an ImageBitmap (a decoded picture, flattened
 * over white first) or anything else tf.browser.fromPixels takes (ImageData, canvas,
 * <img>, <video>). The caller disposes the result.
 */
export function toModelInput(source, spec) {
  checkSpec(spec);
  const [outHeight, outWidth] = spec.size;
  const opaque = source instanceof ImageBitmap ? opaquePixels(source) : source;
  return tf.tidy(() => {
    const pixels = tf.browser.fromPixels(opaque, 3); // int32 [h, w, 3], 0..255
    const [height, width] = pixels.shape;
    const region = modelRegion(height, width, spec);
    const cropped = tf.slice(pixels, [region.top, region.left, 0], [region.height, region.width, 3]);
    const resized = tf.image.resizeBilinear(tf.cast(cropped, 'float32'), [outHeight, outWidth],
      false /* alignCorners */, true /* halfPixelCenters */);
    return tf.expandDims(normaliseTensor(resized, spec), 0);
  });
}

/** Decodes `blob` and returns its model input tensor (float32 [1, H, W, 3]; caller disposes). */
export async function preprocessBlob(blob, spec) {
  const bitmap = await decodeImage(blob);
  try {
    return toModelInput(bitmap, spec);
  } finally {
    bitmap.close();
  }
}

/**
 * The model input back as RGBA ImageData (step 5 undone: times std, plus mean, channels
 * back to RGB, values mapped back to 0..255), to show the user what the model sees.
 * `data` is the flattened [1, H, W, 3] input.
 */
export function inputToImageData(data, spec) {
  const [height, width] = spec.size;
  const [lo, hi] = spec.value_range;
  const mean = spec.mean ?? [0, 0, 0];
  const std = spec.std ?? [1, 1, 1];
  // model channel c holds RGB channel order[c]
  const order = spec.color === 'bgr' ? [2, 1, 0] : [0, 1, 2];
  const image = new ImageData(width, height);
  for (let i = 0, j = 0; i < height * width * 3; i += 3, j += 4) {
    for (let c = 0; c < 3; c += 1) {
      const value = data[i + c] * std[c] + mean[c];
      image.data[j + order[c]] = ((value - lo) * 255) / (hi - lo);
    }
    image.data[j + 3] = 255;
  }
  return image;
}
