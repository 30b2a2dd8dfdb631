/**
 * Image preprocessing, driven by the manifest's "preprocessing" spec:
 *   {"size": [H, W], "crop": "center"|"none", "resize": "bilinear", "color": "rgb",
 *    "value_range": [lo, hi], "exif_orientation": true}
 *
 * The exact convention (the Python side implements the same, so both feed the model
 * the same numbers):
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
 *   5. values p -> lo + p * (hi - lo) / 255, float32;
 *   6. a batch of one: [1, H, W, 3].
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
  if ((spec.color ?? 'rgb') !== 'rgb') {
    throw new Error(`Unsupported preprocessing color "${spec.color}" in the model's manifest.`);
  }
}

/**
 * The pixels of an image drawn over an opaque white background, as ImageData: how
 * transparent pictures are flattened, on both sides (the server composites the same way).
 */
export function opaquePixels(source) {
  const width = source.width ?? source.videoWidth;
  const height = source.height ?? source.videoHeight;
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext('2d');
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
  const [lo, hi] = spec.value_range;
  const opaque = source instanceof ImageBitmap ? opaquePixels(source) : source;
  return tf.tidy(() => {
    const pixels = tf.browser.fromPixels(opaque, 3); // int32 [h, w, 3], 0..255
    const [height, width] = pixels.shape;
    const region = modelRegion(height, width, spec);
    const cropped = tf.slice(pixels, [region.top, region.left, 0], [region.height, region.width, 3]);
    const resized = tf.image.resizeBilinear(tf.cast(cropped, 'float32'), [outHeight, outWidth],
      false /* alignCorners */, true /* halfPixelCenters */);
    const scaled = tf.add(tf.mul(resized, (hi - lo) / 255), lo);
    return tf.expandDims(scaled, 0);
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
 * The model input back as RGBA ImageData (values mapped back to 0..255), to show
 * the user what the model sees. `data` is the flattened [1, H, W, 3] input.
 */
export function inputToImageData(data, spec) {
  const [height, width] = spec.size;
  const [lo, hi] = spec.value_range;
  const image = new ImageData(width, height);
  for (let i = 0, j = 0; i < height * width * 3; i += 3, j += 4) {
    image.data[j] = ((data[i] - lo) * 255) / (hi - lo);
    image.data[j + 1] = ((data[i + 1] - lo) * 255) / (hi - lo);
    image.data[j + 2] = ((data[i + 2] - lo) * 255) / (hi - lo);
    image.data[j + 3] = 255;
  }
  return image;
}
