/**
 * The /teach page's trying and saving (teach.js says how its files fit together): a picture,
 * or the camera's frames live, through the base and the taught head in the worker; Grad-CAM
 * through the head for a chosen class, drawn over the picture; and saving base + head as a
 * Belka model (POST /api/models).
 */
import { formatPercent } from './format.js';
import { decodeImage, modelRegion } from './preprocess.js';
import { serverUrl, siteUrl } from './site.js';
import { $, TRY_PX, camera, config, engine, serial, setText, state } from './teach-state.js';

// ---------------------------------------------------------------- trying and saving

/** A chosen picture through the base and the head, with Grad-CAM for the top class. */
export function predictBlob(blob) {
  return serial(async () => {
    if (!state.trained) throw new Error('Train first.');
    const bitmap = await decodeImage(blob);
    drawTryPhoto(bitmap);
    const result = await predict(bitmap, 'Looks like', { pick: true });
    return { ...result, gradcam: await gradcamTaught(result.top[0].index) };
  });
}

/**
 * A picture (an ImageBitmap, moved to the worker) through the base and the head, shown; with
 * `pick`, each class is a button that shows where the model looked for it.
 */
export async function predict(bitmap, verb, { pick = false } = {}) {
  const result = await engine.call('predictTaught', { image: bitmap }, { transfer: [bitmap] });
  const top = [...result.probabilities].map((probability, index) => ({
    index, label: state.trained.labels[index], probability,
  })).sort((a, b) => b.probability - a.probability);
  $('try-result').replaceChildren(...top.map((c) => {
    const item = document.createElement('li');
    const text = `${c.label}: ${formatPercent(c.probability)}`;
    if (!pick) {
      item.textContent = text;
      return item;
    }
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'chip';
    button.dataset.class = String(c.index);
    button.textContent = text;
    button.title = `Where it looked for "${c.label}"`;
    button.addEventListener('click', () => explainTaught(c.index).catch((error) => setText('try-status', error.message)));
    item.append(button);
    return item;
  }));
  setText('try-status', `${verb} "${top[0].label}".`);
  return { ...result, top };
}

/** Draws what the base model sees of a tried picture (its crop) under the heatmap. */
export function drawTryPhoto(bitmap) {
  const region = modelRegion(bitmap.height, bitmap.width, state.preprocessing);
  const scale = Math.min(TRY_PX / Math.max(region.width, region.height), 4);
  const photo = $('try-photo');
  const heat = $('try-heat');
  photo.width = heat.width = Math.max(1, Math.round(region.width * scale));
  photo.height = heat.height = Math.max(1, Math.round(region.height * scale));
  photo.getContext('2d').drawImage(bitmap, region.left, region.top, region.width, region.height,
    0, 0, photo.width, photo.height);
  heat.getContext('2d').clearRect(0, 0, heat.width, heat.height);
  $('try-figure').hidden = false;
  setText('try-caption', '');
}

/**
 * Grad-CAM of the last chosen picture for taught class `classIndex`: the base's last spatial
 * layer, differentiated through the base's features and the taught head (engine.js "gradcam"
 * with `taught`), drawn over the picture. {heatmap, shape, score, layer, classIndex}, or
 * {error} when this backend cannot compute the gradient (said under the picture).
 */
export function explainTaught(classIndex) {
  return serial(() => gradcamTaught(classIndex));
}

export async function gradcamTaught(classIndex) {
  const label = state.trained.labels[classIndex];
  if (label == null) throw new Error(`There is no class ${classIndex}.`);
  document.querySelectorAll('#try-result .chip').forEach((chip) => {
    chip.setAttribute('aria-pressed', String(chip.dataset.class === String(classIndex)));
  });
  try {
    const { defaultLayer: layer } = await engine.call('gradcamLayers');
    const result = await engine.call('gradcam', { classIndex, layer, taught: true });
    const heat = $('try-heat');
    const image = await engine.call('heatmapImage', { heatmap: result.heatmap, shape: result.shape,
      width: heat.width, height: heat.height });
    heat.getContext('2d').putImageData(image, 0, 0);
    setText('try-caption', `Where it looked for "${label}" (Grad-CAM at ${layer}, through your head).`);
    return { ...result, layer, classIndex };
  } catch (error) {
    $('try-heat').getContext('2d').clearRect(0, 0, $('try-heat').width, $('try-heat').height);
    const hint = error.name === 'GradientUnsupportedError' ? ' Switch the backend to webgl or cpu to see it.' : '';
    setText('try-caption', `No Grad-CAM for "${label}": ${error.message}${hint}`);
    return { error: error.message };
  }
}

/**
 * Live: the camera's frames through the taught head, one after the other, until stopped (or
 * `frames` of them); the last result. Not queued behind other work: it stops when the camera
 * does, or when training starts.
 */
export async function tryLive(frames = Infinity) {
  if (!state.trained) throw new Error('Train first.');
  if (!camera.active) throw new Error('Start the camera first.');
  const token = {};
  state.live = token;
  $('try-live').textContent = 'Stop live';
  $('try-figure').hidden = true;
  let last = null;
  try {
    for (let done = 0; done < frames && state.live === token && camera.active && !state.training; done += 1) {
      last = await predict(await createImageBitmap($('camera-video')), 'Live: looks like');
    }
  } finally {
    if (state.live === token) state.live = null;
    $('try-live').textContent = 'Live on the camera';
  }
  return last;
}

export async function save({ name = $('save-name')?.value, replace = $('save-replace')?.checked,
  token = $('save-token')?.value } = {}) {
  if (!state.trained) throw new Error('Train first.');
  const { weightSpecs, data, labels, settings } = state.trained;
  const form = new FormData();
  form.append('name', String(name ?? '').trim());
  form.append('base', config.model);
  form.append('labels', JSON.stringify(labels));
  form.append('head', JSON.stringify({ weightSpecs }));
  form.append('settings', JSON.stringify(settings));
  form.append('replace', replace ? 'true' : 'false');
  form.append('weights', new Blob([data], { type: 'application/octet-stream' }), 'weights.bin');
  setText('save-status', `Saving "${name}": the server converts and checks it (a minute or so)…`);
  const headers = token ? { authorization: `Bearer ${token}` } : {};
  const response = await fetch(serverUrl('api/models', 'Saving a model'), { method: 'POST', body: form, headers });
  const body = await response.json().catch(() => ({}));
  if (response.ok) {
    setText('save-status', `Saved as "${body.model}": it is in the model picker on every page now.`);
    const model = encodeURIComponent(body.model);
    $('save-open').href = siteUrl(`?model=${model}`);
    $('save-download').href = siteUrl(`api/models/${model}/download`);
    $('save-links').hidden = false;
  } else {
    if (response.status === 401 || (response.status === 403 && /token/.test(body.error?.message ?? ''))) {
      const row = $('token-row');
      if (row) row.hidden = false;
    }
    setText('save-status', `Not saved (${response.status}): ${body.error?.message ?? response.statusText}`);
  }
  return { status: response.status, body };
}
