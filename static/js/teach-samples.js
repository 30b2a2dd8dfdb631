/**
 * The /teach page's classes and pictures (teach.js says how its files fit together): the
 * classes drawn with their thumbnails, added, renamed and removed; pictures added to a class
 * (each one's features computed in the model's worker, with augmented views when asked); the
 * camera started and stopped, and its frames recorded into a class while a button is held.
 */
import { cameraProblem } from './camera.js';
import { count } from './format.js';
import { decodeImage } from './preprocess.js';
import { squareThumbnail } from './thumbnail.js';
import { showMessage } from './view.js';
import {
  $, RECORD_EVERY_MS, THUMB_PX, VIEWS, camera, engine, persist, serial, setText, state,
} from './teach-state.js';

// ---------------------------------------------------------------- classes and samples

export function renderClasses() {
  const list = $('classes');
  list.replaceChildren(...state.classes.map((entry, index) => {
    const box = document.createElement('div');
    box.className = 'teach-class';
    box.dataset.index = String(index);
    const name = document.createElement('input');
    name.className = 'text-input';
    name.value = entry.name;
    name.setAttribute('aria-label', `Class ${index + 1} name`);
    name.addEventListener('change', () => renameClass(index, name.value));
    name.addEventListener('focus', () => { state.target = index; });
    const counter = document.createElement('span');
    counter.className = 'muted';
    counter.textContent = count(entry.samples.length, 'picture');
    const add = document.createElement('label');
    add.className = 'button';
    add.textContent = 'Add pictures…';
    const input = document.createElement('input');
    input.type = 'file';
    input.accept = 'image/*';
    input.multiple = true;
    input.className = 'visually-hidden';
    input.dataset.class = String(index);
    input.addEventListener('change', () => {
      const files = [...input.files];
      input.value = '';
      addSamples(index, files).catch((error) => console.warn(error));
    });
    add.append(input);
    const record = document.createElement('button');
    record.type = 'button';
    record.className = 'button';
    record.textContent = 'Hold to record';
    record.hidden = !camera.active;
    record.dataset.record = String(index);
    // held: recording until the pointer is released anywhere (the list is redrawn meanwhile)
    record.addEventListener('pointerdown', (event) => {
      event.preventDefault();
      recordFrames(index, Infinity).catch((error) => console.warn(error));
    });
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.className = 'button';
    remove.textContent = 'Remove class';
    remove.disabled = state.classes.length <= 2;
    remove.addEventListener('click', () => removeClass(index));
    const head = document.createElement('div');
    head.className = 'teach-class-head';
    head.append(name, counter, add, record, remove);
    const thumbs = document.createElement('div');
    thumbs.className = 'teach-thumbs';
    thumbs.append(...entry.samples.map((sample, k) => {
      const figure = document.createElement('button');
      figure.type = 'button';
      figure.className = 'teach-thumb';
      figure.title = 'Remove this picture';
      figure.setAttribute('aria-label', `Remove picture ${k + 1} of ${entry.name}`);
      figure.append(sample.thumb); // its canvas (moved here on each render)
      figure.addEventListener('click', () => {
        entry.samples.splice(k, 1);
        renderClasses();
        persist();
      });
      return figure;
    }));
    box.append(head, thumbs);
    return box;
  }));
}

export function addClass(name = `class ${state.classes.length + 1}`) {
  state.classes.push({ name, samples: [] });
  renderClasses();
  persist();
  return state.classes.length - 1;
}

export function renameClass(index, name) {
  const clean = String(name).trim();
  if (clean) state.classes[index].name = clean;
  renderClasses();
  persist();
}

export function removeClass(index) {
  if (state.classes.length <= 2) return;
  state.classes.splice(index, 1);
  state.target = Math.min(state.target, state.classes.length - 1);
  renderClasses();
  persist();
}

/** Adds pictures (Blobs, or ImageBitmaps: camera frames) to class `index`: each one's features
 * computed in the worker. */
export function addSamples(index, blobs) {
  return serial(async () => {
    let added = 0;
    const entry = state.classes[index];
    for (const [k, blob] of blobs.entries()) {
      setText('samples-status', `Reading picture ${k + 1} of ${blobs.length} for "${entry.name}"…`);
      let bitmap;
      try {
        bitmap = blob instanceof ImageBitmap ? blob : await decodeImage(blob);
      } catch (error) {
        showMessage('samples', 'warning', 'A file was skipped.', error.message);
        continue;
      }
      const thumb = squareThumbnail(bitmap, THUMB_PX);
      const thumbBlob = await new Promise((resolve) => { thumb.toBlob(resolve, 'image/png'); });
      const augment = $('augment').checked;
      state.pictures += 1;
      const { features, views } = await engine.call('features',
        { image: bitmap, views: augment ? VIEWS : 0, seed: state.pictures }, { transfer: [bitmap] });
      entry.samples.push({ features, views: views ?? null, thumb, thumbBlob });
      added += 1;
    }
    renderClasses();
    await persist();
    const total = state.classes.reduce((n, c) => n + c.samples.length, 0);
    setText('samples-status', `${count(total, 'picture')} in ${count(state.classes.length, 'class', 'classes')}.`);
    return added;
  });
}

// ---------------------------------------------------------------- the camera

export async function startCamera() {
  try {
    await camera.start();
  } catch (error) {
    const { title, text } = cameraProblem(error);
    showMessage('camera', 'error', title, text);
    return { ok: false, error: text };
  }
  $('camera-video').hidden = false;
  $('camera-start').hidden = true;
  $('camera-stop').hidden = false;
  $('try-live').hidden = false;
  renderClasses(); // the classes get their "Hold to record" buttons
  return { ok: true };
}

export function stopCamera() {
  state.recording = null;
  state.live = null;
  camera.stop();
  $('try-live').hidden = true;
  $('camera-video').hidden = true;
  $('camera-start').hidden = false;
  $('camera-stop').hidden = true;
  renderClasses();
}

/**
 * Records camera frames into class `index`, one every RECORD_EVERY_MS, while the button is
 * held (or `limit` frames); the number recorded.
 */
export async function recordFrames(index, limit = Infinity) {
  if (!camera.active) throw new Error('Start the camera first.');
  const token = {};
  state.recording = token;
  let recorded = 0;
  while (state.recording === token && recorded < limit && camera.active) {
    const started = performance.now();
    const frame = await createImageBitmap($('camera-video'));
    recorded += await addSamples(index, [frame]);
    setText('samples-status', `Recording into "${state.classes[index].name}": ${count(recorded, 'frame')}…`);
    await new Promise((resolve) => { setTimeout(resolve, Math.max(0, RECORD_EVERY_MS - (performance.now() - started))); });
  }
  if (state.recording === token) state.recording = null;
  return recorded;
}
