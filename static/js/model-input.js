/**
 * The model input for a picture, in TF.js (the model's worker): steps 4 to 6 of the
 * preprocessing convention in preprocess.js, on the pixels it crops there.
 */
import { checkSpec, decodeImage, modelRegion, opaquePixels, regionPixels } from './preprocess.js';
import { tf } from './tf.js';

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
 * The model input for an image: float32 [1, H, W, 3], computed inside tf.tidy so no
 * intermediate tensor survives. `source` is RGBA ImageData or anything a canvas draws (an
 * ImageBitmap: a decoded picture or a video frame), flattened over white first. The caller
 * disposes the result.
 */
export function toModelInput(source, spec) {
  checkSpec(spec);
  const [outHeight, outWidth] = spec.size;
  const pixels = source instanceof ImageData ? source : opaquePixels(source);
  const region = modelRegion(pixels.height, pixels.width, spec);
  const cropped = regionPixels(pixels, region); // steps 2 and 3
  return tf.tidy(() => {
    const image = tf.tensor3d(cropped, [region.height, region.width, 3], 'float32');
    const resized = tf.image.resizeBilinear(image, [outHeight, outWidth],
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
