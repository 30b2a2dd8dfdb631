/**
 * Occlusion sensitivity in the browser: where does hiding part of the picture hurt the
 * class most? Needs no gradients, so it runs on every backend, with the fast graph model.
 *
 * The same steps as the server (app/inference/occlusion.py):
 *   1. a grey square (`patch` pixels; grey = a 127.5 mid-grey pixel in the model's values,
 *      per channel: preprocess.js pixelToModel, the server's normalise) slides over the
 *      model input with step `stride`: positions 0, stride, ... up to size - patch,
 *      plus size - patch itself when the steps miss it;
 *   2. every occluded image goes through the model (in batches); the drop of the class
 *      probability, p(clean) - p(occluded), is recorded for the position (signed);
 *   3. every pixel gets the mean drop of the patches that covered it;
 *   4. heatmap = ReLU of that map divided by its maximum: [H, W] in [0, 1].
 *
 * This module holds the plain arithmetic the page needs too (where the patches go, which
 * parameters work); the map itself, which needs TF.js, is occlusion-map.js, in the model's
 * worker.
 */
/** Raised (name "AbortError") when the caller's AbortSignal fires between batches. */
export class CancelledError extends Error {
  constructor() {
    super('Cancelled.');
    this.name = 'AbortError';
  }
}

/** Where the patch's leading edge goes along an axis of `size` pixels (step 1). */
export function positions(size, patch, stride) {
  const found = [];
  for (let p = 0; p <= size - patch; p += stride) found.push(p);
  if (found[found.length - 1] !== size - patch) found.push(size - patch);
  return found;
}

/** Why `patch` and `stride` cannot be used on an H x W input, or null when they can. */
export function paramsProblem(height, width, patch, stride) {
  const most = Math.min(height, width);
  if (!Number.isInteger(patch) || patch < 1 || patch > most) {
    return `The patch must be from 1 to ${most} pixels (the input is ${height}×${width}).`;
  }
  if (!Number.isInteger(stride) || stride < 1 || stride > patch) {
    return `The stride must be from 1 to the patch size (${patch}), so every pixel is covered.`;
  }
  return null;
}

/** The default patch (1/7 of the input's shorter side) and stride (half the patch). */
export function defaultParams(height, width) {
  const patch = Math.max(1, Math.round(Math.min(height, width) / 7));
  return { patch, stride: Math.max(1, Math.floor(patch / 2)) };
}
