/**
 * Everything the "Where did it look?" card draws: the class chips, the layer picker, the
 * method options, progress, and the heatmap over the picture. No TF.js here except through
 * heatmap.js; classify.js decides what runs when.
 */
import { formatPercent } from './format.js';
import { shortLabel } from './predictions.js';

const PHOTO_MAX_PX = 448; // longest side of the explain canvases' bitmaps

const $ = (id) => document.getElementById(id);

/** Shows the card (after the first classification). */
export function showCard() {
  $('explain').hidden = false;
}

/** Hides the card: there is no picture to explain (the last file was not an image). */
export function hideCard() {
  $('explain').hidden = true;
  clearFigure();
}

/** Forgets the picture and the heatmap (a new image is coming). */
export function clearFigure() {
  $('explain-figure').hidden = true;
  showStatus('');
}

/** Draws what the model sees of the picture (`region` of `bitmap`) under the heatmap. */
export function showPhoto(bitmap, region) {
  const scale = Math.min(PHOTO_MAX_PX / Math.max(region.width, region.height), 4);
  const photo = $('explain-photo');
  const heat = $('explain-heat');
  photo.width = heat.width = Math.max(1, Math.round(region.width * scale));
  photo.height = heat.height = Math.max(1, Math.round(region.height * scale));
  photo.getContext('2d').drawImage(bitmap, region.left, region.top, region.width, region.height,
    0, 0, photo.width, photo.height);
  heat.getContext('2d').clearRect(0, 0, heat.width, heat.height);
}

/**
 * The class chips: the top-5 ([{index, label, probability}]) and the squirrel shortcut
 * (hidden when the model has no such class); `selected` is pressed. `onPick(index)`.
 */
export function showClasses(top5, selected, squirrelClass, labels, onPick) {
  const chips = top5.map(({ index, label, probability }) => {
    const chip = document.createElement('button');
    chip.type = 'button';
    chip.className = 'chip';
    chip.dataset.index = String(index);
    chip.textContent = `${shortLabel(label)} ${formatPercent(probability)}`;
    chip.title = `${label} (class ${index})`;
    chip.addEventListener('click', () => onPick(index));
    return chip;
  });
  $('explain-classes').replaceChildren(...chips);
  const squirrel = $('explain-squirrel');
  squirrel.hidden = squirrelClass == null || squirrelClass >= labels.length;
  if (!squirrel.hidden) {
    squirrel.dataset.index = String(squirrelClass);
    squirrel.title = `${labels[squirrelClass]} (class ${squirrelClass})`;
  }
  markSelected(selected);
}

/** Presses the chip of class `index` (if shown) and releases the others. */
export function markSelected(index) {
  document.querySelectorAll('#explain .chip').forEach((chip) => {
    chip.setAttribute('aria-pressed', String(Number(chip.dataset.index) === index));
  });
}

/** Fills the class-name suggestions ("tabby, tabby cat (281)") for the model's labels. */
export function fillLabels(labels) {
  const options = labels.map((label, index) => {
    const option = document.createElement('option');
    option.value = `${label} (${index})`;
    return option;
  });
  $('explain-labels').replaceChildren(...options);
}

/** The layer picker: [{name, className, shape}], `selected` chosen; disabled while empty. */
export function showLayers(layers, selected) {
  const select = $('explain-layer');
  const options = layers.map(({ name, className, shape }) => {
    const option = document.createElement('option');
    option.value = name;
    option.textContent = `${name} · ${className} ${shape.join('×')}`;
    return option;
  });
  if (!options.length) {
    const placeholder = document.createElement('option');
    placeholder.textContent = 'loaded on the first explanation';
    options.push(placeholder);
  }
  select.replaceChildren(...options);
  select.disabled = !layers.length;
  if (selected) select.value = selected;
}

export function selectedLayer() {
  const select = $('explain-layer');
  return select.disabled ? null : select.value;
}

export function selectedMethod() {
  return document.querySelector('input[name="explain-method"]:checked').value;
}

export function setMethod(method) {
  document.querySelectorAll('input[name="explain-method"]').forEach((radio) => {
    radio.checked = radio.value === method;
  });
  showMethodOptions(method);
}

export function showMethodOptions(method) {
  $('gradcam-options').hidden = method !== 'gradcam';
  $('occlusion-options').hidden = method !== 'occlusion';
}

/** The occlusion inputs' values {patch, stride} (NaN when empty). */
export function occlusionParams() {
  return { patch: Number($('occlusion-patch').value), stride: Number($('occlusion-stride').value) };
}

export function setOcclusionParams({ patch, stride }, maxPatch) {
  $('occlusion-patch').value = String(patch);
  $('occlusion-stride').value = String(stride);
  $('occlusion-patch').max = String(maxPatch);
}

/** Busy: Explain disabled, Cancel shown (occlusion only), progress bar shown. */
export function setBusy(busy, { cancellable = false } = {}) {
  $('explain-run').disabled = busy;
  $('explain-cancel').hidden = !(busy && cancellable);
  const progress = $('explain-progress');
  progress.hidden = !(busy && cancellable);
  if (busy) progress.value = 0;
}

export function showProgress(done, total) {
  const progress = $('explain-progress');
  progress.max = total;
  progress.value = done;
  showStatus(`Occluding: ${done} of ${total} images…`);
}

export function showStatus(text) {
  $('explain-status').textContent = text;
}

/** The heat canvas's size in pixels: what the heatmap is resized to. */
export function heatSize() {
  const canvas = $('explain-heat');
  return { width: canvas.width, height: canvas.height };
}

/** Draws the coloured heatmap (ImageData of heatSize()) over the picture and writes `caption`. */
export function showHeatmap(image, caption) {
  $('explain-figure').hidden = false;
  $('explain-heat').getContext('2d').putImageData(image, 0, 0);
  $('explain-caption').textContent = caption;
  applyOpacity();
}

/** The heat canvas's opacity from the slider (CSSOM, allowed by the CSP). */
export function applyOpacity() {
  $('explain-heat').style.opacity = String(Number($('explain-opacity').value) / 100);
}

/** Saves `blob` as `filename` (the browser's download). */
export function download(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
