/**
 * The /teach page: your own classes, learned in the browser on top of a converted classifier
 * (issue 14). Pictures become the base model's features in the model's worker (engine.js
 * "features", once per picture); a small head trains there on them (head.js, seeded); then it
 * classifies new pictures, and the server saves base + head as a Belka model (POST /api/models,
 * app/api/teach.py). Pictures (their features and thumbnails) and the trained head are kept in
 * IndexedDB (lesson-store.js): a reload brings them back; Clear forgets them.
 *
 * The page's code, one room per file:
 *   teach.js           this file: the wiring of the controls and window.belka
 *   teach-state.js     the state the others share, the start-up (on the page kit: page-kit.js)
 *                      and what is kept between visits (restore, persist, clear)
 *   teach-samples.js   the classes and their pictures (added, recorded from the camera)
 *   teach-training.js  training the head in the worker; its chart and confusion matrix
 *   teach-trying.js    trying pictures (and the camera, live) on the taught head, Grad-CAM
 *                      through it, and saving base + head on the server
 *
 * Test and debug API, `window.belka`:
 *   ready              Promise: {ok, backend} once the base model is loaded, or {ok: false, error}
 *   config, model()    the page config; the base model's name
 *   backend()          the active TF.js backend
 *   classes()          [{name, count}]
 *   addClass(name)     a new class; its index
 *   renameClass(i, n)  renames class i
 *   addSamples(i, bs)  Promise: the pictures (Blobs) added to class i, features computed; the
 *                      number added (pictures that are not images are said and skipped)
 *   train(options)     Promise: trains like the Train button, options overriding the fields
 *                      ({epochs, learningRate, batchSize, hidden, validationSplit, seed}):
 *                      {history: [{epoch, loss, accuracy, valLoss, valAccuracy}], split,
 *                      weightSpecs, data}
 *   confusion()        counts[true][predicted] on the validation pictures of the last training
 *   clear()            Promise: forgets the pictures and the head (here and kept ones)
 *   stored()           Promise: what IndexedDB keeps for this base: {classes, trained} or null
 *   stop()             stops training between two batches
 *   startCamera()      Promise: {ok: true} or {ok: false, error}; stopCamera() releases it
 *   record(i, n)       Promise: n camera frames recorded into class i, as holding the button does
 *   predictBlob(b)     Promise: {logits, probabilities, input, top: [{index, label, probability}],
 *                      gradcam} with the top class's Grad-CAM, as explainTaught gives it
 *   explainTaught(c)   Promise: Grad-CAM of the last picture tried for taught class c, base and
 *                      head as one model: {heatmap, shape, score, layer, classIndex} or {error}
 *   tryLive(n)         Promise: n camera frames through the taught head, as "Live on the camera"
 *                      does until stopped; the last one's result
 *   save(o)            Promise: saves like the Save button, o = {name, replace, token}:
 *                      {status, body} (the server's answer)
 *   numTensors()       Promise: tf.memory().numTensors in the model's worker
 *   worker(op, args)   one request to the model's worker
 *   idle()             Promise: the operations queued so far are done
 */
import { wireModelPicker } from './model-picker.js';
import { loadLesson } from './lesson-store.js';
import { $, clearAll, config, engine, kit, setText, state } from './teach-state.js';
import { addClass, addSamples, recordFrames, renameClass, startCamera, stopCamera } from './teach-samples.js';
import { train } from './teach-training.js';
import { explainTaught, predictBlob, save, tryLive } from './teach-trying.js';

function wire() {
  $('add-class').addEventListener('click', () => addClass());
  $('clear').addEventListener('click', () => clearAll().catch((error) => console.warn(error)));
  for (const end of ['pointerup', 'pointercancel']) document.addEventListener(end, () => { state.recording = null; });
  $('camera-start').addEventListener('click', () => startCamera());
  $('camera-stop').addEventListener('click', () => stopCamera());
  $('train').addEventListener('click', () => train().catch((error) => console.warn(error)));
  $('stop').addEventListener('click', () => engine.cancel());
  $('try-live').addEventListener('click', () => {
    if (state.live) state.live = null;
    else tryLive().catch((error) => setText('try-status', error.message));
  });
  $('try-input').addEventListener('change', () => {
    const file = $('try-input').files[0];
    $('try-input').value = '';
    if (file) predictBlob(file).catch((error) => setText('try-status', error.message));
  });
  $('save')?.addEventListener('click', () => save().catch((error) => setText('save-status', error.message)));
  document.addEventListener('paste', (event) => {
    const files = [...(event.clipboardData?.items ?? [])].filter((i) => i.kind === 'file').map((i) => i.getAsFile());
    if (!files.length || event.target?.tagName === 'INPUT') return;
    event.preventDefault();
    addSamples(state.target, files).catch((error) => console.warn(error));
  });
  wireModelPicker();
}

wire();
kit.begin();
window.belka = kit.api({
  classes: () => state.classes.map((c) => ({ name: c.name, count: c.samples.length })),
  addClass,
  renameClass,
  addSamples,
  train,
  confusion: () => state.trained?.confusion ?? null,
  clear: clearAll,
  stored: () => loadLesson(config.model).then((lesson) => lesson && {
    classes: lesson.classes.map((c) => ({ name: c.name, count: c.samples.length })), trained: Boolean(lesson.trained),
  }),
  stop: () => engine.cancel(),
  startCamera,
  stopCamera,
  record: (index, frames) => recordFrames(index, frames),
  predictBlob,
  explainTaught,
  tryLive: (frames) => tryLive(frames),
  save,
});
