/**
 * The /learn/line lesson's shared state (learn-line.js says how its files fit together): the
 * points, the plot's window onto the plane, the settings, the fit (a, b, its loss, path and
 * steps), TF.js's handles (the variables, the points' tensors, the optimizer) and the loss
 * surface's cache; and the operations on the points: set, add, remove, generate from the form.
 */
import { count } from './format.js';
import { generatePoints, mse, surfaceWindow } from './line-fit.js';
import { reset, setStatus } from './learn-line-descent.js';
import { scheduleExact } from './learn-line-server.js';
import { requestRender, showText } from './learn-line-draw.js';

export const $ = (id) => document.getElementById(id);
export const MAX_POINTS = 500;
export const GRID = 64; // the loss surface: GRID x GRID lines
export const HIT_PX = 10; // how near (canvas pixels) a click must be to grab a point
export const ASK_DELAY_MS = 300; // the server is asked once the points have stopped changing this long
export const CALM_STEPS = 20; // steps in a row that hardly move a and b before Run calls it converged
export const CLOSE_ENOUGH = 1e-3; // |a - a*| and |b - b*| under this: descent found the exact line
export const MAX_DRAWN = 1500; // at most this many points of the path and loss curve are drawn
export const OPTIMIZER_NAMES = { sgd: 'SGD', momentum: 'momentum', adam: 'Adam' };

// the site's colours (static/css/belka.css), for the canvases
export const COLOURS = {
  point: '#c8641e', pointEdge: '#a14f14', descent: '#1565c0', exact: '#2e7d32', axis: '#7a6a60',
  grid: '#efe6dc', text: '#3e2723', error: 'rgba(179, 38, 30, 0.45)', start: '#3e2723',
};

// ---------------------------------------------------------------- state

export const points = { x: [], y: [] };
export let view = { xMin: -1, xMax: 1, yMin: -1, yMax: 1 }; // the plot's window onto the plane
export let pointsVersion = 0;
export const settings = { optimizer: 'sgd', learningRate: 0.1, perFrame: 3, standardise: false };
export const fit = {
  start: { a: 0, b: 0 },
  a: 0, b: 0, loss: NaN, steps: 0,
  startLoss: null, // the loss when descent (re)started: divergence is measured from it
  diverged: false, converged: false, calm: 0,
  explosion: null, // {from, to, steps, rate} when the loss exploded
  path: [], losses: [], // (a, b) and the loss after each step, step 0 first
};

/** TF.js's part, once the backend runs: the variables, the points as tensors, the optimizer. */
export const engine = {
  ready: false,
  a: null, b: null, // tf.variable scalars: the line's a and b (a' and b' when x is standardised)
  x: null, y: null, // the points' tensors, rebuilt when `stale`
  stats: { mean: 0, std: 1 }, // how x was standardised for x (mean 0, std 1: not at all)
  optimizer: null,
  stale: true,
};

/** The loss surface's grid of losses, recomputed when the points or the start change. */
export const surface = { window: surfaceWindow([], null, fit.start), image: null, stale: true };

// ---------------------------------------------------------------- points

export function setAllPoints(x, y) {
  if (x.length !== y.length) throw new Error(`x and y: ${x.length} and ${y.length} values; give as many of each.`);
  if (x.length > MAX_POINTS) throw new Error(`${x.length} points: this page takes at most ${MAX_POINTS}.`);
  if (![...x, ...y].every(Number.isFinite)) throw new Error('Every x and y must be a finite number.');
  points.x = x.map(Number);
  points.y = y.map(Number);
  view = viewFor(points);
  pointsChanged();
  reset();
}

/** The plot's window for `pts`: all of them, with a margin. */
export function viewFor(pts) {
  if (!pts.x.length) return { xMin: -1, xMax: 1, yMin: -3, yMax: 3 };
  const range = (values) => {
    let lo = Math.min(...values);
    let hi = Math.max(...values);
    if (hi - lo < 1e-9) {
      lo -= 1;
      hi += 1;
    }
    const pad = (hi - lo) * 0.08;
    return [lo - pad, hi + pad];
  };
  const [xMin, xMax] = range(pts.x);
  const [yMin, yMax] = range(pts.y);
  return { xMin, xMax, yMin, yMax };
}

/** After any change to the points: tensors, surface and the server's answer follow. */
export function pointsChanged() {
  pointsVersion += 1;
  engine.stale = true;
  surface.stale = true;
  fit.startLoss = null; // measured again from the next step
  fit.converged = false;
  fit.calm = 0;
  fit.loss = mse(fit.a, fit.b, points.x, points.y);
  $('point-count').textContent = count(points.x.length, 'point');
  scheduleExact();
  showText();
  requestRender();
}

export function addPoint(x, y) {
  if (points.x.length >= MAX_POINTS) {
    setStatus(`That is ${MAX_POINTS} points, this page's most: drag or delete some instead.`);
    return -1;
  }
  points.x.push(x);
  points.y.push(y);
  pointsChanged();
  return points.x.length - 1;
}

export function removePoint(i) {
  points.x.splice(i, 1);
  points.y.splice(i, 1);
  pointsChanged();
}

export function generateFromForm(overrides = {}) {
  const [formMin, formMax] = $('gen-range').value.split(',').map(Number);
  const number = (id, fallback) => {
    const value = Number($(id).value);
    return Number.isFinite(value) ? value : fallback;
  };
  const options = {
    a: number('gen-a', 2), b: number('gen-b', -1), noise: Math.max(0, number('gen-noise', 0.5)),
    count: Math.round(Math.min(MAX_POINTS, Math.max(2, number('gen-count', 40)))),
    seed: Math.round(number('gen-seed', 1)), xMin: formMin, xMax: formMax, ...overrides,
  };
  if (overrides.xMax != null && overrides.xMin == null) options.xMin = 0;
  if (!(options.xMax > options.xMin)) throw new Error(`x from ${options.xMin} to ${options.xMax}: xMax must be larger.`);
  // the form shows what was generated, so the same button press gives the same points again
  for (const key of ['a', 'b', 'noise', 'count', 'seed']) $(`gen-${key}`).value = String(options[key]);
  const range = `${options.xMin},${options.xMax}`;
  if ([...$('gen-range').options].some((o) => o.value === range)) $('gen-range').value = range;
  const generated = generatePoints(options);
  setAllPoints(generated.x, generated.y);
  setStatus(`${count(options.count, 'point')} near y = ${options.a} x ${options.b < 0 ? '−' : '+'} ` +
    `${Math.abs(options.b)}, seed ${options.seed}.`);
  return { x: [...points.x], y: [...points.y] };
}
