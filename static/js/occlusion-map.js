/**
 * The occlusion map in TF.js (the steps are in occlusion.js), in the model's worker.
 *
 * Hundreds of model calls take a while, so the work goes in batches sized to take about
 * `targetBatchMs` each, and the worker yields between batches: progress reaches the page
 * and a Cancel request is handled.
 */
import { CancelledError, paramsProblem, positions } from './occlusion.js';
import { tf } from './tf.js';
import { since } from './timings.js';

const nextTask = () => new Promise((resolve) => { setTimeout(resolve, 0); });

/**
 * The occlusion map of `input` (float32 [1, H, W, 3], not disposed here) for class
 * `classIndex`. `probabilities(batch)` maps a [N, H, W, 3] tensor (not disposed there) to
 * [N, classes] probabilities: a new tensor, or a promise of one (ONNX Runtime Web's calls are
 * asynchronous). Options: patch, stride, fill (the patch's
 * value: one number for every channel, or one per channel in the model's order), signal
 * (AbortSignal), onProgress(done, total), targetBatchMs.
 * Resolves to {heatmap: Float32Array (H * W), shape: [H, W], drops: Float32Array
 * (rows.length * cols.length), rows, cols, baseline, images, ms}.
 */
export async function occlusionMap(probabilities, input, classIndex,
  { patch, stride, fill, signal, onProgress = () => {}, targetBatchMs = 80 }) {
  const start = performance.now();
  const [, height, width] = input.shape;
  const problem = paramsProblem(height, width, patch, stride);
  if (problem) throw new Error(problem);
  const fillValues = typeof fill === 'number' ? [fill] : Array.from(fill ?? []);
  if (!(fillValues.length === 1 || fillValues.length === input.shape[3]) || !fillValues.every(Number.isFinite)) {
    throw new Error(`The occlusion fill must be a number or one number per channel, not ${JSON.stringify(fill)}.`);
  }
  const rows = positions(height, patch, stride);
  const cols = positions(width, patch, stride);
  const spots = rows.flatMap((top) => cols.map((left) => [top, left]));
  const scoreOf = async (batch) => {
    const all = await probabilities(batch);
    try {
      return tf.tidy(() => tf.squeeze(tf.slice(all, [0, classIndex], [-1, 1]), [1]));
    } finally {
      all.dispose();
    }
  };

  const baselineTensor = await scoreOf(input);
  const baseline = (await baselineTensor.data())[0];
  baselineTensor.dispose();
  const drops = new Float32Array(spots.length);
  let batchSize = 1; // grows (or not) from the first batch's time
  onProgress(0, spots.length);
  await nextTask();
  for (let done = 0; done < spots.length;) {
    if (signal?.aborted) throw new CancelledError();
    const chunk = spots.slice(done, done + batchSize);
    const began = performance.now();
    const batch = tf.tidy(() => {
      const mask = new Float32Array(chunk.length * height * width);
      chunk.forEach(([top, left], k) => {
        for (let y = top; y < top + patch; y += 1) {
          mask.fill(1, (k * height + y) * width + left, (k * height + y) * width + left + patch);
        }
      });
      const m = tf.tensor4d(mask, [chunk.length, height, width, 1]);
      const grey = tf.tensor1d(fillValues, 'float32'); // [1] or [3]: broadcast over the channels
      return tf.add(tf.mul(input, tf.sub(1, m)), tf.mul(m, grey)); // [N, H, W, 3]
    });
    let values;
    try {
      const scores = await scoreOf(batch);
      values = await scores.data();
      scores.dispose();
    } finally {
      batch.dispose();
    }
    values.forEach((p, k) => { drops[done + k] = baseline - p; });
    done += chunk.length;
    onProgress(done, spots.length);
    // Aim each batch at targetBatchMs: big enough to batch, small enough to stay responsive.
    // Powers of two only: WebGL and WebGPU compile shaders for every new batch shape.
    const wanted = (chunk.length * targetBatchMs) / Math.max(1, since(began));
    batchSize = 2 ** Math.min(6, Math.max(0, Math.round(Math.log2(Math.max(1, wanted)))));
    await nextTask(); // let the page paint and handle clicks (Cancel) between batches
  }

  const total = new Float64Array(height * width);
  const count = new Uint32Array(height * width);
  spots.forEach(([top, left], k) => {
    for (let y = top; y < top + patch; y += 1) {
      for (let x = left; x < left + patch; x += 1) {
        total[y * width + x] += drops[k];
        count[y * width + x] += 1;
      }
    }
  });
  const heatmap = new Float32Array(height * width);
  let peak = 0;
  for (let i = 0; i < heatmap.length; i += 1) {
    heatmap[i] = Math.max(0, total[i] / count[i]);
    peak = Math.max(peak, heatmap[i]);
  }
  for (let i = 0; i < heatmap.length; i += 1) heatmap[i] = peak > 0 ? heatmap[i] / peak : 0;
  return { heatmap, shape: [height, width], drops, rows, cols, baseline, images: spots.length, ms: since(start) };
}
