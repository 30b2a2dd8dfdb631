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
 *   2. RGB pixels 0..255 (the RGBA pixels of step 1, alpha dropped);
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
 *
 * This module is plain JavaScript (the pages use it to decode and preview pictures); steps 4
 * to 6, which need TF.js, are model-input.js, in the model's worker.
 */

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

/** Throws a clear error when the spec asks for what this code does not do. */
export function checkSpec(spec) {
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
 * Steps 2 and 3 on RGBA ImageData: the RGB values of `region` ({top, left, height, width}),
 * as float32 [height * width * 3], row by row. (This loop took ~3 ms for a 450x300 photo;
 * fromPixels, slice and cast in TF.js's WASM backend ~15 ms.)
 */
export function regionPixels({ data, width }, region) {
  const out = new Float32Array(region.height * region.width * 3);
  let k = 0;
  for (let y = 0; y < region.height; y += 1) {
    let i = ((region.top + y) * width + region.left) * 4;
    for (let x = 0; x < region.width; x += 1, i += 4) {
      out[k] = data[i];
      out[k + 1] = data[i + 1];
      out[k + 2] = data[i + 2];
      k += 3;
    }
  }
  return out;
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
  // model channel c holds RGB channel order[c]; its level = data * scale[c] + shift[c]
  const order = spec.color === 'bgr' ? [2, 1, 0] : [0, 1, 2];
  const scale = std.map((s) => (s * 255) / (hi - lo));
  const shift = mean.map((m) => ((m - lo) * 255) / (hi - lo));
  const [o0, o1, o2] = order;
  const [a0, a1, a2] = scale;
  const [b0, b1, b2] = shift;
  const image = new ImageData(width, height);
  const out = image.data; // clamps and rounds
  for (let i = 0, j = 0; i < height * width * 3; i += 3, j += 4) {
    out[j + o0] = data[i] * a0 + b0;
    out[j + o1] = data[i + 1] * a1 + b1;
    out[j + o2] = data[i + 2] * a2 + b2;
    out[j + 3] = 255;
  }
  return image;
}
