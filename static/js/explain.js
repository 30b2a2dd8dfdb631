/**
 * The "Where did it look?" card of the classify page: Grad-CAM (gradcam.js) and occlusion
 * (occlusion.js, on the graph model) for the image just classified, for any class. Both
 * run in the model's worker (static/js/engine.js), on the input tensor it kept from the
 * classification; this controller asks for them and draws the answers.
 *
 * Grad-CAM runs on the TF.js layers model when the model has one (any spatial layer);
 * otherwise on the graph model already loaded, at the one layer the converter exported as
 * its "features" output (manifest.explain.gradcam "graph"). When the backend lacks a
 * backward kernel that the graph model's gradient needs, the server computes that
 * Grad-CAM instead (POST /api/models/<name>/explain on the same input tensor), and the
 * status and the result (`source: "server"`) say so.
 *
 * classify.js owns the model's description and the image; it tells this controller about them
 * (`modelChanged`, `imageClassified`) and runs its operations through the page's
 * one-at-a-time queue (`serial`), so an explanation never races a classification or a
 * backend switch. Cancel works outside the queue (an AbortSignal checked between batches).
 */
import * as view from './explain-view.js';
import { heatmapPng } from './heatmap.js';
import { defaultParams, paramsProblem } from './occlusion.js';
import { pixelToModel } from './preprocess.js';
import { findClass, shortLabel } from './predictions.js';
import { formatMs } from './format.js';
import { serverUrl } from './site.js';

export class ExplainController {
  /**
   * `engine` is the model's worker (engine-client.js); `serial(task)` queues an operation behind the page's others; `showMessage(topic,
   * level, title, text)` and `clearMessage(topic)` are the page's banners; `squirrelClass`
   * is the class of the squirrel shortcut.
   */
  constructor({ engine, serial, showMessage, clearMessage, squirrelClass }) {
    this.engine = engine;
    this.serial = serial;
    this.showMessage = showMessage;
    this.clearMessage = clearMessage;
    this.squirrelClass = squirrelClass;
    this.classifier = null; // {name, manifest, labels, preprocessing}
    this.backend = null;
    this.gradcam = null; // {layers, defaultLayer, model, scoreKind}: the worker's Grad-CAM, once loaded
    this.onModelFilesLoaded = null; // called when a Grad-CAM downloaded the layers model (offline.js keepAgain)
    this.image = null; // {input: Float32Array [1*H*W*3], top5}
    this.classIndex = null;
    this.explanation = null;
    this.occluding = false;
    this.count = 0;
    this.wire();
  }

  /** A new model (or the same on a new backend): the layers model is loaded again when needed. */
  modelChanged(classifier, backend) {
    this.cancel();
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

  /** The page has no picture any more (a file that was not an image): nothing to explain. */
  imageCleared() {
    this.cancel();
    this.image = null;
    this.explanation = null;
    view.hideCard();
  }

  /**
   * The class typed in the card's box: {} when the box is empty, {classIndex} when it names a
   * class (the box is then emptied), null when it names none (the card says so).
   */
  typedClass() {
    const input = document.getElementById('explain-class-input');
    const text = input.value.trim();
    if (!text) return {};
    const index = findClass(text, this.classifier?.labels ?? []);
    if (index == null) {
      view.showStatus(`No class matches "${text}": type a class name or number (0 to ` +
        `${(this.classifier?.labels.length ?? 1) - 1}), or pick one from the list.`);
      return null;
    }
    input.value = '';
    return { classIndex: index };
  }

  /** Explains the class typed in the box, if it names one. */
  explainTyped(request = {}) {
    const typed = this.typedClass();
    if (typed) this.fromUser({ ...request, ...typed });
  }

  /** Stops a running occlusion map (between two batches). */
  cancel() {
    if (this.occluding) this.engine.cancel();
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
    this.clearMessage('explain');
    try {
      const result = method === 'gradcam'
        ? await this.runGradCam(classIndex, request.layer)
        : await this.runOcclusion(classIndex, request);
      if (result.error) return result;
      this.count += 1;
      this.explanation = result;
      const { width, height } = view.heatSize();
      const image = await this.engine.call('heatmapImage', { heatmap: result.heatmap, shape: result.shape, width, height });
      view.showHeatmap(image, this.caption(result));
      view.showStatus(this.doneText(result));
      return plain(result);
    } catch (error) {
      if (error.name === 'AbortError') { // occlusion.js's CancelledError, from the worker
        view.showStatus('Cancelled.');
        return null;
      }
      if (error.name === 'GradientUnsupportedError') {
        const later = this.gradcam?.defaultLayer;
        const text = `${error.message} Pick a layer nearer the output (after the last convolution, ` +
          `e.g. ${later}), use Occlusion, or switch the backend to webgl, webgpu or cpu.`;
        this.showMessage('explain', 'warning', 'Grad-CAM needs gradients here that this backend lacks.', text);
        return this.fail(text, { unsupported: true, backend: error.backend, kernel: error.kernel });
      }
      return this.fail(error.message);
    } finally {
      view.setBusy(false);
    }
  }

  async runGradCam(classIndex, requestedLayer) {
    const gradcam = await this.loadGradCam();
    if (gradcam.error) return gradcam;
    const onGraph = gradcam.model === 'graph';
    const oneLayer = onGraph || gradcam.model === 'cam';
    const layer = requestedLayer ?? view.selectedLayer() ?? gradcam.defaultLayer;
    if (!gradcam.layers.some((l) => l.name === layer)) {
      return this.fail(oneLayer
        ? `${onGraph ? 'This model has no TF.js layers model, so Grad-CAM runs' : 'Grad-CAM is this model\'s class ' +
          'activation map'} at one layer only: "${gradcam.defaultLayer}" (not "${layer}").`
        : `The model has no layer "${layer}" with a spatial output.`);
    }
    view.showLayers(gradcam.layers, layer);
    view.setBusy(true);
    view.showStatus(onGraph ? `Grad-CAM on the graph model at ${layer}…` : `Grad-CAM at ${layer}…`);
    const facts = {
      method: 'gradcam', classIndex, layer, scoreKind: gradcam.scoreKind,
      model: gradcam.model, source: 'page', backend: this.backend,
    };
    try {
      return { ...(await this.engine.call('gradcam', { classIndex, layer })), ...facts };
    } catch (error) {
      // The layers model's error goes to the card as it is (another layer or backend helps);
      // the graph model has no other layer, so the server computes this one instead.
      if (!(onGraph && error.name === 'GradientUnsupportedError')) throw error;
      view.showStatus(`${error.message} Asking the server for Grad-CAM at ${layer}…`);
      let result;
      try {
        result = await this.serverGradCam(classIndex, layer);
      } catch (serverError) {
        throw new Error(`${error.message} ${serverError.message}`, { cause: serverError });
      }
      return { ...result, ...facts, source: 'server', scoreKind: result.scoreKind, reason: error.message,
        kernel: error.kernel };
    }
  }

  /**
   * The server's Grad-CAM (POST /api/models/<name>/explain) of the same input tensor, for
   * when the page cannot differentiate: {heatmap: Float32Array, shape, score, scoreKind, ms}.
   */
  async serverGradCam(classIndex, layer) {
    const start = performance.now();
    const query = new URLSearchParams({ method: 'gradcam', class_index: String(classIndex), format: 'json' });
    if (layer) query.set('layer', layer);
    const url = serverUrl(`api/models/${encodeURIComponent(this.classifier.name)}/explain?${query}`,
      'Grad-CAM from the server');
    let response;
    try {
      // the very tensor the page fed its model, as raw float32 (no JSON of 150k numbers)
      response = await fetch(url, {
        method: 'POST',
        headers: {
          'Content-Type': 'application/octet-stream',
          'X-Shape': [1, ...this.classifier.preprocessing.size, 3].join(','),
        },
        body: this.image.input,
      });
    } catch (cause) {
      throw new Error(`The server, asked instead, could not be reached (${cause.message}).`, { cause });
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      // not JSON: reported below with the status
    }
    if (!response.ok || !body?.heatmap) {
      const why = body?.error?.message ?? `${response.status} ${response.statusText}`;
      throw new Error(`The server, asked instead, could not compute it either: ${why}.`);
    }
    return {
      heatmap: Float32Array.from(body.heatmap.flat()),
      shape: body.heatmap_shape,
      score: body.gradcam?.score ?? NaN,
      scoreKind: body.gradcam?.score_kind,
      ms: performance.now() - start,
    };
  }

  /** The worker's Grad-CAM for this model (loading the layers model the first time), or {error}. */
  async loadGradCam() {
    if (this.gradcam) return this.gradcam;
    const { manifest } = this.classifier;
    if (!manifest.formats?.graph && manifest.explain?.gradcam !== 'cam') {
      return this.fail(`Grad-CAM cannot explain this model: ${manifest.explain?.reason ?? 'it has no TF.js model'}. ` +
        'Occlusion works on any model.');
    }
    if (!manifest.formats?.layers && !['graph', 'cam'].includes(manifest.explain?.gradcam)) {
      const why = [manifest.conversion?.layers_model?.reason, manifest.explain?.reason]
        .filter(Boolean).map((r) => r.replace(/\.$/, ''));
      return this.fail('Grad-CAM cannot explain this model: it has no TF.js layers model and its graph ' +
        `model has no Grad-CAM layer${why.length ? ` (${why.join('; ')})` : ''}. Occlusion works on any model.`);
    }
    if (manifest.formats?.layers) {
      const bytes = manifest.files.filter((f) => f.path.startsWith('layers/')).reduce((s, f) => s + f.bytes, 0);
      view.setBusy(true);
      view.showStatus(`Loading the layers model (${(bytes / 1e6).toFixed(1)} MB) for gradients…`);
    }
    try {
      this.gradcam = await this.engine.call('gradcamLayers');
    } catch (error) {
      return this.fail(manifest.formats?.layers
        ? `The layers model could not be loaded: ${error.message}. It is downloaded on the first ` +
          'Grad-CAM (and kept for offline visits after that); occlusion needs no download.'
        : `Grad-CAM cannot run on this model's graph model: ${error.message}`);
    }
    if (this.gradcam.model === 'layers') this.onModelFilesLoaded?.();
    view.showLayers(this.gradcam.layers, this.gradcam.defaultLayer);
    return this.gradcam;
  }

  async runOcclusion(classIndex, request) {
    const fromCard = view.occlusionParams();
    const patch = request.patch ?? fromCard.patch;
    const stride = request.stride ?? fromCard.stride;
    const [height, width] = this.classifier.preprocessing.size;
    const problem = paramsProblem(height, width, patch, stride);
    if (problem) return this.fail(problem);
    view.setOcclusionParams({ patch, stride }, Math.min(height, width));
    // a mid-grey pixel (127.5) in the model's values, per channel, as the server's fill
    const fill = pixelToModel(127.5, this.classifier.preprocessing);
    this.occluding = true;
    view.setBusy(true, { cancellable: true });
    try {
      const result = await this.engine.call('occlusion', { classIndex, patch, stride, fill },
        { onProgress: (done, total) => view.showProgress(done, total) });
      return { ...result, method: 'occlusion', classIndex, patch, stride };
    } finally {
      this.occluding = false;
    }
  }

  fail(text, extra = {}) {
    view.showStatus(text);
    return { error: text, ...extra };
  }

  /** The status line after an explanation: where it ran and how long it took. */
  doneText(result) {
    if (result.method !== 'gradcam') return `Occlusion on ${this.backend}: ${formatMs(result.ms)}.`;
    if (result.model !== 'graph') return `Grad-CAM on ${this.backend}: ${formatMs(result.ms)}.`;
    const only = 'the only layer available without a layers model';
    if (result.source === 'server') {
      return `Grad-CAM computed by the server (the SavedModel, at ${result.layer}, ${only}), not in the ` +
        `page: ${result.reason} ${formatMs(result.ms)} including the round trip.`;
    }
    return `Grad-CAM on ${this.backend}, on the graph model at ${result.layer} (${only}): ` +
      `${formatMs(result.ms)}.`;
  }

  caption(result) {
    const label = shortLabel(this.classifier.labels[result.classIndex]);
    if (result.method === 'gradcam') {
      const where = result.source === 'server' ? ', computed by the server' : '';
      return `Grad-CAM for "${label}" (class ${result.classIndex}) at ${result.layer} ` +
        `(${result.shape.join('×')}${where}): gradient of its ${result.scoreKind} (${result.score.toFixed(3)}).`;
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
    // Explain: the class typed in the box when there is one (one that matches nothing stops
    // here, said in the card), else the selected chip's
    $('explain-run').addEventListener('click', () => this.explainTyped());
    $('explain-cancel').addEventListener('click', () => this.cancel());
    $('explain-squirrel').addEventListener('click', () => this.fromUser({ classIndex: this.squirrelClass }));
    const box = $('explain-class-input');
    box.addEventListener('keydown', (event) => {
      if (event.key !== 'Enter') return;
      event.preventDefault();
      this.explainTyped();
    });
    // a suggestion picked from the list explains at once
    box.addEventListener('input', (event) => {
      if (event.inputType == null || event.inputType === 'insertReplacementText') {
        const options = [...document.querySelectorAll('#explain-labels option')].map((o) => o.value);
        if (options.includes(box.value)) this.explainTyped();
      }
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

/** A copy of an explanation for callers of window.belka (typed arrays kept, as plainResult in
 * classify.js). */
function plain(result) {
  return { ...result };
}
