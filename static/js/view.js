/**
 * Everything the classify page draws: messages, status, the image preview, what
 * the model sees, the verdict, the top-5 and the model and backend panels.
 * No TF.js here: it gets plain numbers and objects.
 */
import { count, formatMB, formatMs, formatPercent } from './format.js';
import { inputToImageData } from './preprocess.js';
import { shortLabel } from './predictions.js';

const PREVIEW_MAX_PX = 640; // longest side of the preview canvas's bitmap

const $ = (id) => document.getElementById(id);

/** Sets the text of the <dd data-field="NAME"> in `panel`. */
function setField(panel, name, text) {
  const element = panel.querySelector(`[data-field="${name}"]`);
  if (element) element.textContent = text;
}

// ---------------------------------------------------------------- messages

/**
 * Shows a message banner at the top of the page. `topic` ("model", "image",
 * "backend"...) identifies it: a new message on a topic replaces the old one.
 * `level` is "error" or "warning".
 */
export function showMessage(topic, level, title, text) {
  const list = $('messages');
  let banner = list.querySelector(`[data-topic="${topic}"]`);
  if (!banner) {
    banner = document.createElement('div');
    banner.dataset.topic = topic;
    banner.setAttribute('role', 'alert');
    banner.innerHTML = '<p class="banner-text"><strong class="banner-title"></strong> ' +
      '<span class="banner-detail"></span></p>' +
      '<button type="button" class="banner-close" aria-label="Dismiss">×</button>';
    banner.querySelector('.banner-close').addEventListener('click', () => banner.remove());
    list.append(banner);
  }
  banner.className = `banner banner-${level}`;
  banner.querySelector('.banner-title').textContent = title;
  banner.querySelector('.banner-detail').textContent = text;
}

/** Removes the banner on `topic`, if any. */
export function clearMessage(topic) {
  $('messages').querySelector(`[data-topic="${topic}"]`)?.remove();
}

/** The one-line status under the verdict heading ("Loading the model...", "Done in 12 ms"). */
export function showStatus(text) {
  $('status').textContent = text;
}

// ---------------------------------------------------------------- image

/**
 * Draws `bitmap` into the preview canvas (scaled down to fit) and dims what the
 * model does not see: everything outside `region` ({top, left, height, width}).
 */
export function showPreview(bitmap, region, caption) {
  const canvas = $('preview-canvas');
  const scale = Math.min(1, PREVIEW_MAX_PX / Math.max(bitmap.width, bitmap.height));
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  const ctx = canvas.getContext('2d');
  ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  const x = region.left * scale;
  const y = region.top * scale;
  const w = region.width * scale;
  const h = region.height * scale;
  if (w < canvas.width || h < canvas.height) {
    ctx.save();
    ctx.fillStyle = 'rgba(20, 12, 6, 0.55)';
    ctx.beginPath();
    ctx.rect(0, 0, canvas.width, canvas.height);
    ctx.rect(x, y, w, h);
    ctx.fill('evenodd');
    ctx.strokeStyle = 'rgba(255, 243, 224, 0.9)';
    ctx.setLineDash([6, 4]);
    ctx.lineWidth = 2;
    ctx.strokeRect(x + 1, y + 1, w - 2, h - 2);
    ctx.restore();
  }
  const cropped = w < canvas.width || h < canvas.height ? ' · the dimmed parts are cropped away' : '';
  $('preview-caption').textContent = `${caption} · ${bitmap.width}×${bitmap.height} px${cropped}`;
  $('preview').hidden = false;
  $('dropzone').classList.add('dropzone-compact');
}

/** Shows the model's input (flattened [1, H, W, 3] values) as a small picture. */
export function showModelInput(input, spec) {
  const canvas = $('model-view-canvas');
  [canvas.height, canvas.width] = spec.size;
  canvas.getContext('2d').putImageData(inputToImageData(input, spec), 0, 0);
  $('model-view-size').textContent = `${spec.size[1]}×${spec.size[0]} px`;
  $('model-view').hidden = false;
}

/** Forgets the image and its result (after an image that could not be read). */
export function clearImageAndResult() {
  $('preview').hidden = true;
  $('model-view').hidden = true;
  $('verdict').hidden = true;
  $('top5').hidden = true;
  $('dropzone').classList.remove('dropzone-compact');
}

/** Highlights the drop zone while a file is dragged over the page. */
export function setDragging(on) {
  $('dropzone').classList.toggle('dropzone-active', on);
}

// ---------------------------------------------------------------- result

/**
 * The verdict banner ({squirrel, text}) and the top-5 list ([{index, label,
 * probability}]). With untrained weights the banner says the answer means nothing.
 */
export function showResult(verdict, top5, squirrelClasses, trained) {
  const banner = $('verdict');
  const text = document.createElement('span');
  text.className = 'verdict-text';
  text.textContent = verdict.text;
  banner.replaceChildren(text);
  if (!trained) {
    const note = document.createElement('span');
    note.className = 'verdict-note';
    note.textContent = 'Untrained weights: this answer is meaningless.';
    banner.append(note);
  }
  banner.className = `verdict ${verdict.squirrel ? 'verdict-yes' : 'verdict-no'}`;
  banner.hidden = false;

  const list = $('top5');
  list.replaceChildren(...top5.map((entry) => top5Item(entry, squirrelClasses.includes(entry.index))));
  list.hidden = false;
}

function top5Item({ index, label, probability }, isSquirrel) {
  const item = document.createElement('li');
  item.className = isSquirrel ? 'top5-item top5-squirrel' : 'top5-item';
  item.dataset.index = String(index);
  item.innerHTML = '<div class="top5-text"><span class="top5-name"></span> ' +
    '<span class="top5-percent"></span></div>' +
    '<div class="top5-bar" aria-hidden="true"><span class="top5-fill"></span></div>';
  item.querySelector('.top5-name').textContent = shortLabel(label);
  item.querySelector('.top5-name').title = `${label} (class ${index})`;
  item.querySelector('.top5-percent').textContent = formatPercent(probability);
  // CSSOM, not a style attribute: allowed by the CSP.
  item.querySelector('.top5-fill').style.width = `${Math.max(0.5, probability * 100).toFixed(2)}%`;
  return item;
}

// ---------------------------------------------------------------- panels

/** Fills the model panel from the manifest, the download facts and the load time. */
export function showModel(manifest, facts, loadMs, dtype) {
  const panel = $('model-panel');
  setField(panel, 'download', `${formatMB(facts.bytes)} (TF.js graph model, ${dtype} weights)`);
  setField(panel, 'shards', String(facts.shards));
  setField(panel, 'load-time', formatMs(loadMs));
  const [height, width] = manifest.preprocessing.size;
  setField(panel, 'input', `${width}×${height} px, ${count(manifest.labels.length, 'class', 'classes')}`);
  setField(panel, 'weights', describeWeights(manifest.weights));
  setField(panel, 'quantization', manifest.quantization ?? 'none');
  $('untrained-warning').hidden = manifest.weights?.trained !== false;
}

function describeWeights(weights = {}) {
  switch (weights.provenance) {
    case 'imagenet': return 'ImageNet (pretrained)';
    case 'none': return `untrained (seed ${weights.seed ?? '?'})`;
    case 'file': return weights.sha256 ? `from a file (sha256 ${weights.sha256.slice(0, 12)}…)` : 'from a file';
    default: return String(weights.provenance ?? 'unknown');
  }
}

/** Fills the backend panel: {choice, backend, warmupMs, medianMs, runs, lastMs}. */
export function showBackend({ choice, backend, warmupMs, medianMs, runs, lastMs }) {
  const panel = $('backend-panel');
  $('backend-select').value = choice;
  setField(panel, 'backend', backend ?? '—');
  setField(panel, 'warmup', formatMs(warmupMs));
  setField(panel, 'median', medianMs == null ? '—' : `${formatMs(medianMs)} (${runs} run${runs === 1 ? '' : 's'})`);
  setField(panel, 'last', formatMs(lastMs));
}

/** A note under the backend selector (a fallback, an ignored ?backend=); null hides it. */
export function showBackendNote(text) {
  const note = $('backend-note');
  note.textContent = text ?? '';
  note.hidden = !text;
}
