/**
 * The "Where did it look?" card of the classify page: Grad-CAM (gradcam.js, on the TF.js
 * layers model) and occlusion (occlusion.js, on the graph model) for the image just
 * classified, for any class.
 *
 * classify.js owns the model and the image; it tells this controller about them
 * (`modelChanged`, `imageClassified`) and runs its operations through the page's
 * one-at-a-time queue (`serial`), so an explanation never races a classification or a
 * backend switch. Cancel works outside the queue (an AbortSignal checked between batches).
 */
import * as view from './explain-view.js';
import { GradCam, GradientUnsupportedError } from './gradcam.js';
import { heatmapPng } from './heatmap.js';
import { modelUrl } from './model.js';
import { CancelledError, defaultParams, occlusionMap, paramsProblem } from './occlusion.js';
import { findClass, shortLabel } from './predictions.js';
import { formatMs } from './format.js';
import { tf } from './tf.js';

export class ExplainController {
  /**
   * `serial(task)` queues an operation behind the page's others; `showMessage(topic,
   * level, title, text)` and `clearMessage(topic)` are the page's banners; `squirrelClass`
   * is the class of the squirrel shortcut.
   */
  constructor({ serial, showMessage, clearMessage, squirrelClass }) {
    this.serial = serial;
    this.showMessage = showMessage;
    this.clearMessage = clearMessage;
    this.squirrelClass = squirrelClass;
    this.classifier = null;
    this.backend = null;
    this.gradcam = null; // loaded on the first Grad-CAM, per model and backend
    this.image = null; // {input: Float32Array [1*H*W*3], top5}
    this.classIndex = null;
    this.explanation = null;
    this.abort = null;
    this.count = 0;
    this.wire();
  }

  /** A new model (or the same on a new backend): the layers model is loaded again when needed. */
  modelChanged(classifier, backend) {
    this.cancel();
    this.gradcam?.dispose();
    this.gradcam = null;
    this.classifier = classifier;
    this.backend = backend;
    view.showLayers([], null);
    if (classifier) {
      view.fillLabels(classifier.labels);
      const [height, width] = classifier.preprocessing.size;
      view.setOcclusionParams(defaultParams(height, width), Math.min(height, width));
    }
  }

  /** The page classified an image: {input, top5} and the picture to draw under heatmaps. */
  imageClassified(result, bitmap, region) {
    this.image = { input: result.input, top5: result.top5 };
    this.classIndex = result.top5[0].index;
    this.explanation = null;
    view.clearFigure();
    view.showPhoto(bitmap, region);
    view.showClasses(result.top5, this.classIndex, this.squirrelClass, this.classifier.labels,
      (index) => this.fromUser({ classIndex: index }));
    view.showCard();
  }

  /** Stops a running occlusion map (between two batches). */
  cancel() {
    this.abort?.abort();
  }

  /**
   * Explains the current image. `request`: {method: "gradcam"|"occlusion", classIndex,
   * layer, patch, stride}; what is left out comes from the card's controls (the class
   * defaults to the top-1). Resolves to the explanation (see `plain`), or to {error}
   * when it cannot run, or null when cancelled. Queued like every page operation.
   */
  explain(request = {}) {
    return this.serial(() => this.run(request));
  }

  async run(request) {
    if (!this.classifier || !this.image) {
      view.showStatus('Classify an image first.');
      return { error: 'Classify an image first.' };
    }
    const method = request.method ?? view.selectedMethod();
    const classIndex = request.classIndex ?? this.classIndex;
    if (!(Number.isInteger(classIndex) && classIndex >= 0 && classIndex < this.classifier.labels.length)) {
      return this.fail(`There is no class ${classIndex}.`);
    }
    view.setMethod(method);
    this.classIndex = classIndex;
    view.markSelected(classIndex);
    const [height, width] = this.classifier.preprocessing.size;
    const input = tf.tensor4d(this.image.input, [1, height, width, 3]);
    this.clearMessage('explain');
    try {
      const result = method === 'gradcam'
        ? await this.runGradCam(input, classIndex, request.layer)
        : await this.runOcclusion(input, classIndex, request);
      if (result.error) return result;
      this.count += 1;
      this.explanation = result;
      await view.showHeatmap(result, this.caption(result));
      view.showStatus(`${method === 'gradcam' ? 'Grad-CAM' : 'Occlusion'} on ${this.backend}: ` +
        `${formatMs(result.ms)}.`);
      return plain(result);
    } catch (error) {
      if (error instanceof CancelledError) {
        view.showStatus('Cancelled.');
        return null;
      }
      if (error instanceof GradientUnsupportedError) {
        const later = this.gradcam?.defaultLayer();
        const text = `${error.message} Pick a layer nearer the output (after the last convolution, ` +
          `e.g. ${later}), use Occlusion, or switch the backend to webgl, webgpu or cpu.`;
        this.showMessage('explain', 'warning', 'Grad-CAM needs gradients here that this backend lacks.', text);
        return this.fail(text, { unsupported: true, backend: error.backend, kernel: error.kernel });
      }
      return this.fail(error.message);
    } finally {
      input.dispose();
      view.setBusy(false);
    }
  }

  async runGradCam(input, classIndex, requestedLayer) {
    const gradcam = await this.loadGradCam();
    if (gradcam.error) return gradcam;
    const layer = requestedLayer ?? view.selectedLayer() ?? gradcam.defaultLayer();
    if (!gradcam.layers().some((l) => l.name === layer)) {
      return this.fail(`The model has no layer "${layer}" with a spatial output.`);
    }
    view.showLayers(gradcam.layers(), layer);
    view.setBusy(true);
    view.showStatus(`Grad-CAM at ${layer}…`);
    const result = await gradcam.explain(input, classIndex, layer);
    return { ...result, method: 'gradcam', classIndex, layer, scoreKind: gradcam.scoreKind };
  }

  async loadGradCam() {
    if (this.gradcam) return this.gradcam;
    const { manifest } = this.classifier;
    if (!manifest.formats?.layers) {
      return this.fail('This model has no TF.js layers model, which Grad-CAM needs (a SavedModel ' +
        'converts to a graph model only). Occlusion works on any model.');
    }
    const bytes = manifest.files.filter((f) => f.path.startsWith('layers/')).reduce((s, f) => s + f.bytes, 0);
    view.setBusy(true);
    view.showStatus(`Loading the layers model (${(bytes / 1e6).toFixed(1)} MB) for gradients…`);
    const scoreKind = manifest.output.kind === 'logits' ? 'logit' : 'probability';
    try {
      this.gradcam = await GradCam.load(modelUrl(this.classifier.name, 'layers/model.json'), { scoreKind });
    } catch (error) {
      return this.fail(`The layers model could not be loaded: ${error.message}`);
    }
    view.showLayers(this.gradcam.layers(), this.gradcam.defaultLayer());
    return this.gradcam;
  }

  async runOcclusion(input, classIndex, request) {
    const fromCard = view.occlusionParams();
    const patch = request.patch ?? fromCard.patch;
    const stride = request.stride ?? fromCard.stride;
    const [height, width] = this.classifier.preprocessing.size;
    const problem = paramsProblem(height, width, patch, stride);
    if (problem) return this.fail(problem);
    view.setOcclusionParams({ patch, stride }, Math.min(height, width));
    const [lo, hi] = this.classifier.preprocessing.value_range;
    this.abort = new AbortController();
    view.setBusy(true, { cancellable: true });
    try {
      const result = await occlusionMap((batch) => this.classifier.probabilitiesOf(batch), input, classIndex, {
        patch, stride, fill: (lo + hi) / 2, signal: this.abort.signal,
        onProgress: (done, total) => view.showProgress(done, total),
      });
      return { ...result, method: 'occlusion', classIndex, patch, stride };
    } finally {
      this.abort = null;
    }
  }

  fail(text, extra = {}) {
    view.showStatus(text);
    return { error: text, ...extra };
  }

  caption(result) {
    const label = shortLabel(this.classifier.labels[result.classIndex]);
    if (result.method === 'gradcam') {
      return `Grad-CAM for "${label}" (class ${result.classIndex}) at ${result.layer} ` +
        `(${result.shape.join('×')}): gradient of its ${result.scoreKind} (${result.score.toFixed(3)}).`;
    }
    return `Occlusion for "${label}" (class ${result.classIndex}): ${result.images} images with a ` +
      `${result.patch}px grey patch every ${result.stride}px; red = probability drops most ` +
      `(from ${(result.baseline * 100).toFixed(2)}%).`;
  }

  /** Starts an explanation from the card's controls; errors end up in the card. */
  fromUser(request = {}) {
    this.explain(request).catch((error) => {
      view.showStatus(`Explanation failed: ${error.message}`);
      console.warn(error);
    });
  }

  /** The current heatmap as a greyscale PNG download. */
  async downloadHeatmap() {
    const result = this.explanation;
    if (!result) return;
    const label = shortLabel(this.classifier.labels[result.classIndex]).replace(/[^\w-]+/g, '-');
    const where = result.method === 'gradcam' ? result.layer : `patch${result.patch}-stride${result.stride}`;
    view.download(await heatmapPng(result.heatmap, result.shape), `${result.method}-${label}-${where}.png`);
  }

  wire() {
    const $ = (id) => document.getElementById(id);
    $('explain-run').addEventListener('click', () => this.fromUser());
    $('explain-cancel').addEventListener('click', () => this.cancel());
    $('explain-squirrel').addEventListener('click', () => this.fromUser({ classIndex: this.squirrelClass }));
    $('explain-class-input').addEventListener('change', (event) => {
      const index = findClass(event.target.value, this.classifier?.labels ?? []);
      if (index == null) {
        view.showStatus(`No class matches "${event.target.value}".`);
        return;
      }
      event.target.value = '';
      this.fromUser({ classIndex: index });
    });
    document.querySelectorAll('input[name="explain-method"]').forEach((radio) => {
      radio.addEventListener('change', () => view.showMethodOptions(view.selectedMethod()));
    });
    $('explain-layer').addEventListener('change', () => {
      if (this.explanation?.method === 'gradcam') this.fromUser({ method: 'gradcam' });
    });
    $('explain-opacity').addEventListener('input', () => view.applyOpacity());
    $('explain-download').addEventListener('click', () => {
      this.downloadHeatmap().catch((error) => view.showStatus(`Download failed: ${error.message}`));
    });
  }
}

/** An explanation with plain arrays (what page.evaluate and JSON can carry). */
function plain(result) {
  return {
    ...result,
    heatmap: Array.from(result.heatmap),
    drops: result.drops ? Array.from(result.drops) : undefined,
  };
}
