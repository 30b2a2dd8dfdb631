/**
 * The classify page, "is it a squirrel?": an image (file, drop or paste) goes
 * through the model's preprocessing and its TF.js graph model, in the browser, on
 * the backend the user picked.
 *
 * The model runs in a Web Worker (static/js/engine.js, through engine-client.js): this
 * page sends it the image file, decodes its own copy to show, and draws what comes back, so
 * the page stays responsive while the model works.
 *
 * The start-up (backend choice, auto, load, warm-up), backend switches and the common part
 * of `window.belka` are the page kit's (static/js/page-kit.js); this file is what is the
 * classify page's own: its model's answer shown, images given by file, drop or paste.
 * Every operation (start, backend switch, classification) runs one at a time in
 * order, through the kit's queue (serial.js), so a backend switch never races a classification.
 *
 * Test and debug API, `window.belka`:
 *   offline          Promise, once ready: {ok, kept} when the service worker has stored this
 *                    page, its code and its model for offline visits (static/sw.js); after a
 *                    first Grad-CAM, the keeping of the layers model it downloaded
 *   ready            Promise, settles once the model is loaded and warmed up (by a
 *                    photo given before, else on zeros): {ok: true, backend} or
 *                    {ok: false, error} (it never rejects)
 *   config           the page config {model, models, squirrelClasses}
 *   model()          the model this page runs (picked: ?model=, remembered, or the default)
 *   backend()        the active backend ("webgpu", "webgl", "wasm", "cpu", "ort-wasm", "ort-webgpu")
 *   choice()         the user's choice ("auto" or a backend name)
 *   autoReason()     why "auto" chose its backend ("auto chose wasm: webgl: not tried
 *                    (software GPU (SwiftShader)); ..."), or null when the choice is fixed
 *   setBackend(c)    Promise: switch like the <select> does (remembered, re-runs the image)
 *   classifyBlob(b)  Promise: classify a Blob/File like a dropped file; resolves to null
 *                    when it is not a readable image (the page shows why), else to
 *                    {top5: [{index, label, probability}], logits: [...] (null when
 *                    the model outputs probabilities), probabilities: [...],
 *                    input: [...] (the flattened float32 [1, H, W, 3] the model got),
 *                    inferenceMs, totalMs, backend, verdict: {squirrel, text}}
 *   lastResult()     the latest such result, or null
 *   runs()           how many classifications have finished
 *   timings()        {loadMs, warmupMs, medianMs, samples}
 *   numTensors()     Promise: tf.memory().numTensors in the model's worker
 *   worker(op, args) Promise: one request to the model's worker (static/js/engine.js
 *                    operations; for tests: "stats" {numTensors, modelCalls, backend},
 *                    "kernel" {name, present} takes a kernel away or puts it back)
 *   idle()           Promise that resolves when the operations queued so far are done
 *                    (and what the last result draws after it)
 *   explain(r)       Promise: explain the current image (static/js/explain.js), r =
 *                    {method: "gradcam"|"occlusion", classIndex, layer, patch, stride},
 *                    each optional (default: the card's controls, the top-1 class);
 *                    resolves to {method, classIndex, heatmap: [...] (h * w), shape: [h, w],
 *                    ms, and layer, scoreKind, score, source ("page", or "server" when
 *                    the backend lacked a gradient kernel: then reason and kernel too),
 *                    model ("layers" or "graph") (Grad-CAM) or patch, stride, rows,
 *                    cols, drops, baseline, images (occlusion)}, or {error} when it cannot
 *                    run, or null when cancelled
 *   cancelExplain()  stops a running occlusion map
 *   explanations()   how many explanations have finished
 */
import { readPageConfig } from './config.js';
import { formatMs } from './format.js';
import { downloadFacts, weightsFromUrl } from './manifest.js';
import { squirrelVerdict, topK } from './predictions.js';
import { ExplainController } from './explain.js';
import { decodeImage, ImageDecodeError, modelRegion } from './preprocess.js';
import { PageKit } from './page-kit.js';
import { RecentMedian, since } from './timings.js';
import * as view from './view.js';
import { wireModelPicker } from './model-picker.js';
import { keepAgain, keepWhenReady } from './offline.js';
import { startPageEngine } from './start-worker.js';

const MEDIAN_OF_LAST = 20;
const READY = 'Ready: choose, drop or paste an image.';

const config = readPageConfig();
// the model's worker (started already by start-worker.js: TF.js loads there meanwhile)
const weights = weightsFromUrl(); // "float32" (?weights=float32), else the model's choice for pages
const engine = config.model ? startPageEngine(config) : null;

// the page's own state; the backend, the loaded model and its warm-up are the kit's (page-kit.js)
const state = {
  lastMs: null,
  inference: new RecentMedian(MEDIAN_OF_LAST),
  image: null, // the Blob shown now; re-classified when the backend changes
  result: null,
  runs: 0,
};

let explainer = null;

/**
 * The start-up, backend choice, auto, load, warm-up and switching (page-kit.js); the loaded
 * model (kit.model) is {name, manifest, labels, preprocessing, loadMs}.
 */
const kit = new PageKit({
  engine,
  config,
  page: {
    noun: 'model',
    readyText: READY,
    status: view.showStatus,
    loadRequest: () => ({ op: 'loadClassifier', args: { name: config.model, weights } }),
    loading: () => explainer.modelChanged(null, null),
    loaded: ({ manifest, loadMs, weights: loadedWeights }) => {
      view.showModel(manifest, downloadFacts(manifest, loadedWeights.folder), loadMs, loadedWeights.dtype);
      return { name: config.model, manifest, labels: manifest.labels, preprocessing: manifest.preprocessing, loadMs };
    },
    modelReady: (model) => explainer.modelChanged(model, kit.backend),
    backendChanged: () => {
      explainer.modelChanged(null, null);
      state.inference.clear();
      state.lastMs = null;
    },
    backendShown: (choice, result) => {
      const failed = result.failures.map((f) => `${f.backend} (${f.reason})`).join(', ');
      if (choice !== 'auto' && result.backend !== choice) {
        const reason = result.failures.find((f) => f.backend === choice)?.reason ?? 'unavailable';
        view.showMessage('backend', 'warning', `The ${choice} backend is unavailable here:`,
          `${reason}. Running on ${result.backend} instead.`);
        view.showBackendNote(`${choice} is unavailable; using ${result.backend}.`);
      } else {
        view.clearMessage('backend');
        view.showBackendNote(failed ? `Not available here: ${failed}.` : null);
      }
    },
    render: renderBackend,
    changeBackend,
  },
});
const serial = (task) => kit.serial(task);

explainer = config.model ? new ExplainController({
  engine,
  serial,
  showMessage: view.showMessage,
  clearMessage: view.clearMessage,
  squirrelClass: config.squirrelClasses[0],
}) : null;

// ---------------------------------------------------------------- operations

/** Switches backend (the <select>, or belka.setBackend), then re-runs the current image. */
async function changeBackend(choice) {
  const switching = kit.switchTo(choice); // throws at once for an unknown backend
  try {
    await switching;
  } catch (error) {
    kit.report('start', error);
    return null;
  }
  if (state.image) return classify(state.image);
  view.showStatus(READY);
  return null;
}

/**
 * Decodes and previews one image, has the worker preprocess and classify it, shows the
 * result and returns it (null when it is not a readable image). `decoding`: its decode,
 * when the caller started it as the image was given (see `queueClassify`).
 */
async function classify(blob, decoding = decodeImage(blob), asked = null) {
  const started = performance.now();
  const model = kit.model;
  if (!model) {
    view.showMessage('image', 'error', 'No model is loaded.', 'See the message above; reload the page to try again.');
    return null;
  }
  view.showStatus('Classifying…');
  // the worker gets the file itself and decodes its own copy, at once: the model does not wait
  // for this page to decode the picture and draw it (nor for a frame of the last result)
  const answer = asked ?? engine.call('classify', { image: blob });
  answer.catch(() => {}); // an unreadable file: reported from this page's decode, below
  let bitmap;
  try {
    bitmap = await decoding;
  } catch (error) {
    state.image = null;
    state.result = null;
    explainer.imageCleared();
    view.clearImageAndResult();
    view.showStatus('Choose, drop or paste an image.');
    view.showMessage('image', 'error', 'That file is not an image we can read.', error.message);
    if (error instanceof ImageDecodeError) return null;
    throw error;
  }
  view.clearMessage('image');
  state.image = blob;
  const spec = model.preprocessing;
  try {
    const region = modelRegion(bitmap.height, bitmap.width, spec);
    view.showPreview(bitmap, region, blob.name || 'Pasted image');
    const { output, probabilities, input, ms } = await answer;
    const top5 = topK(probabilities, model.labels, 5);
    const verdict = squirrelVerdict(top5[0], config.squirrelClasses);
    state.result = {
      top5, verdict, backend: kit.backend, inferenceMs: ms, totalMs: since(started),
      logits: model.manifest.output.kind === 'logits' ? output : null,
      probabilities, input,
    };
    state.runs += 1;
    state.lastMs = ms;
    if (kit.warm) {
      state.inference.add(ms);
    } else { // the first run on this model and backend compiled the kernels: it was the warm-up
      kit.warm = true;
      kit.warmupMs = ms;
    }
    view.showResult(verdict, top5, config.squirrelClasses, model.manifest.weights?.trained !== false);
    showModelInputNext(state.result, spec);
    explainer.imageClassified(state.result, bitmap, region);
    view.showStatus(`Classified on ${kit.backend}: inference ${formatMs(ms)}, ` +
      `${formatMs(state.result.totalMs)} from file to answer.`);
    renderBackend();
    return state.result;
  } catch (error) {
    view.showStatus('Classification failed.');
    view.showMessage('image', 'error', 'Classification failed.', error.message);
    throw error;
  } finally {
    bitmap.close();
  }
}

// ---------------------------------------------------------------- helpers

let modelInputDrawn = Promise.resolve();

/**
 * Draws what the model saw for `result` in a task of its own, once the answer is out (the
 * first photo's drawing takes ~10 ms, before its code is optimised), while the next photo, if
 * any, is already on its way to the worker; `idle()` waits for it. A newer result by then
 * draws its own.
 */
function showModelInputNext(result, spec) {
  modelInputDrawn = new Promise((resolve) => {
    setTimeout(() => {
      if (state.result === result) view.showModelInput(result.input, spec);
      resolve();
    }, 0);
  });
}

function renderBackend() {
  view.showBackend({
    choice: kit.choice, backend: kit.backend, warmupMs: kit.warmupMs,
    medianMs: state.inference.median(), runs: state.inference.count, lastMs: state.lastMs,
  });
}

/**
 * A copy of a result for callers of window.belka. Its numbers stay typed arrays: copying the
 * model input (150k floats) into an Array cost ~12 ms per photo on the main thread, and
 * Playwright's page.evaluate hands typed arrays to Python as lists anyway.
 */
function plainResult(result) {
  return result ? { ...result } : null;
}

/**
 * Queues a classification of `blob`, its decode begun at once: a photo given while the model
 * still loads is decoded meanwhile, not after. The first photo given during the start-up, with
 * nothing else queued since, also goes to the worker at once, right behind the start-up's
 * requests (the worker classifies it as soon as its model is loaded: engine.js `changing`)
 * rather than after their answers have come back to this page; its answer is read in turn.
 */
function queueClassify(blob) {
  const decoding = decodeImage(blob);
  decoding.catch(() => {}); // reported by classify(), in turn
  const asked = kit.mayGoAhead() ? engine.call('classify', { image: blob }) : null;
  asked?.catch(() => {}); // reported by classify(), in turn
  return serial(() => classify(blob, decoding, asked));
}

/** Classifies a user's file; errors are shown in the page, not thrown at the event loop. */
function classifyFromUser(file) {
  if (!file) return;
  explainer.cancel(); // a running occlusion map would hold the queue
  queueClassify(file).catch((error) => console.warn(error));
}

// ---------------------------------------------------------------- wiring

function wireInputs() {
  const fileInput = document.getElementById('file-input');
  fileInput.addEventListener('change', () => {
    classifyFromUser(fileInput.files[0]);
    fileInput.value = ''; // choosing the same file again classifies it again
  });

  let dragDepth = 0;
  document.addEventListener('dragenter', (event) => {
    if (!event.dataTransfer?.types.includes('Files')) return;
    dragDepth += 1;
    view.setDragging(true);
  });
  document.addEventListener('dragleave', () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (dragDepth === 0) view.setDragging(false);
  });
  document.addEventListener('dragover', (event) => event.preventDefault());
  document.addEventListener('drop', (event) => {
    event.preventDefault(); // never navigate to the dropped file
    dragDepth = 0;
    view.setDragging(false);
    classifyFromUser(event.dataTransfer?.files[0]);
  });

  document.addEventListener('paste', (event) => {
    const item = Array.from(event.clipboardData?.items ?? []).find((i) => i.kind === 'file');
    if (!item) return;
    event.preventDefault();
    classifyFromUser(item.getAsFile());
  });

  const select = document.getElementById('backend-select');
  select.addEventListener('change', () => {
    explainer.cancel();
    serial(() => changeBackend(select.value)).catch((error) => console.warn(error));
  });
}

/** window.belka: the kit's common part (ready, backend(), setBackend()...) and this page's own. */
function exposeApi() {
  let offline = keepWhenReady(kit.ready, engine);
  // a first Grad-CAM downloaded the layers model: kept for offline visits too
  if (explainer) explainer.onModelFilesLoaded = () => { offline = keepAgain(offline, engine); };
  window.belka = kit.api({
    get offline() { return offline; },
    classifyBlob: (blob) => queueClassify(blob).then(plainResult),
    lastResult: () => plainResult(state.result),
    runs: () => state.runs,
    timings: () => ({
      loadMs: kit.model?.loadMs ?? null, warmupMs: kit.warmupMs,
      medianMs: state.inference.median(), samples: state.inference.count,
    }),
    idle: () => kit.idle().then(() => modelInputDrawn),
    explain: (request) => explainer?.explain(request) ?? Promise.resolve({ error: 'No model.' }),
    cancelExplain: () => explainer?.cancel(),
    explanations: () => explainer?.count ?? 0,
  });
}

if (config.model) {
  wireInputs();
  wireModelPicker();
  kit.begin();
} else {
  kit.ready = Promise.resolve({ ok: false, error: 'No model: run `.venv/bin/belka convert mobilenet-v2`.' });
}
exposeApi();
