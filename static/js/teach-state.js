/**
 * The /teach page's shared state and start-up (teach.js says how its files fit together): the
 * page config, the model's worker, the camera, the classes and the trained head; the start-up
 * on the page kit (page-kit.js: the backend, "auto" meaning WebAssembly here, the base model
 * loaded), whose queue runs the page's operations one at a time; what IndexedDB keeps between
 * visits (lesson-store.js: restored, written in order, cleared); two small text helpers.
 */
import { Camera } from './camera.js';
import { readPageConfig } from './config.js';
import { count } from './format.js';
import { clearLesson, loadLesson, saveLesson } from './lesson-store.js';
import { PageKit } from './page-kit.js';
import { operationQueue } from './serial.js';
import { pageWeights, startPageEngine } from './start-worker.js';
import { squareThumbnail } from './thumbnail.js';
import { showMessage } from './view.js';
import { renderClasses } from './teach-samples.js';
import { drawChart, showTrained } from './teach-training.js';

export const config = readPageConfig();
export const engine = startPageEngine(config);
export const $ = (id) => document.getElementById(id);
export const THUMB_PX = 56;
export const RECORD_EVERY_MS = 150; // a frame every 150 ms while "Hold to record" is held
export const VIEWS = 4; // augmented views per picture, when "Augment" is on
export const TRY_PX = 320; // the tried picture's longer side on the page
export const camera = new Camera($('camera-video'));

export const state = {
  features: 0, // numbers per picture
  preprocessing: null, // the base model's (manifest.preprocessing): what part of a picture it sees
  classes: [{ name: 'squirrel', samples: [] }, { name: 'not squirrel', samples: [] }],
  target: 0, // the class pasted pictures go to
  recording: null, // a token while "Hold to record" is held
  pictures: 0, // pictures added so far: each one's augmentation seed
  live: null, // a token while the camera's frames are tried live
  trained: null, // {history, split, weightSpecs, data, labels}
  training: false,
};

// ---------------------------------------------------------------- start

/**
 * The start-up (page-kit.js): the backend ("auto" here: WebAssembly, which every browser has
 * and which trains a small head fast), the base model loaded (no warm-up: its first picture's
 * features are), then what was kept from the last visit put back.
 */
export const kit = new PageKit({
  engine,
  config,
  page: {
    noun: 'model',
    autoBackend: 'wasm',
    warmUpAfterStart: false,
    warnUnknownBackend: false,
    loadRequest: () => ({ op: 'loadClassifier', args: { name: config.model, weights: pageWeights(config) } }),
    loaded: ({ manifest }) => {
      state.features = manifest.features?.size ?? 0;
      state.preprocessing = manifest.preprocessing;
      if (!state.features) throw new Error(`${config.model} names no features to learn from; pick another base.`);
      return manifest;
    },
    render: () => {
      if (kit.backend) setField('backend', kit.backend);
    },
    started: async () => {
      const restored = await restore();
      renderClasses();
      setText('samples-status', restored ? `Restored ${count(restored, 'picture')} from your last visit.`
        : 'Add pictures to each class.');
    },
    report: (kind, error) => {
      if (kind !== 'engine' && kind !== 'start') return; // said once the start-up gives up
      showMessage('model', 'error', 'The base model could not start.', error.message);
      setText('samples-status', 'Not ready.');
    },
  },
});
export const serial = (task) => kit.serial(task);

// ---------------------------------------------------------------- kept between visits

/** Puts back the pictures and head kept for this base model; the number of pictures. */
export async function restore() {
  const lesson = await loadLesson(config.model);
  if (!lesson || lesson.size !== state.features || !Array.isArray(lesson.classes) || lesson.classes.length < 2) return 0;
  state.classes = await Promise.all(lesson.classes.map(async ({ name, samples }) => ({
    name,
    samples: await Promise.all(samples.map(async ({ features, views, thumb }) => {
      const bitmap = await createImageBitmap(thumb);
      const canvas = squareThumbnail(bitmap, THUMB_PX);
      bitmap.close();
      return { features, views: views ?? null, thumb: canvas, thumbBlob: thumb };
    })),
  })));
  if (lesson.trained) {
    await engine.call('useHead', { weightSpecs: lesson.trained.weightSpecs, data: lesson.trained.data.slice() });
    state.trained = lesson.trained;
    showTrained();
  }
  return state.classes.reduce((n, c) => n + c.samples.length, 0);
}

export const keeping = operationQueue(); // the lesson's writes to IndexedDB
/** Keeps the lesson as it is now (one write at a time, in order: serial.js). */
export function persist() {
  const lesson = {
    size: state.features,
    classes: state.classes.map(({ name, samples }) => ({
      name, samples: samples.map(({ features, views, thumbBlob }) => ({ features, views, thumb: thumbBlob })),
    })),
    trained: state.trained,
  };
  return keeping.serial(() => saveLesson(config.model, lesson));
}

/** Forgets the pictures and the head, here and in the browser's storage. */
export function clearAll() {
  return serial(async () => {
    await keeping.idle();
    await clearLesson(config.model);
    state.classes = [{ name: 'squirrel', samples: [] }, { name: 'not squirrel', samples: [] }];
    state.trained = null;
    state.target = 0;
    renderClasses();
    drawChart([]);
    $('confusion').replaceChildren();
    $('try-result').replaceChildren();
    $('try-figure').hidden = true;
    setText('train-status', '');
    setText('try-status', 'Train first.');
    setText('samples-status', 'Cleared: add pictures to each class.');
  });
}

export function setText(id, text) {
  const element = $(id);
  if (element) element.textContent = text;
}

export function setField(name, text) {
  const element = document.querySelector(`[data-field="${name}"]`);
  if (element) element.textContent = text;
}
