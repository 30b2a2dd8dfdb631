/**
 * The /learn/line lesson's server call (learn-line.js says how its files fit together): the
 * exact least-squares line for the current points (POST /api/learn/line, app/api/learn.py),
 * asked once the points have stopped changing for a moment; the answer is kept for the points'
 * version it was asked for.
 */
import { askServer } from './lesson.js';
import { ASK_DELAY_MS, points, pointsVersion } from './learn-line-state.js';
import { requestRender, showText } from './learn-line-draw.js';

// ---------------------------------------------------------------- the exact answer (server)

export const exactInfo = { version: -1, answer: null, error: null };
export let exactTimer = null;
export let exactWaiters = [];

export function scheduleExact() {
  clearTimeout(exactTimer);
  exactTimer = setTimeout(askExact, ASK_DELAY_MS);
}

export async function askExact() {
  exactTimer = null;
  const version = pointsVersion;
  let answer = null;
  let error = null;
  try {
    answer = await askServer('/api/learn/line', { x: points.x, y: points.y });
  } catch (problem) {
    error = problem.message;
  }
  if (version !== pointsVersion) return; // the points changed meanwhile: their own ask is on its way
  Object.assign(exactInfo, { version, answer, error });
  const waiters = exactWaiters;
  exactWaiters = [];
  showText();
  waiters.forEach((resolve) => resolve(exactResult()));
  requestRender();
}

export function exactResult() {
  return exactInfo.error ? { error: exactInfo.error } : { ...exactInfo.answer };
}

export function exact() {
  if (exactInfo.version === pointsVersion) return Promise.resolve(exactResult());
  const answer = new Promise((resolve) => exactWaiters.push(resolve));
  if (exactTimer != null) {
    clearTimeout(exactTimer);
    askExact();
  }
  return answer;
}

/** The server's answer when it is for the current points, else null. */
export function currentExact() {
  return exactInfo.version === pointsVersion && exactInfo.answer ? exactInfo.answer : null;
}
