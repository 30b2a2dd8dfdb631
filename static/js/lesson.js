/**
 * What the /learn lessons share: TF.js on the page (static/js/tf.js) on the backend the user
 * chose (?backend=, remembered as on the other pages; "auto" means WebAssembly here, which
 * every browser has and which runs these small tensors fast), the sample photos, and the
 * server's answers for checking the page's numbers.
 */
import { activateBackend } from './backend.js';
import { initialChoice, rememberChoice } from './backend-choice.js';
import { serverUrl } from './site.js';
import { tf, withGradients } from './tf.js';

export { tf };

/**
 * Activates the chosen backend on this page: {backend, choice, failures}; written into
 * [data-field="backend"]. With `gradients`, TF.js's gradients are loaded alongside (tf.js
 * withGradients: a lesson that trains).
 */
export async function startBackend({ gradients = false } = {}) {
  const { choice, source } = initialChoice();
  if (source === 'url') rememberChoice(choice);
  const [result] = await Promise.all([activateBackend(choice === 'auto' ? 'wasm' : choice),
    gradients ? withGradients() : null]);
  document.querySelectorAll('[data-field="backend"]').forEach((element) => {
    element.textContent = result.backend;
  });
  return result;
}

/**
 * POSTs `body` as JSON to one of the /api/learn endpoints: the parsed answer, or an Error with
 * the server's message (app/api/learn.py).
 */
export async function askServer(path, body) {
  const url = serverUrl(path, 'Checking against Python');
  let response;
  try {
    response = await fetch(url, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
    });
  } catch (error) {
    throw new Error(`The server could not be reached (${error.message}): the page's own numbers still stand.`);
  }
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.error?.message ?? `The server answered ${response.status}.`);
  return answer;
}

/** The largest |a[i] - b[i]| of two equally long arrays of numbers. */
export function maxAbsDiff(a, b) {
  let worst = 0;
  for (let i = 0; i < a.length; i += 1) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

/** A sample photo's ImageBitmap, from its URL (config.samples[i].url). */
export async function loadSample(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`The sample photo ${url} did not load (${response.status}).`);
  return createImageBitmap(await response.blob());
}
