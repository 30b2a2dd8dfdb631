/**
 * A converted Belka detector in the browser: its manifest and its TF.js graph model, cut
 * before non-max suppression (app/convert/detector.py), and the post-processing that the
 * server runs too (app/inference/detection.py):
 *   1. the picture is squashed to the model's input size (bilinear, half-pixel centres) and
 *      its pixels scaled to the manifest's value_range (the detector's own preprocessing,
 *      cut out of its graph at conversion);
 *   2. the model gives every anchor's box (ymin, xmin, ymax, xmax as fractions) and its
 *      sigmoid score per class (column 0: background);
 *   3. per anchor, the best named class and its score; class-agnostic non-max
 *      suppression (tf.image.nonMaxSuppressionAsync: score threshold, IoU, max boxes);
 *   4. boxes clipped to [0, 1] and scaled to the picture: bbox = [x, y, width, height] in
 *      its pixels, as @tensorflow-models/coco-ssd gives them.
 * Like coco-ssd: Detector.load(name) -> detect(source, options) -> dispose().
 *
 * The graph holds no loop or dynamic op (the manifest's graph_execution is "execute"), so it
 * runs with the synchronous model.execute(): no executeAsync() bookkeeping per frame and no
 * "use model.execute() instead" warning. Models converted before that keep executeAsync().
 */
import { loadManifest } from './manifest.js';
import { loadGraph } from './model.js';
import { toModelInput } from './model-input.js';
import { tf } from './tf.js';
import { since } from './timings.js';

export class Detector {
  constructor(name, manifest, graph, loadMs) {
    this.name = name;
    this.manifest = manifest;
    this.graph = graph;
    this.loadMs = loadMs;
    this.calls = 0; // how many times the graph ran
    this.outputs = [manifest.output.boxes.node, manifest.output.scores.node];
    /** "execute" or "executeAsync": how the graph runs (bench/detect_bench.py compares both). */
    this.execution = manifest.graph_execution === 'execute' ? 'execute' : 'executeAsync';
    // 1 for the score columns that have a label, 0 for unused ids (COCO has gaps)
    this.named = tf.tensor1d(manifest.labels.map((label) => (label == null ? 0 : 1)), 'float32');
  }

  /** Fetches the manifest and the graph model; measures the time. */
  static async load(name) {
    const start = performance.now();
    const manifest = await loadManifest(name, 'detection');
    const graph = await loadGraph(name);
    return new Detector(name, manifest, graph, since(start));
  }

  get defaults() {
    const p = this.manifest.postprocessing;
    return { scoreThreshold: p.score_threshold, iouThreshold: p.iou_threshold, maxBoxes: p.max_boxes };
  }

  /**
   * Detects objects in `source` (a <video>, an ImageBitmap, a canvas...). Options:
   * scoreThreshold, iouThreshold, maxBoxes (default: the manifest's), keepInput (also
   * return the model input as a Float32Array). Resolves to {detections: [{bbox, box,
   * classId, label, score}], width, height, inferenceMs, input?}; inferenceMs is the model
   * and steps 3-4, until the boxes are read back (on a GPU backend the model's work ends
   * only then).
   */
  async detect(source, options = {}) {
    const { scoreThreshold, iouThreshold, maxBoxes } = { ...this.defaults, ...options };
    const width = source.videoWidth || source.width;
    const height = source.videoHeight || source.height;
    const input = toModelInput(source, this.manifest.preprocessing);
    let boxes;
    let scores;
    try {
      const start = performance.now();
      this.calls += 1;
      [boxes, scores] = this.execution === 'execute'
        ? this.graph.execute(input, this.outputs)
        : await this.graph.executeAsync(input, this.outputs);
      const detections = await this.postprocess(boxes, scores, width, height,
        { scoreThreshold, iouThreshold, maxBoxes });
      // Timed to the boxes read back, not to execute()'s return: on webgl and webgpu execute()
      // only queues the model's work on the GPU, which is done when its outputs are read.
      const inferenceMs = since(start);
      const result = { detections, width, height, inferenceMs };
      if (options.keepInput) result.input = await input.data();
      return result;
    } finally {
      tf.dispose([input, boxes, scores]);
    }
  }

  /** Steps 3 and 4 of the module doc, on the model's raw outputs (not disposed here). */
  async postprocess(boxes, scores, width, height, { scoreThreshold, iouThreshold, maxBoxes }) {
    const [flatBoxes, best, bestScore] = tf.tidy(() => {
      const classes = tf.mul(tf.slice(tf.squeeze(scores, [0]), [0, 1], [-1, -1]), this.named);
      return [tf.squeeze(boxes, [0]), tf.argMax(classes, 1), tf.max(classes, 1)];
    });
    let selected;
    try {
      selected = await tf.image.nonMaxSuppressionAsync(flatBoxes, bestScore, maxBoxes, iouThreshold,
        scoreThreshold);
      const [keep, boxData, classData, scoreData] = await Promise.all(
        [selected.data(), flatBoxes.data(), best.data(), bestScore.data()]);
      const clip = (v) => Math.min(1, Math.max(0, v));
      return Array.from(keep, (i) => {
        const [ymin, xmin, ymax, xmax] = Array.from(boxData.subarray(i * 4, i * 4 + 4), clip);
        const column = classData[i];
        return {
          bbox: [xmin * width, ymin * height, (xmax - xmin) * width, (ymax - ymin) * height],
          box: { ymin, xmin, ymax, xmax },
          classId: this.manifest.class_ids[column],
          label: this.manifest.labels[column] ?? `class ${this.manifest.class_ids[column]}`,
          score: scoreData[i],
        };
      });
    } finally {
      tf.dispose([flatBoxes, best, bestScore, selected]);
    }
  }

  /** One detection on a black picture, so the backend compiles its kernels now; resolves to its ms. */
  async warmUp() {
    const [height, width] = this.manifest.preprocessing.size;
    const start = performance.now();
    await this.detect(new ImageData(width, height));
    return since(start);
  }

  dispose() {
    this.graph.dispose();
    this.named.dispose();
  }
}
